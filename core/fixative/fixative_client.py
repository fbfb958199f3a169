"""Talk to a running ``fixative serve`` using nothing but the Python standard library.

Editor plug-ins (Krita, GIMP) run inside the editor's own Python, which has no torch, no requests and
may be as old as 3.8. The installers copy this one file next to each plug-in, so it must stay
self-contained: standard-library imports only, no syntax newer than Python 3.8. The package uses the same
module (``fixative.client`` builds on it), so there is one set of client errors and job states.

The client never hands the token to a stranger: before the first request that carries it, the engine
must prove it holds the token (``GET /hello`` answers an HMAC of the client's random nonce under the
token), and a ``server.json`` whose process is gone is removed instead of followed.

Typical use::

    client = ensure_engine()                       # finds a running engine, or starts the recorded one
    png, report = client.protect(image_bytes, {"method": "style", "intensity": "default"},
                                 on_progress=lambda s: print(s["progress"]), should_cancel=lambda: False)

Files in ``config_dir()``: ``token`` (the shared secret, owner-only), ``server.json`` (url, pid and
version of the running engine) and ``engine.json`` (``{"command": [argv...]}``, written by the installers:
how to start the engine).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import queue
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib import error as urlerror
from urllib import parse as urlparse
from urllib import request as urlrequest

READY_PREFIX = "FIXATIVE_READY "
TOKEN_FILE = "token"
SERVER_FILE = "server.json"
ENGINE_FILE = "engine.json"
LOG_FILE = "server.log"
DEFAULT_PORT = 7865
TERMINAL_STATES = ("done", "failed", "cancelled")
HELLO_PATH = "/hello"


class EngineError(Exception):
    """The engine refused or failed a request; ``str()`` is one line to show the user."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineNotRunning(EngineError):
    """No engine answers at the recorded address."""


class EngineNotInstalled(EngineError):
    """No engine command is recorded, or its executable is gone: the message says what to do."""


class EngineUnauthorised(EngineError):
    """The engine rejected the token (401)."""


class EngineUntrusted(EngineUnauthorised):
    """What answers cannot prove it holds our token (another program, or our token is out of date), so the
    token was not sent: treated as a 401."""


class EngineJobFailed(EngineError):
    """The engine could not protect the image; the message says why."""


class EngineCancelled(EngineError):
    """The job was cancelled (by the caller, or by the engine shutting down)."""


def proof(token: str, nonce: str) -> str:
    """What an engine answers to ``GET /hello?nonce=...``: HMAC-SHA256 of the nonce under the token."""
    return hmac.new(token.encode("utf-8"), nonce.encode("utf-8"), hashlib.sha256).hexdigest()


def process_alive(pid: int) -> bool:
    """Whether a process exists (assumed so where that cannot be asked without harm, e.g. Windows)."""
    if pid <= 0:
        return False
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is someone else's
        return True
    return True


