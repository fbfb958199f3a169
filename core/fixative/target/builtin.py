"""Built-in target makers, registered through the same hook a plugin uses."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import BadParameterError, FixativeError
from ..hookspecs import hookimpl
from .base import Target, TargetRequest, fit_to
from .patterns import PATTERNS
from .styles import STYLES, auto_style


def _downsized(image: torch.Tensor, longest: int = 512) -> torch.Tensor:
    _, h, w = image.shape
    scale = min(1.0, longest / max(h, w))
    size = (max(64, round(h * scale) // 16 * 16), max(64, round(w * scale) // 16 * 16))
    return F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)


class ProceduralStyle:
    method, kind, priority = "style", "procedural", 0

    def can_make(self, request: TargetRequest) -> bool:
        return request.image is None and (request.style is None or request.style in STYLES)

    def make(self, request: TargetRequest) -> Target:
        name = request.style or auto_style(request.artwork)
        image = STYLES[name](request.artwork.cpu(), seed=request.seed)
        return Target("style", self.kind, f"built-in style '{name}'", image=image, details={"style": name})


class StyleImage:
    """Move the artwork's latent statistics (per channel mean and spread) onto a user-given style image's."""

    method, kind, priority = "style", "style-image", 10

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
        )


class PipelineStyle:
    """img2img with a style prompt through the user's own diffusers pipeline (lazy import, local only)."""

    method, kind, priority = "style", "img2img", 20

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
            "style", self.kind, f"img2img: {request.style}", image=image, details={"prompt": request.style}
        )


class AnchorConcept:
    method, kind, priority = "concept", "anchor-image", 10

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
        )


class PipelineConcept:
    """text2img anchor of the other concept through the user's own diffusers pipeline."""

    method, kind, priority = "concept", "text2img", 20

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
        )


class EditTarget:
    method, kind, priority = "edit", "fixed", 0

    def can_make(self, request: TargetRequest) -> bool:
        return True

    def make(self, request: TargetRequest) -> Target:
        h, w = request.artwork.shape[1:]
        if request.image is not None:
            return Target("edit", "image", "user target image", image=fit_to(request.image, h, w))
        name = request.pattern or "pattern"
        if name not in PATTERNS:
            raise BadParameterError(f"unknown edit target {name!r}; choose one of: {', '.join(PATTERNS)}")
        return Target("edit", name, f"built-in {name}", image=PATTERNS[name](h, w), details={"pattern": name})


def _image_digest(image: torch.Tensor) -> str:
    import hashlib

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


@hookimpl
def fixative_target_makers() -> list:
    return [
        ProceduralStyle(),
        StyleImage(),
        PipelineStyle(),
        AnchorConcept(),
        PipelineConcept(),
        EditTarget(),
    ]
