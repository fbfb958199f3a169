"""A batch planned before any work: which inputs, where each output goes, and which can be skipped.

Every folder runner (``fixative protect`` on folders, ``--server``, the Ray batch) plans here, so they all
refuse the same bad outputs up front (unsupported type, unwritable folder, an input in the way) and share
one ``--skip-existing`` rule: an output is skipped when it is a readable Fixative output of the same input
file made with the same options, and redone otherwise.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

from .. import metadata
from ..errors import BadParameterError, FixativeError
from ..options import FORMAT_ALIASES, JobOptions, output_path_for

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
OUTPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}


@dataclass
class Planned:
    source: Path
    output: Path
    skip: str | None = None  # why this input needs no work


def expand_inputs(items: list[str], recursive: bool = False) -> list[Path]:
    """Files, folders (their images) and globs, in order, without duplicates or earlier outputs."""
    found: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            children = sorted(
                p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
            found.extend(p for p in children if ".protected." not in p.name)
        elif path.exists():
            found.append(path)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            found.extend(p for p in matches if p.is_file() and ".protected." not in p.name)
        else:
            found.append(path)  # reported as missing when processed
    seen: set[Path] = set()
    return [p for p in found if not (p in seen or seen.add(p))]


def file_digest(path: str | Path) -> str | None:
    """SHA-256 of a file's bytes (what a protected copy records as its input), None if unreadable."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def plan(
    inputs: list[Path], options: JobOptions, output: str | None = None, out_dir: str | None = None
) -> list[Planned]:
    """Where each input goes; raises a one-line error for any output that could not be written."""
    if not inputs:
        raise BadParameterError("no input images (give files, folders or globs)")
    if output and len(inputs) > 1:
        raise BadParameterError("-o/--output takes one input; use --out-dir for several")
    if output:
        suffix = Path(output).suffix.lower()
        if suffix not in OUTPUT_SUFFIXES:
            raise BadParameterError(
                f"{Path(output).name}: unsupported output type {suffix or '(none)'!r}; "
                "use .png, .jpg, .webp or .tif"
            )
        planned = [Planned(inputs[0], Path(output))]
    else:
        planned = [Planned(p, output_path_for(p, out_dir, options.suffix)) for p in inputs]
    resolved_inputs = {p.resolve() for p in inputs if p.exists()}
    expected = options.engine_options().recorded()
    for item in planned:
        if item.output.resolve() in resolved_inputs:
            raise FixativeError(
                f"{item.output}: refusing to overwrite an input image; choose another output name"
            )
        _check_writable(item.output)
        if item.output.exists():
            if options.skip_existing and is_done(item.output, item.source, expected):
                item.skip = "a protected copy of this input with these options exists"
            elif not (options.overwrite or options.skip_existing):
                raise FixativeError(
                    f"{item.output}: already exists (use --overwrite to replace it, or --skip-existing)"
                )
    return planned


def format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    return FORMAT_ALIASES.get(suffix, suffix) if suffix else "png"


def _check_writable(path: Path) -> None:
    """The folder the output goes in exists (or can be made) and can be written: checked before any work."""
    folder = path.parent if str(path.parent) else Path(".")
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise FixativeError(f"{path}: cannot write it ({probe} is a file, not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FixativeError(f"{path}: cannot write it (no permission to write in {probe})")
    if path.is_dir():
        raise FixativeError(f"{path}: cannot write it (a folder of that name exists)")


def metadata_of(data: bytes) -> dict | None:
    """The Fixative metadata of an output's bytes, or None when they are not a whole readable image."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file fails here
            return metadata.read(image)
    except Exception:  # any decoding problem means "not a finished output"
        return None


def recorded_metadata(path: Path) -> dict | None:
    """The Fixative metadata of a finished output, or None when the file is unreadable or truncated."""
    try:
        return metadata_of(path.read_bytes())
    except OSError:
        return None


def matches(meta: dict | None, input_digest: str | None, expected_options: dict) -> bool:
    """The one ``--skip-existing`` rule: same input bytes, same options."""
    if not meta or meta.get("input_sha256") is None or input_digest is None:
        return False
    return meta["input_sha256"] == input_digest and meta.get("options", {}) == expected_options


def is_done(output: Path, source: Path, expected_options: dict) -> bool:
    """Whether ``output`` is a complete Fixative output of ``source`` (same bytes) with the same options."""
    return matches(recorded_metadata(output), file_digest(source), expected_options)


def summary(total: int, skipped: int, protected: int, failed: int) -> str:
    return (
        f"{total} input{'s' if total != 1 else ''}: {skipped} skipped, {protected} protected, {failed} failed"
    )
