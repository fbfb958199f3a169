"""Expectation over transformations: the purifications the protection must survive, made differentiable.

As in kornia's augmentations, what is drawn is apart from how it is applied: ``draw`` picks a ``Draw``
(kind and strength) from a generator, ``apply`` runs it, so a run can be replayed and the report can say
what the optimiser trained against. Each transform is a plain function ``check`` can reuse.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import gaussian_blur2d


def jpeg(images: torch.Tensor, quality: float) -> torch.Tensor:
    """Differentiable JPEG (kornia); pads to the 16-pixel grid the codec needs and crops back."""
    h, w = images.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    padded = F.pad(images, (0, pw, 0, ph), mode="replicate") if (ph or pw) else images
    q = torch.full((images.shape[0],), float(quality), device=images.device, dtype=images.dtype)
    out = jpeg_codec_differentiable(padded.clamp(0, 1), q)
    return out[..., :h, :w]


def resize(images: torch.Tensor, scale: float) -> torch.Tensor:
    """Downscale then upscale back (what re-posting at a smaller size does)."""
    h, w = images.shape[-2:]
    small = F.interpolate(
        images,
        size=(max(8, round(h * scale)), max(8, round(w * scale))),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )
    return F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    k = max(3, int(sigma * 3) * 2 + 1)
    return gaussian_blur2d(images, (k, k), (sigma, sigma), border_type="reflect")


def noise(images: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    n = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images + n * std).clamp(0, 1)


@dataclass(frozen=True)
class Draw:
    """One drawn purification: its kind, its strength (JPEG quality, scale, sigma or std) and noise seed."""

    kind: str
    value: float = 0.0
    seed: int = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return apply(self, images)


CLEAN = Draw("none")
KINDS = ("none", "jpeg", "resize", "blur", "noise")


def draw(generator: torch.Generator) -> Draw:
    """One random purification, drawn reproducibly from ``generator``."""
    kind = KINDS[int(torch.randint(0, len(KINDS), (1,), generator=generator))]
    u = float(torch.rand(1, generator=generator))
    if kind == "jpeg":
        return Draw(kind, 50 + 45 * u)
    if kind == "resize":
        return Draw(kind, 0.5 + 0.4 * u)
    if kind == "blur":
        return Draw(kind, 0.4 + 0.8 * u)
    if kind == "noise":
        return Draw(kind, 0.01 + 0.03 * u, int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    return CLEAN


def apply(drawn: Draw, images: torch.Tensor) -> torch.Tensor:
    """Run a drawn purification on (B, 3, H, W) images."""
    if drawn.kind == "jpeg":
        return jpeg(images, drawn.value)
    if drawn.kind == "resize":
        return resize(images, drawn.value)
    if drawn.kind == "blur":
        return blur(images, drawn.value)
    if drawn.kind == "noise":
        return noise(images, drawn.value, torch.Generator().manual_seed(drawn.seed))
    return images


def summary(draws: list[Draw]) -> dict:
    """What a report records: how many of each kind were drawn, and every draw."""
    counts: dict[str, int] = {}
    for d in draws:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    return {"counts": counts, "draws": [[d.kind, round(d.value, 4)] for d in draws]}
