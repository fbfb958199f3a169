"""The named presets of the perceptual budget (``--intensity``) and effort (``--quality``).

The numbers live here and only here; README's table is generated from them (see ``fixative presets``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import BadParameterError


@dataclass(frozen=True)
class Intensity:
    """How much each pixel may change."""

    epsilon: float  # L-infinity bound, in 0..1 units (hard limit)
    min_mask: float  # share of epsilon left to the flattest areas (texture-aware mask)
    lpips_budget: float  # LPIPS distance allowed before the penalty starts (Glaze style)
    lpips_weight: float  # weight of that penalty (0 disables it)


@dataclass(frozen=True)
class Quality:
    """How hard the optimiser works."""

    steps: int
    eot_samples: int  # random purifications (JPEG/resize/blur/noise) averaged per step
    step_size: float  # first signed-gradient step, as a share of epsilon
    early_stop: float  # stop once strength reaches this (1.0 = never)
    final_step: float = 0.05  # last step, as a share of epsilon (geometric decay from step_size)
    momentum: float = 0.75  # weight of past (normalised) gradients in each signed step
    eot_every: int = 1  # purify only every n-th step (the others are clean, cheaper to converge)
    eot_start: int = 0  # clean steps before the first purified one: converge first, then harden
    harden_step: float | None = None  # if set, the steps from eot_start decay anew from this share of epsilon
    random_start: float = 0.1  # uniform random start, as a share of the limit (makes the seed matter)


INTENSITIES: dict[str, Intensity] = {
    "low": Intensity(epsilon=4 / 255, min_mask=0.5, lpips_budget=0.03, lpips_weight=0.0),
    "default": Intensity(epsilon=10 / 255, min_mask=0.5, lpips_budget=0.05, lpips_weight=0.0),
    "high": Intensity(epsilon=16 / 255, min_mask=0.5, lpips_budget=0.10, lpips_weight=0.0),
}

QUALITIES: dict[str, Quality] = {
    # Measured in bench/ (docs/speed.md): momentum + geometric decay reach a plain 100-step PGD loop's
    # strength in about 10 steps.
    # `default` converges clean for 12 steps (their own 0.5 -> 0.05 decay), then hardens for 8 steps from
    # 0.25·ε with EOT on every 2nd: after 20 steps within ~0.01 of EOT on every 4th step throughout, in
    # strength and robustness, but it reaches a given clean strength in 2-5 fewer steps.
    "fast": Quality(steps=10, eot_samples=0, step_size=0.5, early_stop=0.97),
    "default": Quality(
        steps=20,
        eot_samples=1,
        step_size=0.5,
        early_stop=0.97,
        eot_every=2,
        eot_start=12,
        harden_step=0.25,
    ),
    "slow": Quality(steps=40, eot_samples=1, step_size=0.5, early_stop=0.99, final_step=0.03),
}


def intensity(name: str) -> Intensity:
    return _named(INTENSITIES, name, "intensity")


def quality(name: str) -> Quality:
    return _named(QUALITIES, name, "quality")


def _named(table: dict, name: str, what: str):
    try:
        return table[name]
    except KeyError:
        raise BadParameterError(f"unknown {what} {name!r}; choose one of: {', '.join(table)}") from None


def as_table() -> dict[str, dict[str, dict]]:
    return {
        "intensity": {k: asdict(v) for k, v in INTENSITIES.items()},
        "quality": {k: asdict(v) for k, v in QUALITIES.items()},
    }
