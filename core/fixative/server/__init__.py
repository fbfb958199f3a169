"""The local engine server (``fixative serve``): a FastAPI app over a per-device job queue.

Editors and pipelines reach the engine through it, with ``fixative.client`` (requests) or the
standard-library ``fixative.hosts.fixative_client`` that editor plug-ins carry.
"""

from .app import create_app
from .jobs import Job, JobManager, ServerSettings
from .runtime import RunningServer, ensure_token, start_in_thread

__all__ = [
    "Job",
    "JobManager",
    "RunningServer",
    "ServerSettings",
    "create_app",
    "ensure_token",
    "start_in_thread",
]
