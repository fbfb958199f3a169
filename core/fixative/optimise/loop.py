"""The optimiser: move the encoders' features of the image toward the target's, inside the budget.

Signed-gradient PGD with momentum (or Adam), on one perturbation field for the whole image. Gradients are
gathered tile by tile (memory bounded by the tile, not the image) and blended with soft weights, so no
seam can form. The clean steps come first (converge), then the hardening steps purify EOT draws planned
ahead (stratified over the kinds and strengths of ``eot.TRAINING_MIX``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import BadParameterError, Cancelled, TargetWithinNoise
from ..features import DEFAULT_OVERLAP, DEFAULT_TILE, StrengthProbe, Tile, tile_weight, tiles
from ..presets import Quality
from . import eot
from .allocator import HUGE_KEEP_BELOW, KEEP_BELOW, reuse_freed_memory
from .budget import PerceptualBudget, gradient_in_ycc, lpips_distance
from .start import Start, starting_point

ProgressFn = Callable[[int, int, dict], None]
# Tiles per encoder call off the CPU: a GPU runs a batch of tiles in about the time of one. Not yet
# measured on a GPU (none was lent to this project); ``--tile-batch`` overrides it.
GPU_TILE_BATCH = 4
CancelFn = Callable[[], bool]
# Share of pixels moved per step on the file's grid (Descent.descend_on_grid): on the Great Wave's edit
# shield at 256² 30 % gained more per pass than 5 % or 15 %; every pixel at once lowered the strength.
GRID_SHARE = 0.3
# Above this many pixels the decoder's graph and the encoder's are held one after the other, not together
# (``gradient``): in the 4096² scan the SD-sized VAE's step peaked at 3.97 GB instead of 4.56 GB (+14 %
# time per step: one more encoder pass without a graph), taef2's at 2.98 GB instead of 3.08 GB (+8 %);
# docs/speed.md. Below it the image's own buffers leave room for both graphs, and time wins.
SPLIT_VIEW_PIXELS = 2048 * 2048


@dataclass
class OptimiseResult:
    delta: torch.Tensor | None  # (3, H, W) on CPU, inside the budget (None once protect has written it)
    steps: int
    seconds: float
    stopped_early: bool
    history: list[float] = field(default_factory=list)  # estimated strength after each step
    draws: list[eot.Draw] = field(default_factory=list)  # the purifications the hardening steps trained on
    start: str = "random"  # where the first perturbation came from (optimise.start)
    # The clean loss's gradient (3, H, W) at the final perturbation, or one step before it when the last
    # step was clean: which way to round each pixel to the file's grid (PerceptualBudget.quantise); None
    # after an early stop, whose delta is on the grid.
    gradient: torch.Tensor | None = None
    # Per encoder, the probe the run scored with, remembering the original's latents and what the model
    # sees of them: the report measures with it instead of encoding both again (None above
    # ``SPLIT_VIEW_PIXELS``, where memory binds: nothing is kept).
    probes: list[StrengthProbe] | None = None


@dataclass
class Problem:
    """One image's optimisation: its tiles, their blend weights, one strength probe per encoder."""

    images: torch.Tensor  # (1, 3, H, W)
    budget: PerceptualBudget
    tiles: list[Tile]
    weights: list[torch.Tensor]  # per tile, its blend ramp divided by the ramps' sum: they add up to 1
    probes: list[StrengthProbe]  # per encoder: target features of every tile
    start: list[float]  # summed squared distance original -> target, per encoder
    view_start: list[float | None] = field(default_factory=list)  # the same for what the model sees
    channels_last: list[bool] = field(default_factory=list)  # per encoder: feed it channels-last tiles
    split_view: bool = False  # hold the decoder's graph and the encoder's one after the other (less memory)


def _channels_last(encoder) -> bool:
    """Whether to feed ``encoder`` channels-last tiles (``Encoder.channels_last`` decides, and switches
    its weights); an encoder that is not Fixative's own is fed as it is."""
    return bool(getattr(encoder, "channels_last", lambda: False)())


