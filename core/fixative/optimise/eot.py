"""Expectation over transformations: the purifications the protection must survive, made differentiable.

As in kornia's augmentations, what is drawn is apart from how it is applied: ``draw`` picks a ``Draw``
(kind and strength) from a generator, ``apply`` runs it, so a run can be replayed and the report can say
what the optimiser trained against. Each transform is a plain function ``check`` can reuse.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from kornia.enhance import jpeg_codec_differentiable
from kornia.filters import gaussian_blur2d

from ..errors import FixativeError


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


def crop_resample(images: torch.Tensor, share: float) -> torch.Tensor:
    """The resampling a crop-and-resize does (enlarged by 1 / (1 - share), then back), geometry undone so
    that each pixel still lines up with the target."""
    h, w = images.shape[-2:]
    zoom = 1 / (1 - share)
    large = F.interpolate(
        images, size=(round(h * zoom), round(w * zoom)), mode="bicubic", align_corners=False
    )
    return F.interpolate(large, size=(h, w), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def noisy_resize(images: torch.Tensor, std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Strong noise, then half-size and back: the CPU stand-in for noisy upscaling."""
    return resize(noise(images, std, generator), 0.5)


class CleanerUnavailable(FixativeError):
    """OpenCV's contrib filters (``cv2.ximgproc``) are not installed."""


def adverse_cleaner(images: torch.Tensor, bilateral_passes: int = 64, guided_passes: int = 4) -> torch.Tensor:
    """AdverseCleaner as its code runs it on 8-bit (B, 3, H, W) images: ``bilateral_passes`` OpenCV
    bilateral filters (diameter 5, colour and space sigma 8), then ``guided_passes`` guided filters
    (radius 4, eps 16) guided by the input, which restores its edges. No gradient: see straight_through."""
    try:
        import cv2

        guided_filter = cv2.ximgproc.guidedFilter
    except (ImportError, AttributeError):
        raise CleanerUnavailable(
            "AdverseCleaner needs OpenCV's contrib filters (pip install opencv-contrib-python-headless)"
        ) from None
    single = images.ndim == 3
    batch = images[None] if single else images
    out = []
    for image in batch.detach().float().cpu().clamp(0, 1):
        source = np.ascontiguousarray((image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
        cleaned = source.copy()
        for _ in range(bilateral_passes):
            cleaned = cv2.bilateralFilter(cleaned, 5, 8, 8)
        for _ in range(guided_passes):
            cleaned = guided_filter(source, cleaned, 4, 16)
        out.append(torch.from_numpy(cleaned).permute(2, 0, 1).float() / 255)
    result = torch.stack(out).to(device=images.device, dtype=images.dtype)
    return result[0] if single else result


def straight_through(images: torch.Tensor, clean: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Run a cleaner that has no gradient (AdverseCleaner's OpenCV filters) forward, and pass the gradient
    through as if it were the identity (BPDA, Athalye et al. 2018)."""
    with torch.no_grad():
        cleaned = clean(images.detach())
    return images + (cleaned - images).detach()


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
KINDS = ("none", "jpeg", "resize", "crop", "blur", "noise", "noisy_resize", "adverse")


@functools.cache
def available_kinds() -> tuple[str, ...]:
    """The kinds this machine can run (AdverseCleaner's filters need OpenCV's contrib package)."""
    try:
        import cv2

        cv2.ximgproc.guidedFilter  # noqa: B018 - the attribute is the test
    except (ImportError, AttributeError):
        return tuple(k for k in KINDS if k != "adverse")
    return KINDS


def draw(generator: torch.Generator) -> Draw:
    """One random purification, drawn reproducibly from ``generator``."""
    kinds = available_kinds()
    kind = kinds[int(torch.randint(0, len(kinds), (1,), generator=generator))]
    u = float(torch.rand(1, generator=generator))
    if kind == "jpeg":
        return Draw(kind, 50 + 45 * u)
    if kind == "resize":
        return Draw(kind, 0.25 + 0.65 * u)
    if kind == "crop":
        return Draw(kind, 0.05 + 0.1 * u)
    if kind == "noisy_resize":
        return Draw(kind, 0.05 + 0.05 * u, int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    if kind == "adverse":
        return Draw(kind, float(16 + int(48 * u)))  # bilateral passes
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
    if drawn.kind == "crop":
        return crop_resample(images, drawn.value)
    if drawn.kind == "blur":
        return blur(images, drawn.value)
    if drawn.kind == "noisy_resize":
        return noisy_resize(images, drawn.value, torch.Generator().manual_seed(drawn.seed))
    if drawn.kind == "adverse":
        return straight_through(images, lambda x: adverse_cleaner(x, int(drawn.value)))
    if drawn.kind == "noise":
        return noise(images, drawn.value, torch.Generator().manual_seed(drawn.seed))
    return images


def summary(draws: list[Draw]) -> dict:
    """What a report records: how many of each kind were drawn, and every draw."""
    counts: dict[str, int] = {}
    for d in draws:
        counts[d.kind] = counts.get(d.kind, 0) + 1
    return {"counts": counts, "draws": [[d.kind, round(d.value, 4)] for d in draws]}
