"""What a protection pulls the image's features toward."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import BadParameterError
from ..options import METHODS


@dataclass
class TargetRequest:
    """Everything a target maker may use; makers ignore what they do not need."""

    method: str
    artwork: torch.Tensor  # (3, H, W) 0..1
    image: torch.Tensor | None = None  # user-given style image / concept anchor / edit target, (3, h, w)
    concept: str | None = None  # the caption the image keeps (concept poison)
    anchor: str | None = None  # text of the concept to shift toward (text2img anchor)
    style: str | None = None  # built-in style name, or a style prompt for img2img
    pattern: str | None = None  # edit shield: "grey" or "pattern"
    pipeline: str | None = None  # a local diffusers pipeline folder for img2img/text2img targets
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


@dataclass
class Target:
    """A target, either an image the size of the artwork or a transform of the artwork's latents."""

    method: str
    kind: str
    description: str
    image: torch.Tensor | None = None  # (3, H, W) 0..1, same size as the artwork
    latent_transform: Callable | None = None  # (encoder, z_original) -> z_target
    caption: str | None = None
    details: dict = field(default_factory=dict)
    needs: str | None = None  # what ``check`` must be given again to rebuild it: "image" or "pipeline"
    notes: list[str] = field(default_factory=list)  # for the report: why this target (not recorded)

    def features(
        self, encoder, original_tile: torch.Tensor, target_tile: torch.Tensor | None
    ) -> torch.Tensor:
        with torch.no_grad():
            if self.latent_transform is not None:
                return self.latent_transform(encoder, encoder(original_tile))
            return encoder(target_tile)

    @property
    def hash(self) -> str:
        digest = hashlib.sha256(f"{self.method}:{self.kind}:{self.description}".encode())
        if self.image is not None:
            digest.update(
                (self.image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes()
            )
        for key in sorted(self.details):
            digest.update(f"{key}={self.details[key]}".encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        out = {"method": self.method, "kind": self.kind, "description": self.description, "hash": self.hash}
        if self.caption:
            out["caption"] = self.caption
        if self.details:
            out["details"] = dict(self.details)  # lets ``check`` rebuild the target from the file alone
        if self.needs:
            out["needs"] = self.needs
        return out


def fit_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize to cover (height, width) keeping aspect, then centre-crop: the anchor fills the frame."""
    _, h, w = image.shape
    scale = max(height / h, width / w)
    nh, nw = max(height, round(h * scale)), max(width, round(w * scale))
    resized = F.interpolate(
        image[None].float(), size=(nh, nw), mode="bilinear", align_corners=False, antialias=True
    )[0]
    top, left = (nh - height) // 2, (nw - width) // 2
    return resized[:, top : top + height, left : left + width].clamp(0, 1).contiguous()


def make_target(request: TargetRequest, hooks) -> Target:
    """The first target maker that serves this request (``hooks``: ``fixative.plugins.hooks()``)."""
    if request.method not in METHODS:
        raise BadParameterError(f"unknown method {request.method!r}; choose one of: {', '.join(METHODS)}")
    target = hooks.fixative_make_target(request=request)
    if target is not None:
        return target
    hints = {
        "concept": "concept poison needs an anchor image of the other concept (--target IMG), "
        "or --anchor TEXT with a local diffusers pipeline (--pipeline DIR)",
    }
    raise BadParameterError(hints.get(request.method, f"no target available for method {request.method!r}"))


def rebuild_target(recorded: dict, request: TargetRequest, hooks) -> Target | None:
    """The target a file recorded, made again on ``request.artwork``; None when the record is not enough."""
    try:
        return hooks.fixative_rebuild_target(recorded=recorded, request=request)
    except BadParameterError:
        return None
