"""Built-in target makers, registered through the same hooks a plugin implements.

Each maker answers ``fixative_make_target`` for the requests it can serve and ``fixative_rebuild_target``
for files it made (same method and kind), from what ``Target.describe()`` recorded.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..errors import BadParameterError, FixativeError
from ..hookimpl import hookimpl
from .base import Target, TargetRequest, fit_to
from .patterns import PATTERNS
from .styles import STYLES, auto_style, charcoal


def _downsized(image: torch.Tensor, longest: int = 512) -> torch.Tensor:
    _, h, w = image.shape
    scale = min(1.0, longest / max(h, w))
    size = (max(64, round(h * scale) // 16 * 16), max(64, round(w * scale) // 16 * 16))
    return F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)


class Maker(ABC):
    """One kind of target: ``can_make`` / ``make``, and ``restore`` (recorded details back into a request)."""

    method: str
    kind: str

    @abstractmethod
    def can_make(self, request: TargetRequest) -> bool: ...

    @abstractmethod
    def make(self, request: TargetRequest) -> Target: ...

    def restore(self, request: TargetRequest, details: dict) -> None:  # noqa: B027 - most kinds need nothing
        """Put what the metadata recorded back into the request."""

    def made(self, recorded: dict) -> bool:
        return recorded.get("method") == self.method and recorded.get("kind") == self.kind

    @hookimpl
    def fixative_make_target(self, request: TargetRequest) -> Target | None:
        if request.method == self.method and self.can_make(request):
            return self.make(request)
        return None

    @hookimpl
    def fixative_rebuild_target(self, recorded: dict, request: TargetRequest) -> Target | None:
        if not self.made(recorded):
            return None
        self.restore(request, recorded.get("details") or {})
        request.concept = recorded.get("caption")
        return self.make(request) if self.can_make(request) else None


class ProceduralStyle(Maker):
    method, kind = "style", "procedural"

    def can_make(self, request: TargetRequest) -> bool:
        return request.image is None and (request.style is None or request.style in STYLES)

    def make(self, request: TargetRequest) -> Target:
        name = request.style or auto_style(request.artwork)
        image = STYLES[name](request.artwork.cpu(), seed=request.seed)
        details = {"style": name, **({"paper": "fibre"} if name == "charcoal" else {})}
        return Target("style", self.kind, f"built-in style '{name}'", image=image, details=details)

    def made(self, recorded: dict) -> bool:
        return super().made(recorded) and not _pixel_grain(recorded)

    def restore(self, request: TargetRequest, details: dict) -> None:
        request.style = details.get("style")


def _pixel_grain(recorded: dict) -> bool:
    """A charcoal target recorded before its paper had a ``paper`` detail: the per-pixel grain."""
    details = recorded.get("details") or {}
    return details.get("style") == "charcoal" and "paper" not in details


class GrainyCharcoal(Maker):
    """The charcoal style of files made before 2026-12-06, whose paper had a per-pixel grain (noise moved
    toward it too: ``styles.charcoal``). Rebuilt for ``check`` only; new protections get fibre paper."""

    method, kind = "style", "procedural"

    def can_make(self, request: TargetRequest) -> bool:
        return request.image is None

    def make(self, request: TargetRequest) -> Target:
        image = charcoal(request.artwork.cpu(), seed=request.seed, grain="pixel")
        return Target(
            "style", self.kind, "built-in style 'charcoal'", image=image, details={"style": "charcoal"}
        )

    def made(self, recorded: dict) -> bool:
        return super().made(recorded) and _pixel_grain(recorded)

    @hookimpl
    def fixative_make_target(self, request: TargetRequest) -> Target | None:
        return None  # never offered for a new protection


class StyleImage(Maker):
    """Move the artwork's latent statistics (per channel mean and spread) onto a user-given style image's."""

    method, kind = "style", "style-image"

    def can_make(self, request: TargetRequest) -> bool:
        return request.image is not None

    def make(self, request: TargetRequest) -> Target:
        style_small = _downsized(request.image)
        art_small = _downsized(request.artwork)
        stats: dict[int, tuple] = {}

        def transform(encoder, z: torch.Tensor) -> torch.Tensor:
            key = id(encoder)
            if key not in stats:
                with torch.no_grad():
                    zs = encoder(style_small.to(encoder.device))
                    za = encoder(art_small.to(encoder.device))
                stats[key] = (
                    za.mean((0, 2, 3), keepdim=True),
                    za.std((0, 2, 3), keepdim=True) + 1e-5,
                    zs.mean((0, 2, 3), keepdim=True),
                    zs.std((0, 2, 3), keepdim=True),
                )
            mu_a, sd_a, mu_s, sd_s = stats[key]
            return (z - mu_a) / sd_a * sd_s + mu_s

        return Target(
            "style",
            self.kind,
            "latent statistics of the given style image",
            image=None,
            latent_transform=transform,
            details={"style_image": _image_digest(request.image)},
            needs="image",
        )


class PipelineStyle(Maker):
    """img2img with a style prompt through the user's own diffusers pipeline (lazy import, local only)."""

    method, kind = "style", "img2img"

    def can_make(self, request: TargetRequest) -> bool:
        return (
            bool(request.pipeline)
            and request.image is None
            and bool(request.style)
            and request.style not in STYLES
        )

    def make(self, request: TargetRequest) -> Target:
        from diffusers import AutoPipelineForImage2Image

        pipe = _load_pipeline(AutoPipelineForImage2Image, request.pipeline)
        h, w = request.artwork.shape[1:]
        init = _downsized(request.artwork, 512)
        generator = torch.Generator().manual_seed(request.seed)
        out = pipe(
            prompt=request.style,
            image=init,
            strength=0.6,
            num_inference_steps=20,
            guidance_scale=7.0,
            generator=generator,
            output_type="pt",
        ).images
        image = F.interpolate(out.float().cpu(), size=(h, w), mode="bilinear", align_corners=False)[0].clamp(
            0, 1
        )
        return Target(
            "style",
            self.kind,
            f"img2img: {request.style}",
            image=image,
            details={"prompt": request.style},
            needs="pipeline",
        )

    def restore(self, request: TargetRequest, details: dict) -> None:
        request.style = details.get("prompt")


