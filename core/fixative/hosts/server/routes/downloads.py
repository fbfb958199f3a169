"""Getting an encoder through the engine (the plug-ins' and web page's "Get the recommended encoder"):
``POST /models/get/{name}`` starts it, ``GET`` reports progress, ``DELETE`` cancels. One download per name;
the same checked, pickle-free ``models.hub.get`` as ``fixative models --get``."""

from __future__ import annotations

import threading

from fastapi import APIRouter

from ..errors import ApiError

router = APIRouter()
_downloads: dict[str, dict] = {}
_lock = threading.Lock()


def _state(name: str) -> dict:
    with _lock:
        entry = _downloads.get(name)
        if entry is None:
            raise ApiError(404, f"no download of {name!r} was started")
        return {k: v for k, v in entry.items() if k != "cancel"}


@router.post("/models/get/{name}", summary="download an encoder from the hub, checked by SHA-256")
def start(name: str) -> dict:
    from ....errors import FixativeError
    from ....models import hub

    try:
        hub.lookup(name)
    except FixativeError as exc:
        raise ApiError(400, str(exc)) from None
    with _lock:
        running = _downloads.get(name)
        if running is not None and running["state"] == "running":
            return {k: v for k, v in running.items() if k != "cancel"}
        entry = {"name": name, "state": "running", "file": None, "done": 0, "total": 0, "error": None}
        entry["cancel"] = threading.Event()
        _downloads[name] = entry

    def progress(filename: str, done: int, total: int) -> None:
        with _lock:
            entry.update(file=filename, done=done, total=total)

    def work() -> None:
        try:
            paths = hub.get(name, progress=progress, cancel=entry["cancel"])
        except hub.DownloadCancelled:
            outcome = {"state": "cancelled"}
        except FixativeError as exc:
            outcome = {"state": "failed", "error": str(exc)}
        else:
            from ....models import CACHE

            CACHE.clear()
            outcome = {"state": "done", "paths": [str(p) for p in paths]}
        with _lock:
            entry.update(outcome)

    threading.Thread(target=work, name=f"fixative-get-{name}", daemon=True).start()
    return _state(name)


@router.get("/models/get/{name}", summary="progress of a download")
def status(name: str) -> dict:
    return _state(name)


@router.delete("/models/get/{name}", summary="cancel a download (nothing is kept)")
def cancel(name: str) -> dict:
    with _lock:
        entry = _downloads.get(name)
        if entry is None:
            raise ApiError(404, f"no download of {name!r} was started")
        entry["cancel"].set()
    return _state(name)
