"""The Fixative metadata a protected file carries: how each format holds it, written and read in one place.

PNG: an iTXt chunk ``fixative``; JPEG: a ``fixative:``-prefixed comment; WebP: an XMP attribute; TIFF:
the image description. Pillow only (no torch), so planning a batch can read finished outputs quickly.
"""

from __future__ import annotations

import html
import json

from PIL import PngImagePlugin

KEY = "fixative"
_PREFIX = "fixative:"
_XMP_ATTRIBUTE = 'fixative:json="'


def embed(fmt: str, metadata: dict | None, save_kwargs: dict) -> dict:
    """Add ``metadata`` to Pillow ``save`` keyword arguments for format ``fmt`` ("PNG", "JPEG", ...)."""
    text = json.dumps(metadata, sort_keys=True) if metadata else None
    if fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        if text:
            info.add_itxt(KEY, text)
        save_kwargs["pnginfo"] = info
    elif text and fmt == "JPEG":
        save_kwargs["comment"] = (_PREFIX + text).encode()
    elif text and fmt == "WEBP":
        save_kwargs["xmp"] = (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description {_XMP_ATTRIBUTE}{html.escape(text, quote=True)}" '
            'xmlns:fixative="https://fixative.invalid/ns/1.0/"/></rdf:RDF></x:xmpmeta>'
        ).encode()
    elif text and fmt == "TIFF":
        save_kwargs["description"] = _PREFIX + text
    return save_kwargs


def read(image) -> dict | None:
    """The metadata of an opened Pillow image, or None when there is none or it is garbled."""
    info = dict(image.info)
    tags = getattr(image, "tag_v2", None)
    if tags is not None and isinstance(tags.get(270), str):
        info.setdefault("description", tags.get(270))  # TIFF ImageDescription
    raw = info.get(KEY)
    comment = info.get("comment", b"")
    if raw is None and isinstance(comment, bytes) and comment.startswith(_PREFIX.encode()):
        raw = comment[len(_PREFIX) :].decode("utf-8", "replace")
    if raw is None and "xmp" in info:
        xmp = info["xmp"].decode("utf-8", "replace") if isinstance(info["xmp"], bytes) else str(info["xmp"])
        start = xmp.find(_XMP_ATTRIBUTE)
        if start >= 0:
            start += len(_XMP_ATTRIBUTE)
            raw = html.unescape(xmp[start : xmp.find('"', start)])
    description = info.get("description")
    if raw is None and isinstance(description, str) and description.startswith(_PREFIX):
        raw = description[len(_PREFIX) :]
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
