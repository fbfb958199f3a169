"""A self-contained HTML report an artist can open: every image inline (PNG data URIs), the chart inline SVG.

No scripts, no external files, no network: the report can be mailed or archived as one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..reports import CheckReport
from .report import number
from .verdict import PROTECTED_STRENGTH, PROTECTED_VIEW, SURVIVES_STRENGTH, Visuals
from .visibility import most_visible_region

PICTURE_LONGEST = 512
DIFFERENCE_GAIN = 10.0  # the difference is amplified so an 8/255 change becomes visible
ZOOM, ZOOM_REGION = 4, 64

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#1d1d1f;padding:0 1rem;line-height:1.45}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.15rem;margin-top:2rem}
.verdict{display:inline-block;padding:.35rem .8rem;border-radius:6px;font-weight:600;font-size:1.1rem}
.protected{background:#d8f5dd;color:#135c21} .weakened{background:#fff1c9;color:#6b4c00}
.not{background:#fbd9d6;color:#7a1b12}
.grid{display:flex;flex-wrap:wrap;gap:1rem} figure{margin:0;flex:1 1 220px;max-width:260px}
figure img{width:100%;height:auto;border:1px solid #ccc;image-rendering:auto}
figcaption{font-size:.85rem;color:#555}
table{border-collapse:collapse;margin:.5rem 0} td,th{padding:.25rem .7rem;border-bottom:1px solid #e3e3e3;
text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#555;font-size:.9rem}
"""


def _data_uri(rgb: torch.Tensor) -> str:
    """(3, H, W) 0..1 -> PNG data URI, shrunk to a picture size (the report is for looking)."""
    array = (rgb.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(np.ascontiguousarray(array), "RGB")
    image.thumbnail((PICTURE_LONGEST, PICTURE_LONGEST), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def amplified_difference(
    original: torch.Tensor, protected: torch.Tensor, gain: float = DIFFERENCE_GAIN
) -> torch.Tensor:
    """Mid-grey where nothing changed; the change times ``gain`` around it."""
    return (0.5 + (protected.float() - original.float()) * gain).clamp(0, 1)


def _figure(rgb: torch.Tensor, caption: str) -> str:
    return (
        f'<figure><img src="{_data_uri(rgb)}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


Bar = tuple[str, float | None, str, float | None]  # label, value, colour, what matched noise scores there


def strength_chart(result: CheckReport, width: int = 720, bar_height: int = 22) -> str:
    """Horizontal bars: strength as measured, then after each purification, then on transfer encoders;
    a black tick at what matched noise scores on each row where it was measured; dashed lines at the
    documented thresholds. Inline SVG, no script."""
    null = max((r.noise_strength for r in result.encoders if r.noise_strength is not None), default=None)
    rows: list[Bar] = [("as published", result.strength, "#2d6cdf", null)]
    for r in result.robustness:
        rows.append((r.purification, r.strength, "#2d6cdf" if r.survives else "#d9822b", r.noise_strength))
    for r in result.transfer:
        rows.append((f"transfer: {r.name}", r.strength, "#7a5cc7", r.noise_strength))
    marks = ((SURVIVES_STRENGTH, "survives"), (PROTECTED_STRENGTH, "protected"))
    return bar_chart(rows, marks, "strength after each purification", width, bar_height)


def model_sees_chart(result: CheckReport, width: int = 720, bar_height: int = 22) -> str:
    """What the model sees (decoded share) as published and after each purification, with matched noise's
    tick and the line the verdict reads it against (``PROTECTED_VIEW``, as published only); empty when no
    encoder had its decoder."""
    seeing = next((r for r in result.encoders if r.decoded_share is not None), None)
    if seeing is None:
        return ""
    rows: list[Bar] = [("as published", seeing.decoded_share, "#3a9a5b", seeing.noise_decoded_share)]
    rows += [
        (r.purification, r.decoded_share, "#3a9a5b", r.noise_decoded_share)
        for r in result.robustness
        if not r.skipped
    ]
    marks = ((PROTECTED_VIEW, "protected (with strength >= survives)"),)
    return bar_chart(rows, marks, "what the model sees after each purification", width, bar_height)


def bar_chart(rows: list[Bar], marks, label: str, width: int, bar_height: int) -> str:
    label_w, pad = 190, 10
    plot_w = width - label_w - 60
    height = pad * 2 + bar_height * len(rows) + 10 + 14 * max(1, len(marks))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(label)}">'
    ]
    for i, (name, value, colour, noise) in enumerate(rows):
        y = pad + i * bar_height
        parts.append(
            f'<text x="{label_w - 8}" y="{y + bar_height * 0.68:.1f}" text-anchor="end" '
            f'font-size="12" fill="#333">{html.escape(name)}</text>'
        )
        if value is None or (isinstance(value, float) and math.isnan(value)):
            parts.append(
                f'<text x="{label_w + 4}" y="{y + bar_height * 0.68:.1f}" font-size="12" '
                'fill="#888">not measured</text>'
            )
            continue
        w = max(0.0, min(1.0, value)) * plot_w
        parts.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{bar_height - 6}" fill="{colour}"/>'
        )
        said = _num(value) + ("" if noise is None else f" (noise {_num(noise)})")
        parts.append(
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar_height * 0.68:.1f}" font-size="12" '
            f'fill="#333">{said}</text>'
        )
        if noise is not None:
            x = label_w + max(0.0, min(1.0, noise)) * plot_w
            parts.append(
                f'<line class="noise" x1="{x:.1f}" y1="{y + 1}" x2="{x:.1f}" y2="{y + bar_height - 1}" '
                'stroke="#000" stroke-width="2"/>'
            )
    axis_y = pad + bar_height * len(rows)
    for row, (mark, name) in enumerate(marks):  # one line each: close thresholds' labels must not overlap
        x = label_w + mark * plot_w
        parts.append(
            f'<line x1="{x:.1f}" y1="{pad}" x2="{x:.1f}" y2="{axis_y}" stroke="#999" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{axis_y + 16 + 14 * row}" font-size="11" text-anchor="start" '
            f'fill="#666">{name} {mark:.2f}</text>'
        )
    parts.append(f'<line x1="{label_w}" y1="{pad}" x2="{label_w}" y2="{axis_y}" stroke="#333"/>')
    parts.append("</svg>")
    return "".join(parts)


