"""Writing the protected copy: same size, mode, alpha, ICC and EXIF as the original, plus our metadata.

Never overwrites an input, and refuses to clobber an existing file unless asked.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import BadParameterError, FixativeError
from ..fixative_client import write_atomically
from ..load.image import Artwork, over_background
from ..metadata import embed as embed_metadata

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
LOSSY = ("JPEG", "WEBP")  # formats whose pixels differ from those encoded


def to_pil(artwork: Artwork, rgb: torch.Tensor) -> Image.Image:
    """The protected pixels (already on the file's grid, see ``PerceptualBudget.quantise``) in the original
    mode (alpha re-attached untouched)."""
    if artwork.bits == 16:
        scale, dtype = 65535.0, np.uint16
    else:
        scale, dtype = 255.0, np.uint8
    # one float copy, scaled and rounded in place (a 4096² float image is 201 MB)
    values = rgb.detach().float().cpu().clamp(0, 1).mul_(scale).round_()
    array = values.permute(1, 2, 0).numpy().astype(dtype)
    if artwork.grey:
        grey = array.astype(np.float64).mean(axis=2).round().astype(dtype)
        if artwork.bits == 16:
            image = Image.fromarray(grey.astype(np.uint16))
            if image.mode != "I;16":
                image = image.convert("I;16")
        else:
            image = Image.fromarray(grey.astype(np.uint8), "L")
            if artwork.alpha is not None:
                image = Image.merge("LA", (image, Image.fromarray(artwork.alpha)))
        return image
    image = Image.fromarray(array, "RGB")
    if artwork.alpha is not None:
        image.putalpha(Image.fromarray(artwork.alpha))
    return image


def flattened(image: Image.Image) -> Image.Image:
    """An RGBA / LA image composited over white (``load.over_background``), for a format without
    transparency (JPEG), the way sites flatten one. Dropping the alpha plane instead shows the colour stored
    under transparent pixels: often black, or the picture a user erased."""
    grey = image.mode == "LA"
    colour = torch.from_numpy(np.asarray(image.convert("L" if grey else "RGB"), dtype=np.float32) / 255)
    colour = colour[None] if grey else colour.permute(2, 0, 1)
    flat = over_background(colour, np.asarray(image.getchannel("A")))
    array = flat.mul(255).round().to(torch.uint8)
    return Image.fromarray(array[0].numpy(), "L") if grey else Image.fromarray(array.permute(1, 2, 0).numpy())


def encode(
    image: Image.Image, artwork: Artwork, fmt: str, metadata: dict | None, jpeg_quality: int = 95
) -> bytes:
    """The file bytes, with ICC, EXIF and Fixative metadata embedded the way each format allows."""
    kwargs: dict = {}
    if artwork.icc_profile:
        kwargs["icc_profile"] = artwork.icc_profile
    if artwork.exif and fmt != "TIFF":
        kwargs["exif"] = artwork.exif
    if fmt == "JPEG":
        if image.mode in ("RGBA", "LA"):
            image = flattened(image)
        if image.mode == "I;16":
            raise BadParameterError("16-bit images cannot be saved as JPEG; use PNG or TIFF")
        kwargs.update(quality=jpeg_quality, subsampling=0)
    elif fmt == "WEBP":
        kwargs.update(quality=jpeg_quality)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **embed_metadata(fmt, metadata, kwargs))
    return buffer.getvalue()


def save_image(
    image: Image.Image,
    artwork: Artwork,
    path: str | Path,
    metadata: dict | None = None,
    overwrite: bool = False,
    inputs: list[str | Path] = (),
    jpeg_quality: int = 95,
    encoder: Callable[[str], bytes] | None = None,
) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half a file or loses the original.

    ``encoder`` (the format's name -> the file's bytes) replaces ``encode`` once the path is known to be
    writable: ``ProtectResult`` measures a lossy file's own pixels there."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise BadParameterError(
            f"{path.name}: unsupported output type {path.suffix!r}; use .png, .jpg, .webp or .tif"
        )
    resolved = path.resolve()
    for source in list(inputs) + ([artwork.source] if artwork.source else []):
        try:
            if Path(source).exists() and Path(source).resolve() == resolved:
                raise FixativeError(
                    f"{path}: refusing to overwrite an input image; choose another output name"
                )
        except OSError:
            continue
    if path.exists() and not overwrite:
        raise FixativeError(f"{path}: already exists (use --overwrite to replace it)")
    data = encoder(fmt) if encoder is not None else encode(image, artwork, fmt, metadata, jpeg_quality)
    try:
        return write_atomically(path, data, replace=overwrite)
    except FileExistsError:
        raise FixativeError(f"{path}: already exists (use --overwrite to replace it)") from None
    except OSError as exc:
        raise FixativeError(f"{path}: cannot write it ({exc.strerror or exc})") from None
