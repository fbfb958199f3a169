"""Visibility benchmark: how visible each protection is, and how strong, on the shared artworks.

    python -m bench.visibility                      # every shared image, 256² and 512², default intensity
    python -m bench.visibility --intensities low,default,high --sizes 256
    python -m bench.visibility --scales 0.5,0.75,1,1.5,2 --sizes 256   # the visibility-strength frontier
    python -m bench.visibility --engine /path/to/older/checkout/core  # the same figures for another version

For each image x size x method x intensity: strength (``fixative.features``) and the strength of matched
noise (same per-pixel |change|, random signs) on the same image; RMS change in the flattest 15 %, share of
pixels over one JND, SSIM / MS-SSIM / PSNR / L-infinity, and the SSIM of matched noise. Protection runs
in a fresh process per configuration (with ``--engine``, that version's ``fixative.protect``); every
figure is measured here with this version's code, so versions compare on one ruler. Writes
``bench/results/visibility-<time>.json`` / ``.md``, ``latest-visibility.*`` and zoomed flat-area crops
(``visibility-crops.png``: original | protected | change x10, 4x zoom).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FIXATIVE_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "bench" / "results"
ANCHOR, OTHER_ANCHOR = "photo_chelsea.png", "photo_rocket.jpg"
ZOOM, CROP = 4, 48


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.visibility", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="", help="comma-separated names in the shared images (default: all)")
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--methods", default="style,concept,edit")
    p.add_argument("--intensities", default="default")
    p.add_argument("--scales", default="", help="JND scales at the default cap instead of the intensities")
    p.add_argument("--quality", default="default")
    p.add_argument("--steps", type=int, default=0, help="override the preset's steps (0: as the preset)")
    p.add_argument("--engine", default="", help="core/ folder of the Fixative version that protects")
    p.add_argument("--label", default="", help="name of this run in the table (default: the engine)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--crops", type=int, default=4, help="images shown in the crops picture")
    return p.parse_args(argv)


def _names(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def write_latest(out: str | Path, name: str, data, text: str) -> None:
    """``latest-<name>.json`` and ``.md`` in ``out`` (made if missing); the table is printed too."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"latest-{name}.json").write_text(json.dumps(data, indent=2))
    (folder / f"latest-{name}.md").write_text(text)
    print(text)


def all_images() -> list[str]:
    return sorted(p.name for p in (SHARED / "images").iterdir() if p.suffix.lower() in (".png", ".jpg"))


def load(name: str, size: int):
    import numpy as np
    import torch
    from PIL import Image

    from fixative.targets import fit_to

    pixels = np.array(Image.open(SHARED / "images" / name).convert("RGB"))
    rgb = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    return (fit_to(rgb, size, size) * 255).round() / 255  # 8-bit, like a real file


def anchor_for(name: str) -> str:
    return OTHER_ANCHOR if name == ANCHOR else ANCHOR


WORKER = r"""
import json, sys, torch
spec = json.loads(sys.argv[1])
import fixative
data = torch.load(spec["input"])
options = dict(models=[spec["model"]], quality=spec["quality"], intensity=spec["intensity"])
if spec.get("steps"): options["steps"] = spec["steps"]
if spec.get("jnd_scale"): options["jnd_scale"] = spec["jnd_scale"]
if spec["method"] == "concept": options.update(target=data["anchor"], concept="the artwork's own subject")
result = fixative.protect(data["art"], spec["method"], **options)
torch.save(result.rgb, spec["output"])
"""


