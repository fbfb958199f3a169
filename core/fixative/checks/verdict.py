"""The verdict of a check and its documented thresholds (docs/check.md), and the pictures a report shows."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..reports import Purified
from .estimate import ESTIMATE_BIAS_LEAST, ESTIMATE_ERROR

# Justified by the null: matched noise (the same per-pixel |change| with random signs) scores 0.01-0.02 on
# the shared images at the default budget with taef2 (bench/efficacy.py, "noise" column).
PROTECTED_STRENGTH = 0.12  # strength on every protecting encoder needed to call "protected" (>= 6x noise)
SURVIVES_STRENGTH = 0.06  # strength left after a purification to count as surviving it (half the above)
# What the model sees (decoded share: how far its decoder's picture of the file moved toward its picture of
# the target) also counts, since issue 15 aims the protection at it: matched noise scores -0.03 to 0.01 on
# the shared images (0.04 at most after IMPRESS), default protections 0.14-0.34 (docs/efficacy.md).
PROTECTED_VIEW = 0.10  # decoded share that makes latents of at least SURVIVES_STRENGTH a protection
SURVIVES_VIEW = PROTECTED_VIEW / 2  # after a cleaner: half, as SURVIVES_STRENGTH is half PROTECTED_STRENGTH
SURVIVES_STRENGTH_SEEN = SURVIVES_STRENGTH / 2  # strength left that SURVIVES_VIEW makes a survival
ESTIMATE_MARGIN = ESTIMATE_ERROR  # extra strength asked of an estimate (no original): its largest error
# A protection must also beat matched noise on its own image clearly, so a noise-like target (a grainy style
# that plain noise already moves toward) cannot pass noise off as protection.
NOISE_MULTIPLE = 3.0


def noise_like(strength: float, noise_strength: float | None) -> bool:
    """Whether ``strength`` fails to beat matched noise on the same image by ``NOISE_MULTIPLE``."""
    return noise_strength is not None and strength < NOISE_MULTIPLE * max(noise_strength, 0.0)


def view_of(rows) -> tuple[float | None, float | None]:
    """What the model sees, and its null, as the verdict reads them: from the first encoder
    (``EncoderStrength`` rows) that has its decoder; (None, None) when none has."""
    seen = next((r for r in rows if r.decoded_share is not None), None)
    return (None, None) if seen is None else (seen.decoded_share, seen.noise_decoded_share)


def moves_the_view(strength: float, view: float | None, view_noise: float | None) -> bool:
    """Whether what the model sees moved far enough to count where the latents alone fall short of
    ``PROTECTED_STRENGTH``: decoded share at least ``PROTECTED_VIEW`` and ``NOISE_MULTIPLE`` times its null,
    on latents moved at least ``SURVIVES_STRENGTH``. Only measured with the original."""
    return (
        view is not None
        and strength >= SURVIVES_STRENGTH
        and view >= PROTECTED_VIEW
        and not noise_like(view, view_noise)
    )


def under_the_line(
    strength: float,
    noise_strength: float | None,
    view: float | None = None,
    view_noise: float | None = None,
) -> bool:
    """Whether an exact strength (and what the model sees) is short of what ``verdict`` calls protected."""
    if noise_like(strength, noise_strength):
        return True
    return strength < PROTECTED_STRENGTH and not moves_the_view(strength, view, view_noise)


def survived(row: Purified) -> bool:
    """Whether what a purification left is still a protection: at least ``SURVIVES_STRENGTH`` and, where
    matched noise went through the same purification, ``NOISE_MULTIPLE`` times what it scores. As for the
    clean verdict, what the model sees counts where that null was measured (with the original): half the
    clean lines, a strength of ``SURVIVES_STRENGTH_SEEN`` where the decoded share left is ``SURVIVES_VIEW``
    and ``NOISE_MULTIPLE`` times its null's."""
    if row.strength is None or noise_like(row.strength, row.noise_strength):
        return False
    if row.strength >= SURVIVES_STRENGTH:
        return True
    return (
        row.decoded_share is not None
        and row.noise_decoded_share is not None
        and row.strength >= SURVIVES_STRENGTH_SEEN
        and row.decoded_share >= SURVIVES_VIEW
        and not noise_like(row.decoded_share, row.noise_decoded_share)
    )


@dataclass
class Visuals:
    """Pixels for the HTML report, (3, H, W) 0..1; ``None`` where they could not be made."""

    original: torch.Tensor | None
    protected: torch.Tensor
    model_sees_original: torch.Tensor | None = None
    model_sees_protected: torch.Tensor | None = None
    decoder_name: str | None = None


