"""The HTTP API of ``fixative serve`` (FastAPI): health, models, jobs, results, progress events.

Every route needs ``Authorization: Bearer <token>`` except the OpenAPI schema and its docs page, which
hold no user data. Errors are always JSON ``{"error": "one human line"}``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import time
import warnings
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import BadImageError, BadParameterError, FixativeError
from ..load import MAX_PIXELS, load_bytes
from ..presets import intensity as intensity_preset
from ..presets import quality as quality_preset
from .jobs import FORMATS, TERMINAL, JobManager, JobNotFound, QueueFull

PUBLIC_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect"}
PROTECT_OPTIONS = {
    "method",
    "intensity",
    "quality",
    "models",
    "concept",
    "anchor",
    "style",
    "pattern",
    "pipeline",
    "epsilon",
    "steps",
    "optimizer",
    "lpips_weight",
    "texture_aware",
    "tile",
    "dtype",
    "seed",
}
SERVER_OPTIONS = {"format", "check", "preview", "lease_seconds", "jpeg_quality", "device"}


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UploadTooLarge(Exception):
    """Raised from inside ``receive`` when a request body passes the upload limit."""


class Gate:
    """ASGI middleware: the token (401) and the upload limit (413) are checked before any route runs.

    A refused body is read to the end and dropped, so the client always gets to read the answer (closing
    a socket with unread data would reset the connection instead).
    """

    def __init__(self, app: ASGIApp, token: str, limit: Callable[[], int]) -> None:
        self.app = app
        self.token = token.encode()
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["path"] not in PUBLIC_PATHS:
            scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not given.strip():
                await _drain(receive)
                await _json(
                    send,
                    401,
                    "missing token: send 'Authorization: Bearer <token>' (the token is in "
                    "the Fixative config folder)",
                )
                return
            if not secrets.compare_digest(given.strip(), self.token):
                await _drain(receive)
                await _json(send, 401, "wrong token")
                return
        limit = self.limit()
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _drain(receive)
            await _json(send, 413, f"upload is larger than the {_mib(limit)} limit of this engine")
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body"):
                        await _drain(receive)
                    raise UploadTooLarge(f"upload is larger than the {_mib(limit)} limit of this engine")
            return message

        await self.app(scope, counting_receive, send)


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def parse_options(raw: str | None, devices: list[str]) -> dict:
    """Check the JSON options of POST /jobs; returns protect kwargs plus the server-side extras."""
    try:
        options = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ApiError(400, f"options is not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ApiError(400, "options must be a JSON object")
    options = {k: v for k, v in options.items() if v is not None}
    if "target" in options or "mask" in options:
        raise ApiError(400, "send target and mask images as the multipart files 'target' and 'mask'")
    unknown = sorted(set(options) - PROTECT_OPTIONS - SERVER_OPTIONS)
    if unknown:
        raise ApiError(
            400,
            f"unknown option {unknown[0]!r}; known: {', '.join(sorted(PROTECT_OPTIONS | SERVER_OPTIONS))}",
        )
    if options.get("method", "style") not in ("style", "concept", "edit"):
        raise ApiError(400, f"unknown method {options['method']!r}; use style, concept or edit")
    try:
        intensity_preset(str(options.get("intensity", "default")))
        quality_preset(str(options.get("quality", "default")))
    except BadParameterError as exc:
        raise ApiError(400, str(exc)) from None
    for name in ("steps", "seed", "tile", "jpeg_quality"):
        if name in options and (not isinstance(options[name], int) or isinstance(options[name], bool)):
            raise ApiError(400, f"{name} must be an integer")
    for name in ("epsilon", "lpips_weight", "lease_seconds"):
        if name in options and (
            not isinstance(options[name], (int, float)) or isinstance(options[name], bool)
        ):
            raise ApiError(400, f"{name} must be a number")
    if options.get("lease_seconds", 1) <= 0:
        raise ApiError(400, "lease_seconds must be > 0")
    models = options.get("models")
    if models is not None and not (
        isinstance(models, str) or (isinstance(models, list) and all(isinstance(m, str) for m in models))
    ):
        raise ApiError(400, "models must be a name or path, or a list of them")
    fmt = str(options.pop("format", "png")).lower().lstrip(".")
    if fmt not in FORMATS:
        raise ApiError(400, f"unknown format {fmt!r}; use png, jpg, webp or tif")
    device = options.pop("device", None)
    if device in ("auto", "any"):
        device = None
    if device is not None and device not in devices:
        raise ApiError(400, f"this engine runs on {', '.join(devices)}; device {device!r} is not served")
    extras = {
        "output_format": fmt,
        "want_check": bool(options.pop("check", False)),
        "want_preview": bool(options.pop("preview", False)),
        "lease_seconds": options.pop("lease_seconds", None),
        "jpeg_quality": int(options.pop("jpeg_quality", 95)),
        "device": device,
    }
    return {"protect": options, "extras": extras}


def _check_pixels(data: bytes, name: str, max_pixels: int) -> None:
    """413 for images with too many pixels, judged from the header before anything is decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        raise ApiError(413, f"{name}: image has more pixels than this engine accepts") from None
    except Exception:
        return  # not readable: load_bytes explains why (400)
    if width * height > max_pixels:
        raise ApiError(
            413, f"{name}: {width}x{height} has more than the {max_pixels:,} pixels this engine accepts"
        )


