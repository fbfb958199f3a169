"""Reading image files without torch: every way a file can be unusable becomes one ``BadImageError`` line.

The command line checks inputs with this before it loads the engine, so a missing, empty, truncated or
oversized file is reported at once.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import BadImageError

MAX_PIXELS = 64_000_000  # 8000 x 8000; larger images are refused before decoding (decompression bombs)
SUPPORTED_MODES = ("RGB", "RGBA", "L", "LA", "RGBa", "La", "P", "PA", "1", "CMYK", "YCbCr", "LAB", "HSV")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


@dataclass
class Decoded:
    """A decoded image, with what was noticed while reading it and the SHA-256 of its bytes."""

    image: Image.Image
    name: str
    digest: str
    notes: list[str] = field(default_factory=list)


def read_file(path: str | Path) -> bytes:
    path = Path(path)
    if not path.exists():
        raise BadImageError(f"{path}: no such file")
    if path.is_dir():
        raise BadImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise BadImageError(f"{path.name}: file is empty")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadImageError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def decode_file(path: str | Path) -> Decoded:
    return decode(read_file(path), Path(path).name)


def _decodes_16_bit_colour_as_8(image: Image.Image) -> bool:
    """Pillow has no 16-bit RGB mode: a 48/64-bit PNG or TIFF opens as 8-bit RGB(A); its raw mode says so."""
    for tile in getattr(image, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        raw_mode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw_mode, str) and ";16" in raw_mode:
            return True
    return False


def decode(data: bytes, name: str = "upload") -> Decoded:
    """Decode file bytes fully (so truncation shows now), refusing bombs and modes Fixative cannot keep."""
    if not data:
        raise BadImageError(f"{name}: file is empty")
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            wide_colour = image.mode in ("RGB", "RGBA") and _decodes_16_bit_colour_as_8(image)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadImageError(
            f"{name}: image is larger than the {MAX_PIXELS // 1_000_000} MP limit (or a decompression bomb)"
        ) from None
    except UnidentifiedImageError:
        if (
            data[:8] == b"\x89PNG\r\n\x1a\n"
            and len(data) >= 24
            and (data[16:20] == bytes(4) or data[20:24] == bytes(4))
        ):
            raise BadImageError(f"{name}: image has zero size") from None
        raise BadImageError(
            f"{name}: not an image file Fixative can read (PNG, JPEG, WebP, TIFF, BMP, GIF)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadImageError(
            f"{name}: image file is truncated or corrupt ({str(exc).splitlines()[0][:120]})"
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    check_image(image, name)
    notes = []
    if wide_colour:
        notes.append(
            "16-bit colour image: Pillow decodes it at 8 bits per channel, so the protected copy is 8-bit "
            "(the original file is untouched)"
        )
    return Decoded(image, name, hashlib.sha256(data).hexdigest(), notes)


def check_image(image: Image.Image, name: str = "image") -> None:
    """Size and mode limits, checked before any pixel is converted."""
    if image.width == 0 or image.height == 0:
        raise BadImageError(f"{name}: image has zero size")
    if image.width * image.height > MAX_PIXELS:
        raise BadImageError(
            f"{name}: {image.width}x{image.height} is larger than the {MAX_PIXELS // 1_000_000} MP limit"
        )
    if image.mode == "F":
        raise BadImageError(f"{name}: 32-bit float images are not supported; save as 8/16-bit PNG or TIFF")
    if image.mode in SIXTEEN_BIT_MODES:
        low, high = image.getextrema() if image.mode == "I" else (0, 0)
        if low < 0 or high > 65535:
            raise BadImageError(f"{name}: 32-bit integer images are not supported; save as 16-bit PNG")
    elif image.mode not in SUPPORTED_MODES:
        raise BadImageError(f"{name}: unsupported image mode {image.mode!r}")
