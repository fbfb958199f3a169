"""Last step of the data path: write the protected copy with its metadata."""

from .image import FORMATS, encode, output_path_for, save_image, to_pil

__all__ = ["FORMATS", "encode", "output_path_for", "save_image", "to_pil"]
