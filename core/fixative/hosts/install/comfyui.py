"""``fixative install comfyui``: put the node pack in ``custom_nodes/`` and the engine in ComfyUI's Python.

ComfyUI runs in its own interpreter (a ``venv``/``.venv`` beside it, or ``python_embeded`` in the Windows
portable build), so the engine must be pip-installed there, not where this command runs. Every action
is printed as it happens; running the command again only redoes what is missing or out of date.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
from pathlib import Path

from ...errors import FixativeError
from ...version import __version__

PACK_NAME = "comfyui-fixative"
PACK_MARKER = 'name = "comfyui-fixative"'  # in the pack's pyproject.toml: tells our folder from a stranger's
_PROBE = (
    "import json, sys\n"
    "try:\n"
    "    from importlib.metadata import version, PackageNotFoundError\n"
    "    try: engine = version('fixative')\n"
    "    except PackageNotFoundError: engine = None\n"
    "except Exception: engine = None\n"
    "print(json.dumps({'python': '%d.%d' % sys.version_info[:2], 'fixative': engine}))\n"
)


def source_checkout() -> Path | None:
    """The Fixative source tree this command runs from (editable install), if it is one."""
    root = Path(__file__).resolve().parents[4]
    pyproject = root / "pyproject.toml"
    if pyproject.is_file() and 'name = "fixative"' in pyproject.read_text(encoding="utf-8", errors="replace"):
        return root
    return None


def pack_source(explicit: str | None = None) -> Path:
    if explicit:
        folder = Path(explicit).expanduser().resolve()
    else:
        root = source_checkout()
        folder = root / "comfyui_nodes" if root else Path()
    if not (folder / "__init__.py").is_file() or not (folder / "nodes.py").is_file():
        raise FixativeError(
            "the ComfyUI node pack (comfyui_nodes/) is not in this Fixative installation",
            hint="run this from a Fixative source checkout, or pass --pack-dir PATH",
        )
    return folder


def comfyui_root(path: str) -> Path:
    """ComfyUI's folder (the one holding main.py and custom_nodes/); a portable build's root works too."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FixativeError(f"{root}: no such folder")
    if not (root / "main.py").is_file() and (root / "ComfyUI" / "main.py").is_file():
        root = root / "ComfyUI"
    has_nodes_folder = (root / "custom_nodes").is_dir() or (root / "comfy").is_dir()
    if not (root / "main.py").is_file() or not has_nodes_folder:
        raise FixativeError(f"{root}: does not look like ComfyUI (expected main.py and custom_nodes/)")
    return root


