"""The optimiser: move the encoders' features of the image toward the target's, inside the budget.

Signed-gradient PGD with momentum (or Adam), on one perturbation field for the whole image. Gradients are
gathered tile by tile (memory bounded by the tile, not the image) and blended with soft weights, so no
seam can form. The clean steps come first (converge), then the hardening steps purify a random EOT draw.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import BadParameterError, Cancelled
from ..features import DEFAULT_OVERLAP, DEFAULT_TILE, StrengthProbe, Tile, tile_weight, tiles
from ..presets import Quality
from . import eot
from .allocator import reuse_freed_memory
from .budget import lpips_distance, project

ProgressFn = Callable[[int, int, dict], None]
CancelFn = Callable[[], bool]


@dataclass
class OptimiseResult:
    delta: torch.Tensor  # (3, H, W) on CPU, inside the budget
    steps: int
    seconds: float
    stopped_early: bool
    history: list[float] = field(default_factory=list)  # estimated strength after each step
    draws: list[eot.Draw] = field(default_factory=list)  # the purifications the hardening steps trained on


@dataclass
class Problem:
    """One image's optimisation: its tiles, their blend weights, one strength probe per encoder."""

    images: torch.Tensor  # (1, 3, H, W)
    limit: torch.Tensor  # (1, 1 or 3, H, W): the per-pixel budget
    tiles: list[Tile]
    weights: list[torch.Tensor]
    probes: list[StrengthProbe]  # per encoder: target features of every tile
    start: list[float]  # summed squared distance original -> target, per encoder
    channels_last: list[bool] = field(default_factory=list)  # per encoder: feed it channels-last tiles


def _channels_last(encoder) -> bool:
    """Switch TAESD-family encoders on CPU to channels-last (oneDNN convolutions).

    Measured in bench/ on a 2-core AVX CPU: taef2 forward+backward at 256² 0.38 s instead of 0.47 s; the
    SD-sized AutoencoderKL (GroupNorm, attention) gained nothing, so it is left alone.
    """
    if encoder.device.type != "cpu" or not str(getattr(encoder, "family", "")).startswith("tae"):
        return False
    encoder.to(memory_format=torch.channels_last)
    return True


def balanced_tile(height: int, width: int, tile: int, overlap: int = DEFAULT_OVERLAP, align: int = 16) -> int:
    """The smallest tile (at most ``tile``) that covers the image with as few tiles as ``tile`` needs.

    A 1024² image in 512² tiles needs 3 x 3 tiles; at full size they cover 2.25x the pixels, at 384² only
    1.3x. Time grows with covered pixels, so this keeps time linear in the image's own pixel count.
    """
    best = align * 4
    for length in (height, width):
        if length <= tile + overlap // 2:
            best = max(best, min(tile, length))
            continue
        count = math.ceil((length - overlap) / (tile - overlap))
        best = max(best, math.ceil((length + (count - 1) * overlap) / count / align) * align)
    return min(tile, best)


def prepare(images: torch.Tensor, limit: torch.Tensor, encoders, goal, tile: int) -> Problem:
    """Tiles, blend weights and a strength probe per encoder for ``images`` (1, 3, H, W)."""
    h, w = images.shape[-2:]
    tile_list = tiles(h, w, balanced_tile(h, w, tile), DEFAULT_OVERLAP)
    weights = [tile_weight(t, h, w, DEFAULT_OVERLAP, images.device) for t in tile_list]
    probes = [StrengthProbe.build(e, goal, images[0], tile_list=tile_list) for e in encoders]
    start = [max(p.squared_sum(images), 1e-12) for p in probes]
    layouts = [_channels_last(encoder) for encoder in encoders]
    return Problem(images, limit, tile_list, weights, probes, start, layouts)


def gradient(
    problem: Problem,
    delta: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    lpips_weight: float = 0.0,
    lpips_budget: float = 0.0,
    cancel: CancelFn | None = None,
) -> tuple[torch.Tensor, list[float]]:
    """The blended gradient of the normalised feature loss, and each encoder's strength estimate."""
    grad = torch.zeros_like(delta)
    norm = torch.zeros_like(problem.images[:, :1])
    sq = [0.0] * len(problem.probes)
    for k, (t, weight) in enumerate(zip(problem.tiles, problem.weights, strict=True)):
        if cancel is not None and cancel():
            raise Cancelled()
        d = t.crop(delta).detach().clone().requires_grad_(True)
        original = t.crop(problem.images)
        x = original + d
        seen = transform(x)
        loss = x.new_zeros(())
        for e, probe in enumerate(problem.probes):
            fed = seen.contiguous(memory_format=torch.channels_last) if problem.channels_last[e] else seen
            term = (probe.encoder(fed) - probe.target[k]).pow(2).sum()
            sq[e] += float(term.detach())
            loss = loss + term / problem.start[e]
        if lpips_weight > 0:
            dist = lpips_distance(x, original)
            if dist is not None:
                loss = loss + lpips_weight * F.relu(dist - lpips_budget)
        loss.backward()
        t.crop(grad).add_(d.grad * weight)
        t.crop(norm).add_(weight)
    return grad / norm.clamp_min(1e-8), [1 - s / st for s, st in zip(sq, problem.start, strict=True)]