def _verdict_class(verdict: str) -> str:
    if verdict.startswith("protected"):  # "protected; not measured against ..." too
        return "protected"
    if verdict.startswith("weakened"):
        return "weakened"
    return "not"


def _num(value, digits: int = 2) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "∞"
    return html.escape(number(value, digits))


def render(result: CheckReport, visuals: Visuals) -> str:
    """The whole report as one HTML string: verdict, pictures, strength chart, figures, notes."""
    esc = html.escape
    title = f"Fixative check: {Path(result.file or 'image').name}"
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p><span class="verdict {_verdict_class(result.verdict)}">{esc(result.verdict)}</span></p>',
        f"<p>{esc(result.verdict_reason)}.</p>",
    ]
    if not result.exact:
        out.append('<p class="note">The original was not given, so the strengths below are estimates.</p>')
    out += pictures(visuals)
    out += [
        "<h2>Strength, and what survives purification</h2>",
        "<p>Strength: how far the model's features of your image moved toward the protection's target "
        "(0 = not at all, 1 = all the way). Each purification is something a scraper or an attacker "
        "can do to your file before training on it. The black tick on each bar is what matched noise (the "
        "same change per pixel with random signs) scores there, put through the same purification.</p>",
        strength_chart(result),
    ]
    seen = model_sees_chart(result)
    if seen:
        out += [
            "<h2>What the model sees, after each purification</h2>",
            "<p>How far the picture the model decodes from your file moved toward the target's picture "
            "(0 = not at all, 1 = all the way), compared with the equally purified original.</p>",
            seen,
        ]
    out += figures(result)
    if result.notes:
        out += [
            "<h2>Notes</h2><ul>",
            *(f'<li class="note">{esc(note)}</li>' for note in result.notes),
            "</ul>",
        ]
    out.append(
        f'<p class="note">Fixative {esc(result.fixative)}; thresholds: protected at strength '
        f"{PROTECTED_STRENGTH:.2f}, survives a purification at {SURVIVES_STRENGTH:.2f}.</p></body></html>"
    )
    return "\n".join(out)


