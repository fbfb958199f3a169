"""Where the optimiser starts: a trained universal perturbation when one fits, else small seeded noise.

An iterative loop cannot be fast on a CPU unless its starting point already carries part of the answer.
For targets that do not depend on the user's own image (the built-in style kinds and edit patterns) a
*universal* perturbation per encoder family and target kind does: one small pattern, trained once on
artworks disjoint from those it is measured on (``training/start_bank.py``), tiled over the image and
scaled by the image's own perceptual budget, so it never spends more than the budget allows.

Banks are stored as safetensors (``banks/<family>.safetensors``), loaded without pickle; their metadata
says what they were trained on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import safe_open

from .budget import PerceptualBudget, to_rgb

BANKS = Path(__file__).resolve().parent / "banks"


@dataclass(frozen=True)
class StartBank:
    """Universal perturbations of one encoder family, one per target kind: (3, P, P) in budget units
    (each YCbCr channel as a share of its per-pixel limit, -1..1), tiled from the image's corner."""

    family: str
    patterns: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)

    def pattern_for(self, key: str | None) -> torch.Tensor | None:
        return None if key is None else self.patterns.get(key)


def target_key(goal) -> str | None:
    """The target kind a bank may hold a pattern for: ``style:<built-in style>`` or ``edit:<pattern>``;
    None for targets made from the user's own images (a concept anchor, a style image, a pipeline)."""
    details = getattr(goal, "details", None) or {}
    if goal.method == "style" and goal.kind == "procedural" and details.get("style"):
        return f"style:{details['style']}"
    if goal.method == "edit" and details.get("pattern"):
        return f"edit:{details['pattern']}"
    return None


def save_bank(bank: StartBank, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {key: value.detach().to(torch.float16).contiguous() for key, value in bank.patterns.items()}
    save_file(tensors, str(path), metadata={**bank.metadata, "family": bank.family})
    return path


def read_bank(path: str | Path) -> StartBank:
    """A bank from a safetensors file (no pickle: safetensors holds tensors and string metadata only)."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        patterns = {key: handle.get_tensor(key).float().clamp(-1, 1) for key in handle.keys()}
    for key, value in patterns.items():
        if value.ndim != 3 or value.shape[0] != 3:
            raise ValueError(f"{path}: pattern {key!r} has shape {tuple(value.shape)}, not (3, P, P)")
    return StartBank(metadata.get("family", Path(path).stem), patterns, metadata)


@lru_cache(maxsize=8)
def bank_for(family: str) -> StartBank | None:
    """The bank shipped for an encoder family, or None (also when its file is damaged: the optimiser then
    starts from noise, as the report's ``start`` says, and a warning names the file)."""
    path = BANKS / f"{family}.safetensors"
    if not path.is_file():
        return None
    try:
        return read_bank(path)
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types; any of them: no bank
        warnings.warn(f"start bank {path} unreadable ({exc}); starting from noise", stacklevel=2)
        return None


def tiled(pattern: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``pattern`` (3, P, Q) repeated from the top-left corner to cover (3, height, width)."""
    reps = (-(-height // pattern.shape[-2]), -(-width // pattern.shape[-1]))
    return pattern.repeat(1, *reps)[:, :height, :width]


def universal_delta(pattern: torch.Tensor, images: torch.Tensor, budget: PerceptualBudget) -> torch.Tensor:
    """The RGB change that ``pattern`` (budget units) makes on ``images`` (1, 3, H, W), inside ``budget``.
    Differentiable in ``pattern`` (the training script optimises through it)."""
    return in_budget(tiled(pattern.clamp(-1, 1).to(images), *images.shape[-2:]), images, budget)


def in_budget(units: torch.Tensor, images: torch.Tensor, budget: PerceptualBudget) -> torch.Tensor:
    """The RGB change for ``units`` (shares of each YCbCr channel's per-pixel limit), projected inside."""
    return budget.project(to_rgb(units * budget.limit.to(images)), images)


@dataclass
class Start:
    delta: torch.Tensor | None  # (1, 3, H, W); None once the optimiser has taken it (Descent.run)
    source: str  # "random" or "bank <family> <key>", for the report


def starting_point(
    images: torch.Tensor,
    budget: PerceptualBudget,
    encoders,
    goal,
    random_share: float,
    generator: torch.Generator,
    use_bank: bool = True,
) -> Start:
    """The first perturbation: the bank's pattern for this encoder family and target kind (when there is
    one and ``use_bank``), plus seeded uniform noise of ``random_share`` of the limit (the seed matters)."""
    noise = (torch.rand(images.shape, generator=generator) * 2 - 1).to(images.device) * random_share
    bank = bank_for(str(getattr(encoders[0], "family", ""))) if use_bank else None
    key = target_key(goal)
    pattern = bank.pattern_for(key) if bank is not None else None
    if pattern is None:
        return Start(in_budget(noise, images, budget), "random")
    units = (tiled(pattern.to(images.device), *images.shape[-2:])[None] + noise).clamp(-1, 1)
    return Start(in_budget(units, images, budget), f"bank {bank.family} {key}")
