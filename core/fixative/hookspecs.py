"""The one extension seam: pluggy hook specifications.

A new model family or a new kind of target is a plugin that implements one of these hooks, registered
through the ``fixative`` entry-point group (or ``fixative.plugins.manager().register`` at run time).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pluggy

if TYPE_CHECKING:
    import torch

    from .models.base import Encoder, ModelEntry
    from .target.base import Target, TargetRequest

hookspec = pluggy.HookspecMarker("fixative")
hookimpl = pluggy.HookimplMarker("fixative")


class EncoderFamily(Protocol):
    """Knows how to recognise and load one family of image encoders."""

    name: str

    def probe(self, path: Path) -> ModelEntry | None:
        """A ModelEntry when ``path`` (file or folder) holds a model of this family, else None."""

    def probe_id(self, model_id: str, allow_download: bool) -> ModelEntry | None:
        """A ModelEntry for a hub id this family can load, else None."""

    def load(
        self, entry: ModelEntry, device: torch.device, dtype: torch.dtype, with_decoder: bool
    ) -> Encoder:
        """Build the encoder (and decoder when asked and available), weights loaded strictly."""


class TargetMaker(Protocol):
    """Builds the target that one protection method pulls features toward."""

    method: str  # "style", "concept" or "edit"
    kind: str  # short name shown in reports, e.g. "procedural", "image", "img2img"
    priority: int  # higher wins when several makers can serve a request

    def can_make(self, request: TargetRequest) -> bool: ...

    def make(self, request: TargetRequest) -> Target: ...


@hookspec
def fixative_encoder_families() -> list[EncoderFamily]:
    """Return the encoder families this plugin provides."""


@hookspec
def fixative_target_makers() -> list[TargetMaker]:
    """Return the target makers this plugin provides."""
