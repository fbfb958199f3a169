"""Last step of the data path: write the protected copy with its metadata."""

from .image import FORMATS, LOSSY, encode, save_image, to_pil

__all__ = ["FORMATS", "LOSSY", "encode", "save_image", "to_pil"]
