"""The verdict of a check and its documented thresholds (docs/check.md), and the pictures a report shows."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..reports import Purified

PROTECTED_STRENGTH = 0.30  # strength on every protecting encoder needed to call a file protected
SURVIVES_STRENGTH = 0.15  # strength left after a purification for the protection to count as surviving it
ESTIMATE_MARGIN = 0.10  # extra strength asked of an estimate (no original): it runs slightly high


@dataclass
class Visuals:
    """Pixels for the HTML report, (3, H, W) 0..1; ``None`` where they could not be made."""

    original: torch.Tensor | None
    protected: torch.Tensor
    model_sees_original: torch.Tensor | None = None
    model_sees_protected: torch.Tensor | None = None
    decoder_name: str | None = None


def verdict(strength: float | None, robustness: list[Purified], exact: bool) -> tuple[str, str]:
    """("protected" | "weakened by X" | "not protected" | "not measured", the reason in words)."""
    if strength is None:
        return "not measured", "the strength could not be measured (see notes)"
    needed = PROTECTED_STRENGTH + (0 if exact else ESTIMATE_MARGIN)
    if strength < needed:
        return "not protected", f"strength {strength:.2f} is below {needed:.2f}"
    measured = [r for r in robustness if r.strength is not None]
    broken = sorted((r for r in measured if r.strength < SURVIVES_STRENGTH), key=lambda r: r.strength)
    if broken:
        worst = broken[0]
        return (
            f"weakened by {worst.purification}",
            f"strength {strength:.2f}, but {len(broken)} purification(s) leave less than "
            f"{SURVIVES_STRENGTH:.2f} (worst: {worst.purification}, {worst.strength:.2f})",
        )
    return "protected", (
        f"strength {strength:.2f} (>= {needed:.2f}) and at least {SURVIVES_STRENGTH:.2f} "
        f"left after each of {len(measured)} purification(s)"
    )


def thresholds() -> dict:
    return {
        "protected": PROTECTED_STRENGTH,
        "survives": SURVIVES_STRENGTH,
        "estimate_margin": ESTIMATE_MARGIN,
    }
