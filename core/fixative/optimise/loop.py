"""The optimiser: move the encoders' features of the image toward the target's, inside the budget.

Signed-gradient PGD or Adam, on one perturbation field for the whole image. Gradients are gathered tile
by tile (memory bounded by the tile, not the image) and blended with soft weights, so no seam can form.
Coarse-to-fine: the first steps run at half resolution, where a step costs a quarter.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import BadParameterError, Cancelled
from ..features import DEFAULT_OVERLAP, DEFAULT_TILE, Tile, tile_weight, tiles
from ..presets import Quality
from ..target.base import Target
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
    history: list[float] = field(default_factory=list)  # estimated strength after each full-resolution step


@dataclass
class _Level:
    images: torch.Tensor  # (1, 3, H, W)
    limit: torch.Tensor  # (1, 1, H, W)
    tiles: list[Tile]
    weights: list[torch.Tensor]
    targets: list[list[torch.Tensor]]  # [encoder][tile]
    start: list[float]  # squared distance original->target per encoder
    total_tiles: int = 0  # tiles covering the image (``tiles`` may hold fewer when a benchmark samples some)
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


def prepare(
    images, limit, encoders, target: Target, target_image, tile: int, max_tiles: int | None = None
) -> _Level:
    """Tiles, blend weights and target features of one resolution level.

    ``max_tiles`` keeps only the first tiles: the benchmarks time a step on a few tiles of a huge image
    and extrapolate, with the image-sized buffers still allocated, so peak memory stays representative.
    """
    h, w = images.shape[-2:]
    all_tiles = tiles(h, w, balanced_tile(h, w, tile), DEFAULT_OVERLAP)
    tile_list = all_tiles[:max_tiles] if max_tiles else all_tiles
    weights = [tile_weight(t, h, w, DEFAULT_OVERLAP, images.device) for t in tile_list]
    targets, start = [], []
    for encoder in encoders:
        per_tile, total = [], 0.0
        for t in tile_list:
            original = t.crop(images)
            feats = target.features(encoder, original, None if target_image is None else t.crop(target_image))
            with torch.no_grad():
                total += float((encoder(original) - feats).pow(2).sum())
            per_tile.append(feats)
        targets.append(per_tile)
        start.append(max(total, 1e-12))
    layouts = [_channels_last(encoder) for encoder in encoders]
    return _Level(images, limit, tile_list, weights, targets, start, len(all_tiles), layouts)


def _half(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    size = (max(16, h // 2 // 8 * 8), max(16, w // 2 // 8 * 8))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


def gradient(
    level: _Level,
    delta: torch.Tensor,
    encoders,
    transform,
    lpips_weight: float,
    lpips_budget: float,
    cancel: CancelFn | None,
) -> tuple[torch.Tensor, list[float]]:
    grad = torch.zeros_like(delta)
    norm = torch.zeros_like(level.limit)
    sq = [0.0] * len(encoders)
    for k, (t, weight) in enumerate(zip(level.tiles, level.weights, strict=True)):
        if cancel is not None and cancel():
            raise Cancelled()
        d = t.crop(delta).detach().clone().requires_grad_(True)
        original = t.crop(level.images)
        x = original + d
        seen = transform(x)
        loss = x.new_zeros(())
        for e, encoder in enumerate(encoders):
            fed = seen.contiguous(memory_format=torch.channels_last) if level.channels_last[e] else seen
            term = (encoder(fed) - level.targets[e][k]).pow(2).sum()
            sq[e] += float(term.detach())
            loss = loss + term / level.start[e]
        if lpips_weight > 0:
            dist = lpips_distance(x, original)
            if dist is not None:
                loss = loss + lpips_weight * F.relu(dist - lpips_budget)
        loss.backward()
        t.crop(grad).add_(d.grad * weight)
        t.crop(norm).add_(weight)
    return grad / norm.clamp_min(1e-8), [1 - s / st for s, st in zip(sq, level.start, strict=True)]


def run(
    images: torch.Tensor,
    encoders: list,
    target: Target,
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

    ``limit`` is the per-pixel L-infinity bound (1, H, W). ``stop_at`` overrides the preset's early-stop
    strength (the benchmarks use it to time how long reaching a given strength takes).
    """
    if optimizer not in ("pgd", "adam"):
        raise BadParameterError(f"unknown optimizer {optimizer!r}; use pgd or adam")
    started = time.perf_counter()
    device = encoders[0].device
    x = images[None].to(device).float()
    lim = limit[None].to(device).float()
    epsilon = float(lim.max())
    target_image = None if target.image is None else target.image[None].to(device).float()
    generator = torch.Generator().manual_seed(seed)
    stop = quality.early_stop if stop_at is None else stop_at
    total_steps = quality.steps + quality.coarse_steps
    done = 0

    def decay(first: float, i: int, n: int) -> float:
        last = min(quality.final_step, first)
        return epsilon * first * (last / first) ** (i / max(1, n - 1))

    def schedule(i: int, n: int) -> float:
        """Geometric decay from ``step_size`` to ``final_step`` (shares of epsilon): move, then refine.

        With ``harden_step``, the clean steps before ``eot_start`` decay on their own (as a short clean
        run would), then the purified hardening steps decay again from ``harden_step``.
        """
        start = quality.eot_start
        if quality.harden_step is None or not 0 < start < n:
            return decay(quality.step_size, i, n)
        if i < start:
            return decay(quality.step_size, i, start)
        return decay(quality.harden_step, i - start, n - start)

    def transforms(i: int) -> list:
        every = max(1, quality.eot_every)
        if quality.eot_samples <= 0 or i < quality.eot_start or (i - quality.eot_start) % every != every - 1:
            return [lambda v: v]  # a clean step: its strength estimate is exact, so early stop can trust it
        return [eot.sample(generator) for _ in range(quality.eot_samples)]

    def descend(
        level: _Level, delta: torch.Tensor, n_steps: int, record: list | None
    ) -> tuple[torch.Tensor, bool]:
        nonlocal done
        opt = torch.optim.Adam([delta], lr=quality.step_size * epsilon) if optimizer == "adam" else None
        velocity = torch.zeros_like(delta)
        for i in range(n_steps):
            grad = torch.zeros_like(delta)
            estimate = None
            for transform in transforms(i):
                g, strengths = gradient(level, delta, encoders, transform, lpips_weight, lpips_budget, cancel)
                grad += g
                estimate = min(strengths) if estimate is None else estimate
            if record is not None and estimate is not None and estimate >= stop:
                record.append(estimate)
                return delta, True
            with torch.no_grad():
                if opt is None:
                    # Momentum on the mean-normalised gradient (MI-FGSM): steadier signs, so the decaying
                    # steps keep refining instead of oscillating; measured ~2x fewer steps to a strength.
                    velocity.mul_(quality.momentum).add_(grad / grad.abs().mean().clamp_min(1e-20))
                    delta -= schedule(i, n_steps) * velocity.sign()
                else:
                    for group in opt.param_groups:
                        group["lr"] = schedule(i, n_steps)
                    delta.grad = grad
                    opt.step()
                delta.copy_(project(delta, level.limit, level.images))
            done += 1
            if record is not None:
                record.append(estimate)
            if progress is not None:
                progress(
                    done,
                    total_steps,
                    {"phase": "fine" if record is not None else "coarse", "strength": estimate},
                )
        return delta, False

    # On a CPU, keep each step's freed activations mapped for the next step (see allocator.py).
    with reuse_freed_memory(device.type == "cpu"):
        delta0 = (torch.rand(x.shape, generator=generator) * 2 - 1).to(device) * lim * quality.random_start
        delta0 = project(delta0, lim, x)
        if quality.coarse_steps > 0 and min(x.shape[-2:]) >= 128:
            xc, lc = _half(x), _half(lim)
            tc = None if target_image is None else _half(target_image)
            coarse = prepare(xc, lc, encoders, target, tc, tile)
            dc = project(_half(delta0), lc, xc)
            dc, _ = descend(coarse, dc, quality.coarse_steps, None)
            delta0 = F.interpolate(dc, size=x.shape[-2:], mode="bilinear", align_corners=False)
            delta0 = project(delta0, lim, x)
            del coarse
        else:
            total_steps = quality.steps
        fine = prepare(x, lim, encoders, target, target_image, tile)
        history: list[float] = []
        delta, early = descend(fine, delta0.clone(), quality.steps, history)
    return OptimiseResult(
        delta=delta.detach()[0].cpu(),
        steps=done,
        seconds=time.perf_counter() - started,
        stopped_early=early,
        history=history,
    )
