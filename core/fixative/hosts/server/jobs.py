"""The job queue behind ``fixative serve``: one worker thread per device, FIFO, bounded.

Jobs outlive the HTTP requests that created them (a client may disconnect and come back), keep their
uploads in a private temporary folder that is removed as soon as the job ends, and keep results until
they are fetched or expire. A job may carry a *lease*: when nobody asks about it for that long (an editor
plug-in whose process was killed), it is cancelled so the engine does not work for nobody.
"""

from __future__ import annotations

import gc
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BadParameterError, Cancelled, FixativeError
from ...fixative_client import TERMINAL_STATES, process_alive
from ...options import FORMAT_SUFFIXES, JobOptions

log = logging.getLogger("fixative.server")

TERMINAL = TERMINAL_STATES
JOBS_PREFIX = "fixative-jobs-"


class QueueFull(FixativeError):
    """Too many jobs are waiting; the caller should retry later (HTTP 429)."""


class JobNotFound(FixativeError):
    """No job with that id (never existed, deleted, or expired)."""


@dataclass
class ServerSettings:
    """Limits and defaults of one server process (command-line flags of ``fixative serve``)."""

    devices: list[str] = field(default_factory=lambda: ["cpu"])
    dtype: str = "auto"
    models: list[str] | None = None  # encoders used when a job names none (None: auto-discover)
    max_queue: int = 16  # jobs waiting (not running) before POST /jobs answers 429
    max_upload_bytes: int = 64 * 1024 * 1024
    max_pixels: int = 40_000_000
    result_ttl: float = 3600.0  # seconds a finished job is kept when nobody fetches it
    fetched_ttl: float = 60.0  # seconds a result is kept after it was fetched (a retry may need it)
    allow_download: bool = False
    preload: bool = False  # load the default encoder on each device at start, so the first job is quick
    janitor_interval: float = 0.25


@dataclass(eq=False)
class Job:
    """One protection request and everything the API reports about it."""

    id: str
    filename: str
    folder: Path
    options: JobOptions  # validated at submit; device None: whichever worker is free first
    state: str = "queued"
    step: int = 0
    total: int = 0
    strength: float | None = None
    doing: str | None = None  # what is measured after the last step (the report, the check)
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    first_step_at: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    expires: float | None = None  # monotonic deadline once finished
    version: int = 0  # bumped on every change; the event stream watches it
    report: dict | None = None
    check: dict | None = None
    result_path: Path | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def lease_seconds(self) -> float | None:
        return self.options.lease_seconds

    @property
    def device(self) -> str | None:
        return self.options.device

    @property
    def upload(self) -> Path:
        return self.folder / "upload"

    @property
    def target_upload(self) -> Path:
        return self.folder / "target"

    @property
    def mask_upload(self) -> Path:
        return self.folder / "mask"

    def status(self, position: int | None = None) -> dict:
        progress = 1.0 if self.state == "done" else (self.step / self.total if self.total else 0.0)
        eta = None
        if self.state == "running" and self.step and self.started is not None and not self.doing:
            # Time per step from the steps themselves once there are two (model loading is not a step).
            if self.step >= 2 and self.first_step_at is not None:
                per_step = (time.time() - self.first_step_at) / (self.step - 1)
            else:
                per_step = (time.time() - self.started) / self.step
            eta = round(per_step * max(0, self.total - self.step), 2)
        return {
            "id": self.id,
            "state": self.state,
            "progress": round(progress, 4),
            "step": self.step,
            "total": self.total,
            "eta": eta,
            "doing": self.doing if self.state == "running" else None,  # measuring, after the last step
            "error": self.error,
            "strength": self.strength,
            "position": position,
            "filename": self.filename,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "cancel_requested": self.cancel_event.is_set() and self.state not in TERMINAL,
        }


