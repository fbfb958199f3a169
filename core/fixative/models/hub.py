"""Encoders a user can get in one step (``fixative models --get NAME``), each file pinned by SHA-256.

Nothing here runs unless asked: discovery never downloads. A file is fetched with ``huggingface_hub``
into the usual Hugging Face cache (a connection that breaks off is resumed by a Range request within the
same get, from the last whole chunk; a cancelled or failed get leaves no part behind), then checked
against the sum pinned below and loaded the strict, pickle-free way every local file is
(``weights.read_state_dict``). A file that fails either check is removed, so nothing that loads is
left behind; the cache folder is on the discovery search path, so the encoder is found from then on.

The sums are those of the files this project measures with (``../shared/models/taesd``, MIT, by Ollin
Boer Bohan); a hub file that differs from them by one byte is refused. The hub locations are the TAESD
author's; this project's build machine cannot reach the hub, so they are checked only by those sums.
Other encoders (taesd, taesdxl, the SDXL and FLUX VAEs) are added here once their sums are measured.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadParameterError, FixativeError, ModelNotFoundError
from .discovery import hub_cache

Progress = Callable[[str, int, int], None]  # (file name, bytes done, bytes total)


@dataclass(frozen=True)
class HubFile:
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Downloadable:
    """One encoder (and its decoder, when the loss can use it) as published on the Hugging Face Hub."""

    name: str
    repo_id: str
    files: tuple[HubFile, ...]
    licence: str
    protects: str  # the diffusion models whose latent space it is
    revision: str = "main"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "files": [f.filename for f in self.files],
            "size_bytes": self.size,
            "licence": self.licence,
            "protects": self.protects,
        }


CATALOGUE: dict[str, Downloadable] = {
    entry.name: entry
    for entry in (
        Downloadable(
            name="taef2",
            repo_id="madebyollin/taef2",
            files=(
                HubFile(
                    "taef2_encoder.pth",
                    "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
                    2704692,
                ),
                HubFile(
                    "taef2_decoder.pth",
                    "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
                    2704756,
                ),
            ),
            licence="MIT",
            protects="FLUX.2 (its 32-channel latent space: FLUX.2 dev and Klein)",
        ),
        Downloadable(
            name="taesana",
            repo_id="madebyollin/taesana",
            files=(
                HubFile(
                    "taesana_encoder.pth",
                    "858f4e4cc293f88efaf58107f4154b960b9ced0cb5d9c050dad11f926b618c1f",
                    2537004,
                ),
            ),
            licence="MIT",
            protects="SANA (the DC-AE f32c32 latent space)",
        ),
    )
}
RECOMMENDED = "taef2"


class DownloadCancelled(FixativeError):
    """Raised when the caller's cancel event is set; huggingface_hub removes the part it had written."""


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def lookup(name: str) -> Downloadable:
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(CATALOGUE)
        raise BadParameterError(f"no downloadable encoder named {name!r} (known: {known})") from None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_file(entry: Downloadable, file: HubFile, cache_dir: Path | None = None) -> Path | None:
    """The verified copy already in the cache, if there is one (nothing is fetched)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        entry.repo_id, file.filename, cache_dir=str(cache_dir or hub_cache()), revision=entry.revision
    )
    if isinstance(found, str) and Path(found).is_file() and sha256_of(Path(found)) == file.sha256:
        return Path(found)
    return None


def get(
    name: str,
    *,
    cache_dir: Path | None = None,
    endpoint: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> list[Path]:
    """Fetch, check and test-load every file of ``name``; returns their paths in the cache."""
    entry = lookup(name)
    cache = Path(cache_dir or hub_cache())
    paths = []
    for file in entry.files:
        done = cached_file(entry, file, cache)
        if done is None:
            if offline():
                raise ModelNotFoundError(
                    f"HF_HUB_OFFLINE is set, so {file.filename} is not downloaded; unset it and run "
                    f"`fixative models --get {name}` again, or put the file in a FIXATIVE_MODELS folder"
                )
            done = _fetch(entry, file, cache, endpoint or os.environ.get("HF_ENDPOINT"), progress, cancel)
            _verify(done, file)
        paths.append(done)
    return paths


def _fetch(
    entry: Downloadable,
    file: HubFile,
    cache: Path,
    endpoint: str | None,
    progress: Progress | None,
    cancel: threading.Event | None,
) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(
            hf_hub_download(
                entry.repo_id,
                file.filename,
                revision=entry.revision,
                cache_dir=str(cache),
                endpoint=endpoint,
                tqdm_class=_progress_class(file.filename, progress, cancel),
                etag_timeout=30,
            )
        )
    except DownloadCancelled:
        raise
    except Exception as exc:  # network, HTTP status, disk full: one line (huggingface_hub drops the part)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FixativeError(
            f"could not download {file.filename} from {entry.repo_id} ({reason[:200]}); nothing was kept, "
            "run the same command again"
        ) from None


def _verify(path: Path, file: HubFile) -> None:
    """The pinned sum, then a strict load; on any failure the file (and its cache blob) is removed."""
    from .weights import read_state_dict

    actual = sha256_of(path)
    if actual != file.sha256:
        _remove(path)
        raise FixativeError(
            f"{file.filename}: checksum mismatch (got {actual[:16]}…, expected {file.sha256[:16]}…); "
            "the download was removed"
        )
    try:
        read_state_dict(path)
    except ModelNotFoundError as exc:
        _remove(path)
        raise FixativeError(f"{exc}; the download was removed") from None


def _remove(path: Path) -> None:
    """A cache entry is a snapshot link to a blob: remove both, so nothing is found or loaded later."""
    blob = path.resolve()
    for item in (path, blob):
        try:
            item.unlink()
        except FileNotFoundError:
            pass


def _progress_class(filename: str, progress: Progress | None, cancel: threading.Event | None):
    """A tqdm class for ``hf_hub_download``: a bar on stderr when nobody listens, else the callback; it
    raises ``DownloadCancelled`` from inside the transfer when the cancel event is set."""
    from tqdm import tqdm

    class Reporting(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs["disable"] = progress is not None or kwargs.get("disable", False)
            kwargs["desc"] = filename
            super().__init__(*args, **kwargs)
            self.done = int(kwargs.get("initial") or 0)  # tqdm stops counting when disabled

        def update(self, n: float | None = 1) -> bool | None:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"download of {filename} cancelled")
            self.done += int(n or 0)
            if progress is not None:
                progress(filename, self.done, int(self.total or 0))
            shown = super().update(n)
            if cancel is not None and cancel.is_set():  # set while reporting: stop before the next chunk
                raise DownloadCancelled(f"download of {filename} cancelled")
            return shown

    return Reporting