def find_python(root: Path) -> Path:
    """ComfyUI's own interpreter: its venv, .venv, or the portable build's python_embeded."""
    candidates = []
    for env in ("venv", ".venv"):
        candidates += [root / env / "bin" / "python", root / env / "Scripts" / "python.exe"]
    candidates += [root.parent / "python_embeded" / "python.exe", root / "python_embeded" / "python.exe"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FixativeError(
        f"could not find ComfyUI's Python under {root} (no venv, .venv or python_embeded)",
        hint="pass --python /path/to/the/python/that/runs/ComfyUI",
    )


def probe_python(python: Path) -> dict:
    try:
        done = subprocess.run([str(python), "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise FixativeError(f"cannot run {python}: {exc.strerror or exc}") from None
    except subprocess.TimeoutExpired:
        raise FixativeError(f"{python} did not answer within 120 s") from None
    try:
        info = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise FixativeError(f"{python} is not a working Python (exit {done.returncode})") from None
    return info


def _is_ours(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    return pyproject.is_file() and PACK_MARKER in pyproject.read_text(encoding="utf-8", errors="replace")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    else:
        shutil.rmtree(path)


def place_pack(source: Path, custom_nodes: Path, mode: str, dry_run: bool, say) -> str:
    """Link or copy the pack into custom_nodes/; returns what was done (one line)."""
    dest = custom_nodes / PACK_NAME
    if dest.is_symlink():
        if mode == "link" and dest.resolve() == source.resolve():
            return say(f"node pack: already linked {dest} -> {source}")
    elif dest.exists() and not _is_ours(dest):
        raise FixativeError(f"{dest} exists and is not the Fixative node pack; move it away first")
    verb = "would " if dry_run else ""
    if mode == "link" and not dry_run:
        custom_nodes.mkdir(parents=True, exist_ok=True)
        if dest.exists() or dest.is_symlink():
            _remove(dest)
        try:
            dest.symlink_to(source, target_is_directory=True)
        except OSError as exc:  # e.g. Windows without the symlink privilege
            say(f"node pack: cannot link ({exc.strerror or exc}); copying instead")
            mode = "copy"
    if mode == "copy" and not dry_run:
        custom_nodes.mkdir(parents=True, exist_ok=True)
        staging = custom_nodes / f".{PACK_NAME}.installing"
        if staging.exists():
            shutil.rmtree(staging)
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if dest.exists() or dest.is_symlink():
            _remove(dest)
        staging.rename(dest)
    if mode == "link":
        return say(f"node pack: {verb}link {dest} -> {source}")
    return say(f"node pack: {verb}copy {source} to {dest}")


def engine_spec(explicit: str | None, mode: str) -> list[str]:
    """pip arguments for the engine: this checkout (editable when the pack is linked), else the release."""
    if explicit:
        return [explicit]
    root = source_checkout()
    if root is None:
        return [f"fixative=={__version__}"]
    return ["-e", str(root)] if mode == "link" else [str(root)]


def install_engine(python: Path, spec: list[str], reinstall: bool, dry_run: bool, say) -> None:
    info = probe_python(python)
    major, minor = (int(x) for x in info["python"].split("."))
    if (major, minor) < (3, 10):
        raise FixativeError(f"{python} is Python {info['python']}; Fixative needs 3.10 or newer")
    installed = info.get("fixative")
    if installed == __version__ and not reinstall:
        say(f"engine: fixative {installed} already installed in {python} (use --reinstall to force)")
        return
    command = [str(python), "-m", "pip", "install", *spec]
    was = f"replacing {installed}" if installed else "not installed yet"
    if dry_run:
        say(f"engine: would run {shlex.join(command)} ({was})")
        return
    say(f"engine: running {shlex.join(command)} ({was})")
    done = subprocess.run(command)
    if done.returncode != 0:
        raise FixativeError(
            f"pip failed (exit {done.returncode}) installing the engine into {python}",
            hint=f"run it yourself: {shlex.join(command)}",
        )
    after = probe_python(python).get("fixative")
    if not after:
        raise FixativeError(f"pip finished but {python} still cannot see fixative")
    say(f"engine: fixative {after} installed in {python}")


def run(args: argparse.Namespace) -> int:
    def say(line: str) -> str:
        print(line, flush=True)
        return line

    root = comfyui_root(args.comfyui_dir)
    source = pack_source(args.pack_dir)
    mode = "copy" if args.copy else "link"
    python = Path(args.python).expanduser() if args.python else find_python(root)
    if args.python and not python.exists() and shutil.which(args.python):
        python = Path(shutil.which(args.python))
    if not python.exists():
        raise FixativeError(f"{python}: no such Python interpreter")
    say(f"ComfyUI: {root}")
    say(f"ComfyUI's Python: {python}" + ("" if args.python else " (found beside ComfyUI)"))
    place_pack(source, root / "custom_nodes", mode, args.dry_run, say)
    if args.skip_engine:
        say("engine: skipped (--skip-engine)")
    else:
        install_engine(python, engine_spec(args.engine, mode), args.reinstall, args.dry_run, say)
    say(
        "dry run: nothing was changed"
        if args.dry_run
        else "done: restart ComfyUI; the nodes are under the 'Fixative' category"
    )
    return 0


def register(host_subparsers: argparse._SubParsersAction) -> None:
    parser = host_subparsers.add_parser(
        "comfyui",
        help="install the ComfyUI node pack and the engine into ComfyUI's own Python",
        description="Link (or copy) the Fixative node pack into ComfyUI/custom_nodes and pip-install the "
        "engine into the Python that runs ComfyUI. Safe to run again.",
    )
    parser.add_argument(
        "--comfyui-dir", required=True, metavar="PATH", help="ComfyUI's folder (or a portable build's)"
    )
    parser.add_argument(
        "--python",
        metavar="PYTHON",
        help="the Python that runs ComfyUI (default: its venv, .venv or python_embeded)",
    )
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--link", action="store_true", help="symlink the pack (default; follows this checkout)")
    how.add_argument("--copy", action="store_true", help="copy the pack")
    parser.add_argument(
        "--engine", metavar="SPEC", help="what pip installs (default: this checkout, or the release)"
    )
    parser.add_argument("--pack-dir", metavar="PATH", help="the node pack folder (default: this checkout's)")
    parser.add_argument("--reinstall", action="store_true", help="pip-install the engine even if present")
    parser.add_argument("--skip-engine", action="store_true", help="only place the node pack")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    parser.set_defaults(func=run)
