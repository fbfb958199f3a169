"""Step 1 of the data path: load an artwork (and keep what must be written back).

``decode`` reads files without torch (the CLI checks inputs with it before loading the engine); ``image``
turns them into tensors. Names are imported on first use for that reason.
"""

from __future__ import annotations

from ..lazy import exports

_EXPORTS = {
    **dict.fromkeys(
        (
            "Artwork",
            "MIN_SIDE",
            "from_pil",
            "load_bytes",
            "load_image",
            "over_background",
            "padded_for_encoders",
            "shrunk",
            "to_artwork",
        ),
        "image",
    ),
    **dict.fromkeys(("MAX_PIXELS", "decode_file"), "decode"),
}

__all__ = sorted(_EXPORTS)


__getattr__ = exports(__name__, _EXPORTS)
