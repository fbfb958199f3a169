"""The one extension seam: pluggy hook specifications.

A new model family or a new kind of target is a plugin implementing some of these hooks, registered
through the ``fixative`` entry-point group (or ``fixative.plugins.manager().register`` at run time).
Every hook is ``firstresult``: pluggy asks the plugins in turn (the last registered first, so installed
plugins come before the built-in ones) and the first answer that is not ``None`` wins. A plugin says
"not mine" by returning ``None``.

Stages never import the plugin manager: ``fixative.plugins.hooks()`` (a pluggy ``HookRelay``) is handed
down to them by the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

from .hookimpl import hookimpl

if TYPE_CHECKING:
    import torch

    from .models.base import Encoder, ModelEntry
    from .targets.base import Target, TargetRequest

hookspec = pluggy.HookspecMarker("fixative")
__all__ = ["hookimpl", "hookspec"]  # a plug-in takes both from here


@hookspec(firstresult=True)
def fixative_probe_model(path: Path) -> ModelEntry | None:
    """A ``ModelEntry`` when ``path`` (file or folder) holds an encoder this plugin can load."""


@hookspec(firstresult=True)
def fixative_probe_model_id(model_id: str, allow_download: bool) -> ModelEntry | None:
    """A ``ModelEntry`` for a hub id this plugin can load (from the local cache unless allowed)."""


@hookspec(firstresult=True)
def fixative_load_encoder(
    entry: ModelEntry, device: torch.device, dtype: torch.dtype, with_decoder: bool
) -> Encoder | None:
    """The encoder (and its decoder when asked and available) for an entry this plugin probed."""


@hookspec(firstresult=True)
def fixative_make_target(request: TargetRequest) -> Target | None:
    """The target this request asks for, when this plugin makes that kind."""


@hookspec(firstresult=True)
def fixative_rebuild_target(recorded: dict, request: TargetRequest) -> Target | None:
    """Rebuild a target from what a protected file recorded (``Target.describe()``), so ``check`` can
    measure against it; ``request`` carries the artwork (or its stand-in) and any image the user gave."""
