"""Step 1 of the data path: load an artwork (and keep what must be written back)."""

from .image import MAX_PIXELS, METADATA_KEY, Artwork, from_pil, load_bytes, load_image, to_artwork

__all__ = ["MAX_PIXELS", "METADATA_KEY", "Artwork", "from_pil", "load_bytes", "load_image", "to_artwork"]
