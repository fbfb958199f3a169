"""Fixative: invisible protection for artworks against diffusion models.

The data path reads as the package does: ``load`` -> ``target`` -> ``optimise`` -> ``check`` -> ``save``,
with ``models`` (the encoders) beside it. ``protect`` and ``check`` are the API hosts call.
"""

__version__ = "0.1.0"

from .api import ProtectResult, protect, protect_file  # noqa: E402
from .check import check  # noqa: E402  (the function; the subpackage stays importable as fixative.check.*)
from .errors import FixativeError  # noqa: E402

__all__ = ["FixativeError", "ProtectResult", "__version__", "check", "protect", "protect_file"]