class AnchorConcept(Maker):
    method, kind = "concept", "anchor-image"

    def can_make(self, request: TargetRequest) -> bool:
        return request.image is not None

    def make(self, request: TargetRequest) -> Target:
        h, w = request.artwork.shape[1:]
        return Target(
            "concept",
            self.kind,
            f"anchor image of '{request.anchor or 'another concept'}'",
            image=fit_to(request.image, h, w),
            caption=request.concept,
            details={"anchor": request.anchor or ""},
            needs="image",
        )

    def restore(self, request: TargetRequest, details: dict) -> None:
        request.anchor = details.get("anchor") or None


class PipelineConcept(Maker):
    """text2img anchor of the other concept through the user's own diffusers pipeline."""

    method, kind = "concept", "text2img"

    def can_make(self, request: TargetRequest) -> bool:
        return bool(request.pipeline) and request.image is None and bool(request.anchor)

    def make(self, request: TargetRequest) -> Target:
        from diffusers import AutoPipelineForText2Image

        pipe = _load_pipeline(AutoPipelineForText2Image, request.pipeline)
        h, w = request.artwork.shape[1:]
        generator = torch.Generator().manual_seed(request.seed)
        out = pipe(
            prompt=request.anchor,
            num_inference_steps=20,
            guidance_scale=7.0,
            generator=generator,
            output_type="pt",
        ).images
        image = fit_to(out[0].float().cpu(), h, w)
        return Target(
            "concept",
            self.kind,
            f"text2img anchor: {request.anchor}",
            image=image,
            caption=request.concept,
            details={"anchor": request.anchor},
            needs="pipeline",
        )

    def restore(self, request: TargetRequest, details: dict) -> None:
        request.anchor = details.get("anchor")


class EditTarget(Maker):
    """A fixed image to pull toward: a built-in pattern (kind: its name) or the user's image ("image")."""

    method, kind = "edit", "fixed"

    def can_make(self, request: TargetRequest) -> bool:
        return True

    def make(self, request: TargetRequest) -> Target:
        h, w = request.artwork.shape[1:]
        if request.image is not None:
            return Target(
                "edit", "image", "user target image", image=fit_to(request.image, h, w), needs="image"
            )
        name = request.pattern or "grey"
        if name not in PATTERNS:
            raise BadParameterError(f"unknown edit target {name!r}; choose one of: {', '.join(PATTERNS)}")
        return Target("edit", name, f"built-in {name}", image=PATTERNS[name](h, w), details={"pattern": name})

    def made(self, recorded: dict) -> bool:
        return recorded.get("method") == "edit" and recorded.get("kind") in ("image", *PATTERNS)

    def restore(self, request: TargetRequest, details: dict) -> None:
        request.pattern = details.get("pattern")

    @hookimpl
    def fixative_rebuild_target(self, recorded: dict, request: TargetRequest) -> Target | None:
        if not self.made(recorded) or (recorded["kind"] == "image") != (request.image is not None):
            return None
        self.restore(request, recorded.get("details") or {"pattern": recorded["kind"]})
        return self.make(request)


def fallbacks(request: TargetRequest) -> list[TargetRequest]:
    """The method's other built-in targets, in the order to try them, where Fixative chose the target (no
    image, style or pattern asked for): a flat picture can lie within the noise of its first choice (a grey
    picture and the grey edit target, a black one and the posterised 'pop' style). [] where the user chose."""
    if request.image is not None:
        return []
    if request.method == "style" and request.style is None:
        chosen = auto_style(request.artwork)
        return [replace(request, style=name) for name in STYLES if name != chosen]
    if request.method == "edit" and request.pattern is None:
        return [replace(request, pattern=name) for name in PATTERNS if name != "grey"]
    return []


def _image_digest(image: torch.Tensor) -> str:
    return hashlib.sha256((image.clamp(0, 1) * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()[
        :16
    ]


def _load_pipeline(cls, folder: str):
    try:
        pipe = cls.from_pretrained(folder, local_files_only=True)
    except Exception as exc:
        raise FixativeError(
            f"could not load the diffusers pipeline at {folder} ({str(exc).splitlines()[0][:160]})"
        ) from None
    pipe.set_progress_bar_config(disable=True)
    return pipe


# Registered in this order; pluggy asks the last one first, so the most specific makers come last.
PLUGINS = (
    EditTarget(),
    AnchorConcept(),
    PipelineConcept(),
    ProceduralStyle(),
    GrainyCharcoal(),
    StyleImage(),
    PipelineStyle(),
)
