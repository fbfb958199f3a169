"""Reading artworks: any common file, PIL image or array -> float RGB tensor, with what must be put back.

Alpha, ICC profile, EXIF and bit depth are kept aside untouched so ``save`` can restore them exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from ..errors import BadImageError
from ..metadata import read as read_metadata
from .decode import Decoded, check_image, decode, decode_file


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
    digest: str | None = None  # SHA-256 of the file's bytes, when it came from a file

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[2], self.rgb.shape[1]

    @property
    def transparent(self) -> bool:
        """Has pixels a site would flatten (alpha under 255 somewhere)."""
        return self.alpha is not None and int(self.alpha.min()) < 255

    @property
    def grey(self) -> bool:
        return self.mode in ("L", "LA", "I;16", "I;16B", "I;16L", "I", "1")


def from_pil(image: Image.Image, source: str | None = None) -> Artwork:
    """Convert a decoded PIL image; every mode Pillow opens is either handled or refused clearly."""
    check_image(image, source or "image")
    notes: list[str] = []
    icc = image.info.get("icc_profile")
    exif = image.info.get("exif")
    metadata = read_metadata(image)
    fmt = image.format
    mode = image.mode
    alpha = None
    bits = 8
    if getattr(image, "n_frames", 1) > 1:
        notes.append("only the first frame of an animated/multi-page image is protected")
    image, turned = upright(image)
    if turned:
        exif = image.info.get("exif")
        notes.append(
            f"EXIF orientation {turned} applied: protected and written upright (the tag removed), as sites "
            "and models see it"
        )
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        bits = 16
        grey = torch.from_numpy((arr / 65535.0).astype(np.float32))
        rgb = grey.expand(3, -1, -1).clone()
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
    artwork = from_decoded(decode_file(path))
    artwork.source = str(path)
    return artwork


def load_bytes(data: bytes, name: str = "upload") -> Artwork:
    return from_decoded(decode(data, name))


def upright(image: Image.Image) -> tuple[Image.Image, int]:
    """The image as it is displayed, and the EXIF orientation applied (0 when none was).

    Sites re-encode uploads upright and training loaders apply the tag, so a protection made on a phone
    photo's stored (sideways) pixels is not what a model sees: on a 320x256 photo with orientation 6 an
    edit shield measured 0.24 as stored and 0.08 once turned upright.
    """
    try:
        orientation = int(image.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return image, 0  # unreadable EXIF: the pixels as stored, which is all a reader could do too
    if orientation not in range(2, 9):
        return image, 0
    return ImageOps.exif_transpose(image), orientation


def from_decoded(decoded: Decoded) -> Artwork:
    """The Artwork of an image ``load.decode`` read (turned upright by its EXIF orientation)."""
    artwork = from_pil(decoded.image, decoded.name)
    artwork.digest = decoded.digest
    artwork.notes += decoded.notes
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


MIN_SIDE = 32  # encoders downscale 8x and pad by reflection: smaller images are padded to this first


def over_background(rgb: torch.Tensor, alpha, value: float | torch.Tensor = 1.0) -> torch.Tensor:
    """``rgb`` (C, H, W) composited over a flat ``value`` (a grey level, or a (C, 1, 1) colour) by ``alpha``
    (H, W, uint8 or 0..1), on the 8-bit grid: what a site that flattens transparent images (or a scraper
    that mattes them) passes on, and what a JPEG of one holds (``save.flattened``)."""
    a = torch.as_tensor(alpha)
    a = a.to(rgb) / 255.0 if a.dtype == torch.uint8 else a.to(rgb)
    value = torch.as_tensor(value).to(rgb)
    return ((rgb * a + value * (1 - a)) * 255).round() / 255


def padded_for_encoders(
    artwork: Artwork, mask: torch.Tensor | None = None
) -> tuple[Artwork, torch.Tensor | None]:
    """An image under ``MIN_SIDE`` pixels on a side, padded with its edge pixels (and its mask with zeros),
    so every step can run on it; protect crops the result back. The copy's notes say so."""
    h, w = artwork.rgb.shape[1:]
    ph, pw = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
    if not (ph or pw):
        return artwork, mask
    rgb = torch.nn.functional.pad(artwork.rgb[None], (0, pw, 0, ph), mode="replicate")[0]
    note = (
        f"the image is {w}x{h}: measured on a copy padded to {w + pw}x{h + ph} with its edge pixels "
        "(strength and visibility are of the padded copy)"
    )
    work = dataclasses.replace(artwork, rgb=rgb, alpha=None, notes=[*artwork.notes, note])
    return work, None if mask is None else torch.nn.functional.pad(mask, (0, pw, 0, ph))


def shrunk(
    artwork: Artwork, longest: int | None, mask: torch.Tensor | None = None
) -> tuple[Artwork, torch.Tensor | None]:
    """The artwork (and its mask) at most ``longest`` pixels on its longest side: the copy an artist posts
    where a site shows it that small. A protection made at full size and shrunk by the site keeps 2-5x less
    than one made at the size served (docs/efficacy.md, "Protect the size you post"), so this copy is the
    one to protect. Lanczos, as most sites resize, on the file's own grid; ``check`` shrinks an original
    with this same function to compare a file protected this way."""
    w, h = artwork.size
    if not longest or max(w, h) <= longest:
        return artwork, mask
    scale = longest / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    levels = 65535 if artwork.bits == 16 else 255
    planes = [_lanczos(plane.numpy(), size) for plane in artwork.rgb.float()]
    alpha = artwork.alpha
    if alpha is not None:  # 8- or 16-bit levels, as loaded
        top = np.iinfo(alpha.dtype).max
        opacity = alpha.astype(np.float32) / top
        small_opacity = _lanczos(opacity, size).clip(0, 1)
        alpha = (small_opacity * top).round().astype(alpha.dtype)
        planes = _unpremultiplied(
            artwork.rgb.float().numpy(), opacity, small_opacity, alpha > 0, size, planes
        )
    rgb = (torch.from_numpy(np.stack(planes)).clamp(0, 1) * levels).round() / levels
    if mask is not None:
        mask = torch.from_numpy(_lanczos(mask.float().numpy(), size)).clamp(0, 1)
    note = f"protected and written at {size[0]}x{size[1]} (at most {longest} px on a side), from {w}x{h}"
    return dataclasses.replace(artwork, rgb=rgb, alpha=alpha, notes=[*artwork.notes, note]), mask


def _unpremultiplied(
    rgb: np.ndarray,
    opacity: np.ndarray,
    small_opacity: np.ndarray,
    visible: np.ndarray,
    size: tuple[int, int],
    plain: list[np.ndarray],
) -> list[np.ndarray]:
    """Colour resized weighted by opacity (premultiplied, as Pillow and browsers resize RGBA): the colour
    under transparent pixels, often black, must not bleed into the edge of the shape (a cream disc on
    transparent black came out with a dark rim, 190 instead of 248 over white). Where nothing is left
    visible (``visible``: alpha above 0 once on its levels), the plainly resized colour (``plain``) stays:
    what a loader that drops alpha sees."""
    weight = np.maximum(small_opacity, 1e-6)
    return [
        np.where(visible, _lanczos(plane * opacity, size) / weight, fallback)
        for plane, fallback in zip(rgb, plain, strict=True)
    ]


def _lanczos(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One float plane resized with Pillow's Lanczos (mode F: no rounding before the file's own)."""
    return np.asarray(
        Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), "F").resize(
            size, Image.Resampling.LANCZOS
        )
    )
