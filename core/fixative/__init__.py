"""Fixative: protection for artworks against diffusion models.

The data path reads as the package does: ``load`` -> ``targets`` -> ``optimise`` -> ``checks`` -> ``save``,
with ``models`` (the encoders) beneath and ``hosts`` (CLI, engine server, installers) above the ``api``.
``protect`` and ``check`` are what hosts call. Names are imported on first use, so ``fixative --help``
does not load torch.
"""

from __future__ import annotations

from .lazy import exports
from .version import __version__

_EXPORTS = {
    "protect": "api",
    "protect_file": "api",
    "ProtectResult": "api",
    "check": "api",
    "ProtectOptions": "options",
    "JobOptions": "options",
    "ProtectReport": "reports",
    "CheckReport": "reports",
    "FixativeError": "errors",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__ = exports(__name__, _EXPORTS)
