"""Who the engine is and what it offers: hello (the identity proof), health, models, options, shutdown."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from ....fixative_client import proof
from ....load.decode import MAX_PIXELS
from ....options import JobOptions, editor_choices
from ....version import __version__
from ..errors import ApiError

router = APIRouter()


@router.get("/hello", summary="proof that this engine holds the token (no token needed)")
def hello(request: Request, nonce: str = Query(min_length=16, max_length=128)) -> dict:
    """Clients ask before they send the token: a program squatting on a dead engine's port cannot answer."""
    return {"service": "fixative", "version": __version__, "proof": proof(request.app.state.token, nonce)}


@router.get("/health", summary="version, devices, loaded models, queue")
def health(request: Request) -> dict:
    from ....models import CACHE

    manager = request.app.state.manager
    settings = manager.settings
    return {
        "status": "ok",
        "version": __version__,
        "devices": settings.devices,
        "device": settings.devices[0],
        "ready": sorted(manager.ready_devices) == sorted(settings.devices),
        "models_loaded": CACHE.loaded(),
        "queue": manager.counts(),
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": min(settings.max_pixels, MAX_PIXELS),
        },
    }


@router.get("/models", summary="encoders this engine can use")
def models() -> list[dict]:
    from ....models import CACHE, find_models
    from ....plugins import hooks

    loaded = set(CACHE.loaded())
    return [dict(entry.as_dict(), loaded=entry.name in loaded) for entry in find_models(hooks())]


@router.get("/options", summary="the options a job takes: choices for plug-ins, and the JSON schema")
def options(host: str = Query("editors", pattern="^(editors|web)$")) -> dict:
    """``host=web``: the choices the web page offers (editors' plus the targets' text options)."""
    return {"choices": editor_choices(host), "schema": JobOptions.model_json_schema()}


@router.post("/shutdown", summary="stop the engine (what `fixative serve --stop` calls)")
def shutdown(request: Request) -> dict:
    stop = request.app.state.request_shutdown
    if stop is None:
        raise ApiError(409, "this engine cannot be stopped over HTTP")
    stop()
    return {"stopping": True}
