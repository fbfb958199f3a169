"""Krita's raw pixel bytes <-> tightly packed 8-bit sRGB RGBA, for every colour depth Krita offers.

Why this exists: ``Node.pixelData``/``Document.pixelData`` hand back the colour space's in-memory layout,
not RGBA8. In Krita, RGB 8-bit and 16-bit integer are stored **B, G, R, A** (KoBgrU8/U16 traits) while
16/32-bit float are **R, G, B, A** (KoRgbF16/F32 traits) and usually linear light (``...-g10.icc``).
The engine works on 8-bit sRGB, so we convert honestly and say so in ``notes`` when precision, range or
colour space changes. Standard library only (numpy is used when Krita's Python happens to have it).
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass, field

try:  # optional fast path; Krita's bundled Python usually lacks numpy
    import numpy as np
except ImportError:  # pragma: no cover - depends on the host Python
    np = None

SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"
BYTES_PER_CHANNEL = {"U8": 1, "U16": 2, "F16": 2, "F32": 4}
DEPTH_NAMES = {"U8": "8-bit integer", "U16": "16-bit integer", "F16": "16-bit float", "F32": "32-bit float"}
SUPPORTED_MODELS = ("RGBA", "GRAYA")
LINEAR_HINTS = ("g10", "linear", "scrgb", "lin_", "-lin", "gamma 1.0", "gamma10")
SRGB_HINTS = ("srgb", "srgbtrc", "iec61966", "iec 61966")


class PixelFormatError(ValueError):
    """A colour model the plug-in cannot convert itself (the caller asks Krita to convert first)."""


@dataclass
class Converted:
    rgba: bytes  # width * height * 4 bytes, 8-bit sRGB, straight alpha
    width: int
    height: int
    notes: list[str] = field(default_factory=list)


def is_linear_profile(profile: str) -> bool:
    name = (profile or "").lower()
    return any(hint in name for hint in LINEAR_HINTS)


def is_srgb_family(profile: str) -> bool:
    """sRGB primaries, either sRGB or linear transfer: we can convert those exactly ourselves."""
    name = (profile or "").lower()
    if not name:
        return True  # Krita uses its default sRGB profile when none is named
    return any(hint in name for hint in SRGB_HINTS) or name.startswith(("gray-", "grey-"))


def needs_krita_conversion(model: str, profile: str) -> bool:
    """True when only Krita's colour management can turn these pixels into sRGB faithfully."""
    return model not in SUPPORTED_MODELS or not is_srgb_family(profile)


def srgb_encode(linear: float) -> float:
    """The sRGB transfer function (IEC 61966-2-1), linear light -> encoded 0..1."""
    if linear <= 0.0031308:
        return 12.92 * linear
    return 1.055 * linear ** (1 / 2.4) - 0.055


def _quantise(value: float) -> int:
    if value != value:  # NaN
        return 0
    return 0 if value <= 0 else 255 if value >= 1 else int(value * 255 + 0.5)


def _float_values(data: bytes, depth: str) -> array | list:
    if depth == "F32":
        values = array("f")
        values.frombytes(data)
        return values
    count = len(data) // 2
    order = "<" if sys.byteorder == "little" else ">"
    return struct.unpack(f"{order}{count}e", data)


def _to_unit8(
    data: bytes, depth: str, linear: bool, channel_count: int, alpha_index: int, notes: list[str]
) -> bytes:
    """Every channel as 8-bit (colour channels through the sRGB curve when ``linear``), same order."""
    if depth == "U8":
        return bytes(data)
    if np is not None:
        return _to_unit8_numpy(data, depth, linear, channel_count, alpha_index, notes)
    if depth == "U16":
        values = array("H")
        values.frombytes(data)
        lut = _u16_lut()
        return bytes(map(lut.__getitem__, values))
    values = _float_values(data, depth)
    out = bytearray(len(values))
    clipped = 0
    for index, value in enumerate(values):
        if value < 0 or value > 1:
            clipped += 1
        if linear and index % channel_count != alpha_index and 0 < value < 1:
            value = srgb_encode(value)
        out[index] = _quantise(value)
    if clipped:
        notes.append(f"{clipped} channel values outside 0..1 (HDR or negative) were clipped")
    return bytes(out)


