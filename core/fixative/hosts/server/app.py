"""The HTTP API of ``fixative serve`` (FastAPI): the app, its error handlers and its routers.

Routes live in ``routes/`` (``engine``: hello, health, models, options, shutdown; ``jobs``: the queue;
``downloads``: getting an encoder; ``page``: the web page and its one-time tickets);
``gate.Gate`` checks Host, Origin, token and upload size before any of them runs. Errors are always JSON
``{"error": "one human line"}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from ...version import __version__
from .errors import ApiError
from .gate import Gate, UploadTooLarge
from .jobs import JobManager
from .routes import downloads, engine, jobs, page
from .sessions import Sessions


def create_app(
    manager: JobManager,
    token: str,
    request_shutdown: Callable[[], None] | None = None,
    on_stopped: Callable[[], None] | None = None,
    extra_hosts: tuple[str, ...] = (),
) -> FastAPI:
    """The ASGI app; it starts the manager's workers on startup and stops them (removing files) at the end."""

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
        description="Local engine that protects artworks; editor plug-ins and pipelines submit jobs.",
    )
    app.state.manager = manager
    app.state.token = token
    app.state.request_shutdown = request_shutdown
    app.state.sessions = sessions = Sessions()
    limit = manager.settings.max_upload_bytes + 64 * 1024
    app.add_middleware(
        Gate,
        token=token,
        limit=lambda: limit,
        public=("/hello", "/"),
        extra_hosts=extra_hosts,
        session=sessions.accepts,
    )
    add_error_handlers(app)
    app.include_router(engine.router)
    app.include_router(jobs.router)
    app.include_router(downloads.router)
    app.include_router(page.router)
    return app


def add_error_handlers(app: FastAPI) -> None:
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