def protect_in_process(spec: dict, engine: str, worker: str = WORKER) -> None:
    """Run ``worker`` (a script taking ``spec`` as JSON) in a fresh process, with ``engine``'s Fixative."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", FIXATIVE_MODELS=str(SHARED / "models"))
    if engine:
        env["PYTHONPATH"] = engine
    done = subprocess.run(
        [sys.executable, "-c", worker, json.dumps(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError((done.stderr or done.stdout).strip().splitlines()[-1])


def measure(art, protected, method: str, anchor, encoder) -> dict:
    """Every figure of one protection, with this version's code."""
    import kornia

    from fixative.checks.measures import perceptual
    from fixative.checks.null import matched_noise, times_noise
    from fixative.features import StrengthProbe
    from fixative.plugins import hooks
    from fixative.targets import TargetRequest, make_target

    request = TargetRequest(method, art, image=anchor if method == "concept" else None, seed=0)
    probe = StrengthProbe.build(encoder, make_target(request, hooks()), art)
    noise = matched_noise(art, protected, seed=1, levels=255)
    seen = perceptual(art, protected)
    strength, noise_strength = probe.strength(protected, art)[0], probe.strength(noise, art)[0]
    seen_share = probe.decoded_share(protected, art)  # what the model sees (None without a decoder)
    noise_share = probe.decoded_share(noise, art)
    noise_ssim = float(kornia.metrics.ssim(noise[None], art[None], 11).mean())
    return {
        "strength": round(strength, 4),
        "noise_strength": round(noise_strength, 4),
        "x_noise": times_noise(strength, noise_strength),
        "decoded_share": None if seen_share is None else round(seen_share, 4),
        "noise_decoded_share": None if noise_share is None else round(noise_share, 4),
        "flat_rms_255": seen.flat_rms_255,
        "jnd_exceed_share": seen.jnd_exceed_share,
        "ssim": seen.ssim,
        "noise_ssim": round(noise_ssim, 5),
        "ms_ssim": seen.ms_ssim,
        "psnr_db": seen.psnr_db,
        "linf_255": seen.linf_255,
        "rms_255": round(float((protected - art).pow(2).mean().sqrt()) * 255, 3),
    }


