"""Fixed edit-shield targets: what img2img/inpainting should see instead of the artwork."""

from __future__ import annotations

import math

import torch


def grey(height: int, width: int) -> torch.Tensor:
    return torch.full((3, height, width), 0.5)


def pattern(height: int, width: int) -> torch.Tensor:
    """A dense, high-contrast interference pattern (Mist-style): decodes to obvious garbage."""
    y = torch.arange(height, dtype=torch.float32)[:, None]
    x = torch.arange(width, dtype=torch.float32)[None, :]
    period = 24.0
    r = 0.5 + 0.5 * torch.sin(2 * math.pi * (x + y) / period)
    g = 0.5 + 0.5 * torch.sin(2 * math.pi * (x - y) / (period * 0.75))
    b = 0.5 + 0.5 * torch.sign(torch.sin(2 * math.pi * x / period) * torch.sin(2 * math.pi * y / period))
    return torch.stack(
        [r.expand(height, width), g.expand(height, width), b.expand(height, width)]
    ).contiguous()


PATTERNS = {"grey": grey, "pattern": pattern}
