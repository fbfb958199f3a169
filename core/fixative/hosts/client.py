"""Protect images through a running ``fixative serve`` from a pipeline.

    from fixative.client import Client
    result = Client().protect("art.png", method="style", progress=lambda done, total, info: ...)
    result.save("art.protected.png")

A typed face over the standard-library ``fixative_client.EngineClient`` every host carries: the same
HTTP code, the same errors (``ServerError`` is ``EngineError``, and so on) and job states. Without a URL
the client finds the engine on this machine (``server.json`` and the token in the Fixative config
folder). Cancelling (``cancel=`` returning True, or Ctrl+C) cancels the job on the engine too.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FixativeError
from ..fixative_client import (
    TERMINAL_STATES,
    EngineCancelled,
    EngineClient,
    EngineError,
    EngineJobFailed,
    EngineNotRunning,
    EngineUnauthorised,
    read_server_info,
    write_atomically,
)
from ..options import FORMAT_SUFFIXES, JobOptions, output_path_for

# The names pipelines used before the clients were one; kept as aliases.
ServerError = EngineError
ServerNotRunning = EngineNotRunning
Unauthorised = EngineUnauthorised
JobFailed = EngineJobFailed
JobCancelled = EngineCancelled
TERMINAL = TERMINAL_STATES


@dataclass
class ServerResult:
    """A protected image as the engine wrote it (with Fixative's metadata), and its report."""

    data: bytes
    format: str
    report: dict
    check: dict | None = None
    job_id: str = ""
    status: dict = field(default_factory=dict)

    @property
    def image(self):
        from PIL import Image

        return Image.open(io.BytesIO(self.data))

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the bytes as received (atomically); refuses to replace a file unless asked."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FixativeError(f"{path}: already exists (use overwrite=True to replace it)")
        try:
            return write_atomically(path, self.data, replace=overwrite)
        except FileExistsError:
            raise FixativeError(f"{path}: already exists (use overwrite=True to replace it)") from None
        except OSError as exc:
            raise FixativeError(f"{path}: cannot write it ({exc.strerror or exc})") from None


def _image_bytes(image) -> tuple[bytes, str]:
    """Bytes and a file name for a path, bytes or PIL image."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), "image.png"
    if isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        try:
            return path.read_bytes(), path.name
        except FileNotFoundError:
            raise FixativeError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise FixativeError(f"{path}: is a folder, not an image") from None
    if hasattr(image, "save") and hasattr(image, "mode"):  # PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue(), "image.png"
    raise FixativeError(
        f"cannot send an object of type {type(image).__name__}; give a path, bytes or PIL image"
    )


def _mask_bytes(mask) -> bytes:
    """A mask as a greyscale PNG: arrays/tensors in 0..1 are scaled to 0..255."""
    if isinstance(mask, (bytes, bytearray, str, Path)) or hasattr(mask, "mode"):
        return _image_bytes(mask)[0]
    import numpy as np
    from PIL import Image

    array = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask, dtype=np.float32)
    buffer = io.BytesIO()
    Image.fromarray((array.clip(0, 1) * 255).round().astype(np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


class Client:
    """A connection to one engine; safe to share between threads."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        if url in (None, "", "auto"):
            info = read_server_info()
            if info is None:
                raise ServerNotRunning(
                    "no Fixative engine is running on this machine (start one with `fixative serve`, or pass "
                    "its URL)"
                )
            url = info["url"]
        self.engine = EngineClient(str(url), token=token, timeout=timeout)

    @property
    def url(self) -> str:
        return self.engine.url

    def health(self) -> dict:
        return self.engine.health()

    def models(self) -> list:
        return self.engine.models()

    def options(self) -> dict:
        return self.engine.options()

    def submit(self, image, *, target=None, mask=None, filename: str | None = None, **options) -> str:
        """Queue a job; returns its id. Options as in ``fixative.options.JobOptions``."""
        data, name = _image_bytes(image)
        options = {k: v for k, v in options.items() if v is not None}
        return self.engine.submit(
            data,
            filename or name,
            options,
            target=None if target is None else _image_bytes(target)[0],
            mask=None if mask is None else _mask_bytes(mask),
        )

    def status(self, job_id: str) -> dict:
        return self.engine.status(job_id)

    def result(self, job_id: str) -> ServerResult:
        data, report = self.engine.result(job_id)
        check = report.pop("check", None)
        return ServerResult(data, _format_of(data), report, check, job_id)

    def cancel(self, job_id: str) -> None:
        self.engine.cancel(job_id)

    def delete(self, job_id: str) -> None:
        self.engine.delete(job_id)

    def wait(
        self,
        job_id: str,
        progress: Callable[[int, int, dict], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        poll: float = 0.25,
        timeout: float | None = None,
    ) -> dict:
        """Follow a job to its end; returns its final status. Raises JobFailed / JobCancelled."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last_step = None
        try:
            while True:
                if cancel is not None and cancel():
                    self.cancel(job_id)
                    raise JobCancelled("cancelled")
                state = self.status(job_id)
                if progress is not None and (state["step"], state["state"]) != last_step:
                    last_step = (state["step"], state["state"])
                    progress(state["step"], state["total"], state)
                if state["state"] == "done":
                    return state
                if state["state"] == "failed":
                    raise JobFailed(state.get("error") or "the engine could not protect this image")
                if state["state"] == "cancelled":
                    raise JobCancelled(state.get("error") or "cancelled")
                if deadline is not None and time.monotonic() > deadline:
                    self.cancel(job_id)
                    raise ServerError(f"job {job_id} did not finish within {timeout:g} s; cancelled it")
                time.sleep(poll)
        except KeyboardInterrupt:
            try:
                self.cancel(job_id)
            except ServerError:
                pass
            raise

    def protect(
        self,
        image,
        *,
        progress: Callable[[int, int, dict], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        poll: float = 0.25,
        keep: bool = False,
        **options,
    ) -> ServerResult:
        """Submit, wait, fetch. ``progress(done, total, status)`` as in ``fixative.protect``.

        The job is deleted on the engine afterwards unless ``keep``.
        """
        job_id = self.submit(image, **options)
        try:
            final = self.wait(job_id, progress=progress, cancel=cancel, poll=poll)
            result = self.result(job_id)
            result.status = final
            return result
        finally:
            if not keep:
                try:
                    self.delete(job_id)
                except ServerError:
                    pass

    def protect_file(
        self, path: str | Path, out: str | Path | None = None, overwrite: bool = False, **options
    ) -> tuple[Path, dict]:
        """Like ``fixative.protect_file`` but on the engine: writes ``NAME.protected.png`` (or ``out``)."""
        fmt = JobOptions.parse(format=options.get("format") or "png").format
        target = Path(out) if out else output_path_for(path, suffix=FORMAT_SUFFIXES[fmt])
        if out is not None and "format" not in options and target.suffix:
            options["format"] = target.suffix.lstrip(".").lower()
        if target.exists() and not overwrite:
            raise FixativeError(f"{target}: already exists (use --overwrite to replace it)")
        result = self.protect(path, **options)
        written = result.save(target, overwrite=overwrite)
        return written, dict(result.report, output=str(written))


def _format_of(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "tif"