def flattest_window(art, size: int = CROP) -> tuple[int, int]:
    """(top, left) of the flattest size x size window that is not uniform (where grain shows most)."""
    import torch
    import torch.nn.functional as F

    from fixative.checks.visibility import local_contrast

    contrast = local_contrast(art)[None, None]
    pooled = F.avg_pool2d(contrast, size, stride=size // 4)
    pooled = torch.where(pooled < 1e-3, torch.full_like(pooled, 1e9), pooled)  # skip blank borders
    index = int(pooled.flatten().argmin())
    top, left = divmod(index, pooled.shape[-1])
    return top * (size // 4), left * (size // 4)


def crops_picture(rows: list[tuple[str, object, object]], path: Path) -> None:
    """One row per image: flattest crop of original | protected | change x10 (mid-grey = none), 4x zoom."""
    import numpy as np
    from PIL import Image, ImageDraw

    tiles = []
    for _name, art, protected in rows:
        top, left = flattest_window(art)
        o = art[:, top : top + CROP, left : left + CROP]
        p = protected[:, top : top + CROP, left : left + CROP]
        d = (0.5 + (p - o) * 10).clamp(0, 1)
        strip = np.concatenate(
            [(x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for x in (o, p, d)], 1
        )
        tiles.append(
            Image.fromarray(strip).resize((strip.shape[1] * ZOOM, strip.shape[0] * ZOOM), Image.NEAREST)
        )
    width = max(t.width for t in tiles)
    sheet = Image.new("RGB", (width, sum(t.height + 18 for t in tiles)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for (name, _a, _p), tile in zip(rows, tiles, strict=True):
        draw.text((4, y + 3), f"{name}: flattest {CROP}px - original | protected | change x10", fill="black")
        sheet.paste(tile, (0, y + 18))
        y += tile.height + 18
    sheet.save(path)


def markdown(result: dict) -> str:
    lines = [
        f"# Visibility benchmark ({result['label']}, {result['started']})",
        "",
        f"taef2, quality `{result['quality']}`; strength beside matched noise (same |change|, random signs).",
        "",
        "| image | size | method | budget | strength | noise | × noise | flat RMS | > 1 JND | SSIM (noise) "
        "| MS-SSIM | PSNR | L∞ |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(
                f"| {r['image']} | {r['size']}² | {r['method']} | {r['budget']} | error: {r['error']} |"
            )
            continue
        lines.append(
            f"| {r['image']} | {r['size']}² | {r['method']} | {r['budget']} | {r['strength']:.3f} | "
            f"{r['noise_strength']:.3f} | {r['x_noise'] or '-'} | {r['flat_rms_255']:.2f} | "
            f"{100 * r['jnd_exceed_share']:.1f} % | {r['ssim']:.3f} ({r['noise_ssim']:.3f}) | "
            f"{r['ms_ssim'] or '-'} | "
            f"{r['psnr_db']:.1f} | {r['linf_255']:.0f} |"
        )
    lines += ["", "## Summary (per method and budget: mean, and the range over images and sizes)", ""]
    lines += ["| method | budget | strength | flat RMS | > 1 JND | SSIM |", "|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in result["rows"]:
        if "error" not in r:
            groups.setdefault((r["method"], r["budget"]), []).append(r)
    for (method, budget), rows in groups.items():

        def span(key, fmt="{:.3f}", rows=rows):
            values = [r[key] for r in rows]
            mean = sum(values) / len(values)
            return f"{fmt.format(mean)} ({fmt.format(min(values))}-{fmt.format(max(values))})"

        lines.append(
            f"| {method} | {budget} | {span('strength')} | {span('flat_rms_255', '{:.2f}')} | "
            f"{span('jnd_exceed_share', '{:.4f}')} | {span('ssim')} |"
        )
    return "\n".join(lines) + "\n"


COLOURS = {"style": "#1f77b4", "concept": "#d62728", "edit": "#2ca02c"}


def frontier_points(result: dict) -> dict[str, list[dict]]:
    """Per method, one point per budget: the means over images and sizes, sorted by flat-area RMS."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in result["rows"]:
        if "error" not in r:
            groups.setdefault((r["method"], r["budget"]), []).append(r)
    points: dict[str, list[dict]] = {}
    for (method, budget), rows in groups.items():

        def mean(key, rows=rows):
            values = [r[key] for r in rows if r.get(key) is not None]
            return sum(values) / len(values) if values else None

        points.setdefault(method, []).append(
            {
                "budget": budget,
                "flat_rms_255": mean("flat_rms_255"),
                "jnd_exceed_share": mean("jnd_exceed_share"),
                "strength": mean("strength"),
                "decoded_share": mean("decoded_share"),
                "noise_strength": mean("noise_strength"),
            }
        )
    return {m: sorted(p, key=lambda q: q["flat_rms_255"]) for m, p in points.items()}


def frontier_svg(result: dict, width: int = 720, height: int = 420) -> str:
    """The visibility-strength frontier as a self-contained SVG: flat-area RMS change (x) against latent
    strength (solid) and decoded share (dashed), one line per method, each point labelled with its budget;
    the grey band is the issue's flat-area goal (at most 2/255)."""
    points = frontier_points(result)
    left, right, top, bottom = 60, 150, 30, 50
    xs = [q["flat_rms_255"] for ps in points.values() for q in ps]
    ys = [
        q[k] for ps in points.values() for q in ps for k in ("strength", "decoded_share") if q[k] is not None
    ]
    x_max = max(2.5, max(xs) * 1.1)
    y_max = max(0.1, max(ys) * 1.15)

    def px(x: float) -> float:
        return left + (width - left - right) * x / x_max

    def py(y: float) -> float:
        return height - bottom - (height - top - bottom) * max(y, 0) / y_max

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<rect x="{px(0):.1f}" y="{top}" width="{px(2) - px(0):.1f}" height="{height - top - bottom}" '
        'fill="#eeeeee"/>',
        f'<text x="{px(0) + 4:.1f}" y="{top + 12}" fill="#666">flat areas &#8804; 2/255</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" '
        'stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
        f'<text x="{(left + width - right) / 2:.0f}" y="{height - 12}" text-anchor="middle">'
        "RMS change in the flattest 15 % (0..255)</text>",
        f'<text x="14" y="{(top + height - bottom) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(top + height - bottom) / 2:.0f})">share of the way to the target</text>',
    ]
    for i in range(6):
        x = x_max * i / 5
        out.append(f'<text x="{px(x):.1f}" y="{height - bottom + 14}" text-anchor="middle">{x:.1f}</text>')
        y = y_max * i / 5
        out.append(f'<text x="{left - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for method, ps in points.items():
        colour = COLOURS.get(method, "black")
        for key, dash in (("strength", ""), ("decoded_share", ' stroke-dasharray="5,4"')):
            chosen = [q for q in ps if q[key] is not None]
            if not chosen:
                continue
            path = " ".join(f"{px(q['flat_rms_255']):.1f},{py(q[key]):.1f}" for q in chosen)
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
            for q in chosen:
                out.append(
                    f'<circle cx="{px(q["flat_rms_255"]):.1f}" cy="{py(q[key]):.1f}" r="3" fill="{colour}"/>'
                )
                if key == "strength":
                    label = q["budget"].replace(" JND", "")
                    out.append(
                        f'<text x="{px(q["flat_rms_255"]) + 4:.1f}" y="{py(q[key]) - 5:.1f}" '
                        f'fill="{colour}">{label}</text>'
                    )
    legend_x = width - right + 12
    for i, method in enumerate(points):
        y = top + 16 + 36 * i
        colour = COLOURS.get(method, "black")
        out.append(f'<text x="{legend_x}" y="{y}" fill="{colour}" font-weight="bold">{method}</text>')
        out.append(f'<text x="{legend_x}" y="{y + 13}" fill="{colour}">&#8212; latent, - - seen</text>')
    y = top + 16 + 36 * len(points)
    out.append(f'<text x="{legend_x}" y="{y}" fill="#444">labels: JND scale</text>')
    out.append(f'<text x="{legend_x}" y="{y + 13}" fill="#444">{result["label"]}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from fixative.models import load_encoders
    from fixative.plugins import hooks

    model = str(SHARED / "models" / "taesd" / "taef2_encoder.pth")
    encoder = load_encoders([model], hooks(), device="cpu")[0]
    images = _names(args.images) or all_images()
    budgets = [("scale", float(s)) for s in _names(args.scales)] or [
        ("intensity", i) for i in _names(args.intensities)
    ]
    started = time.strftime("%Y-%m-%d %H:%M")
    label = args.label or (Path(args.engine).resolve().parent.name if args.engine else "this checkout")
    rows, shown = [], []
    with tempfile.TemporaryDirectory(prefix="fixative-vis-") as scratch:
        for size in (int(s) for s in _names(args.sizes)):
            for name in images:
                art = load(name, size)
                anchor = load(anchor_for(name), size)
                data = Path(scratch) / "in.pt"
                torch.save({"art": art, "anchor": anchor}, data)
                for method in _names(args.methods):
                    for kind, value in budgets:
                        budget = f"{value} JND" if kind == "scale" else str(value)
                        spec = {
                            "input": str(data), "output": str(Path(scratch) / "out.pt"), "model": model,
                            "method": method, "quality": args.quality, "steps": args.steps,
                            "intensity": "default" if kind == "scale" else value,
                            "jnd_scale": value if kind == "scale" else None,
                        }  # fmt: skip
                        row = {"image": name, "size": size, "method": method, "budget": budget}
                        t0 = time.perf_counter()
                        try:
                            protect_in_process(spec, args.engine)
                            protected = torch.load(spec["output"])
                            row.update(measure(art, protected, method, anchor, encoder))
                        except RuntimeError as exc:
                            row["error"] = str(exc)[:200]
                        row["seconds"] = round(time.perf_counter() - t0, 1)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        if (
                            "error" not in row
                            and method == "style"
                            and size == 256
                            and len(shown) < args.crops
                        ):
                            if budget in ("default", "1.0 JND"):
                                shown.append((name, art, protected))
    result = {"started": started, "label": label, "quality": args.quality, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for name in (f"visibility-{stamp}", "latest-visibility"):
        (out / f"{name}.json").write_text(json.dumps(result, indent=2))
        (out / f"{name}.md").write_text(markdown(result))
    if shown:
        crops_picture(shown, out / "visibility-crops.png")
    if len(budgets) > 1 and any("error" not in r for r in rows):
        (out / "latest-frontier.svg").write_text(frontier_svg(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
