"""What the Krita and GIMP installers share: the engine command, atomic writes, placing a plug-in folder.

Editor plug-ins run in the editor's own Python (no torch): each installed copy carries the
standard-library client, copied in here at install time (never kept twice in the repo), and starts the
engine with the command recorded in ``engine.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from ...fixative_client import write_atomically

CLIENT_FILE = "fixative_client.py"
PACKAGE_DIR = Path(__file__).resolve().parents[2]  # .../fixative
CLIENT = PACKAGE_DIR / CLIENT_FILE
# Source checkout / editable install: <repo>/core/fixative -> <repo>/plugins
PLUGINS_SOURCE = PACKAGE_DIR.parents[1] / "plugins"


def engine_command() -> list[str]:
    """This very Python, so the plug-in starts the engine from the environment fixative lives in."""
    return [sys.executable, "-m", "fixative", "serve", "--ready-line"]


def record_engine_command(config_dir: Path | None = None) -> Path:
    """Write ``engine.json`` in the client's config folder, keeping keys other installers may have added."""
    from ...fixative_client import config_dir as client_config_dir

    path = Path(config_dir or client_config_dir()) / "engine.json"
    data: dict = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
    data["command"] = engine_command()
    write_atomically(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
    return path


def place_plugin(source: Path, parent: Path, name: str) -> Path:
    """Copy ``source`` (plus the client) to ``parent/name``, replacing an earlier install as a whole.

    The copy is staged beside the target and renamed into place, so files removed upstream do not linger
    and nothing else in ``parent`` is touched.
    """
    parent.mkdir(parents=True, exist_ok=True)
    target = parent / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        staged = staging / name
        shutil.copytree(source, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", CLIENT_FILE))
        shutil.copy2(CLIENT, staged / CLIENT_FILE)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def require_client() -> None:
    from ...errors import FixativeError

    if not CLIENT.is_file():
        raise FixativeError(f"engine client {CLIENT} is missing; reinstall fixative")


def add_installer(
    host_subparsers: argparse._SubParsersAction,
    name: str,
    help_text: str,
    description: str,
    folders: list[tuple[str, Path, str]],
    run,
) -> argparse.ArgumentParser:
    """``fixative install NAME`` with one ``--FLAG PATH`` option per (flag, default, what) folder."""
    parser = host_subparsers.add_parser(name, help=help_text, description=description)
    for flag, default, what in folders:
        parser.add_argument(flag, type=Path, default=None, help=f"{what} (default: {default})")
    parser.set_defaults(func=run)
    return parser
