"""``fixative install gimp``: put the GIMP 3 plug-in where GIMP finds it, and record how to start the engine.

GIMP 3 only loads a Python plug-in that sits in its own folder, with an executable script of the same
name. The plug-in runs in GIMP's own Python (which has no torch), so it talks to ``fixative serve``
through the standard-library client, copied next to the script here at install time, and starts the
engine with the command recorded in ``engine.json``.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from ...errors import FixativeError
from .editor import PLUGINS_SOURCE, add_installer, place_plugin, record_engine_command, require_client

PLUGIN_NAME = "fixative-protect"
PLUGIN_SOURCE = PLUGINS_SOURCE / "gimp" / PLUGIN_NAME


def gimp_plugins_dir(
    platform: str | None = None, environ: dict | None = None, home: Path | None = None
) -> Path:
    """The per-user GIMP 3 plug-ins folder for this OS (created by GIMP on first start, or by us)."""
    platform = platform or sys.platform
    environ = os.environ if environ is None else environ
    home = home or Path.home()
    if platform.startswith("win"):
        base = Path(environ["APPDATA"]) if environ.get("APPDATA") else home / "AppData" / "Roaming"
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(environ["XDG_CONFIG_HOME"]) if environ.get("XDG_CONFIG_HOME") else home / ".config"
    return base / "GIMP" / "3.0" / "plug-ins"


def install(
    plugins_dir: Path | None = None, source: Path = PLUGIN_SOURCE, config_dir: Path | None = None
) -> Path:
    """Copy the plug-in folder (plus the client) into ``plugins_dir``; returns the installed script path.

    An earlier install of the same plug-in is replaced as a whole, so files removed upstream do not linger;
    nothing else in the plug-ins folder is touched.
    """
    script_name = f"{PLUGIN_NAME}.py"
    if not (source / script_name).is_file():
        raise FixativeError(
            f"GIMP plug-in sources not found at {source}; install fixative from a source checkout "
            "(pip install -e <checkout>) and run `fixative install gimp` again"
        )
    require_client()
    plugins_dir = Path(plugins_dir).expanduser() if plugins_dir else gimp_plugins_dir()
    try:
        target = place_plugin(source, plugins_dir, PLUGIN_NAME)
        script = target / script_name
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)  # GIMP runs it
        record_engine_command(config_dir)
    except OSError as exc:
        reason = exc.strerror or exc
        raise FixativeError(f"cannot install the GIMP plug-in into {plugins_dir}: {reason}") from exc
    return target / script_name


def _run(args: argparse.Namespace) -> int:
    script = install(args.plugins_dir)
    print(f"GIMP plug-in installed: {script}")
    print(
        "Restart GIMP; then use File > Export As > 'Protected image (Fixative)' "
        "or Filters > Fixative > Protect..."
    )
    return 0


def register(host_subparsers: argparse._SubParsersAction) -> None:
    add_installer(
        host_subparsers,
        "gimp",
        "install the GIMP 3 plug-in (export file type and filter)",
        "Install the Fixative plug-in into the GIMP 3 plug-ins folder and record the engine command.",
        [("--plugins-dir", gimp_plugins_dir(), "GIMP plug-ins folder")],
        _run,
    )