def reuse_freed_memory_for(images: torch.Tensor, enabled: bool = True):
    """``allocator.reuse_freed_memory`` sized for ``images``: above ``SPLIT_VIEW_PIXELS``, where memory
    binds and not time, only blocks up to ``HUGE_KEEP_BELOW`` stay mapped (the SD-sized VAE's 4096² step
    3.55 GB instead of 3.94 GB, for 11 % more time; allocator.py has the figures)."""
    huge = images.shape[-2] * images.shape[-1] > SPLIT_VIEW_PIXELS
    return reuse_freed_memory(enabled, HUGE_KEEP_BELOW if huge else KEEP_BELOW)


def prepare(
    images: torch.Tensor,
    budget: PerceptualBudget,
    encoders,
    goal,
    tile: int,
    view_weight: float = 0.0,
    max_tiles: int | None = None,
    split_view: bool | None = None,
) -> Problem:
    """Tiles, blend weights and a strength probe per encoder for ``images`` (1, 3, H, W); with
    ``view_weight``, also what each encoder that has a decoder sees of the target. ``max_tiles`` keeps only
    the first tiles (the benchmarks time a step on a few tiles of a huge image and scale it by the count).
    ``split_view``: default above ``SPLIT_VIEW_PIXELS``."""
    layouts = [_channels_last(encoder) for encoder in encoders]  # first: the targets see the same weights
    h, w = images.shape[-2:]
    tile_list = tiles(h, w, tile, DEFAULT_OVERLAP)[:max_tiles]
    weights = blend_weights(tile_list, h, w, images.device)
    probes = [StrengthProbe.build(e, goal, images[0], tile_list=tile_list) for e in encoders]
    if split_view is None:
        split_view = h * w > SPLIT_VIEW_PIXELS
    keep = h * w <= SPLIT_VIEW_PIXELS and max_tiles is None  # the report's own tiles then: all of them
    distances = [starting_distances(p, images, view_weight > 0 and p.sees, keep) for p in probes]
    start, view_start = [d[0] for d in distances], [d[1] for d in distances]
    return Problem(images, budget, tile_list, weights, probes, start, view_start, layouts, split_view)


def reach_of_noise(problem: Problem, seed: int = 0) -> tuple[float, str]:
    """The strength toward the target of noise the size of the whole budget (``PerceptualBudget.noise``),
    and the encoder where it is lowest. Near 0 on artworks and photos; far below 0 on a flat picture whose
    target is close to it, where any change moves the latents farther than the target lies (a grey picture
    and the grey edit target). ``api.protect.REACH_FLOOR`` has the figures. Summed distances over the loss's
    own start, not ``features.strength``: that reads a zero distance as 0, where this must read it as far
    below any floor."""
    noisy = problem.budget.noise(problem.images, seed)
    scores = [
        (1 - probe.squared_sum(noisy) / start, getattr(probe.encoder, "name", "the encoder"))
        for probe, start in zip(problem.probes, problem.start, strict=True)
    ]
    return min(scores)


def blend_weights(tile_list: list[Tile], height: int, width: int, device) -> list[torch.Tensor]:
    """Each tile's ramp (``tile_weight``) divided by the sum of the ramps over it, so the tiles' gradients
    blend by plain addition: no image-sized normaliser each pass (67 MB at 4096²), no division."""
    ramps = [tile_weight(t, height, width, DEFAULT_OVERLAP, device) for t in tile_list]
    total = torch.zeros((1, 1, height, width), device=device)
    for t, ramp in zip(tile_list, ramps, strict=True):
        t.crop(total).add_(ramp)
    return [ramp / t.crop(total)[0].clamp_min(1e-8) for t, ramp in zip(tile_list, ramps, strict=True)]


