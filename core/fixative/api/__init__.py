"""The Python API every host calls: ``protect`` and ``check``, each a short sequence of stage calls."""

from .check import check, run_check
from .protect import ProtectResult, protect, protect_file, ready_for

__all__ = ["ProtectResult", "check", "protect", "protect_file", "ready_for", "run_check"]
