"""Expectation over transformations: the purifications the protection must survive, made differentiable.

Each is a plain function (kornia style) so the optimiser can sample them and ``check`` can reuse them.
"""

from __future__ import annotations

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


def sample(generator: torch.Generator):
    """One random purification (a callable), drawn reproducibly from ``generator``."""
    pick = int(torch.randint(0, 5, (1,), generator=generator))
    u = float(torch.rand(1, generator=generator))
    if pick == 0:
        return lambda x: x
    if pick == 1:
        quality = 50 + 45 * u
        return lambda x: jpeg(x, quality)
    if pick == 2:
        scale = 0.5 + 0.4 * u
        return lambda x: resize(x, scale)
    if pick == 3:
        sigma = 0.4 + 0.8 * u
        return lambda x: blur(x, sigma)
    std = 0.01 + 0.03 * u
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return lambda x: noise(x, std, torch.Generator().manual_seed(seed))
