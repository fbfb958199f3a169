"""Strength after each purification an attacker can run (``purify.standard()``)."""

from __future__ import annotations

import torch

from ..features import StrengthProbe
from ..reports import Purified
from . import purify
from .verdict import SURVIVES_STRENGTH


def purified_pair(item: purify.Purification, protected: torch.Tensor, original: torch.Tensor, encoders: list):
    """The purified protected image and what it is compared with (the equally purified original, or the
    original itself for costly purifications); raises ``PurificationUnavailable``."""
    if item.needs == "decoder":
        decoder = next((e for e in encoders if getattr(e, "has_decoder", False)), None)
        if decoder is None:
            raise purify.PurificationUnavailable("needs a decoder; none of the encoders has one")
        pp = item.apply(protected, decoder)
        oo = original if item.baseline == "original" else item.apply(original, decoder)
        return pp, oo
    pp = item.apply(protected)
    return pp, original if item.baseline == "original" else item.apply(original)


def robustness(
    probes: list[StrengthProbe],
    protected: torch.Tensor,
    original: torch.Tensor,
    chosen: list[purify.Purification],
    clean_strength: float | None,
    notes: list[str],
) -> list[Purified]:
    """One row per purification: strength left (the weakest encoder's), share of the clean strength kept."""
    rows = []
    encoders = [p.encoder for p in probes]
    for item in chosen:
        row = Purified(item.name)
        try:
            pp, oo = purified_pair(item, protected, original, encoders)
        except purify.PurificationUnavailable as exc:
            row.skipped = str(exc)
            notes.append(f"{item.name} skipped: {exc}")
            rows.append(row)
            continue
        scored = [p.realigned(item.apply, oo) for p in probes] if item.moves_pixels else probes
        row.per_encoder = {p.encoder.name: round(p.strength(pp, oo)[0], 4) for p in scored}
        seeing = next((p for p in scored if p.sees), None)
        if seeing is not None:
            row.decoded_share = round(seeing.decoded_share(pp, oo), 4)
        row.strength = min(row.per_encoder.values())
        row.survives = row.strength >= SURVIVES_STRENGTH
        if clean_strength:
            row.share_kept = round(row.strength / clean_strength, 4)
        rows.append(row)
    return rows
