"""The local engine server (``fixative serve``): a FastAPI app over a per-device job queue.

Editors and pipelines reach the engine through it, with ``fixative.client`` (requests) or the
standard-library ``fixative.hosts.fixative_client`` that editor plug-ins carry. Names are imported on
first use, so that ``fixative --help`` does not pay for loading FastAPI and uvicorn.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "create_app": "app",
    "Job": "jobs",
    "JobManager": "jobs",
    "ServerSettings": "jobs",
    "RunningServer": "runtime",
    "ensure_token": "runtime",
    "start_in_thread": "runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