def verdict(
    strength: float | None,
    robustness: list[Purified],
    exact: bool,
    detected: bool | None = None,
    noise_strength: float | None = None,
    not_measured: tuple[str, ...] = (),
    view: float | None = None,
    view_noise: float | None = None,
) -> tuple[str, str]:
    """("protected[; not measured against ...]" | "weakened by X" | "not protected" | "cannot tell (estimate
    only)" | "not measured", the reason in words). Without the original, only a file whose pixels show the
    protection (``estimate.detection``) can be called protected; copied metadata proves nothing."""
    if strength is None:
        return "not measured", "the strength could not be measured (see notes)"
    if not exact and not detected:
        return "cannot tell (estimate only)", (
            f"without the original the strength can only be estimated ({strength:.2f}, but estimates ran up "
            f"to {ESTIMATE_ERROR:.2f} too high on the calibration set, clean images included), "
            "and the pixels show no protection toward the recorded target (metadata can be copied onto any "
            "image); give --original to measure it"
        )
    needed = PROTECTED_STRENGTH + (0 if exact else ESTIMATE_MARGIN)
    if not exact and PROTECTED_STRENGTH + ESTIMATE_BIAS_LEAST <= strength < needed:
        # Estimates ran 0.16-0.62 too high: the exact strength may lie either side of the line.
        return "cannot tell (estimate only)", (
            f"estimated strength {strength:.2f}: estimates ran {ESTIMATE_BIAS_LEAST:.2f}-"
            f"{ESTIMATE_ERROR:.2f} too high on the calibration set, so the exact strength may be either "
            f"side of {PROTECTED_STRENGTH:.2f}; give --original to measure it"
        )
    by_view = exact and strength < needed and moves_the_view(strength, view, view_noise)
    if strength < needed and not by_view:
        seen = (
            f", and what the model sees moved {view:.2f} of the way (a protection needs {PROTECTED_VIEW:.2f}"
            f" and {NOISE_MULTIPLE:g}x matched noise, on a strength of at least {SURVIVES_STRENGTH:.2f})"
            if exact and view is not None
            else ""
        )
        return "not protected", f"strength {strength:.2f} is below {needed:.2f}{seen}"
    if noise_like(strength, noise_strength):
        return "not protected", (
            f"strength {strength:.2f} is less than {NOISE_MULTIPLE:g}x what matched noise scores "
            f"({noise_strength:.2f})"
        )
    measured = [r for r in robustness if r.strength is not None]
    broken = sorted((r for r in measured if not survived(r)), key=lambda r: r.strength)
    estimated = "" if exact else " (estimated)"
    if broken:
        worst = broken[0]
        null = f", matched noise {worst.noise_strength:.2f}" if worst.noise_strength is not None else ""
        return (
            f"weakened by {worst.purification}{estimated}",
            f"strength {strength:.2f}, but {len(broken)} purification(s) leave less than "
            f"{SURVIVES_STRENGTH:.2f} (or {SURVIVES_STRENGTH_SEEN:.2f} where what the model sees keeps "
            f"{SURVIVES_VIEW:.2f}) or under {NOISE_MULTIPLE:g}x what matched noise put through them "
            "scores "
            f"(worst: {worst.purification}, {worst.strength:.2f}{null})",
        )
    said = (
        "protected"
        + estimated
        + (f"; not measured against {', '.join(not_measured)}" if not_measured else "")
    )
    view_null = max(view_noise or 0.0, 0.0)
    why = (
        f"strength {strength:.2f} (under {needed:.2f}, but what the model sees moved {view:.2f} of the way, "
        f">= {PROTECTED_VIEW:.2f} and >= {NOISE_MULTIPLE:g}x matched noise's {view_null:.2f})"
        if by_view
        else f"strength {strength:.2f} (>= {needed:.2f})"
    )
    on_view = [r.purification for r in measured if r.strength < SURVIVES_STRENGTH]
    return said, (
        f"{why} and at least {SURVIVES_STRENGTH:.2f} "
        f"left after each of {len(measured)} purification(s)"
        + (
            f" (after {', '.join(on_view)}: at least {SURVIVES_STRENGTH_SEEN:.2f}, with what the model sees "
            f"keeping at least {SURVIVES_VIEW:.2f})"
            if on_view
            else ""
        )
        + (
            f", each >= {NOISE_MULTIPLE:g}x matched noise put through it"
            if any(r.noise_strength is not None for r in measured)
            else ""
        )
    )


# What a protection made at full size loses to a site's smaller copy, and the one remedy measured to help
# (docs/efficacy.md, "Protect the size you post"): said by `protect` and `check` alike.
POSTED_SIZE_REMEDY = (
    "protect a copy at the size you post (--max-side; Krita's and GIMP's export and the web page: the "
    "longest side posted): on three shared artworks that kept 2-5x as much as a full-size protection's "
    "half-size copy"
)


def remedy(said: str) -> str | None:
    """The advice a verdict calls for, where one was measured to help."""
    if said.startswith("weakened by served at"):
        return f"a copy a site serves smaller keeps the least of this protection: {POSTED_SIZE_REMEDY}"
    return None


def thresholds() -> dict:
    return {
        "protected": PROTECTED_STRENGTH,
        "protected_view": PROTECTED_VIEW,
        "survives": SURVIVES_STRENGTH,
        "survives_view": SURVIVES_VIEW,
        "estimate_margin": ESTIMATE_MARGIN,
    }
