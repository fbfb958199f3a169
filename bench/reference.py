"""The reference every speed figure is compared with: a plain signed-gradient PGD loop.

Written plainly on purpose (no tiling, no EOT, no schedule, no early stop): 100 steps of 1/255 on the
whole image at once, inside the same perceptual budget fixative gets in the race (its JND map, 8/255 at
most), pulling the same encoder's features toward the same target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch


@dataclass
class ReferenceResult:
    delta: torch.Tensor  # (3, H, W)
    steps: int
    seconds: float
    step_seconds: list[float] = field(default_factory=list)
    history: list[float] = field(default_factory=list)  # strength before each step (free: it is the loss)


def pgd(
    images: torch.Tensor,
    encoder,
    target_features: torch.Tensor,
    budget,
    steps: int = 100,
    step_size: float = 1 / 255,
) -> ReferenceResult:
    """``images`` (3, H, W); ``target_features``: target latents of the whole image; ``budget``: a
    ``fixative.optimise.PerceptualBudget``."""
    started = time.perf_counter()
    x = images[None].float()
    with torch.no_grad():
        start = float((encoder(x) - target_features).pow(2).sum())
    delta = torch.zeros_like(x)
    history, step_seconds = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        delta.requires_grad_(True)
        loss = (encoder(x + delta) - target_features).pow(2).sum()
        loss.backward()
        with torch.no_grad():
            delta = budget.project(delta - step_size * delta.grad.sign(), x)
        history.append(1 - float(loss) / start)
        step_seconds.append(time.perf_counter() - t0)
    return ReferenceResult(delta[0].detach(), steps, time.perf_counter() - started, step_seconds, history)