def pictures(visuals: Visuals) -> list[str]:
    """Original, protected, the amplified difference, and what the model sees of each."""
    shown = [(visuals.original, "original"), (visuals.protected, "protected")]
    if visuals.original is not None:
        difference = amplified_difference(visuals.original, visuals.protected)
        shown.append((difference, f"difference, amplified {DIFFERENCE_GAIN:g}×"))
    name = visuals.decoder_name
    shown.append((visuals.model_sees_original, f"what the model sees of the original ({name})"))
    shown.append((visuals.model_sees_protected, f"what the model sees of the protected image ({name})"))
    figures_html = [_figure(rgb, caption) for rgb, caption in shown if rgb is not None]
    out = ['<h2>The pictures</h2><div class="grid">', *figures_html, "</div>"]
    if visuals.original is not None:
        out += zoomed_region(visuals.original, visuals.protected)
    return out


def zoomed_region(original: torch.Tensor, protected: torch.Tensor) -> list[str]:
    """The most visible square (largest change relative to the JND), before and after, at 4x."""
    top, left, size = most_visible_region(original, protected, ZOOM_REGION)
    crops = [x[:, top : top + size, left : left + size] for x in (original, protected)]
    crops.append(amplified_difference(*crops))

    def zoomed(rgb):
        return torch.nn.functional.interpolate(rgb[None], scale_factor=ZOOM, mode="nearest")[0]

    captions = ("before", "after", f"change, amplified {DIFFERENCE_GAIN:g}×")
    return [
        f"<h2>The most visible region, zoomed {ZOOM}×</h2>",
        f'<p class="note">{size}×{size} pixels at ({left}, {top}), where the change is largest compared with '
        "one just-noticeable difference.</p>",
        '<div class="grid">',
        *(_figure(zoomed(c), caption) for c, caption in zip(crops, captions, strict=True)),
        "</div>",
    ]


def figures(result: CheckReport) -> list[str]:
    """Strength per encoder (protecting and transfer) and the perceptual cost, as tables."""
    esc = html.escape
    out = [
        "<h2>Figures</h2><table><tr><th>encoder</th><th>used to protect</th><th>strength</th>"
        "<th>matched noise</th><th>what the model sees</th><th>matched noise</th></tr>"
    ]
    for row in [*result.encoders, *result.transfer]:
        used = "yes" if row.used_to_protect else "no (transfer)"
        cells = (row.strength, row.noise_strength, row.decoded_share, row.noise_decoded_share)
        out.append(
            f"<tr><td>{esc(row.name)}</td><td>{used}</td>"
            + "".join(f'<td class="num">{_num(v)}</td>' for v in cells)
            + "</tr>"
        )
    out.append("</table>")
    p = result.perceptual
    if p:
        share = None if p.jnd_exceed_share is None else 100 * p.jnd_exceed_share
        out.append(
            "<table><tr><th>PSNR</th><th>SSIM</th><th>MS-SSIM</th><th>LPIPS</th><th>largest change</th>"
            "<th>RMS change, flattest 15 %</th><th>pixels over 1 JND</th></tr>"
            f'<tr><td class="num">{_num(p.psnr_db, 1)} dB</td><td class="num">{_num(p.ssim, 3)}</td>'
            f'<td class="num">{_num(p.ms_ssim, 3)}</td><td class="num">{_num(p.lpips, 3)}</td>'
            f'<td class="num">{_num(p.linf_255, 0)}/255</td>'
            f'<td class="num">{_num(p.flat_rms_255, 2)}/255</td>'
            f'<td class="num">{_num(share, 2)} %</td></tr></table>'
        )
    return out


def write_html(result: CheckReport, visuals: Visuals, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render(result, visuals), encoding="utf-8")
    return path
