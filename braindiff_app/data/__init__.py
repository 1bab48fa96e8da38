"""Data: the NSD layout and reader, ROI atlases and flatmaps (the demo world's builders live in braindiff_app.demo)."""
