"""The user's choices, remembered between uses in Krita's own settings (``kritarc``, group ``fixative``)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from .engine import option_choices

GROUP = "fixative"
SOURCES = (("image", "Whole image (what you see)"), ("layer", "Active layer"))


def choice_pairs(name: str) -> tuple:
    """(value, label) pairs of one option, from the engine's options schema (or the bundled copy)."""
    entry = option_choices().get(name) or {}
    return tuple((item["value"], item.get("label", item["value"])) for item in entry.get("choices", []))


def choice_values(name: str) -> tuple:
    return tuple(value for value, _label in choice_pairs(name))


@dataclass
class ProtectSettings:
    method: str = "style"
    intensity: str = "default"
    quality: str = "default"
    output_format: str = "png"
    output_dir: str = ""  # empty: beside the document
    source: str = "image"
    steps: int = 0  # 0: the quality preset decides
    max_side: int = 0  # an export's longest side, as posted (0: full size); a new layer keeps the canvas's

    def engine_options(self, output_format: str | None = None, export: bool = False) -> dict:
        """The options the engine server understands (same keys as ``fixative.protect``)."""
        options = {
            "method": self.method,
            "intensity": self.intensity,
            "quality": self.quality,
            "format": output_format or "png",
            "seed": 0,
            "preview": True,  # the docker shows what the model sees
        }
        if self.steps > 0:
            options["steps"] = int(self.steps)
        if export and self.max_side > 0:  # a site's smaller copy keeps 2-5x less: protect the one posted
            options["max_side"] = int(self.max_side)
        return options

    def validated(self) -> ProtectSettings:
        """Unknown values (a hand-edited kritarc, an older version) fall back to defaults, never crash."""
        default = ProtectSettings()
        choices = {
            "method": choice_values("method"),
            "intensity": choice_values("intensity"),
            "quality": choice_values("quality"),
            "output_format": choice_values("format"),
            "source": [s for s, _ in SOURCES],
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                setattr(self, name, getattr(default, name))
        for name in ("steps", "max_side"):
            try:
                setattr(self, name, max(0, int(getattr(self, name))))
            except (TypeError, ValueError):
                setattr(self, name, 0)
        return self


def load(app) -> ProtectSettings:
    """Read from Krita (``app`` is ``Krita.instance()``); missing keys keep their defaults."""
    values = {}
    for item in fields(ProtectSettings):
        default = getattr(ProtectSettings(), item.name)
        raw = app.readSetting(GROUP, item.name, str(default))
        values[item.name] = (
            int(raw)
            if isinstance(default, int) and str(raw).strip().lstrip("-").isdigit()
            else (default if isinstance(default, int) else raw)
        )
    return ProtectSettings(**values).validated()


def save(app, settings: ProtectSettings) -> None:
    for name, value in asdict(settings).items():
        app.writeSetting(GROUP, name, str(value))


def default_output_path(document_path: str, settings: ProtectSettings, document_name: str = "") -> str:
    """``<name>.protected.<fmt>`` in the remembered folder, else beside the document, else at home."""
    if document_path:
        stem, folder = os.path.splitext(os.path.basename(document_path))[0], os.path.dirname(document_path)
    else:
        stem, folder = os.path.splitext(document_name or "artwork")[0], os.path.expanduser("~")
    folder = settings.output_dir or folder
    return os.path.join(folder, f"{stem}.protected.{settings.output_format}")


def unique_path(path: str) -> str:
    """Never overwrite: ``a.protected.png`` -> ``a.protected-2.png`` when taken."""
    if not os.path.exists(path):
        return path
    root, ext = os.path.splitext(path)
    n = 2
    while os.path.exists(f"{root}-{n}{ext}"):
        n += 1
    return f"{root}-{n}{ext}"
