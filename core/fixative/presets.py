"""The named presets of the perceptual budget (``--intensity``) and effort (``--quality``).

The numbers live here and only here; README's table is generated from them (see ``fixative presets``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import BadParameterError


@dataclass(frozen=True)
class Intensity:
    """How much each pixel may change: a multiple of the just-noticeable difference, under a hard cap."""

    jnd_scale: float  # per-pixel budget in JNDs of the perceptual model (optimise.budget)
    epsilon: float  # hard L-infinity cap of every RGB channel, in 0..1 units
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
    bank_start: bool = False  # start from the encoder's trained universal perturbation when one fits
    view_weight: float = (
        0.0  # weight of the loss on what the model sees (its decoder's picture), when it has one
    )
    latent_weight: float = 1.0  # weight of the loss on the latents themselves (0: what the model sees only)
    # What the model sees pulls on the latents through a fresh decoder pass every n-th step; in between, its
    # last pull on same-shaped latents is reused (the step then costs the encoder's passes alone).
    view_every: int = 1
    # Clean steps on the file's grid after rounding (optimise.loop: descend_on_grid). 0 in every preset: on
    # `default` two gave 3-8 % more decoded share for 2-6 % less left after the cleaners (docs/efficacy.md).
    grid_passes: int = 0


INTENSITIES: dict[str, Intensity] = {
    "low": Intensity(jnd_scale=0.5, epsilon=6 / 255, lpips_budget=0.03, lpips_weight=0.0),
    "default": Intensity(jnd_scale=1.0, epsilon=12 / 255, lpips_budget=0.05, lpips_weight=0.0),
    "high": Intensity(jnd_scale=2.0, epsilon=20 / 255, lpips_budget=0.10, lpips_weight=0.0),
}

QUALITIES: dict[str, Quality] = {
    # Measured in bench/ (docs/speed.md): momentum + geometric decay reach a plain 100-step PGD loop's
    # strength in about 10 steps.
    # `default` converges clean for 12 steps (their own 0.5 -> 0.05 decay), then hardens for 8 steps from
    # 0.25·ε with EOT on every 2nd: after 20 steps within ~0.01 of EOT on every 4th step throughout, in
    # strength and robustness, but it reaches a given clean strength in 2-5 fewer steps.
    # Since the public cleaners joined the EOT (issue 15), `default` hardens on every step from step 8: on the
    # Great Wave at 256² the share kept after JPEG 75 went 0.34 -> 0.41, downscale 0.5 0.45 -> 0.62, IMPRESS
    # 0.15 -> 0.24, for strength 0.33 -> 0.31 (bench/efficacy.py has the set).
    # Hardening from step 4 instead of 8 (issue 15, 2026-12-04, same time per image): on the Great Wave
    # (style, concept, edit) and Mucha's Reverie (style, edit) at 256² every cleaner leaves more strength
    # (e.g. style after JPEG 75 0.122 -> 0.142, after downscale 0.25 0.070 -> 0.080 on the Great Wave), for
    # 2-5 % less clean strength and decoded share. Hardening from step 2 or 0 buys a little more robustness
    # for more clean strength (0.306 -> 0.289 / 0.277); blurring the gradient (TI-FGSM) and a clean pass in
    # every hardening step were tried and did not leave more after the cleaners.
    # What the hardening steps purify with is eot.TRAINING_MIX (since 2026-12-05 the cleaners that remove
    # the most, planned stratified, and since 2026-12-06 served copies: left small; the figures above were
    # measured with the earlier mix of every kind).
    # With it `slow`'s 40 steps buy robustness: on the Great Wave and Mucha's Reverie (style, edit, 256²)
    # 6-12 % more strength than `default` left after each of JPEG 75/50, downscale 0.5/0.25, noise 0.1 +
    # resize and blur, for 11 % less before any cleaner; with the earlier mix `slow` left no more.
    # `view_weight` 2 (default, slow) also pulls what the decoder makes of the latents toward its picture of
    # the target: on the shared artworks at 256² (taef2) the decoded share goes from 0.04-0.07 to ~0.34
    # (style), ~0 to ~0.24 (concept), ~0.02 to ~0.30 (edit, grey target) for about half the latent strength;
    # weight 4 gained little more (bench/efficacy.py). `fast` moves the latents only.
    # The ceiling at 1 JND (latent_weight 0, no EOT: what the model sees as the only aim, `python -m
    # bench.efficacy --preset latent_weight=0,eot_samples=0`, five images): decoded share style 0.31-0.41,
    # concept 0.21-0.27, edit 0.24-0.34 with no latent strength left; `default` reaches 69-81 % of it.
    # `fast` starts from the start bank's universal perturbation where one fits (optimise/start.py; the edit
    # shield's patterns, taef2): on the Great Wave at 512² (unseen in training) strength 0.413 -> 0.420,
    # after 0.5x 0.258 -> 0.281, after JPEG 75 0.101 -> 0.107 in the same 10 steps. `default` does not: its
    # decoded share went 0.309 -> 0.294 (the bank is trained on the latents only), docs/speed.md.
    # `fast` decays to 0.15 of each pixel's limit, not 0.05 (2026-12-05): a last step of 0.05 is a tenth of
    # one level of the file's grid in flat areas, and rounding to the grid gives it back. Tuned on Mucha's
    # Reverie and Monet at 512² (style, edit): the plain loop's strength in 4-7 steps instead of 4-8 (the
    # Reverie's edit shield reaches it with neither, 0.015 short instead of 0.019); raced on the Great Wave,
    # which it was not tuned on: edit reached in 7 steps (10 did not), style in 4 (was 5; docs/speed.md).
    # `fast`'s first step is the whole limit (1.0, was 0.5; 2026-12-05): with the early stop, its first steps
    # are most of the run. On four artworks at 512² the plain loop's strength in 3-6 steps instead of 4-7
    # (six artwork x method pairs, one tie; the Reverie's edit shield 0.012 short after 10, was 0.015); raced
    # on the Great Wave: edit in 5 steps, 5.6 s (was 7, 7.4 s), style in 5, 5.2 s (was 4, 4.1 s: its 4th
    # written file fell just short); docs/speed.md.
    "fast": Quality(
        steps=10, eot_samples=0, step_size=1.0, early_stop=0.97, final_step=0.15, bank_start=True
    ),
    "default": Quality(
        steps=20,
        eot_samples=1,
        step_size=0.5,
        early_stop=0.97,
        eot_start=4,
        harden_step=0.3,
        view_weight=2.0,
        # The decoder every third step, its pull reused between (2026-12-06, docs/speed.md): on five artworks
        # at 256² what the model sees within 0.005 of pulling every step, within 0.003 after each of JPEG
        # 75/50, downscale 0.25, noise 0.1 + resize; latent strength 0-4 % lower; optimising at 512² on the
        # Great Wave 28.2 -> 21.7 s (style), 28.0 -> 21.6 s (concept), 27.6 -> 20.9 s (edit).
        view_every=3,
    ),
    # `slow` runs the decoder every third step as `default` (2026-12-06): the Great Wave, Mucha's Reverie and
    # the astronaut at 256², every method, what the model sees within 0.001 of every step, within 0.005
    # after the four cleaners, latent strength 0-0.002 lower; the Great Wave's style cloak at 512²
    # optimising 48.2 -> 34.9 s.
    "slow": Quality(
        steps=40,
        eot_samples=1,
        step_size=0.5,
        early_stop=0.99,
        final_step=0.03,
        view_weight=2.0,
        view_every=3,
    ),
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
