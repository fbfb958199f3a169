"""The plugin manager: built-in families and targets, plus any installed ``fixative`` entry points."""

from __future__ import annotations

from functools import lru_cache

import pluggy

from . import hookspecs


@lru_cache(maxsize=1)
def manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("fixative")
    pm.add_hookspecs(hookspecs)
    from .models import builtin as builtin_models
    from .target import builtin as builtin_targets

    pm.register(builtin_models)
    pm.register(builtin_targets)
    pm.load_setuptools_entrypoints("fixative")
    return pm


def encoder_families() -> list:
    return [family for group in manager().hook.fixative_encoder_families() for family in group]


def target_makers() -> list:
    return [maker for group in manager().hook.fixative_target_makers() for maker in group]
