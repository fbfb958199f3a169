"""Talking to ``fixative serve`` without ever blocking Krita's GUI thread.

Every network call (and starting the engine) happens on a worker thread; the GUI reads ``snapshot()``
from a QTimer. The client is the standard-library ``fixative_client`` that ``fixative install krita``
copies next to this package.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TypeVar

try:  # installed: copied into the package by ``fixative install krita``
    from . import fixative_client as client  # type: ignore[attr-defined]
except ImportError:  # running from a source checkout with the engine installed in the same Python
    try:
        from fixative import fixative_client as client
    except ImportError:  # pragma: no cover - reported to the user by engine_status/ProtectJob
        client = None

NOT_INSTALLED_HELP = (
    "The Fixative engine is not installed for this user. In a terminal run "
    "`pip install fixative` and then `fixative install krita`, and restart Krita."
)

RECOMMENDED_ENCODER = "taef2"
NO_ENCODER = "no image encoder found"  # how the engine says it (fixative.models.discovery)
FINISHED = client.TERMINAL_STATES if client is not None else ("done", "failed", "cancelled")
_served: dict = {"choices": None, "version": 0}  # the running engine's option choices, once asked


def option_choices() -> dict:
    """Choices for the form: the running engine's (``GET /options``) once known, else the bundled copy."""
    if _served["choices"]:
        return _served["choices"]
    return client.BUNDLED_OPTIONS if client is not None else {}


def choices_version() -> int:
    """Bumped whenever the engine's choices arrive or change (the docker then rebuilds its combos)."""
    return _served["version"]


def remember_choices(engine) -> None:
    if client is None:
        return
    choices = client.option_choices(engine)
    if choices is not client.BUNDLED_OPTIONS and choices != _served["choices"]:
        _served["choices"] = choices
        _served["version"] += 1


def client_module():
    if client is None:
        raise RuntimeError(
            "fixative_client.py is missing from the plug-in; run `fixative install krita` again"
        )
    return client


def default_client_factory():
    """A ready client: a running server, else the engine command recorded by the installer, started now."""
    return client_module().ensure_engine()


_Work = TypeVar("_Work", bound="BackgroundWork")


class BackgroundWork(ABC):
    """Work on a daemon thread whose state the GUI polls with ``snapshot()``; ``cancel()`` only asks.

    Subclasses set ``thread_name`` and ``cancelling`` (the message while a cancel is pending) and write
    ``_run``, which ends in a finished state (see ``FINISHED``)."""

    thread_name = "fixative-work"
    cancelling = "Cancelling…"

    def __init__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = state

    def start(self: _Work) -> _Work:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()
        self._update(message=self.cancelling)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._state)

    @property
    def finished(self) -> bool:
        return self.snapshot()["state"] in FINISHED

    def wait(self, timeout: float | None = None) -> dict:
        """For scripts and tests only; the GUI never waits."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.snapshot()

    def _update(self, **values) -> None:
        with self._lock:
            self._state.update(values)

    @abstractmethod
    def _run(self) -> None:
        """The work itself, on the thread; it ends by setting a finished state."""


class ProtectJob(BackgroundWork):
    """One protection request running on a worker thread; the GUI polls ``snapshot()``."""

    thread_name = "fixative-protect"

    def __init__(
        self,
        image_bytes: bytes,
        options: dict,
        filename: str = "image.png",
        client_factory: Callable[[], object] | None = None,
        mask: bytes | None = None,
    ) -> None:
        self.image_bytes = image_bytes
        self.mask = mask  # PNG, white where the engine may change pixels
        self.options = dict(options)
        self.filename = filename
        self.client_factory = client_factory or default_client_factory
        super().__init__(
            {
                "state": "starting",
                "progress": 0.0,
                "step": 0,
                "total": 0,
                "eta": None,
                "message": "Starting the Fixative engine…",
                "error": None,
            }
        )
        self.result_bytes: bytes | None = None
        self.report: dict | None = None
        self.started_at = time.monotonic()

    def _on_progress(self, status: dict) -> None:
        total = int(status.get("total") or 0)
        step = int(status.get("step") or 0)
        progress = float(status.get("progress") or (step / total if total else 0.0))
        eta = status.get("eta")
        message = f"Protecting: step {step} of {total}" if total else "Protecting…"
        if eta is not None:
            message += f", about {format_eta(float(eta))} left"
        if status.get("doing"):  # after the last step: the engine measures what it made
            message = f"Measuring {status['doing']}…"
        if status.get("state") == "queued":
            message = "Waiting for the engine (another job is running)…"
        self._update(state="running", progress=progress, step=step, total=total, eta=eta, message=message)

    def _run(self) -> None:
        try:
            engine = self.client_factory()
            if self._cancel.is_set():
                self._update(state="cancelled", message="Cancelled; nothing was changed.")
                return
            self._update(state="running", message="Protecting…")
            extra = {"mask": self.mask} if self.mask is not None else {}
            data, report = engine.protect(
                self.image_bytes,
                options=self.options,
                filename=self.filename,
                on_progress=self._on_progress,
                should_cancel=self._cancel.is_set,
                **extra,
            )
        except Exception as exc:  # the worker must always end in a state the GUI can show
            if self._cancel.is_set():
                self._update(state="cancelled", message="Cancelled; nothing was changed.")
                return
            self._update(state="failed", error=describe_error(exc), message=describe_error(exc))
            return
        if self._cancel.is_set():
            self._update(state="cancelled", message="Cancelled; nothing was changed.")
            return
        self.result_bytes, self.report = data, report or {}
        self._update(state="done", progress=1.0, message="Protected.")


def needs_encoder(message: str | None) -> bool:
    """Whether a message is the engine's "no image encoder found" (the docker then offers to get one)."""
    return NO_ENCODER in (message or "").lower()