@torch.no_grad()
def starting_distances(
    probe: StrengthProbe, images: torch.Tensor, sees: bool, keep: bool = False
) -> tuple[float, float | None]:
    """Summed squared distance of the latents of ``images`` to the target's (what the loss starts from)
    and, with ``sees``, of what the model sees of them to its picture of the target: the original encoded
    once for both (a whole pass over the image's tiles less). With ``keep`` the probe remembers both for
    the report (``StrengthProbe.remember``)."""
    latents = probe.features(images)
    start = sum(float((f - t).pow(2).sum()) for f, t in zip(latents, probe.target, strict=True))
    pictures = probe.pictures(latents) if probe.sees and (sees or keep) else None
    if keep:
        probe.remember(images, latents, pictures)
    if not sees:
        return max(start, 1e-12), None
    pairs = zip(pictures, probe.target_view(), strict=True)
    view = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in pairs)
    return max(start, 1e-12), max(view, 1e-12)


def tile_batches(tile_list: list[Tile], size: int) -> list[list[int]]:
    """Indices of tiles run through the encoders together: same-sized tiles, at most ``size`` at once."""
    groups: dict[tuple[int, int], list[int]] = {}
    for k, t in enumerate(tile_list):
        groups.setdefault((t.height, t.width), []).append(k)
    return [ks[i : i + max(1, size)] for ks in groups.values() for i in range(0, len(ks), max(1, size))]


def gradient(
    problem: Problem,
    delta: torch.Tensor,
    transform: Callable[[torch.Tensor], torch.Tensor],
    lpips_weight: float = 0.0,
    lpips_budget: float = 0.0,
    cancel: CancelFn | None = None,
    view_weight: float = 0.0,
    tile_batch: int = 1,
    latent_weight: float = 1.0,
    pulls: dict | None = None,
    reuse: bool = False,
) -> tuple[torch.Tensor, list[float]]:
    """The blended gradient of the normalised loss, and each encoder's strength estimate.

    The loss pulls each encoder's latents toward the target's and, with ``view_weight``, what its decoder
    makes of them toward its picture of the target: latent directions the decoder ignores then count for
    nothing, so what the model sees moves too. ``tile_batch`` same-sized tiles go through the encoders as
    one batch (a GPU's work per call; on a CPU one at a time keeps memory at one tile). With
    ``problem.split_view`` the same gradient comes from two graphs held one after the other
    (``_pull_of_the_view``). With ``pulls`` (a dict kept across steps) the view's pull on the latents is
    kept, and with ``reuse`` the kept pull of same-shaped latents stands in for the decoder's pass."""
    grad = torch.zeros_like(delta)
    sq = [0.0] * len(problem.probes)
    for batch in tile_batches(problem.tiles, tile_batch):
        if cancel is not None and cancel():
            raise Cancelled()
        chosen = [problem.tiles[k] for k in batch]
        d = torch.cat([t.crop(delta) for t in chosen]).detach().clone().requires_grad_(True)
        original = torch.cat([t.crop(problem.images) for t in chosen])
        x = original + d
        seen = transform(x)
        loss = x.new_zeros(())
        # a served or shifted copy is smaller: its share of the pixels scales the distances it adds up to
        resized = seen.shape[-2:] != x.shape[-2:]
        area = seen.shape[-2] * seen.shape[-1] / (x.shape[-2] * x.shape[-1])
        for e, probe in enumerate(problem.probes):
            fed = seen.contiguous(memory_format=torch.channels_last) if problem.channels_last[e] else seen
            sees = view_weight > 0 and problem.view_start[e] is not None
            if not resized:
                target = torch.cat([probe.target[k] for k in batch])
                pictures = torch.cat([probe.target_view()[k] for k in batch]) if sees else None
            else:
                target, pictures = _target_seen_through(probe, chosen, original, transform, sees)
            key, shape = (tuple(batch), e), tuple(fed.shape)  # one kept pull per tile batch and encoder
            kept = pulls.get(key) if (sees and reuse and pulls is not None) else None
            pull = kept[1] if kept is not None and kept[0] == shape else None
            if sees and pull is None and problem.split_view:
                pull = _pull_of_the_view(
                    probe.encoder, fed, pictures, view_weight / (problem.view_start[e] * area)
                )
            latents = probe.encoder(fed)
            term = (latents - target).pow(2).sum()
            sq[e] += float(term.detach()) / area
            loss = loss + latent_weight * term / (problem.start[e] * area)
            if sees and pull is None:
                view = (probe.encoder.decode(latents) - pictures).pow(2).sum()
                view = view_weight * view / (problem.view_start[e] * area)
                if pulls is None:
                    loss = loss + view
                else:  # its pull on the latents, kept for the steps that reuse it
                    (pull,) = torch.autograd.grad(view, latents)
            if pull is not None:  # the view's gradient, chained through the encoder's graph
                if pulls is not None and not resized:  # a served copy's size is not drawn again
                    pulls[key] = (shape, pull.detach())
                loss = loss + (latents * pull).sum()
        if lpips_weight > 0:
            dist = lpips_distance(x, original, per_image=True)
            if dist is not None:
                loss = loss + lpips_weight * F.relu(dist - lpips_budget).sum()
        loss.backward()
        for j, (t, k) in enumerate(zip(chosen, batch, strict=True)):
            t.crop(grad).add_(d.grad[j : j + 1] * problem.weights[k])
    return grad, [1 - s / st for s, st in zip(sq, problem.start, strict=True)]


