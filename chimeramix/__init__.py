"""ChimeraMix: learned compositional data augmentation for few labelled images per class."""

__version__ = "0.1.0"
