"""Regression: ridge fit/predict, compact regressor storage, importers."""
