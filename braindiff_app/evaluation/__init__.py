"""Evaluation: the paper's eight metrics, reports and plots."""
