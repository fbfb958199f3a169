"""Names a package re-exports, imported on first use (so ``fixative --help`` never loads torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exports(package: str, table: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``table[name]`` (a submodule of ``package``) when asked."""

    def __getattr__(name: str):
        if name in table:
            return getattr(importlib.import_module(f".{table[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