def _validate_image(data: bytes, name: str, max_pixels: int):
    _check_pixels(data, name, max_pixels)
    try:
        return load_bytes(data, name)
    except BadImageError as exc:
        raise ApiError(400, str(exc)) from None


def create_app(
    manager: JobManager,
    token: str,
    request_shutdown: Callable[[], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
) -> FastAPI:
    """The ASGI app; it starts the manager's workers on startup and stops them (removing files) at the end."""
    settings = manager.settings

    def max_pixels() -> int:
        return min(settings.max_pixels, MAX_PIXELS)

    bearer = HTTPBearer(auto_error=False, description="the token in the Fixative config folder")

    def authorised(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if credentials is None:
            raise ApiError(
                401,
                "missing token: send 'Authorization: Bearer <token>' (the token is in the "
                "Fixative config folder)",
            )
        if not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise ApiError(401, "wrong token")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        manager.start()
        try:
            yield
        finally:
            await run_in_threadpool(manager.shutdown)
            if on_stopped is not None:  # here, not after uvicorn returns: it re-raises SIGTERM on its way out
                on_stopped()

    app = FastAPI(
        title="Fixative engine",
        version=__version__,
        lifespan=lifespan,
        redoc_url=None,
        dependencies=[Depends(authorised)],
        description="Local engine that protects artworks; editor plug-ins and pipelines submit jobs.",
    )
    app.add_middleware(Gate, token=token, limit=lambda: settings.max_upload_bytes + 64 * 1024)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.status == 429:
            headers = {"Retry-After": "5"}
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    @app.exception_handler(UploadTooLarge)
    async def too_large(request: Request, exc: UploadTooLarge) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=413)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        return JSONResponse(
            {"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=400)

    def job_or_404(job_id: str, touch: bool = True):
        try:
            return manager.get(job_id, touch)
        except JobNotFound as exc:
            raise ApiError(404, str(exc)) from None

    @app.get("/health", summary="version, devices, loaded models, queue")
    def health() -> dict:
        from ..models import CACHE

        return {
            "status": "ok",
            "version": __version__,
            "devices": settings.devices,
            "device": settings.devices[0],
            "ready": sorted(manager.ready_devices) == sorted(settings.devices),
            "models_loaded": CACHE.loaded(),
            "queue": manager.counts(),
            "limits": {"max_upload_bytes": settings.max_upload_bytes, "max_pixels": max_pixels()},
        }

    @app.get("/models", summary="encoders this engine can use")
    def models() -> list[dict]:
        from ..models import CACHE, find_models

        loaded = set(CACHE.loaded())
        return [dict(entry.as_dict(), loaded=entry.name in loaded) for entry in find_models()]

    @app.post(
        "/jobs",
        status_code=202,
        summary="queue a protection job",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary", "description": "the artwork"},
                                "options": {
                                    "type": "string",
                                    "description": "JSON object: fixative.protect options "
                                    "plus format, check, lease_seconds, jpeg_quality",
                                },
                                "target": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "target/anchor image",
                                },
                                "mask": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "grey image, white where pixels may change",
                                },
                            },
                        }
                    }
                },
            }
        },
    )
    async def submit(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise ApiError(400, "send the image as multipart/form-data with a 'file' field")
        async with request.form(max_files=3, max_fields=4) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ApiError(400, "no image: send it as the multipart file field 'file'")
            raw_options = form.get("options")
            parsed = parse_options(raw_options if isinstance(raw_options, str) else None, settings.devices)
            filename = (upload.filename or "image.png").replace("/", "_").replace("\\", "_")[-200:]
            data = await upload.read()
            extra_files = {}
            for name in ("target", "mask"):
                item = form.get(name)
                if isinstance(item, UploadFile):
                    extra_files[name] = await item.read()
        if len(data) > settings.max_upload_bytes:
            raise ApiError(
                413, f"upload is larger than the {_mib(settings.max_upload_bytes)} limit of this engine"
            )
        artwork = await run_in_threadpool(_validate_image, data, filename, max_pixels())
        for name, content in extra_files.items():
            extra = await run_in_threadpool(_validate_image, content, name, max_pixels())
            if name == "mask" and extra.size != artwork.size:
                raise ApiError(
                    400,
                    f"mask is {extra.size[0]}x{extra.size[1]} but the image is "
                    f"{artwork.size[0]}x{artwork.size[1]}",
                )
        del artwork
        try:
            job = manager.new_job(filename, parsed["protect"], **parsed["extras"])
        except FixativeError as exc:
            raise ApiError(400, str(exc)) from None
        job.upload.write_bytes(data)
        for name, content in extra_files.items():
            (job.folder / name).write_bytes(content)
        try:
            manager.enqueue(job)
        except QueueFull as exc:
            raise ApiError(429, str(exc)) from None
        return JSONResponse(manager.status(job.id), status_code=202, headers={"Location": f"/jobs/{job.id}"})

    @app.get("/jobs/{job_id}", summary="state, progress 0..1, step, ETA, error")
    def job_status(job_id: str) -> dict:
        job_or_404(job_id)
        return manager.status(job_id)

    @app.get("/jobs/{job_id}/result", summary="the protected image (base64) and the report")
    def job_result(job_id: str) -> dict:
        job = job_or_404(job_id)
        if job.state != "done":
            detail = f": {job.error}" if job.error else ""
            raise ApiError(409, f"job {job_id} is {job.state}{detail}; no result")
        assert job.result_path is not None
        try:
            image = job.result_path.read_bytes()
        except OSError:
            raise ApiError(404, f"the result of job {job_id} has expired") from None
        manager.mark_fetched(job)
        return {
            "id": job.id,
            "image_base64": base64.b64encode(image).decode("ascii"),
            "format": job.output_format.replace("jpeg", "jpg"),
            "report": job.report,
            "check": job.check,
        }

    @app.post("/jobs/{job_id}/cancel", summary="cancel a job (queued: at once; running: within a step)")
    def job_cancel(job_id: str) -> dict:
        job_or_404(job_id)
        return manager.cancel(job_id)

    @app.delete("/jobs/{job_id}", summary="forget a job and remove its files (cancels it if needed)")
    def job_delete(job_id: str) -> dict:
        job_or_404(job_id)
        manager.delete(job_id)
        return {"id": job_id, "deleted": True}

    @app.get(
        "/jobs/{job_id}/events",
        summary="server-sent events: the job's status on every change",
        response_class=StreamingResponse,
    )
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        job_or_404(job_id)

        async def stream():
            seen, quiet = -1, 0.0
            while True:
                try:
                    job = manager.get(job_id)  # touching it keeps its lease alive
                except JobNotFound:
                    yield "event: gone\ndata: {}\n\n"
                    return
                if job.version != seen:
                    seen, quiet = job.version, 0.0
                    status = manager.status(job_id, touch=False)
                    yield f"event: status\ndata: {json.dumps(status)}\n\n"
                    if status["state"] in TERMINAL:
                        return
                elif quiet >= 15.0:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                waited = time.monotonic()
                await asyncio.to_thread(manager.wait_for_change, job_id, seen, 0.5)  # woken on each step
                quiet += time.monotonic() - waited

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/shutdown", summary="stop the engine (what `fixative serve --stop` calls)")
    def shutdown() -> dict:
        if request_shutdown is None:
            raise ApiError(409, "this engine cannot be stopped over HTTP")
        request_shutdown()
        return {"stopping": True}

    return app
