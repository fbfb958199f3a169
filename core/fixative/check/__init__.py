"""Step 4 of the data path: measure how protected an image is, and whether it survives purification."""

from .measures import perceptual

__all__ = ["perceptual"]
