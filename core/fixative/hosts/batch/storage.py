"""Files by path or URI: local paths directly, ``s3://``, ``gs://``… through pyarrow's filesystems.

Local writes are atomic (temporary + rename); object stores write whole objects, which is atomic too.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_uri(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


def _remote(location: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(location)


def read_bytes(location: str) -> bytes:
    if not is_uri(location):
        return Path(location.removeprefix("file://")).read_bytes()
    filesystem, path = _remote(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(location: str, data: bytes) -> None:
    if not is_uri(location):
        from ...fixative_client import write_atomically

        write_atomically(location.removeprefix("file://"), data, replace=True)
        return
    filesystem, path = _remote(location)
    filesystem.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def exists(location: str) -> bool:
    if not is_uri(location):
        return os.path.isfile(location.removeprefix("file://"))
    from pyarrow import fs

    filesystem, path = _remote(location)
    return filesystem.get_file_info(path).type == fs.FileType.File


def list_files(location: str, recursive: bool) -> list[str] | None:
    """The files under a folder URI, sorted (None when it is not a folder)."""
    from pyarrow import fs

    filesystem, path = _remote(location)
    if filesystem.get_file_info(path).type != fs.FileType.Directory:
        return None
    scheme = location.split("://", 1)[0]
    infos = filesystem.get_file_info(fs.FileSelector(path, recursive=recursive))
    return sorted(f"{scheme}://{i.path}" for i in infos if i.type == fs.FileType.File)


def join(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{name}" if is_uri(folder) else str(Path(folder) / name)