@torch.no_grad()
def _target_seen_through(
    probe: StrengthProbe, chosen: list[Tile], original: torch.Tensor, transform, sees: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The target's latents (and what the model sees of them) for tiles seen through a purification that
    changes their size (a served copy): the target image, or for a latent-transform target the original,
    goes through the same ``transform``, as ``checks`` scores such a copy."""
    goal = probe.goal
    tiles_of_target = None
    if goal.image is not None:  # only the tiles' crops move to the device: not the whole image each time
        crops = torch.cat([t.crop(goal.image[None]) for t in chosen]).to(original)
        tiles_of_target = transform(crops)
    target = goal.features(probe.encoder, transform(original), tiles_of_target)
    return target, (probe.encoder.decode(target) if sees else None)


def _pull_of_the_view(encoder, fed: torch.Tensor, pictures: torch.Tensor, weight: float) -> torch.Tensor:
    """The view loss's gradient with respect to the latents, with the decoder's graph freed before the
    encoder's is built: the latents once without a graph, the decoder's pass and backward on them."""
    with torch.no_grad():
        latents = encoder(fed)
    latents.requires_grad_(True)
    (weight * (encoder.decode(latents) - pictures).pow(2).sum()).backward()
    return latents.grad


@dataclass
class Schedule:
    """Step sizes (shares of each pixel's own limit) and which steps purify, from a ``Quality`` preset.

    Geometric decay from ``step_size`` to ``final_step``: move, then refine. With ``harden_step`` the clean
    steps before ``eot_start`` decay on their own (as a short clean run would), then the purified
    hardening steps decay again from ``harden_step``.
    """

    quality: Quality

    def _decay(self, first: float, i: int, n: int) -> float:
        last = min(self.quality.final_step, first)
        return first * (last / first) ** (i / max(1, n - 1))

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
    budget: PerceptualBudget,
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
    tile_batch: int | None = None,
    levels: int = 255,
    reach_floor: float | None = None,
) -> OptimiseResult:
    """Optimise a perturbation for ``images`` (3, H, W) against every encoder at once, inside ``budget``.

    ``stop_at`` overrides the preset's early-stop strength (the benchmarks use it to time how long
    reaching a given strength takes); a run stops early only once the file it would write (on the grid
    of ``levels``, ``PerceptualBudget.quantise``) has that strength, and then returns that file's change.
    ``tile_batch``: tiles per encoder call (default: 1 on a CPU, ``GPU_TILE_BATCH`` elsewhere).
    With ``reach_floor``, raises ``TargetWithinNoise`` before the first step when noise of the budget's
    size scores under it toward the target (``reach_of_noise``: one encoder pass more).
    """
    if optimizer not in ("pgd", "adam"):
        raise BadParameterError(f"unknown optimizer {optimizer!r}; use pgd or adam")
    started = time.perf_counter()
    device = encoders[0].device
    x = images[None].to(device).float()
    budget = budget.to(device)
    generator = torch.Generator().manual_seed(seed)
    # On a CPU, keep each step's freed activations mapped for the next step (see allocator.py).
    with reuse_freed_memory_for(x, device.type == "cpu"):
        problem = prepare(x, budget, encoders, goal, tile, quality.view_weight)
        if reach_floor is not None:  # before the start is made: a target passed over costs no more
            reach, encoder = reach_of_noise(problem, seed)
            if reach < reach_floor:
                raise TargetWithinNoise(reach, encoder)
        begin = starting_point(x, budget, encoders, goal, quality.random_start, generator, quality.bank_start)
        batch = tile_batch or (1 if device.type == "cpu" else GPU_TILE_BATCH)
        descent = Descent(problem, quality, optimizer, generator, lpips_weight, lpips_budget, batch, levels)
        stop = quality.early_stop if stop_at is None else stop_at
        delta, early = descent.run(begin, stop, progress, cancel)  # takes begin's change
        # Which way each pixel's rounding to the file's grid costs least (an early stop returns the file's
        # own change, already on the grid: nothing left to round). After a clean last step its gradient,
        # one small step old, serves: measured on three artworks (`fast`, 256²) within 0.002 of a fresh
        # pass's strength, for one pass less. After a purified one, one more clean pass.
        final = None if early else descent.clean_gradient
        if not early and final is None:
            final = descent.gradient(delta, [], cancel)[0]
        if final is not None and quality.grid_passes > 0:  # round now, then descend on the grid
            delta, final = descent.descend_on_grid(delta, final, quality.grid_passes, cancel), None
    return OptimiseResult(
        delta=delta.detach()[0].cpu(),
        steps=len(descent.history) - (1 if early else 0),
        seconds=time.perf_counter() - started,
        stopped_early=early,
        history=descent.history,
        draws=descent.draws,
        start=begin.source,
        gradient=None if final is None else final.detach()[0].cpu(),
        probes=problem.probes if all(p.remembers for p in problem.probes) else None,
    )


class Descent:
    """The steps themselves: gradient (clean or through drawn purifications), momentum, step, projection."""

    def __init__(
        self,
        problem: Problem,
        quality: Quality,
        optimizer,
        generator,
        lpips_weight,
        lpips_budget,
        tile_batch=1,
        levels=255,
    ):
        self.problem, self.quality, self.generator = problem, quality, generator
        self.tile_batch, self.levels = tile_batch, levels
        self.schedule = Schedule(quality)
        self.optimizer = optimizer
        self.lpips = (lpips_weight, lpips_budget)
        self.history: list[float] = []
        self.draws: list[eot.Draw] = []
        self.clean_gradient: torch.Tensor | None = None  # the last step's, when that step was clean
        purifying = sum(self.schedule.purifies(i) for i in range(quality.steps))
        self.plan = eot.plan(generator, purifying * quality.eot_samples)  # drawn ahead, stratified
        self.pulls: dict | None = {} if quality.view_every > 1 else None  # the view's kept pulls

    def run(self, start: Start, stop: float, progress, cancel) -> tuple[torch.Tensor, bool]:
        """The steps from ``start``, whose change is taken out of it: held by the caller too, it lived
        through the whole run (201 MB at 4096², the 4th image-sized buffer of an SD-sized run's peak)."""
        budget, x = self.problem.budget, self.problem.images
        delta, start.delta = start.delta, None
        adam = None
        if self.optimizer == "adam":
            adam = torch.optim.Adam([delta], lr=self.quality.step_size * budget.cap)
        velocity = torch.zeros_like(delta)
        rounding_loss = 0.0  # what rounding to the file's grid cost the last time a stop was tried
        for i in range(self.quality.steps):
            purifies = self.schedule.purifies(i)
            drawn = [self.plan.pop(0) for _ in range(self.quality.eot_samples)] if purifies else []
            self.draws.extend(drawn)
            self.clean_gradient = None  # the last step's gradient must not outlive it: 201 MB at 4096²
            reuse = self.pulls is not None and i % self.quality.view_every != 0  # no decoder pass this step
            grad, estimate = self.gradient(delta, drawn, cancel, reuse)
            self.clean_gradient = None if drawn else grad
            self.history.append(estimate)
            if estimate >= stop + rounding_loss:
                written = self.on_grid(delta, grad)
                reached = self.strength(written)
                if reached >= stop:  # the file, not only the float perturbation
                    return written, True
                del written  # not held through the next step's passes
                # the file fell short by this much: look again once the float estimate has made it up
                rounding_loss = max(0.0, estimate - reached)
            with torch.no_grad():
                share = self.schedule.step(i)
                if adam is None:
                    # Momentum on the mean-normalised gradient (MI-FGSM), in YCbCr: steadier signs, so the
                    # decaying steps keep refining instead of oscillating (~2x fewer steps to a strength).
                    ycc = gradient_in_ycc(grad)
                    velocity.mul_(self.quality.momentum).add_(ycc.div_(ycc.abs().mean().clamp_min(1e-20)))
                    del ycc
                    delta = budget.project(budget.step(delta, velocity, share), x)
                else:  # Adam steps its own parameter tensor in place: keep that very tensor
                    for group in adam.param_groups:
                        group["lr"] = share * budget.cap
                    delta.grad = grad
                    adam.step()
                    delta.copy_(budget.project(delta, x))
            del grad  # (kept as clean_gradient when clean) not held through the next step's passes
            if progress is not None:
                progress(i + 1, self.quality.steps, {"phase": "optimise", "strength": estimate})
        return delta, False

    def on_grid(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The change of the file ``delta`` would be written as (PerceptualBudget.quantise)."""
        x = self.problem.images
        return self.problem.budget.quantise(x[0], delta[0], self.levels, grad[0])[None] - x

    def descend_on_grid(self, delta: torch.Tensor, grad: torch.Tensor, passes: int, cancel) -> torch.Tensor:
        """The file's change after ``passes`` steps on its grid: round (``on_grid``), then per pass one clean
        gradient at the written file and, for the ``GRID_SHARE`` of pixels whose best in-box grid point
        gains most to first order, that point. Moving every pixel at once overshoots (a one-level signed
        step lowered `fast`'s strength); the optimiser's own last steps refine below the grid, which
        rounding gives back. Measured in docs/efficacy.md ("Descent on the grid after rounding")."""
        written = self.on_grid(delta, grad)
        for _ in range(passes):
            grad = self.gradient(written, [], cancel)[0]
            with torch.no_grad():
                candidate = self.on_grid(written, grad)
                gain = -(grad * (candidate - written)).sum(dim=1).flatten()
                keep = max(1, int(gain.numel() * (1 - GRID_SHARE)))
                threshold = gain.kthvalue(keep).values  # kthvalue: no size limit (quantile stops at 2^24)
                take = ((gain > threshold) & (gain > 0)).view(1, 1, *written.shape[-2:])
                written = torch.where(take, candidate, written)
        return written

    @torch.no_grad()
    def strength(self, delta: torch.Tensor) -> float:
        """The weakest encoder's strength at ``delta`` (one forward pass per tile)."""
        seen = self.problem.images + delta
        return min(
            1 - p.squared_sum(seen) / start
            for p, start in zip(self.problem.probes, self.problem.start, strict=True)
        )

    def gradient(self, delta, drawn, cancel, reuse: bool = False) -> tuple[torch.Tensor, float]:
        """Summed gradient over the drawn purifications (one clean pass when none), and the strength
        estimate of the first pass (exact on a clean step, so early stop can trust it)."""
        grad, estimate = None, None
        for transform in drawn or [eot.CLEAN]:
            g, strengths = gradient(
                self.problem,
                delta,
                transform,
                *self.lpips,
                cancel,
                view_weight=self.quality.view_weight,
                tile_batch=self.tile_batch,
                latent_weight=self.quality.latent_weight,
                pulls=self.pulls,
                reuse=reuse,
            )
            grad = g if grad is None else grad.add_(g)  # no zero buffer: one pass is most steps
            estimate = min(strengths) if estimate is None else estimate
        return grad, float(estimate)
