"""Strength after each purification an attacker can run (``purify.standard()``), beside its null: matched
noise put through the same purification."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..features import StrengthProbe
from ..reports import Purified
from . import purify
from .verdict import survived


def _decoder(encoders: list):
    decoder = next((e for e in encoders if getattr(e, "has_decoder", False)), None)
    if decoder is None:
        raise purify.PurificationUnavailable("needs a decoder; none of the encoders has one")
    return decoder


def purified_pair(item: purify.Purification, protected: torch.Tensor, original: torch.Tensor, encoders: list):
    """The purified protected image and what it is compared with (the equally purified original, or the
    original itself for costly purifications); raises ``PurificationUnavailable``."""
    pp = _purified(item, protected, encoders)
    return pp, original if item.baseline == "original" else _purified(item, original, encoders)


def _purified(item: purify.Purification, image: torch.Tensor, encoders: list) -> torch.Tensor:
    return item.apply(image, _decoder(encoders)) if item.needs == "decoder" else item.apply(image)


def robustness(
    probes: list[StrengthProbe],
    protected: torch.Tensor,
    original: torch.Tensor,
    chosen: list[purify.Purification],
    clean_strength: float | None,
    notes: list[str],
    noise: torch.Tensor | None = None,
    starting: Callable[[str], None] | None = None,
) -> list[Purified]:
    """One row per purification: strength left (the weakest encoder's), share of the clean strength kept,
    what the model sees; with ``noise`` (matched noise on the original), the same figures for the noise put
    through the same purification, and a purification counts as survived only when what is left is at
    least ``SURVIVES_STRENGTH`` and beats that null as the verdict asks of the clean strength
    (``verdict.survived``)."""
    rows = []
    encoders = [p.encoder for p in probes]
    for item in chosen:
        if starting is not None:
            starting(item.name)
        row = Purified(item.name)
        try:
            pp, oo = purified_pair(item, protected, original, encoders)
        except purify.PurificationUnavailable as exc:
            row.skipped = str(exc)
            notes.append(f"{item.name} skipped: {exc}")
            rows.append(row)
            continue
        scored = [p.realigned(item.apply, oo) for p in probes] if item.moves_pixels else probes
        nn = None if noise is None else _purified(item, noise, encoders)
        # the purified original encoded (and decoded) once for the file and its null
        compared = [p.compare(oo, *([pp] if nn is None else [pp, nn])) for p in scored]
        row.per_encoder = {
            p.encoder.name: round(c[0].strength, 4) for p, c in zip(scored, compared, strict=True)
        }
        row.strength = min(row.per_encoder.values())
        seen = next((c for p, c in zip(scored, compared, strict=True) if p.sees), None)
        if seen is not None:
            row.decoded_share = round(seen[0].decoded_share, 4)
        if nn is not None:
            # the strongest encoder's null: the rule below must not pass noise off on any of them
            row.noise_strength = round(max(c[1].strength for c in compared), 4)
            if seen is not None:
                row.noise_decoded_share = round(seen[1].decoded_share, 4)
        row.survives = survived(row)
        if clean_strength:
            row.share_kept = round(row.strength / clean_strength, 4)
        rows.append(row)
    return rows
