"""``fixative install gimp``: put the GIMP 3 plug-in where GIMP finds it, and record how to start the engine.

GIMP 3 only loads a Python plug-in that sits in its own folder, with an executable script of the same
name. The plug-in runs in GIMP's own Python (which has no torch), so it talks to ``fixative serve``
through the standard-library client, copied next to the script here at install time, and starts the
engine with the command recorded in ``engine.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from ..errors import FixativeError

PLUGIN_NAME = "fixative-protect"
CLIENT_FILE = "fixative_client.py"
HOSTS_DIR = Path(__file__).resolve().parent
# Source checkout / editable install: <repo>/core/fixative/hosts -> <repo>/plugins/gimp/fixative-protect
PLUGIN_SOURCE = HOSTS_DIR.parents[2] / "plugins" / "gimp" / PLUGIN_NAME


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


def engine_command() -> list[str]:
    """How the plug-in starts the engine: this very Python, i.e. the environment fixative lives in."""
    return [sys.executable, "-m", "fixative", "serve", "--ready-line"]


def _write_json_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_engine_command(config_dir: Path) -> Path:
    """Write ``engine.json``; keeps keys other installers may have added."""
    path = config_dir / "engine.json"
    data: dict = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
    data["command"] = engine_command()
    _write_json_atomically(path, data)
    return path


def install(
    plugins_dir: Path | None = None, source: Path = PLUGIN_SOURCE, config_dir: Path | None = None
) -> Path:
    """Copy the plug-in folder (plus the client) into ``plugins_dir``; returns the installed script path.

    An earlier install of the same plug-in is replaced as a whole, so files removed upstream do not linger;
    nothing else in the plug-ins folder is touched.
    """
    from .fixative_client import config_dir as client_config_dir

    script_name = f"{PLUGIN_NAME}.py"
    if not (source / script_name).is_file():
        raise FixativeError(
            f"GIMP plug-in sources not found at {source}; install fixative from a source checkout "
            "(pip install -e <checkout>) and run `fixative install gimp` again"
        )
    client = HOSTS_DIR / CLIENT_FILE
    if not client.is_file():
        raise FixativeError(f"engine client {client} is missing; reinstall fixative")

    plugins_dir = Path(plugins_dir).expanduser() if plugins_dir else gimp_plugins_dir()
    try:
        plugins_dir.mkdir(parents=True, exist_ok=True)
        target = plugins_dir / PLUGIN_NAME
        staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}-", dir=plugins_dir))
        try:
            staged = staging / PLUGIN_NAME
            shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            shutil.copy2(client, staged / CLIENT_FILE)
            script = staged / script_name
            script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record_engine_command(Path(config_dir) if config_dir else client_config_dir())
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
    parser = host_subparsers.add_parser(
        "gimp",
        help="install the GIMP 3 plug-in (export file type and filter)",
        description="Install the Fixative plug-in into the GIMP 3 plug-ins folder and record the engine "
        "command.",
    )
    parser.add_argument(
        "--plugins-dir",
        type=Path,
        default=None,
        help=f"GIMP plug-ins folder (default: {gimp_plugins_dir()})",
    )
    parser.set_defaults(func=_run)