def _to_unit8_numpy(
    data: bytes, depth: str, linear: bool, channel_count: int, alpha_index: int, notes: list[str]
) -> bytes:
    if depth == "U16":
        values = np.frombuffer(data, dtype=np.uint16).astype(np.uint32)
        return ((values * 255 + 32767) // 65535).astype(np.uint8).tobytes()
    dtype = np.float32 if depth == "F32" else np.float16
    values = np.frombuffer(data, dtype=dtype).astype(np.float64).reshape(-1, channel_count)
    values = np.nan_to_num(values, nan=0.0)
    clipped = int(((values < 0) | (values > 1)).sum())
    if clipped:
        notes.append(f"{clipped} channel values outside 0..1 (HDR or negative) were clipped")
    values = np.clip(values, 0.0, 1.0)
    if linear:
        colour = [i for i in range(channel_count) if i != alpha_index]
        c = values[:, colour]
        values[:, colour] = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.floor(values * 255 + 0.5).astype(np.uint8).tobytes()


_U16_LUT: bytes | None = None


def _u16_lut() -> bytes:
    global _U16_LUT
    if _U16_LUT is None:
        _U16_LUT = bytes((v * 255 + 32767) // 65535 for v in range(65536))
    return _U16_LUT


def to_rgba8(data: bytes, width: int, height: int, model: str, depth: str, profile: str = "") -> Converted:
    """Krita pixel bytes (``pixelData`` of a node/document) -> 8-bit sRGB RGBA plus honest notes."""
    if depth not in BYTES_PER_CHANNEL:
        raise PixelFormatError(f"unknown colour depth {depth!r}")
    if model not in SUPPORTED_MODELS:
        raise PixelFormatError(f"colour model {model} needs converting to RGB first")
    channels = 4 if model == "RGBA" else 2
    expected = width * height * channels * BYTES_PER_CHANNEL[depth]
    data = bytes(data)
    if len(data) != expected:
        raise PixelFormatError(f"expected {expected} bytes of {model}/{depth} pixels, got {len(data)}")
    notes: list[str] = []
    linear = depth in ("F16", "F32") and is_linear_profile(profile)
    if depth != "U8":
        notes.append(
            f"the document is {DEPTH_NAMES[depth]}; the engine works in 8-bit, so the protected "
            "pixels are 8-bit sRGB"
        )
    if linear:
        notes.append(f"linear-light colours ({profile}) were converted to sRGB")
    elif not is_srgb_family(profile):
        notes.append(f"colours in profile {profile!r} were used as if they were sRGB")
    unit8 = _to_unit8(data, depth, linear, channels, channels - 1, notes)
    out = bytearray(width * height * 4)
    if model == "RGBA":
        if depth in ("U8", "U16"):  # BGRA in memory
            out[0::4], out[1::4], out[2::4] = unit8[2::4], unit8[1::4], unit8[0::4]
        else:  # float spaces are RGBA in memory
            out[0::4], out[1::4], out[2::4] = unit8[0::4], unit8[1::4], unit8[2::4]
        out[3::4] = unit8[3::4]
    else:  # GRAYA: grey, alpha
        grey = unit8[0::2]
        out[0::4] = out[1::4] = out[2::4] = grey
        out[3::4] = unit8[1::2]
    return Converted(bytes(out), width, height, notes)


def rgba8_to_bgra8(rgba: bytes) -> bytes:
    """Tightly packed RGBA8 -> Krita's RGBA/U8 in-memory order (B, G, R, A), for ``setPixelData``."""
    out = bytearray(rgba)
    out[0::4], out[2::4] = rgba[2::4], rgba[0::4]
    return bytes(out)


def is_opaque(rgba: bytes) -> bool:
    alpha = rgba[3::4]
    return alpha.count(255) == len(alpha)


def crop(rgba: bytes, width: int, x: int, y: int, w: int, h: int) -> bytes:
    """The (x, y, w, h) rectangle of a tightly packed RGBA8 image."""
    row = width * 4
    return b"".join(rgba[(y + r) * row + x * 4 : (y + r) * row + (x + w) * 4] for r in range(h))


def paste(rgba: bytes, width: int, patch: bytes, x: int, y: int, w: int, h: int) -> bytes:
    """A copy of ``rgba`` with the w x h ``patch`` placed at (x, y)."""
    out = bytearray(rgba)
    row = width * 4
    for r in range(h):
        start = (y + r) * row + x * 4
        out[start : start + w * 4] = patch[r * w * 4 : (r + 1) * w * 4]
    return bytes(out)


def blend_in_mask(original: bytes, protected: bytes, mask: bytes | None) -> bytes:
    """Keep the protection only where the selection is (soft edges blend); alpha stays the original's.

    ``mask`` is one byte per pixel (Krita's ``Selection.pixelData``), 255 = fully selected.
    """
    if len(original) != len(protected):
        raise ValueError("the engine returned an image of a different size")
    if mask is None or mask.count(255) == len(mask):
        out = bytearray(protected)
        out[3::4] = original[3::4]
        return bytes(out)
    if np is not None:
        o = np.frombuffer(original, dtype=np.uint8).reshape(-1, 4).astype(np.int32)
        p = np.frombuffer(protected, dtype=np.uint8).reshape(-1, 4).astype(np.int32)
        m = np.frombuffer(bytes(mask), dtype=np.uint8).astype(np.int32)[:, None]
        delta = (p - o) * m
        mixed = o + np.sign(delta) * ((np.abs(delta) + 127) // 255)
        mixed[:, 3] = o[:, 3]
        return np.clip(mixed, 0, 255).astype(np.uint8).tobytes()
    out = bytearray(original)
    for pixel, weight in enumerate(mask):
        if weight == 0:
            continue
        base = pixel * 4
        for channel in range(3):
            o, p = original[base + channel], protected[base + channel]
            delta = (p - o) * weight
            out[base + channel] = o + (delta + 127) // 255 if delta >= 0 else o - ((-delta + 127) // 255)
    return bytes(out)