class EncoderDownload(BackgroundWork):
    """ "Get the recommended encoder": the engine downloads it and checks its SHA-256; the GUI polls
    ``snapshot()`` and may ``cancel()`` (nothing is kept then)."""

    thread_name = "fixative-get-encoder"
    cancelling = "Cancelling the download…"

    def __init__(self, client_factory: Callable[[], object] | None = None, name: str = RECOMMENDED_ENCODER):
        self.client_factory = client_factory or default_client_factory
        self.name = name
        super().__init__({"state": "running", "progress": 0.0, "message": f"Getting the {name} encoder…"})

    def _on_progress(self, status: dict) -> None:
        total, done = int(status.get("total") or 0), int(status.get("done") or 0)
        file = status.get("file") or self.name
        self._update(
            progress=done / total if total else 0.0,
            message=f"Downloading {file}: {done >> 20} of {total >> 20} MB",
        )

    def _run(self) -> None:
        try:
            engine = self.client_factory()
            engine.get_model(self.name, on_progress=self._on_progress, should_cancel=self._cancel.is_set)
        except Exception as exc:  # one line the docker can show
            if self._cancel.is_set():
                self._update(state="cancelled", message="Download cancelled; nothing was kept.")
            else:
                self._update(state="failed", message=f"Could not get the encoder: {describe_error(exc)}")
            return
        self._update(state="done", progress=1.0, message=f"The {self.name} encoder is ready (checked).")


def describe_error(exc: BaseException) -> str:
    """One line a person can act on (never a traceback)."""
    module = client
    if module is not None and isinstance(exc, module.EngineNotInstalled):
        return f"{exc} {NOT_INSTALLED_HELP}" if "install" not in str(exc) else str(exc)
    if module is not None and isinstance(exc, module.EngineNotRunning):
        return f"The Fixative engine is not running and could not be started: {exc}"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text


def format_eta(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class EngineStatus:
    """'running / not running / not installed' for the docker, found on a worker thread."""

    def __init__(
        self, discover: Callable[[], object] | None = None, engine_recorded: Callable[[], bool] | None = None
    ) -> None:
        self._discover = discover
        self._engine_recorded = engine_recorded
        self._lock = threading.Lock()
        self._text = "Checking the Fixative engine…"
        self._state = "checking"
        self._busy = False

    def snapshot(self) -> tuple[str, str]:
        with self._lock:
            return self._state, self._text

    def set(self, state: str, text: str) -> None:
        with self._lock:
            self._state, self._text = state, text

    def refresh(self) -> None:
        """Start a background check unless one is already under way."""
        with self._lock:
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._check, name="fixative-health", daemon=True).start()

    def check_now(self) -> tuple[str, str]:
        self._check()
        return self.snapshot()

    def _check(self) -> None:
        try:
            module = client_module() if self._discover is None or self._engine_recorded is None else None
            discover = self._discover or module.EngineClient.discover
            recorded = self._engine_recorded or engine_recorded
            engine = discover()
            if engine is not None:
                try:
                    version = engine.health().get("version", "")
                    remember_choices(engine)
                    encoders = engine.models() if hasattr(engine, "models") else None
                except Exception:
                    version, encoders = "", None
                if encoders == []:
                    self.set(
                        "no-encoder",
                        "Engine running, but it has no image encoder: press 'Get the recommended encoder'.",
                    )
                else:
                    self.set("running", f"Engine running{' (' + version + ')' if version else ''}.")
            elif recorded():
                self.set(
                    "stopped",
                    "Engine not running; it starts by itself when you protect (takes a few "
                    "seconds the first time).",
                )
            else:
                self.set("missing", NOT_INSTALLED_HELP)
        except Exception as exc:
            self.set("missing", describe_error(exc))
        finally:
            with self._lock:
                self._busy = False


def engine_recorded() -> bool:
    """Whether the installer recorded an engine command (``engine.json`` in the config folder)."""
    module = client_module()
    return (module.config_dir() / "engine.json").is_file()
