"""The protection queue over HTTP: submit, follow (status or server-sent events), fetch, cancel, forget.

Every option is validated at submit against the options schema (400 with the reason), before anything is
queued; the artwork, target and mask are decoded once there too.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import warnings

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ....errors import BadImageError, FixativeError
from ....load.decode import MAX_PIXELS, decode
from ....options import JobOptions
from ..errors import ApiError
from ..gate import mib
from ..jobs import TERMINAL, JobManager, JobNotFound, QueueFull

router = APIRouter()
UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "the artwork"},
                        "options": {"type": "string", "description": "JSON object: see GET /options"},
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
}


def manager_of(request: Request) -> JobManager:
    return request.app.state.manager


def parse_options(raw: str | None, devices: list[str]) -> JobOptions:
    """The JSON options of POST /jobs, validated by the schema; the device must be one this engine serves."""
    try:
        values = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ApiError(400, f"options is not valid JSON: {exc}") from None
    if not isinstance(values, dict):
        raise ApiError(400, "options must be a JSON object")
    if "target" in values or "mask" in values:
        raise ApiError(400, "send target and mask images as the multipart files 'target' and 'mask'")
    if values.get("device") in ("auto", "any"):
        values.pop("device")
    try:
        options = JobOptions.parse(values)
    except FixativeError as exc:
        raise ApiError(400, str(exc)) from None
    if options.device is not None and options.device not in devices:
        raise ApiError(
            400, f"this engine runs on {', '.join(devices)}; device {options.device!r} is not served"
        )
    return options


def check_pixels(data: bytes, name: str, max_pixels: int) -> None:
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
        return  # not readable: decode explains why (400)
    if width * height > max_pixels:
        raise ApiError(
            413, f"{name}: {width}x{height} has more than the {max_pixels:,} pixels this engine accepts"
        )


def validate_image(data: bytes, name: str, max_pixels: int):
    check_pixels(data, name, max_pixels)
    try:
        return decode(data, name).image
    except BadImageError as exc:
        raise ApiError(400, str(exc)) from None


def check_job(options: JobOptions, files: dict) -> None:
    """What the schema cannot see: inputs a method needs, and the encoders named."""
    if options.method == "concept" and "target" not in files and not (options.anchor and options.pipeline):
        raise ApiError(
            400,
            "concept poison needs an anchor image of the other concept (the multipart file 'target'), or "
            "'anchor' with a local diffusers 'pipeline'",
        )


async def read_form(request: Request, devices: list[str]):
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError(400, "send the image as multipart/form-data with a 'file' field")
    async with request.form(max_files=3, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(400, "no image: send it as the multipart file field 'file'")
        raw = form.get("options")
        options = parse_options(raw if isinstance(raw, str) else None, devices)
        filename = (upload.filename or "image.png").replace("/", "_").replace("\\", "_")[-200:]
        data = await upload.read()
        files = {}
        for name in ("target", "mask"):
            item = form.get(name)
            if isinstance(item, UploadFile):
                files[name] = await item.read()
    return options, filename, data, files


@router.post("/jobs", status_code=202, summary="queue a protection job", openapi_extra=UPLOAD_SCHEMA)
async def submit(request: Request) -> JSONResponse:
    manager = manager_of(request)
    settings = manager.settings
    options, filename, data, files = await read_form(request, settings.devices)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(
            413, f"upload is larger than the {mib(settings.max_upload_bytes)} limit of this engine"
        )
    check_job(options, files)
    max_pixels = min(settings.max_pixels, MAX_PIXELS)
    artwork = await run_in_threadpool(validate_image, data, filename, max_pixels)
    for name, content in files.items():
        extra = await run_in_threadpool(validate_image, content, name, max_pixels)
        if name == "mask" and extra.size != artwork.size:
            raise ApiError(
                400,
                f"mask is {extra.size[0]}x{extra.size[1]} but the image is "
                f"{artwork.size[0]}x{artwork.size[1]}",
            )
    del artwork
    try:
        job = manager.new_job(filename, options)
    except FixativeError as exc:
        raise ApiError(400, str(exc)) from None
    job.upload.write_bytes(data)
    for name, content in files.items():
        (job.folder / name).write_bytes(content)
    try:
        manager.enqueue(job)
    except QueueFull as exc:
        raise ApiError(429, str(exc)) from None
    return JSONResponse(manager.status(job.id), status_code=202, headers={"Location": f"/jobs/{job.id}"})


def job_or_404(manager: JobManager, job_id: str, touch: bool = True):
    try:
        return manager.get(job_id, touch)
    except JobNotFound as exc:
        raise ApiError(404, str(exc)) from None


@router.get("/jobs/{job_id}", summary="state, progress 0..1, step, ETA, error")
def job_status(job_id: str, request: Request) -> dict:
    manager = manager_of(request)
    job_or_404(manager, job_id)
    return manager.status(job_id)


@router.get("/jobs/{job_id}/result", summary="the protected image (base64) and the report")
def job_result(job_id: str, request: Request) -> dict:
    manager = manager_of(request)
    job = job_or_404(manager, job_id)
    if job.state != "done":
        detail = f": {job.error}" if job.error else ""
        raise ApiError(409, f"job {job_id} is {job.state}{detail}; no result")
    try:
        image = job.result_path.read_bytes()
    except (OSError, AttributeError):
        raise ApiError(404, f"the result of job {job_id} has expired") from None
    manager.mark_fetched(job)
    return {
        "id": job.id,
        "image_base64": base64.b64encode(image).decode("ascii"),
        "format": job.options.format,
        "report": job.report,
        "check": job.check,
    }


@router.post("/jobs/{job_id}/cancel", summary="cancel a job (queued: at once; running: within a step)")
def job_cancel(job_id: str, request: Request) -> dict:
    manager = manager_of(request)
    job_or_404(manager, job_id)
    return manager.cancel(job_id)


@router.delete("/jobs/{job_id}", summary="forget a job and remove its files (cancels it if needed)")
def job_delete(job_id: str, request: Request) -> dict:
    manager = manager_of(request)
    job_or_404(manager, job_id)
    manager.delete(job_id)
    return {"id": job_id, "deleted": True}


@router.get(
    "/jobs/{job_id}/events",
    summary="server-sent events: the job's status on every change",
    response_class=StreamingResponse,
)
async def job_events(job_id: str, request: Request) -> StreamingResponse:
    manager = manager_of(request)
    job_or_404(manager, job_id)
    return StreamingResponse(
        _events(manager, job_id, request),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(manager: JobManager, job_id: str, request: Request):
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


@router.post("/jobs/archive", summary="the results of finished jobs as one zip (the web page's 'all')")
async def jobs_archive(request: Request):
    """Body ``{"ids": [...]}``; each result under its upload's name with ``.protected`` and its format."""
    import zipfile
    from pathlib import PurePath

    from fastapi.responses import Response

    manager = manager_of(request)
    try:
        ids = (await request.json())["ids"]
        assert isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids)
    except Exception:
        raise ApiError(400, 'send {"ids": ["<job id>", ...]} with at least one finished job') from None
    buffer, names = io.BytesIO(), set()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # images are compressed already
        for job_id in ids:
            job = job_or_404(manager, job_id)
            if job.state != "done" or job.result_path is None or not job.result_path.exists():
                raise ApiError(409, f"job {job_id} ({job.filename}) has no result to download")
            stem = PurePath(job.filename.replace("\\", "/")).stem or "artwork"
            name, index = f"{stem}.protected{job.result_path.suffix}", 1
            while name in names:
                index += 1
                name = f"{stem}-{index}.protected{job.result_path.suffix}"
            names.add(name)
            archive.writestr(name, job.result_path.read_bytes())
    return Response(
        buffer.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="fixative-protected.zip"'},
    )
