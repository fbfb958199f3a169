"""The null every figure is measured against: matched noise, the same per-pixel |change| with random signs.

A strength (or a decoded share) means something only beside what noise of exactly the same size scores
on the same image: a grainy target can be "reached" a little by any noise.
"""

from __future__ import annotations

import torch


def matched_noise(
    original: torch.Tensor, protected: torch.Tensor, seed: int = 0, levels: int | None = None
) -> torch.Tensor:
    """``original`` plus the protection's own |change| at every pixel and channel, each with a random sign
    (then clamped to the valid range, and with ``levels`` rounded to that grid, as a file would be).

    Built in place from 8-bit signs (the same draws as int64 ones): at 4096² the int64 signs and their
    temporaries were 1.2 GB, the highest point of a whole ``protect``."""
    noise = (protected.float() - original.float()).abs_()
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, noise.shape, generator=g, dtype=torch.uint8)
    noise.mul_(signs.to(noise.dtype).mul_(2).sub_(1))
    del signs
    noise.add_(original.float()).clamp_(0, 1)
    return noise if levels is None else noise.mul_(levels).round_().div_(levels)


def times_noise(value: float | None, noise: float | None) -> float | None:
    """``value / noise`` when the noise scores above zero, else None (a ratio over nothing says nothing)."""
    if value is None or noise is None or noise <= 1e-4:
        return None
    return round(value / noise, 2)
