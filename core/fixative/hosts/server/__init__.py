"""The local engine server (``fixative serve``): a FastAPI app over a per-device job queue.

Editors and pipelines reach the engine through it, with ``fixative.client`` or the
standard-library ``fixative.fixative_client`` that editor plug-ins carry. Names are imported on
first use, so that ``fixative --help`` does not pay for loading FastAPI and uvicorn.
"""

from __future__ import annotations

from ...lazy import exports

_EXPORTS = {
    "create_app": "app",
    **dict.fromkeys(("Job", "JobManager", "ServerSettings"), "jobs"),
    **dict.fromkeys(("RunningServer", "ensure_token", "start_in_thread"), "runtime"),
}

__all__ = sorted(_EXPORTS)


__getattr__ = exports(__name__, _EXPORTS)
