"""Protect images through a running ``fixative serve`` from a pipeline (requests).

    from fixative.client import Client
    result = Client().protect("art.png", method="style", progress=lambda done, total, info: ...)
    result.save("art.protected.png")

Without a URL the client finds the engine on this machine (``server.json`` and the token in the
Fixative config folder). Errors are ``ServerError`` subclasses with one-line messages; cancelling
(``cancel=`` returning True, or Ctrl+C) cancels the job on the engine too.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from .errors import Cancelled, FixativeError
from .hosts.fixative_client import read_server_info, read_token, write_atomically

TERMINAL = ("done", "failed", "cancelled")


class ServerError(FixativeError):
    """The engine refused or failed a request; ``status`` is the HTTP code (None: no answer)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ServerNotRunning(ServerError):
    """No engine answers at the URL (or none is recorded on this machine)."""


class Unauthorised(ServerError):
    """The engine rejected the token (401)."""


class JobFailed(ServerError):
    """The engine could not protect the image; the message says why (bad image, bad option, ...)."""


class JobCancelled(Cancelled):
    """The job was cancelled on the engine (by this client, another one, or the engine stopping)."""


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


class Client:
    """A connection to one engine; safe to share between threads."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        if url in (None, "", "auto"):
            info = read_server_info()
            if info is None:
                raise ServerNotRunning(
                    "no Fixative engine is running on this machine (start one with "
                    "`fixative serve`, or pass its URL)"
                )
            url = info["url"]
        self.url = str(url).rstrip("/")
        self.token = token if token is not None else read_token()
        self.timeout = timeout
        self._local = threading.local()

    @property
    def session(self) -> requests.Session:
        """One session per thread (requests sessions are not meant to be shared between threads)."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # a local engine is never behind the user's internet proxy
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
        return session

    def _call(self, method: str, path: str, **kwargs) -> requests.Response:
        try:
            response = self.session.request(
                method, self.url + path, timeout=kwargs.pop("timeout", self.timeout), **kwargs
            )
        except requests.ConnectionError:
            raise ServerNotRunning(f"no Fixative engine answers at {self.url}") from None
        except requests.Timeout:
            raise ServerError(f"the engine at {self.url} did not answer within {self.timeout:g} s") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error") or response.text
            except ValueError:
                message = response.text or response.reason
            message = str(message).splitlines()[0] if message else f"HTTP {response.status_code}"
            if response.status_code == 401:
                raise Unauthorised(f"the engine rejected the token: {message}", 401)
            raise ServerError(message, response.status_code)
        return response

    def health(self) -> dict:
        return self._call("GET", "/health").json()

    def models(self) -> list:
        return self._call("GET", "/models").json()

    def submit(self, image, *, target=None, mask=None, filename: str | None = None, **options) -> str:
        """Queue a job; returns its id. Options as in ``fixative.protect``, plus format, check, lease."""
        data, name = _image_bytes(image)
        files = {"file": (filename or name, data, "application/octet-stream")}
        if target is not None:
            files["target"] = ("target", _image_bytes(target)[0], "application/octet-stream")
        if mask is not None:
            files["mask"] = ("mask", _mask_bytes(mask), "application/octet-stream")
        options = {k: v for k, v in options.items() if v is not None}
        response = self._call(
            "POST",
            "/jobs",
            files=files,
            data={"options": json.dumps(options)},
            timeout=max(self.timeout, 120.0),
        )
        return response.json()["id"]

    def status(self, job_id: str) -> dict:
        return self._call("GET", f"/jobs/{job_id}").json()

    def result(self, job_id: str) -> ServerResult:
        data = self._call("GET", f"/jobs/{job_id}/result", timeout=max(self.timeout, 120.0)).json()
        return ServerResult(
            base64.b64decode(data["image_base64"]), data["format"], data["report"], data.get("check"), job_id
        )

    def cancel(self, job_id: str) -> dict:
        return self._call("POST", f"/jobs/{job_id}/cancel").json()

    def delete(self, job_id: str) -> None:
        self._call("DELETE", f"/jobs/{job_id}")

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
        from .save import output_path_for

        fmt = str(options.get("format") or "png").lower().replace("jpeg", "jpg")
        target = Path(out) if out else output_path_for(path, suffix=f".{fmt}")
        if out is not None and "format" not in options and target.suffix:
            options["format"] = target.suffix.lstrip(".").lower()
        if target.exists() and not overwrite:
            raise FixativeError(f"{target}: already exists (use --overwrite to replace it)")
        result = self.protect(path, **options)
        written = result.save(target, overwrite=overwrite)
        return written, dict(result.report, output=str(written))


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


def protect_on_server(args, inputs: list[Path], planned: list[Path]) -> int:
    """``fixative protect --server URL``: the same command, run by an engine instead of this process."""
    import sys

    client = Client(None if args.server == "auto" else args.server)
    from .cli import protect_options

    options = dict(protect_options(args), check=bool(args.verify))
    reports, failures = [], 0
    for source, out in zip(inputs, planned, strict=True):
        try:
            fmt = out.suffix.lstrip(".").lower() or "png"
            result = client.protect(source, target=args.target, format=fmt, **options)
            written = result.save(out, overwrite=args.overwrite)
            report = dict(result.report, output=str(written))
            if result.check is not None:
                report["verify"] = result.check
            reports.append(report)
            if not args.quiet:
                p = report["perceptual"]
                print(
                    f"{source} -> {written}  strength {report['strength']:.2f}  PSNR {p['psnr_db']:.1f} dB  "
                    f"L∞ {p['linf_255']:.0f}/255  {report['seconds']:.1f}s (on {client.url})"
                )
        except ServerNotRunning:
            raise
        except FixativeError as exc:
            failures += 1
            print(f"fixative: error: {exc}", file=sys.stderr)
            reports.append({"source": str(source), "error": str(exc)})
    if args.json:
        Path(args.json).write_text(json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    return 2 if failures else 0