def config_dir() -> Path:
    """Where the token and discovery files live (``FIXATIVE_CONFIG_DIR`` overrides, e.g. for tests)."""
    override = os.environ.get("FIXATIVE_CONFIG_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(base) / "fixative"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "fixative"
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fixative"


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_token() -> str | None:
    """The engine's token, or None before the engine has ever started."""
    try:
        token = (config_dir() / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def read_server_info() -> dict | None:
    """``server.json`` of the running engine ({"url", "pid", "version"}), or None.

    A file left by an engine whose process is gone (killed, crashed) is removed and None returned, so no
    client sends the token to whatever listens on that port now.
    """
    path = config_dir() / SERVER_FILE
    info = _read_json(path)
    if info is None or not isinstance(info.get("url"), str):
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and not process_alive(pid):
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return info


def read_engine_command() -> list[str] | None:
    """The command the installer recorded to start the engine, or None."""
    info = _read_json(config_dir() / ENGINE_FILE)
    command = info.get("command") if info else None
    if isinstance(command, list) and command and all(isinstance(part, str) for part in command):
        return list(command)
    return None


def _multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """Encode a multipart/form-data body (urllib has no helper for it)."""
    boundary = "fixative-" + uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n'
                "Content-Type: application/json\r\n\r\n"
            ).encode()
        )
        parts.append(value.encode("utf-8") + b"\r\n")
    for name, (filename, data) in files.items():
        safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        disposition = f'form-data; name="{name}"; filename="{safe_name}"'
        parts.append(
            (
                f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
        )
        parts.append(bytes(data) + b"\r\n")
    parts.append((f"--{boundary}--\r\n").encode())
    return b"".join(parts), "multipart/form-data; boundary=" + boundary


class EngineClient:
    """One engine at one URL; every call is a short HTTP request, safe from any thread."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 30.0) -> None:
        if url is None:
            info = read_server_info()
            if info is None:
                raise EngineNotRunning(
                    f"the Fixative engine is not running (no {SERVER_FILE} in {config_dir()})"
                )
            url = info["url"]
        self.url = url.rstrip("/")
        self.token = token if token is not None else read_token()
        self.timeout = timeout
        self.verified = False  # set once the engine proved it holds the token
        # Loopback traffic must never go through a proxy configured for the internet.
        self._opener = urlrequest.build_opener(urlrequest.ProxyHandler({}))

    @classmethod
    def discover(cls) -> EngineClient | None:
        """A client for the running engine (proven to hold the token), or None when none answers."""
        info = read_server_info()
        if info is None:
            return None
        try:
            client = cls(info["url"], timeout=5.0)
            client.verify()
        except EngineError:  # not answering, or not proving it is ours: either way, not our engine
            return None
        client.timeout = 30.0
        return client

    def verify(self) -> None:
        """Make the engine prove it holds the token before anything secret is sent to it."""
        if self.verified or not self.token:
            return
        nonce = secrets.token_hex(16)
        answer = self._request("GET", f"{HELLO_PATH}?nonce={nonce}", authorise=False)
        given = answer.get("proof") if isinstance(answer, dict) else None
        if not isinstance(given, str) or not hmac.compare_digest(given, proof(self.token, nonce)):
            raise EngineUntrusted(
                f"what answers at {self.url} could not prove it holds your Fixative token, so neither the "
                "token nor any image was sent: another program may be using that port, or the token is out "
                "of date (restart the engine: `fixative serve --stop`, then `fixative serve`)",
                status=401,
            )
        self.verified = True

    # --- raw HTTP -------------------------------------------------------------------------------
    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        authorise: bool = True,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if authorise and self.token:
            self.verify()
            headers["Authorization"] = "Bearer " + self.token
        if content_type:
            headers["Content-Type"] = content_type
        req = urlrequest.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout) as response:
                payload = response.read()
        except urlerror.HTTPError as exc:
            kind = EngineUnauthorised if exc.code == 401 else EngineError
            raise kind(self._error_message(exc), status=exc.code) from None
        except urlerror.URLError as exc:
            reason = getattr(exc, "reason", exc)
            raise EngineNotRunning(f"the Fixative engine does not answer at {self.url} ({reason})") from None
        except (OSError, ValueError) as exc:  # timeouts, resets, a malformed URL
            raise EngineNotRunning(f"the Fixative engine at {self.url} did not answer: {exc}") from None
        if not payload:
            return None
        try:
            return json.loads(payload.decode("utf-8"))
        except ValueError:
            raise EngineError(f"the engine at {self.url} sent an answer that is not JSON") from None

    @staticmethod
    def _error_message(exc: urlerror.HTTPError) -> str:
        try:
            data = json.loads(exc.read().decode("utf-8"))
            message = data.get("error") or data.get("detail")
        except Exception:  # the body is optional; the status line is enough then
            message = None
        if exc.code == 401:
            return "the engine rejected the token (%s); restart the engine or reinstall the plug-in" % (
                message or "unauthorised"
            )
        return str(message or f"HTTP {exc.code} {exc.reason}").splitlines()[0]

    # --- API ------------------------------------------------------------------------------------
    def health(self) -> dict:
        return self._request("GET", "/health")

    def models(self) -> list:
        return self._request("GET", "/models")

    def options(self) -> dict:
        """The engine's options schema (``{"choices": ..., "schema": ...}``)."""
        return self._request("GET", "/options")

    def get_model(
        self,
        name: str = "taef2",
        on_progress: Callable[[dict], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        poll: float = 0.3,
    ) -> dict:
        """Have the engine download an encoder (checked by SHA-256), reporting ``{file, done, total}``;
        ``should_cancel`` returning True cancels it (nothing is kept). Returns the final state."""
        path = "/models/get/" + urlparse.quote(name, safe="")
        state = self._request("POST", path)
        while state["state"] == "running":
            if on_progress is not None:
                on_progress(state)
            if should_cancel is not None and should_cancel():
                self._request("DELETE", path)
            time.sleep(poll)
            state = self._request("GET", path)
        if state["state"] == "failed":
            raise EngineError(state.get("error") or "the download failed")
        if state["state"] == "cancelled":
            raise EngineCancelled("the download was cancelled")
        return state

    def submit(
        self,
        image_bytes: bytes,
        filename: str = "image.png",
        options: dict | None = None,
        target: bytes | None = None,
        mask: bytes | None = None,
    ) -> str:
        """Queue a job; returns its id.

        ``target`` and ``mask`` are optional image files (mask: white where pixels may change).
        """
        files = {"file": (filename, image_bytes)}
        if target is not None:
            files["target"] = ("target.png", target)
        if mask is not None:
            files["mask"] = ("mask.png", mask)
        body, content_type = _multipart({"options": json.dumps(options or {})}, files)
        return self._request("POST", "/jobs", body, content_type)["id"]

    def status(self, job_id: str) -> dict:
        """{"id", "state", "progress" 0..1, "step", "total", "eta" (s or None), "doing" (what is measured
        after the last step, or None), "error"}.

        Polling also keeps a job's lease alive (``options["lease_seconds"]``).
        """
        return self._request("GET", f"/jobs/{job_id}")

    def result(self, job_id: str) -> tuple[bytes, dict]:
        """The protected file's bytes and the report (with the check verdict under "check" if asked for)."""
        import base64

        data = self._request("GET", f"/jobs/{job_id}/result")
        report = dict(data.get("report") or {})
        if data.get("check") is not None:
            report["check"] = data["check"]
        return base64.b64decode(data["image_base64"]), report

    def cancel(self, job_id: str) -> None:
        self._request("POST", f"/jobs/{job_id}/cancel")

    def delete(self, job_id: str) -> None:
        self._request("DELETE", f"/jobs/{job_id}")

    def protect(
        self,
        image_bytes: bytes,
        options: dict | None = None,
        filename: str = "image.png",
        on_progress: Callable[[dict], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        poll: float = 0.5,
        target: bytes | None = None,
        mask: bytes | None = None,
    ) -> tuple[bytes, dict]:
        """Submit, follow the job to its end and return (image bytes, report); the job is then deleted.

        ``should_cancel()`` returning True cancels the job on the engine and raises ``EngineCancelled``.
        """
        job_id = self.submit(image_bytes, filename, options, target=target, mask=mask)
        try:
            while True:
                if should_cancel is not None and should_cancel():
                    self.cancel(job_id)
                    raise EngineCancelled("cancelled")
                state = self.status(job_id)
                if on_progress is not None:
                    on_progress(state)
                if state["state"] == "done":
                    return self.result(job_id)
                if state["state"] == "failed":
                    raise EngineJobFailed(state.get("error") or "the engine could not protect this image")
                if state["state"] == "cancelled":
                    raise EngineCancelled(state.get("error") or "cancelled")
                time.sleep(poll)
        finally:
            try:
                self.delete(job_id)
            except EngineError:
                pass  # already gone, or the engine stopped: nothing left to free


# A copy of what the engine serves at ``GET /options`` under "choices" (``options.editor_choices()``),
# for plug-ins to build their controls from before an engine runs. A test checks it against the schema.
BUNDLED_OPTIONS: dict = {
    "method": {
        "default": "style",
        "help": "style: cloak the style; concept: poison the concept (needs an anchor); edit: shield edits",
        "choices": [
            {"value": "style", "label": "Style cloak (against style mimicry)"},
            {"value": "concept", "label": "Concept poison (against concept training)"},
            {"value": "edit", "label": "Edit shield (against img2img and inpainting)"},
        ],
    },
    "intensity": {
        "default": "default",
        "help": "the perceptual budget: how much may change",
        "choices": [
            {"value": "low", "label": "Low (least visible)"},
            {"value": "default", "label": "Default"},
            {"value": "high", "label": "High (strongest)"},
        ],
    },
    "quality": {
        "default": "default",
        "help": "the effort: steps and robustness to purification",
        "choices": [
            {"value": "fast", "label": "Fast"},
            {"value": "default", "label": "Default"},
            {"value": "slow", "label": "Slow (most robust)"},
        ],
    },
    "models": {
        "default": None,
        "help": "encoder file, folder, name or hub id; repeat for an ensemble (default: the best one found)",
    },
    "steps": {
        "default": None,
        "help": "optimisation steps instead of the quality preset's",
        "ge": 1,
        "le": 10000,
    },
    "seed": {
        "default": 0,
        "help": "random seed (same seed, same result)",
        "ge": 0,
        "le": 18446744073709551615,
    },
    "format": {
        "default": "png",
        "help": "output format",
        "choices": [
            {"value": "png", "label": "PNG"},
            {"value": "jpg", "label": "JPEG"},
            {"value": "webp", "label": "WebP"},
            {"value": "tif", "label": "TIFF"},
        ],
    },
}


def option_choices(client: EngineClient | None = None) -> dict:
    """The choices a running engine serves, else the bundled copy (never an error)."""
    if client is not None:
        try:
            served = client.options().get("choices")
        except (EngineError, AttributeError):
            served = None
        if isinstance(served, dict) and served:
            return served
    return BUNDLED_OPTIONS


def choice_values(choices: dict, name: str) -> list:
    """The values of one option's choices, e.g. ``["style", "concept", "edit"]``."""
    return [item["value"] for item in (choices.get(name) or {}).get("choices", [])]


def _two(value: Any) -> str:
    """Two decimals; three under 0.01, so a small null beside its ratio reads as what it is."""
    digits = 3 if 0 < abs(float(value)) < 0.01 else 2
    text = f"{float(value):.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def _beside_noise(value: Any, noise: Any, times: Any = None) -> str:
    """``0.25 (matched noise 0.01, 18×)``: a figure and its null, the ratio only where it means something."""
    if value is None:
        return "not measured"
    if noise is None:
        return f"{_two(value)} (matched noise not measured)"
    ratio = f", {float(times):.0f}×" if times is not None else ""
    return f"{_two(value)} (matched noise {_two(noise)}{ratio})"


def summarise(report: dict) -> str:
    """One line an artist can read from a protection's report, each model figure beside its null.

    Every host shows this same line (CLI, server clients, Krita, GIMP, ComfyUI): strength toward the
    target and how far what the model sees moved, each beside matched noise (the same per-pixel |change|
    with random signs, on the same image), for a large picture what a copy served at half size keeps, then
    how visible (flattest areas, PSNR, largest change) and
    how long. A figure the report lacks says "not measured"; nothing is filled in."""
    if not report:
        return ""
    encoders = [e for e in report.get("encoders") or [] if isinstance(e, dict)]
    first = encoders[0] if encoders else {}
    parts = [
        "strength "
        + _beside_noise(report.get("strength"), first.get("noise_strength"), first.get("vs_noise"))
    ]
    seen = next((e for e in encoders if e.get("decoded_share") is not None), None)
    if seen is not None:
        parts.append(
            "what the model sees "
            + _beside_noise(seen["decoded_share"], seen.get("noise_decoded_share"))
            + " of the way"
        )
    served = report.get("served")  # a large picture: the copy a site shows at half its size
    if isinstance(served, dict) and served.get("strength") is not None:
        parts.append(
            "a copy served at half size keeps "
            + _beside_noise(served["strength"], served.get("noise_strength"))
        )
    perceptual = report.get("perceptual") or {}
    if perceptual.get("flat_rms_255") is not None:
        parts.append(f"flat areas {float(perceptual['flat_rms_255']):.1f}/255 RMS")
    if perceptual.get("psnr_db") is not None:
        parts.append(f"PSNR {float(perceptual['psnr_db']):.1f} dB")
    if perceptual.get("linf_255") is not None:
        parts.append(f"max change {float(perceptual['linf_255']):.0f}/255")
    if report.get("seconds") is not None:
        parts.append(f"{float(report['seconds']):.1f} s")
    names = [e.get("name") or e.get("family") for e in encoders]
    if any(names):
        parts.append("models: " + ", ".join(n for n in names if n))
    verified = report.get("verify")
    if isinstance(verified, dict) and verified.get("verdict"):
        parts.append(f"check: {verified['verdict']}")
    return ", ".join(parts)


def write_atomically(path: str | Path, data: bytes, replace: bool = True) -> Path:
    """Write a whole file or nothing: a temporary beside it, then a rename, so a crash or a full disk
    never leaves half an image (or half a config) where the previous one was.

    The file gets the permissions a plain save would give it (the replaced file's, else 0666 less the
    umask), not the temporary's private 0600. With ``replace=False`` an existing file is never clobbered,
    even one that appeared meanwhile: ``FileExistsError``. It lives here because this is the one module
    every host has, the editors included.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file stands where the folder should be; FileExistsError means the target
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(path.parent)) from None
    fd, temp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp, _plain_save_mode(path))
        if replace:
            os.replace(temp, path)
        else:
            _link_unless_exists(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise
    return path


def _link_unless_exists(temp: str, path: Path) -> None:
    """Move ``temp`` to ``path`` only if nothing is there; a hard link makes that one atomic step."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links on this file system (FAT, exFAT, some shares): check, then rename
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "File exists", str(path)) from None
        os.replace(temp, path)
    else:
        os.unlink(temp)


def _plain_save_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _start_command(command: list[str]) -> list[str]:
    """The recorded command, told to print its ready line and pick a free port unless one was fixed."""
    command = list(command)
    if "--ready-line" not in command:
        command.append("--ready-line")
    if "--port" not in command and not any(part.startswith("--port=") for part in command):
        command += ["--port", "0"]
    return command


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def ensure_engine(timeout: float = 180.0) -> EngineClient:
    """A client for the running engine; starts the recorded engine command first when none runs.

    The engine is started detached (it outlives the editor's plug-in process) with ``--ready-line``;
    its log goes to ``config_dir()/server.log``.
    """
    client = EngineClient.discover()
    if client is not None:
        return client
    command = read_engine_command()
    if command is None:
        raise EngineNotInstalled(
            "the Fixative engine is not installed: install it (pip install fixative) "
            "and run `fixative install <editor>` once, which records how to start it in "
            f"{config_dir() / ENGINE_FILE}"
        )
    executable = command[0]
    if shutil.which(executable) is None and not Path(executable).is_file():
        raise EngineNotInstalled(
            f"the Fixative engine command {executable!r} is missing; reinstall Fixative "
            "and run `fixative install <editor>` again"
        )
    folder = config_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG_FILE
    return _wait_until_ready(_spawn(command, log_path), log_path, timeout)


def _spawn(command: list[str], log_path: Path) -> subprocess.Popen:
    """Start the engine detached from this process, its stderr going to the log."""
    kwargs: dict[str, Any] = {}
    if sys.platform == "win32":
        flags = 0x00000008 | 0x00000200 | 0x08000000  # DETACHED_PROCESS | NEW_PROCESS_GROUP | NO_WINDOW
        kwargs["creationflags"] = flags
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "ab") as log:
        try:
            return subprocess.Popen(
                _start_command(command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                **kwargs,
            )
        except OSError as exc:
            raise EngineNotInstalled(f"could not start the Fixative engine ({command[0]}): {exc}") from None


def _wait_until_ready(process: subprocess.Popen, log_path: Path, timeout: float) -> EngineClient:
    """Read the engine's stdout until its ready line (or its exit, or the timeout)."""
    lines: queue.Queue = queue.Queue()

    def read_stdout() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            lines.put(raw.decode("utf-8", errors="replace"))
        lines.put(None)

    threading.Thread(target=read_stdout, name="fixative-engine-ready", daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            process.terminate()
            raise EngineError(f"the Fixative engine did not start within {timeout:.0f} s; see {log_path}")
        try:
            line = lines.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            continue
        if line is None:  # the engine exited before it was ready; maybe another one won the race
            process.wait()
            client = EngineClient.discover()
            if client is not None:
                return client
            detail = _log_tail(log_path)
            reason = f": {detail}" if detail else ""
            raise EngineError(f"the Fixative engine stopped while starting{reason}; see {log_path}")
        if line.startswith(READY_PREFIX):
            info = json.loads(line[len(READY_PREFIX) :])
            return EngineClient(info["url"], token=read_token())
