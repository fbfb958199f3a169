"""The plugin manager: the built-in encoder families and target makers, then installed ``fixative`` plugins.

The API hands ``hooks()`` down to the stages (model discovery, targets); nothing below the API imports
this module.
"""

from __future__ import annotations

from functools import lru_cache

import pluggy

from . import hookspecs


@lru_cache(maxsize=1)
def manager() -> pluggy.PluginManager:
    from .models import builtin as builtin_models
    from .targets import builtin as builtin_targets

    pm = pluggy.PluginManager("fixative")
    pm.add_hookspecs(hookspecs)
    for plugin in (*builtin_models.PLUGINS, *builtin_targets.PLUGINS):  # later ones are asked first
        pm.register(plugin)
    pm.load_setuptools_entrypoints("fixative")
    return pm


def hooks() -> pluggy.HookRelay:
    """What stages call: ``hooks().fixative_make_target(request=...)`` and the other hookspecs."""
    return manager().hook
