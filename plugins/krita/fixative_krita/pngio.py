"""Minimal PNG reading/writing with the standard library (Krita's Python has no Pillow).

Why: the plug-in sends the engine an 8-bit sRGB PNG, and when a selection limits the protection it
re-composes the full image itself; the engine's metadata chunks (``iTXt`` "fixative" etc.) are carried over
verbatim so ``fixative.load`` still finds the protection record in the exported file.
"""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CARRIED_CHUNKS = (b"iTXt", b"tEXt", b"zTXt", b"iCCP", b"sRGB", b"gAMA", b"cHRM", b"pHYs", b"eXIf")


class PngError(ValueError):
    """Bytes that are not a PNG this reader understands."""


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """All (type, payload) chunks of a PNG, in order."""
    if not data.startswith(SIGNATURE):
        raise PngError("not a PNG file")
    found, offset = [], len(SIGNATURE)
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        found.append((kind, data[offset + 8 : offset + 8 + length]))
        offset += 12 + length
        if kind == b"IEND":
            break
    return found


def metadata_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The ancillary chunks worth carrying into a re-composed file (text metadata, colour, resolution)."""
    return [(kind, payload) for kind, payload in chunks(data) if kind in CARRIED_CHUNKS]


def encode(
    rgba: bytes, width: int, height: int, extra: list[tuple[bytes, bytes]] = (), keep_alpha: bool = True
) -> bytes:
    """An 8-bit RGBA (or RGB when ``keep_alpha`` is false) PNG; ``extra`` chunks go before the pixels."""
    if len(rgba) != width * height * 4:
        raise PngError(f"expected {width * height * 4} bytes of RGBA, got {len(rgba)}")
    if keep_alpha:
        pixels, channels, colour_type = rgba, 4, 6
    else:
        rgb = bytearray(width * height * 3)
        rgb[0::3], rgb[1::3], rgb[2::3] = rgba[0::4], rgba[1::4], rgba[2::4]
        pixels, channels, colour_type = bytes(rgb), 3, 2
    stride = width * channels
    raw = b"".join(b"\x00" + pixels[row * stride : (row + 1) * stride] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    body = [_chunk(b"IHDR", header)]
    body += [_chunk(kind, payload) for kind, payload in extra if kind not in (b"IHDR", b"IDAT", b"IEND")]
    body += [_chunk(b"IDAT", zlib.compress(raw, 6)), _chunk(b"IEND", b"")]
    return SIGNATURE + b"".join(body)


def encode_grey(values: bytes, width: int, height: int) -> bytes:
    """An 8-bit greyscale PNG (the selection mask the engine takes: white where pixels may change)."""
    if len(values) != width * height:
        raise PngError(f"expected {width * height} grey bytes, got {len(values)}")
    raw = b"".join(b"\x00" + values[row * width : (row + 1) * width] for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def decode(data: bytes) -> tuple[int, int, bytes]:
    """8-bit, non-interlaced grey/grey+alpha/RGB/RGBA PNG -> (width, height, RGBA8 bytes).

    Pure Python, so it is slow on big images; inside Krita the plug-in decodes with Qt instead.
    """
    parts = chunks(data)
    if not parts or parts[0][0] != b"IHDR":
        raise PngError("PNG without a header")
    width, height, bit_depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", parts[0][1])
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type)
    if bit_depth != 8 or channels is None or interlace:
        raise PngError(
            f"unsupported PNG (bit depth {bit_depth}, colour type {colour_type}, interlace {interlace})"
        )
    raw = zlib.decompress(b"".join(payload for kind, payload in parts if kind == b"IDAT"))
    stride = width * channels
    previous = bytearray(stride)
    rows = []
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif kind == 4:
                upper_left = previous[i - channels] if i >= channels else 0
                line[i] = (line[i] + _paeth(left, up, upper_left)) & 0xFF
            elif kind != 0:
                raise PngError(f"bad PNG filter {kind}")
        rows.append(bytes(line))
        previous = line
    pixels = b"".join(rows)
    if channels == 4:
        return width, height, pixels
    out = bytearray(width * height * 4)
    if channels == 3:
        out[0::4], out[1::4], out[2::4] = pixels[0::3], pixels[1::3], pixels[2::3]
        out[3::4] = b"\xff" * (width * height)
    elif channels == 2:
        out[0::4] = out[1::4] = out[2::4] = pixels[0::2]
        out[3::4] = pixels[1::2]
    else:
        out[0::4] = out[1::4] = out[2::4] = pixels
        out[3::4] = b"\xff" * (width * height)
    return width, height, bytes(out)
