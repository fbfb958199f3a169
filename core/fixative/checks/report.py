"""Readable terminal table and JSON for a check result (``CheckReport``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..reports import CheckReport, clean


def number(value, digits: int = 2) -> str:
    """A figure as the reports print it: '-' for none, no sign on a figure that rounds to zero."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if round(value, digits) == 0:
            value = 0.0  # "-0.00" reads as a sign that is not there
        return f"{value:.{digits}f}"
    return str(value)


def _bar(value: float | None, width: int = 20) -> str:
    if value is None:
        return ""
    filled = round(max(0.0, min(1.0, value)) * width)
    return "#" * filled + "." * (width - filled)


def table(result: CheckReport) -> str:
    """Plain-text summary: verdict first, then strength per encoder, robustness, transfer and notes."""
    lines = [f"{result.file or 'image'}: {result.verdict.upper()}", f"  {result.verdict_reason}"]
    if not result.exact:
        lines.append("  (no original given: strengths are estimates)")
    lines += ["", f"  {'encoder':<24} {'strength':>8}"]
    for row in result.encoders:
        noise = f"  (noise {number(row.noise_strength)})" if row.noise_strength is not None else ""
        if row.decoded_share is not None:
            noise += f"  model sees {number(row.decoded_share)}"
            if row.noise_decoded_share is not None:
                noise += f" (noise {number(row.noise_decoded_share)})"
        lines.append(f"  {row.name:<24} {number(row.strength):>8}  {_bar(row.strength)}{noise}")
    p = result.perceptual
    if p:
        lines += [
            "",
            f"  perceptual: PSNR {number(p.psnr_db, 1)} dB  SSIM {number(p.ssim, 3)}  "
            f"LPIPS {number(p.lpips, 3)}  L∞ {number(p.linf_255, 0)}/255",
        ]
    if result.robustness:
        nulls = any(r.noise_strength is not None for r in result.robustness)
        null_head = f"  {'(noise)':>7}" if nulls else ""
        lines += ["", f"  {'after purification':<24} {'strength':>8}{null_head}  {'':20}  model sees"]
        for row in result.robustness:
            if row.skipped:
                lines.append(f"  {row.purification:<24} {'skipped':>8}")
                continue
            mark = "" if row.survives else "  < survives threshold"
            null = f"  {'(' + number(row.noise_strength) + ')':>7}" if nulls else ""
            seen = f"  {number(row.decoded_share):>10}" if row.decoded_share is not None else ""
            if row.decoded_share is not None and row.noise_decoded_share is not None:
                seen += f" (noise {number(row.noise_decoded_share)})"
            lines.append(
                f"  {row.purification:<24} {number(row.strength):>8}{null}  {_bar(row.strength)}{seen}{mark}"
            )
    if result.transfer:
        lines += ["", f"  {'transfer (not used)':<24} {'strength':>8}"]
        lines += [f"  {r.name:<24} {number(r.strength):>8}  {_bar(r.strength)}" for r in result.transfer]
    if result.notes:
        lines.append("")
        lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines)


def to_json(result) -> str:
    return json.dumps(clean(result), indent=2, ensure_ascii=False)


def write_json(result, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_json(result) + "\n", encoding="utf-8")
    return path
