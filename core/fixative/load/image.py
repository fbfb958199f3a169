"""Reading artworks: any common file, PIL image or array -> float RGB tensor, with what must be put back.

Alpha, ICC profile, EXIF and bit depth are kept aside untouched so ``save`` can restore them exactly.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import BadImageError

MAX_PIXELS = 64_000_000  # 8000 x 8000; larger images are refused before decoding (decompression bombs)
METADATA_KEY = "fixative"


@dataclass
class Artwork:
    """An image ready for protection, plus everything needed to write it back faithfully."""

    rgb: torch.Tensor  # (3, H, W) float32 in 0..1
    mode: str  # PIL mode of the source ("RGB", "RGBA", "L", "I;16", ...)
    alpha: np.ndarray | None = None  # original alpha plane, untouched
    bits: int = 8  # 8 or 16 bits per channel
    icc_profile: bytes | None = None
    exif: bytes | None = None
    source: str | None = None
    format: str | None = None
    metadata: dict | None = None  # Fixative metadata already in the file (a protected image)
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[2], self.rgb.shape[1]

    @property
    def grey(self) -> bool:
        return self.mode in ("L", "LA", "I;16", "I;16B", "I;16L", "I", "1")


def _read_metadata(image: Image.Image) -> dict | None:
    raw = image.info.get(METADATA_KEY)
    if raw is None and image.format == "JPEG":
        comment = image.info.get("comment", b"")
        if isinstance(comment, bytes) and comment.startswith(b"fixative:"):
            raw = comment[len(b"fixative:") :].decode("utf-8", "replace")
    if raw is None and "xmp" in image.info:
        xmp = image.info["xmp"]
        xmp = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
        start = xmp.find('fixative:json="')
        if start >= 0:
            end = xmp.find('"', start + 15)
            import html

            raw = html.unescape(xmp[start + 15 : end])
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _decodes_16_bit_colour_as_8(image: Image.Image) -> bool:
    """Pillow has no 16-bit RGB mode: a 48/64-bit PNG or TIFF opens as 8-bit RGB(A); its raw mode says so."""
    for tile in getattr(image, "tile", None) or []:
        args = tile[3] if len(tile) > 3 else None
        raw_mode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(raw_mode, str) and ";16" in raw_mode:
            return True
    return False


def from_pil(image: Image.Image, source: str | None = None) -> Artwork:
    """Convert a decoded PIL image; every mode Pillow opens is either handled or refused clearly."""
    if image.width == 0 or image.height == 0:
        raise BadImageError(f"{source or 'image'}: image has zero size")
    if image.width * image.height > MAX_PIXELS:
        raise BadImageError(
            f"{source or 'image'}: {image.width}x{image.height} is larger than the "
            f"{MAX_PIXELS // 1_000_000} MP limit"
        )
    notes: list[str] = []
    icc = image.info.get("icc_profile")
    exif = image.info.get("exif")
    metadata = _read_metadata(image)
    fmt = image.format
    mode = image.mode
    alpha = None
    bits = 8
    if getattr(image, "n_frames", 1) > 1:
        notes.append("only the first frame of an animated/multi-page image is protected")
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        bits = 16
        if arr.max() > 65535 or arr.min() < 0:
            raise BadImageError(
                f"{source or 'image'}: 32-bit integer images are not supported; save as 16-bit PNG"
            )
        grey = torch.from_numpy((arr / 65535.0).astype(np.float32))
        rgb = grey.expand(3, -1, -1).clone()
    elif mode == "F":
        raise BadImageError(
            f"{source or 'image'}: 32-bit float images are not supported; save as 8/16-bit PNG or TIFF"
        )
    else:
        if mode == "P":
            has_alpha = "transparency" in image.info
            image = image.convert("RGBA" if has_alpha else "RGB")
            notes.append("palette image: saved as full-colour RGB (re-quantising would erase the protection)")
            mode = image.mode
        elif mode == "PA":
            image = image.convert("RGBA")
            notes.append("palette image: saved as full-colour RGBA")
            mode = "RGBA"
        elif mode == "1":
            image = image.convert("L")
            notes.append("1-bit image: saved as 8-bit greyscale")
            mode = "L"
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
            image = image.convert("RGB")
            notes.append(f"{mode} image: converted to RGB")
            mode = "RGB"
        elif mode not in ("RGB", "RGBA", "L", "LA", "RGBa", "La"):
            raise BadImageError(f"{source or 'image'}: unsupported image mode {mode!r}")
        if mode in ("RGBA", "LA", "RGBa", "La"):
            alpha = np.array(image.getchannel("A"))
        base = image.convert("RGB")
        rgb = torch.from_numpy(np.array(base, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
    return Artwork(
        rgb=rgb.contiguous(),
        mode=mode,
        alpha=alpha,
        bits=bits,
        icc_profile=icc,
        exif=exif,
        source=source,
        format=fmt,
        metadata=metadata,
        notes=notes,
    )


def load_image(path: str | Path) -> Artwork:
    """Open a file as an Artwork, with a one-line error for anything that is not a usable image."""
    path = Path(path)
    name = path.name
    if not path.exists():
        raise BadImageError(f"{path}: no such file")
    if path.is_dir():
        raise BadImageError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise BadImageError(f"{name}: file is empty")
    artwork = load_bytes(path.read_bytes(), name)
    artwork.source = str(path)
    return artwork


def load_bytes(data: bytes, name: str = "upload") -> Artwork:
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
    # Pixels are protected as stored; the EXIF orientation tag is kept, so viewers rotate as before.
    artwork = from_pil(image, name)
    if wide_colour:
        artwork.notes.append(
            "16-bit colour image: Pillow decodes it at 8 bits per channel, so the protected copy is 8-bit "
            "(the original file is untouched)"
        )
    return artwork


def to_artwork(image, name: str = "image") -> Artwork:
    """Accept what hosts hold: a path, bytes, PIL image, HxWxC uint8/float array, or (3,H,W) tensor."""
    if isinstance(image, Artwork):
        return image
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, (bytes, bytearray)):
        return load_bytes(bytes(image), name)
    if isinstance(image, Image.Image):
        return from_pil(image, name)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise BadImageError(f"{name}: array must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        elif arr.dtype == np.uint16:
            arr = arr.astype(np.float32) / 65535.0
        else:
            arr = np.clip(arr.astype(np.float32), 0, 1)
        tensor = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
        return to_artwork(tensor, name)
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] not in (1, 3, 4) or t.shape[1] == 0 or t.shape[2] == 0:
            raise BadImageError(f"{name}: tensor must be (C,H,W) with C in 1,3,4, got {tuple(image.shape)}")
        alpha = None
        if t.shape[0] == 4:
            alpha = (t[3].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            t = t[:3]
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        mode = "RGBA" if alpha is not None else "RGB"
        return Artwork(rgb=t.clamp(0, 1).contiguous().clone(), mode=mode, alpha=alpha, source=name)
    raise BadImageError(f"{name}: cannot protect an object of type {type(image).__name__}")
