"""The null every figure is measured against: matched noise, the same per-pixel |change| with random signs.

A strength (or a decoded share) means something only beside what noise of exactly the same size scores
on the same image: a grainy target can be "reached" a little by any noise.
"""

from __future__ import annotations

import torch


def matched_noise(original: torch.Tensor, protected: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``original`` plus the protection's own |change| at every pixel and channel, each with a random sign
    (then clamped to the valid range, as a file would be)."""
    magnitude = (protected.float() - original.float()).abs()
    g = torch.Generator().manual_seed(seed)
    signs = torch.randint(0, 2, magnitude.shape, generator=g).to(magnitude) * 2 - 1
    return (original.float() + signs * magnitude).clamp(0, 1)


def times_noise(value: float | None, noise: float | None) -> float | None:
    """``value / noise`` when the noise scores above zero, else None (a ratio over nothing says nothing)."""
    if value is None or noise is None or noise <= 1e-4:
        return None
    return round(value / noise, 2)