class JobManager:
    """Owns the jobs, their folders and the worker threads; every method is thread-safe."""

    def __init__(self, settings: ServerSettings | None = None) -> None:
        self.settings = settings or ServerSettings()
        remove_stale_job_folders()
        # mode 0700: private to this user; the pid in the name tells a later engine whether it is stale
        self.root = Path(tempfile.mkdtemp(prefix=f"{JOBS_PREFIX}{os.getpid()}-"))
        self._jobs: dict[str, Job] = {}
        self._pending: list[Job] = []
        self._running: dict[str, Job] = {}
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.ready_devices: set[str] = set()

    # --- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        for device in self.settings.devices:
            thread = threading.Thread(
                target=self._work, args=(device,), name=f"fixative-worker-{device}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        janitor = threading.Thread(target=self._janitor, name="fixative-janitor", daemon=True)
        janitor.start()
        self._threads.append(janitor)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel everything, wait for the workers, and remove every upload and result."""
        self._stopping.set()
        with self._lock:
            for job in self._jobs.values():
                job.cancel_event.set()
            self._lock.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._jobs.clear()
            self._pending.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- API used by the HTTP layer -------------------------------------------------------------
    def new_job(self, filename: str, options: JobOptions) -> Job:
        """A job with its private folder; the caller writes the uploads into it, then calls ``enqueue``."""
        device = options.device
        if device is not None and device not in self.settings.devices:
            served = ", ".join(self.settings.devices)
            raise BadParameterError(
                f"this engine runs on {served}; device {device!r} is not served "
                f"(start it with `fixative serve --device {device}`)"
            )
        job_id = uuid.uuid4().hex
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        return Job(id=job_id, filename=filename, folder=folder, options=options)

    def enqueue(self, job: Job) -> None:
        with self._lock:
            if len(self._pending) >= self.settings.max_queue:
                shutil.rmtree(job.folder, ignore_errors=True)
                raise QueueFull(f"the queue is full ({len(self._pending)} jobs waiting); try again later")
            self._jobs[job.id] = job
            self._pending.append(job)
            self._lock.notify_all()
        log.info("job %s queued (%s)", job.id, job.filename)

    def get(self, job_id: str, touch: bool = True) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r} (it never existed, was deleted, or expired)")
            if touch:
                job.last_seen = time.monotonic()
            return job

    def status(self, job_id: str, touch: bool = True) -> dict:
        with self._lock:
            job = self.get(job_id, touch)
            position = self._pending.index(job) if job in self._pending else None
            return job.status(position)

    def mark_fetched(self, job: Job) -> None:
        with self._lock:
            deadline = time.monotonic() + self.settings.fetched_ttl
            job.expires = deadline if job.expires is None else min(job.expires, deadline)

    def cancel(self, job_id: str, reason: str = "cancelled") -> dict:
        """Stop a job: a queued one ends at once, a running one within one optimisation step."""
        with self._lock:
            job = self.get(job_id)
            if job.state not in TERMINAL:
                job.cancel_event.set()
                if job in self._pending:
                    self._pending.remove(job)
                    self._finish(job, "cancelled", reason)
                else:
                    job.error = reason
                    self._changed(job)
            return job.status()

    def delete(self, job_id: str) -> None:
        """Forget a job (cancelling it first if it still runs) and remove its files."""
        with self._lock:
            job = self.get(job_id)
            job.cancel_event.set()
            if job in self._pending:
                self._pending.remove(job)
            del self._jobs[job_id]
            running = job.id in self._running
            self._changed(job)
        if not running:  # a running job's worker removes the folder when it stops
            shutil.rmtree(job.folder, ignore_errors=True)

    def counts(self) -> dict:
        with self._lock:
            states = [job.state for job in self._jobs.values()]
            return {
                "waiting": len(self._pending),
                "running": len(self._running),
                "finished": sum(s in TERMINAL for s in states),
                "max_waiting": self.settings.max_queue,
            }

    # --- internals ------------------------------------------------------------------------------
    def _changed(self, job: Job) -> None:
        """Mark a change (lock held) and wake whoever waits on it: event streams, idle workers."""
        job.version += 1
        self._lock.notify_all()

    def wait_for_change(self, job_id: str, seen: int, timeout: float) -> None:
        """Block until the job's version differs from ``seen`` (or it is gone), at most ``timeout`` s."""
        with self._lock:
            self._lock.wait_for(
                lambda: job_id not in self._jobs or self._jobs[job_id].version != seen, timeout
            )

    def _finish(self, job: Job, state: str, error: str | None = None) -> None:
        """Record a final state (lock held) and start the expiry clock."""
        job.state = state
        job.error = error if state != "done" else None
        job.finished = time.time()
        job.expires = time.monotonic() + self.settings.result_ttl
        self._changed(job)
        for upload in (job.upload, job.target_upload, job.mask_upload):
            upload.unlink(missing_ok=True)
        if state != "done":  # nothing to fetch: the folder goes at once
            shutil.rmtree(job.folder, ignore_errors=True)

    def _next_job(self, device: str) -> Job | None:
        with self._lock:
            while not self._stopping.is_set():
                job = next((j for j in self._pending if j.device in (None, device)), None)
                if job is not None:
                    self._pending.remove(job)
                    self._running[job.id] = job
                    job.state = "running"
                    job.started = time.time()
                    self._changed(job)
                    return job
                self._lock.wait(0.5)
        return None

    def _work(self, device: str) -> None:
        if self.settings.preload:
            self._preload(device)
        self.ready_devices.add(device)
        while True:
            job = self._next_job(device)
            if job is None:
                return
            try:
                self._run(job, device)
            finally:
                with self._lock:
                    self._running.pop(job.id, None)
                    forgotten = job.id not in self._jobs
                if forgotten:
                    shutil.rmtree(job.folder, ignore_errors=True)
                _free_memory(device)

    def _preload(self, device: str) -> None:
        from ...models import load_encoders
        from ...plugins import hooks

        try:
            load_encoders(
                self.settings.models,
                hooks(),
                device=device,
                dtype=self.settings.dtype,
                allow_download=self.settings.allow_download,
            )
        except FixativeError as exc:
            log.warning("could not preload a model on %s: %s", device, exc)

    def engine_options(self, job: Job, device: str):
        """The job's protection options, with this engine's defaults where the job named none."""
        options = job.options.engine_options()
        update: dict = {"device": device, "allow_download": self.settings.allow_download}
        if options.models is None and self.settings.models:
            update["models"] = list(self.settings.models)
        if "dtype" not in job.options.model_fields_set:
            update["dtype"] = self.settings.dtype
        return options.model_copy(update=update)

    def _run(self, job: Job, device: str) -> None:
        started = time.perf_counter()
        try:
            out, report, check = self._protect(job, device)
        except Cancelled:
            with self._lock:
                self._finish(job, "cancelled", job.error or "cancelled")
            log.info("job %s cancelled", job.id)
            return
        except FixativeError as exc:
            with self._lock:
                self._finish(job, "failed", str(exc))
            log.info("job %s failed: %s", job.id, exc)
            return
        except Exception as exc:  # a bug: keep the engine alive, report one line, log the traceback
            log.exception("job %s crashed", job.id)
            with self._lock:
                first_line = (str(exc).splitlines() or [""])[0][:200]
                self._finish(job, "failed", f"internal error: {type(exc).__name__}: {first_line}")
            return
        with self._lock:
            if job.cancel_event.is_set():
                self._finish(job, "cancelled", job.error or "cancelled")
                return
            job.result_path, job.report, job.check = out, report, check
            job.step = job.total = max(job.total, int(report.get("steps", 0)))
            self._finish(job, "done")
        log.info(
            "job %s done in %.1f s (strength %.2f)", job.id, time.perf_counter() - started, report["strength"]
        )

    def _protect(self, job: Job, device: str) -> tuple[Path, dict, dict | None]:
        from ...api import protect, ready_for
        from ...load import load_bytes

        def on_progress(done: int, total: int, info: dict) -> None:
            with self._lock:
                job.step, job.total = done, total
                job.doing = info.get("doing") if info.get("phase") == "measure" else None
                if done == 1:
                    job.first_step_at = time.time()
                if info.get("strength") is not None:
                    job.strength = round(float(info["strength"]), 4)
                self._changed(job)

        options = self.engine_options(job, device)
        target = load_bytes(job.target_upload.read_bytes(), "target") if job.target_upload.exists() else None
        mask = _mask_array(job.mask_upload.read_bytes()) if job.mask_upload.exists() else None
        artwork = ready_for(
            load_bytes(job.upload.read_bytes(), job.filename), FORMAT_SUFFIXES[job.options.format]
        )
        result = protect(
            artwork,
            options=options,
            target=target,
            mask=mask,
            progress=on_progress,
            cancel=job.cancel_event.is_set,
        )
        if job.cancel_event.is_set():
            raise Cancelled()
        out = result.save(
            job.folder / f"protected{FORMAT_SUFFIXES[job.options.format]}",
            overwrite=True,
            jpeg_quality=job.options.jpeg_quality,
        )
        report = dict(result.report.to_dict(), source=job.filename)  # of the file as written
        if job.options.preview:
            on_progress(job.total, job.total, {"phase": "measure", "doing": "what the model sees, to show"})
            report.update(_model_view(result.rgb, options, device))
        del result
        check = None
        if job.options.check:
            on_progress(job.total, job.total, {"phase": "measure", "doing": "the quick check"})
            check = _run_check(out, job, device, options.dtype)
        return out, report, check

    def _janitor(self) -> None:
        """Cancel jobs whose lease ran out; forget finished jobs whose results expired."""
        while not self._stopping.wait(self.settings.janitor_interval):
            now = time.monotonic()
            expired, abandoned = [], []
            with self._lock:
                for job in self._jobs.values():
                    if job.state in TERMINAL:
                        if job.expires is not None and now >= job.expires:
                            expired.append(job.id)
                    elif (
                        job.lease_seconds
                        and now - job.last_seen > job.lease_seconds
                        and not job.cancel_event.is_set()
                    ):
                        abandoned.append(job)
            for job in abandoned:
                log.info("job %s: nobody polled it for %.0f s; cancelling", job.id, job.lease_seconds)
                try:
                    self.cancel(
                        job.id, f"cancelled: no client asked about this job for {job.lease_seconds:g} s"
                    )
                except JobNotFound:
                    pass
            for job_id in expired:
                try:
                    self.delete(job_id)
                except JobNotFound:
                    pass


def remove_stale_job_folders() -> None:
    """Job folders of engines that are gone (killed, crashed) hold uploaded artworks: remove them."""
    for folder in Path(tempfile.gettempdir()).glob(f"{JOBS_PREFIX}*"):
        pid = folder.name[len(JOBS_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)) and folder.is_dir():
            try:
                if folder.stat().st_uid == os.getuid():
                    shutil.rmtree(folder, ignore_errors=True)
            except (OSError, AttributeError):  # no getuid (Windows): leave it
                continue


def _mask_array(data: bytes):
    """A mask upload as an (H, W) float array: white where the perturbation may go."""
    import numpy as np

    from ...load import load_bytes

    artwork = load_bytes(data, "mask")
    return artwork.rgb.mean(dim=0).numpy().astype(np.float32)


def _model_view(rgb, options, device: str) -> dict:
    """The first encoder's decode of the protected image, as a PNG for the editors' previews."""
    import base64
    import io

    from PIL import Image

    from ...checks.measures import model_view
    from ...models import load_encoders
    from ...plugins import hooks

    encoder = load_encoders(options.models, hooks(), device=device, dtype=options.dtype)[0]
    if not encoder.has_decoder:
        return {"model_view_note": f"{encoder.name} has no decoder: no 'what the model sees' preview"}
    pixels = (model_view(encoder, rgb).permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return {"model_view_png_base64": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _run_check(path: Path, job: Job, device: str, precision: str) -> dict | None:
    """The quick verification ``fixative protect --verify`` runs."""
    from ...api import check

    try:
        models = job.options.models
        found = check(path, original=job.upload, models=models, device=device, fast=True, precision=precision)
        return found.to_dict()
    except FixativeError as exc:
        return {"error": str(exc)}


def _free_memory(device: str) -> None:
    """Give the memory of a finished or cancelled job back (tensors die with the job's frames)."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
