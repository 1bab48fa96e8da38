"""Data: the NSD reader, the simulated subject, ROI atlases and flatmaps."""
