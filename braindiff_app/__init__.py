"""braindiff: Brain-Diffuser reconstruction of seen images from fMRI, as a library, CLI and app."""

__version__ = "0.1.0"
