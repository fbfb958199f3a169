"""``fixative install krita``: put the pykrita plug-in where Krita looks, enable it, and record the engine.

Krita runs plug-ins in its own Python (no torch), so the plug-in talks to ``fixative serve`` through the
standard-library client, which is copied into the installed package here (never kept twice in the repo),
and starts the engine with the command recorded in ``engine.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ...errors import FixativeError
from ...fixative_client import write_atomically
from .editor import (
    PLUGINS_SOURCE,
    add_installer,
    place_plugin,
    record_engine_command,
    require_client,
)

PLUGIN_NAME = "fixative_krita"
PLUGIN_SOURCE = PLUGINS_SOURCE / "krita"
ENABLE_KEY = f"enable_{PLUGIN_NAME}"


def _platform_base(platform: str | None, environ: dict | None, home: Path | None):
    return platform or sys.platform, os.environ if environ is None else environ, home or Path.home()


def krita_resource_dir(
    platform: str | None = None, environ: dict | None = None, home: Path | None = None
) -> Path:
    """Krita's per-user resource folder (the one holding ``pykrita``) for this OS."""
    platform, environ, home = _platform_base(platform, environ, home)
    if platform.startswith("win"):
        base = Path(environ["APPDATA"]) if environ.get("APPDATA") else home / "AppData" / "Roaming"
        return base / "krita"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "krita"
    base = Path(environ["XDG_DATA_HOME"]) if environ.get("XDG_DATA_HOME") else home / ".local" / "share"
    return base / "krita"


def kritarc_path(platform: str | None = None, environ: dict | None = None, home: Path | None = None) -> Path:
    """Krita's settings file, where plug-ins are switched on (``[python] enable_<name>=true``)."""
    platform, environ, home = _platform_base(platform, environ, home)
    if platform.startswith("win"):
        base = Path(environ["LOCALAPPDATA"]) if environ.get("LOCALAPPDATA") else home / "AppData" / "Local"
        return base / "kritarc"
    if platform == "darwin":
        return home / "Library" / "Preferences" / "kritarc"
    base = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
    return base / "kritarc"


def enable_in_kritarc(text: str, key: str = ENABLE_KEY) -> str:
    """``kritarc`` with ``[python] key=true``; every other line kept byte for byte.

    Line-based on purpose: kritarc is KConfig (case-sensitive keys, ``[$e]`` markers, duplicate-looking
    groups) which configparser would rewrite.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "[python]"), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[python]", f"{key}=true"]
        return newline.join(lines) + newline
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    for i in range(start + 1, end):
        name = lines[i].split("=", 1)[0].strip()
        if name == key:
            lines[i] = f"{key}=true"
            return newline.join(lines) + newline
    insert_at = end
    while insert_at > start + 1 and not lines[insert_at - 1].strip():
        insert_at -= 1  # keep the blank line that separates groups after our key
    lines.insert(insert_at, f"{key}=true")
    return newline.join(lines) + newline


def install(
    resource_dir: Path | None = None,
    kritarc: Path | None = None,
    source: Path = PLUGIN_SOURCE,
    config_dir: Path | None = None,
) -> dict[str, Path]:
    """Copy ``fixative_krita.desktop`` + package (with the client) into ``<resource_dir>/pykrita``.

    An earlier install is replaced as a whole; nothing else in ``pykrita`` is touched.
    """
    package, desktop = source / PLUGIN_NAME, source / f"{PLUGIN_NAME}.desktop"
    if not (package / "__init__.py").is_file() or not desktop.is_file():
        raise FixativeError(
            f"Krita plug-in sources not found at {source}; install fixative from a source "
            "checkout (pip install -e <checkout>) and run `fixative install krita` again"
        )
    require_client()
    resource_dir = Path(resource_dir).expanduser() if resource_dir else krita_resource_dir()
    kritarc = Path(kritarc).expanduser() if kritarc else kritarc_path()
    pykrita = resource_dir / "pykrita"
    try:
        place_plugin(package, pykrita, PLUGIN_NAME)
        shutil.copy2(desktop, pykrita / desktop.name)
        existing = kritarc.read_text(encoding="utf-8") if kritarc.exists() else ""
        write_atomically(kritarc, enable_in_kritarc(existing).encode("utf-8"))
        engine = record_engine_command(config_dir)
    except OSError as exc:
        reason = exc.strerror or exc
        raise FixativeError(f"cannot install the Krita plug-in into {resource_dir}: {reason}") from exc
    return {
        "plugin": pykrita / PLUGIN_NAME,
        "desktop": pykrita / desktop.name,
        "kritarc": kritarc,
        "engine": engine,
    }


def _run(args: argparse.Namespace) -> int:
    paths = install(args.resource_dir, args.kritarc)
    print(f"Krita plug-in installed: {paths['plugin']}")
    print(f"Enabled in {paths['kritarc']}; engine command recorded in {paths['engine']}")
    print(
        "Restart Krita; then use Tools > Scripts > 'Export Protected Copy…' or 'Protect into New Layer', "
        "and Settings > Dockers > Fixative."
    )
    return 0


def register(host_subparsers: argparse._SubParsersAction) -> None:
    add_installer(
        host_subparsers,
        "krita",
        "install the Krita plug-in (export a protected copy, protect into a new layer)",
        "Install the Fixative plug-in into Krita's resource folder, enable it in kritarc and record the "
        "engine command.",
        [
            ("--resource-dir", krita_resource_dir(), "Krita resource folder"),
            ("--kritarc", kritarc_path(), "Krita settings file to enable the plug-in in"),
        ],
        _run,
    )