@dataclass
class Schedule:
    """Step sizes and which steps purify, from a ``Quality`` preset and the budget's largest value.

    Geometric decay from ``step_size`` to ``final_step`` (shares of epsilon): move, then refine. With
    ``harden_step`` the clean steps before ``eot_start`` decay on their own (as a short clean run would),
    then the purified hardening steps decay again from ``harden_step``.
    """

    quality: Quality
    epsilon: float

    def _decay(self, first: float, i: int, n: int) -> float:
        last = min(self.quality.final_step, first)
        return self.epsilon * first * (last / first) ** (i / max(1, n - 1))

    def step(self, i: int) -> float:
        q, n = self.quality, self.quality.steps
        if q.harden_step is None or not 0 < q.eot_start < n:
            return self._decay(q.step_size, i, n)
        if i < q.eot_start:
            return self._decay(q.step_size, i, q.eot_start)
        return self._decay(q.harden_step, i - q.eot_start, n - q.eot_start)

    def purifies(self, i: int) -> bool:
        q, every = self.quality, max(1, self.quality.eot_every)
        return q.eot_samples > 0 and i >= q.eot_start and (i - q.eot_start) % every == every - 1


def run(
    images: torch.Tensor,
    encoders: list,
    goal,
    limit: torch.Tensor,
    quality: Quality,
    *,
    seed: int = 0,
    optimizer: str = "pgd",
    lpips_weight: float = 0.0,
    lpips_budget: float = 0.05,
    tile: int = DEFAULT_TILE,
    stop_at: float | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> OptimiseResult:
    """Optimise a perturbation for ``images`` (3, H, W) against every encoder at once.

    ``limit`` is the per-pixel budget (1 or 3, H, W). ``stop_at`` overrides the preset's early-stop
    strength (the benchmarks use it to time how long reaching a given strength takes).
    """
    if optimizer not in ("pgd", "adam"):
        raise BadParameterError(f"unknown optimizer {optimizer!r}; use pgd or adam")
    started = time.perf_counter()
    device = encoders[0].device
    x = images[None].to(device).float()
    limit = limit[None].to(device).float()
    generator = torch.Generator().manual_seed(seed)
    schedule = Schedule(quality, float(limit.max()))
    stop = quality.early_stop if stop_at is None else stop_at
    history: list[float] = []
    draws: list[eot.Draw] = []
    # On a CPU, keep each step's freed activations mapped for the next step (see allocator.py).
    with reuse_freed_memory(device.type == "cpu"):
        delta = (torch.rand(x.shape, generator=generator) * 2 - 1).to(device) * limit * quality.random_start
        delta = project(delta, limit, x)
        problem = prepare(x, limit, encoders, goal, tile)
        opt = (
            torch.optim.Adam([delta], lr=quality.step_size * schedule.epsilon)
            if optimizer == "adam"
            else None
        )
        velocity = torch.zeros_like(delta)
        early = False
        for i in range(quality.steps):
            drawn = [eot.draw(generator) for _ in range(quality.eot_samples)] if schedule.purifies(i) else []
            draws.extend(drawn)
            grad, estimate = _gradient(problem, delta, drawn, lpips_weight, lpips_budget, cancel)
            if estimate >= stop:
                history.append(estimate)
                early = True
                break
            with torch.no_grad():
                _step(delta, grad, velocity, opt, schedule.step(i), quality.momentum)
                delta.copy_(project(delta, limit, x))
            history.append(estimate)
            if progress is not None:
                progress(i + 1, quality.steps, {"phase": "optimise", "strength": estimate})
    return OptimiseResult(
        delta=delta.detach()[0].cpu(),
        steps=len(history) - (1 if early else 0),
        seconds=time.perf_counter() - started,
        stopped_early=early,
        history=history,
        draws=draws,
    )


def _gradient(problem, delta, drawn, lpips_weight, lpips_budget, cancel) -> tuple[torch.Tensor, float]:
    """Summed gradient over the drawn purifications (one clean pass when none), and the strength estimate
    of the first pass (exact on a clean step, so early stop can trust it)."""
    grad, estimate = torch.zeros_like(delta), None
    for transform in drawn or [eot.CLEAN]:
        g, strengths = gradient(problem, delta, transform, lpips_weight, lpips_budget, cancel)
        grad += g
        estimate = min(strengths) if estimate is None else estimate
    return grad, float(estimate)


def _step(delta, grad, velocity, opt, size: float, momentum: float) -> None:
    if opt is None:
        # Momentum on the mean-normalised gradient (MI-FGSM): steadier signs, so the decaying steps keep
        # refining instead of oscillating; measured ~2x fewer steps to a strength.
        velocity.mul_(momentum).add_(grad / grad.abs().mean().clamp_min(1e-20))
        delta -= size * velocity.sign()
        return
    for group in opt.param_groups:
        group["lr"] = size
    delta.grad = grad
    opt.step()
