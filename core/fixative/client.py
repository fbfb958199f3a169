"""``fixative.client``: the pipeline client as README documents it (it lives in ``fixative.hosts.client``)."""

from .hosts.client import (  # noqa: F401
    Client,
    JobCancelled,
    JobFailed,
    ServerError,
    ServerNotRunning,
    ServerResult,
    Unauthorised,
)
