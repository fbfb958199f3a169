"""Readable terminal table and JSON for a check result (the dict ``fixative.check`` returns)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:.{digits}f}"
    return str(value)


def _bar(value: float | None, width: int = 20) -> str:
    if value is None:
        return ""
    filled = round(max(0.0, min(1.0, value)) * width)
    return "#" * filled + "." * (width - filled)


def table(result: dict) -> str:
    """Plain-text summary: verdict first, then strength per encoder, robustness, transfer and notes."""
    lines = [f"{result.get('file') or 'image'}: {result['verdict'].upper()}", f"  {result['verdict_reason']}"]
    if not result["exact"]:
        lines.append("  (no original given: strengths are estimates)")
    lines.append("")
    lines.append(f"  {'encoder':<24} {'strength':>8}")
    for row in result["encoders"]:
        lines.append(f"  {row['name']:<24} {_fmt(row['strength']):>8}  {_bar(row['strength'])}")
    p = result.get("perceptual")
    if p:
        lines.append("")
        lines.append(
            f"  perceptual: PSNR {_fmt(p['psnr_db'], 1)} dB  SSIM {_fmt(p['ssim'], 3)}  "
            f"LPIPS {_fmt(p['lpips'], 3)}  L∞ {_fmt(p['linf_255'], 0)}/255"
        )
    if result["robustness"]:
        lines.append("")
        lines.append(f"  {'after purification':<24} {'strength':>8}")
        for row in result["robustness"]:
            if row.get("skipped"):
                lines.append(f"  {row['purification']:<24} {'skipped':>8}")
                continue
            mark = "" if row.get("survives") else "  < survives threshold"
            bar = _bar(row["strength"])
            lines.append(f"  {row['purification']:<24} {_fmt(row['strength']):>8}  {bar}{mark}")
    if result["transfer"]:
        lines.append("")
        lines.append(f"  {'transfer (not used)':<24} {'strength':>8}")
        for row in result["transfer"]:
            lines.append(f"  {row['name']:<24} {_fmt(row['strength']):>8}  {_bar(row['strength'])}")
    if result["notes"]:
        lines.append("")
        lines.extend(f"  note: {note}" for note in result["notes"])
    return "\n".join(lines)


def _clean(value):
    """JSON has no infinity: a PSNR of identical images becomes null."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def to_json(result: dict | list[dict]) -> str:
    return json.dumps(_clean(result), indent=2, ensure_ascii=False)


def write_json(result: dict | list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_json(result) + "\n", encoding="utf-8")
    return path
