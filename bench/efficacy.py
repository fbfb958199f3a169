"""Efficacy benchmark: how far each protection moves what the model sees, what the public cleaners leave of
it, and how much carries over to another encoder family, beside matched noise.

    python -m bench.efficacy                                  # 4 artworks + a photo, 256², every method
    python -m bench.efficacy --images all --sizes 256,512
    python -m bench.efficacy --engine /path/to/older/checkout/core --label before   # another version

For each image x method (default settings, taef2): latent strength and decoded share (what the taef2 decoder
makes of the protected latents, against its picture of the target), each beside matched noise (the same
per-pixel |change| with random signs) on the same image; the share of the clean strength kept after each
cleaner of ``fixative.checks.purify.standard()`` (the purified protection against the equally purified
original; IMPRESS against the original), the worst of them, and the strength on taesana (transfer, never
optimised for). Protection runs in a fresh process per configuration (``--engine``: that version's
``fixative.protect``); every figure is measured here with this version's code, against the target the
protected file recorded. Writes ``bench/results/efficacy-<time>.json`` / ``.md`` and ``latest-efficacy.*``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from .visibility import RESULTS, SHARED, anchor_for, load, protect_in_process

IMAGES = "hokusai_great_wave.jpg,monet_water_lilies_1919.jpg,mucha_reverie.jpg,vangogh_starry_night.jpg,"
IMAGES += "photo_astronaut.png"
MODELS = SHARED / "models" / "taesd"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.efficacy", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=IMAGES, help="comma-separated shared image names, or 'all'")
    p.add_argument("--sizes", default="256")
    p.add_argument("--methods", default="style,concept,edit")
    p.add_argument("--quality", default="default")
    p.add_argument("--intensity", default="default")
    p.add_argument(
        "--preset",
        default="",
        help="change numbers of the quality preset for this run, e.g. 'latent_weight=0,eot_samples=0' "
        "(what the model sees alone, no EOT: the decoded share's ceiling at this budget)",
    )
    p.add_argument("--cleaners", default="", help="comma-separated cleaner names (default: every one here)")
    p.add_argument("--engine", default="", help="core/ folder of the Fixative version that protects")
    p.add_argument("--label", default="", help="name of this run in the table (default: the engine)")
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


# --preset: the quality preset's numbers changed for this run only, also over a per-method change of the
# same number in an engine that had one (presets.BY_METHOD, 2026-12-06 only), so what is asked for runs.
CHANGE_PRESET = r"""
if spec.get("preset"):
    import dataclasses, fixative.presets as presets
    named = presets.QUALITIES[spec["quality"]]
    presets.QUALITIES[spec["quality"]] = dataclasses.replace(named, **spec["preset"])
    for changes in getattr(presets, "BY_METHOD", {}).get(spec["quality"], {}).values():
        for key in spec["preset"]:
            changes.pop(key, None)
"""

WORKER = (
    r"""
import json, sys, torch
spec = json.loads(sys.argv[1])
import fixative
data = torch.load(spec["input"])
options = dict(models=[spec["model"]], quality=spec["quality"], intensity=spec["intensity"])
"""
    + CHANGE_PRESET
    + r"""
if spec["method"] == "concept": options.update(target=data["anchor"], concept="the artwork's own subject")
result = fixative.protect(data["art"], spec["method"], **options)
torch.save(result.rgb, spec["output"])
with open(spec["output"] + ".json", "w") as f: json.dump(result.metadata.get("target"), f)
"""
)


def preset_changes(text: str) -> dict:
    """'latent_weight=0,eot_samples=0' -> {'latent_weight': 0, 'eot_samples': 0} (values read as JSON)."""
    changes = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--preset: {item!r} is not name=value")
        changes[key.strip()] = json.loads(value)
    return changes


def protect_with(spec: dict, engine: str) -> dict:
    """Protect in a fresh process with ``engine``'s Fixative; the target the protected file recorded."""
    protect_in_process(spec, engine, WORKER)
    return json.loads(Path(spec["output"] + ".json").read_text())


def measure(art, protected, recorded: dict, method: str, anchor, encoders: dict, cleaners) -> dict:
    """Every efficacy figure of one protection, with this version's code, against the recorded target."""
    from fixative.checks.null import matched_noise, times_noise
    from fixative.checks.robustness import robustness
    from fixative.features import StrengthProbe
    from fixative.plugins import hooks
    from fixative.targets import TargetRequest, rebuild_target

    request = TargetRequest(method, art, image=anchor if method == "concept" else None, seed=0)
    goal = rebuild_target(recorded, request, hooks())
    if goal is None:
        raise RuntimeError(f"cannot rebuild the recorded target {recorded}")
    noise = matched_noise(art, protected, seed=1, levels=255)
    probe = StrengthProbe.build(encoders["taef2"], goal, art)
    strength, noise_strength = probe.strength(protected, art)[0], probe.strength(noise, art)[0]
    share, noise_share = probe.decoded_share(protected, art), probe.decoded_share(noise, art)
    row = {
        "target": goal.kind,
        "strength": round(strength, 4),
        "noise_strength": round(noise_strength, 4),
        "x_noise": times_noise(strength, noise_strength),
        "decoded_share": round(share, 4),
        "noise_decoded_share": round(noise_share, 4),
        "decoded_x_noise": times_noise(share, noise_share),
    }
    notes: list[str] = []
    kept = robustness([probe], protected, art, cleaners, strength, notes, noise)
    row["kept"] = {r.purification: r.share_kept for r in kept if r.share_kept is not None}
    row["after"] = {r.purification: r.strength for r in kept if r.strength is not None}
    row["noise_after"] = {r.purification: r.noise_strength for r in kept if r.noise_strength is not None}
    row["skipped"] = {r.purification: r.skipped for r in kept if r.skipped}
    if row["kept"]:
        worst = min(row["kept"], key=row["kept"].get)
        row["worst"] = [worst, row["kept"][worst]]
    # what the model sees after each cleaner (the latent "kept" can sit where the decoder does not look)
    row["decoded_after"] = {r.purification: r.decoded_share for r in kept if r.decoded_share is not None}
    row["noise_decoded_after"] = {
        r.purification: r.noise_decoded_share for r in kept if r.noise_decoded_share is not None
    }  # matched noise put through the same cleaner: the null of each figure after it
    other = StrengthProbe.build(encoders["taesana"], goal, art)
    transfer, transfer_noise = other.strength(protected, art)[0], other.strength(noise, art)[0]
    row["transfer_taesana"] = round(transfer, 4)
    row["transfer_x_noise"] = times_noise(transfer, transfer_noise)
    return row


def after_table(result: dict, title: str, clean: str, key: str, null_key: str) -> list[str]:
    """One figure after each cleaner, per row, with matched noise put through the same cleaner beside it."""
    cleaners = [c for c in result["cleaners"] if any(c in r.get(key, {}) for r in result["rows"])]
    if not cleaners:
        return []
    lines = ["", f"## {title} (matched noise put through it)", ""]
    lines += ["| image | method | clean |" + "".join(f" {c} |" for c in cleaners)]
    lines += ["|---|---|---|" + "---|" * len(cleaners)]
    for r in (r for r in result["rows"] if "error" not in r):
        left, null = r.get(key, {}), r.get(null_key, {})
        cells = "".join(
            (f" {left[c]:.3f}" + (f" ({null[c]:.3f})" if c in null else "") + " |") if c in left else " - |"
            for c in cleaners
        )
        lines.append(f"| {r['image']} {r['size']}² | {r['method']} | {r[clean]:.3f} |{cells}")
    return lines


def markdown(result: dict) -> str:
    cleaners = result["cleaners"]
    head = (
        "| image | method | target | strength (× noise) | decoded share (noise) | taesana (× noise) | worst |"
    )
    changed = f" changed by `{result['preset']}`" if result.get("preset") else ""
    lines = [
        f"# Efficacy benchmark ({result['label']}, {result['started']})",
        "",
        f"taef2, quality `{result['quality']}`{changed}, intensity `{result['intensity']}`, "
        f"{result['sizes']}. "
        "Decoded share = 1 - MSE(dec(E(p)), dec(E(T))) / MSE(dec(E(o)), dec(E(T))) with the taef2 decoder; "
        "kept = strength after the cleaner / strength before (squared feature distances, as "
        "`fixative.features`). Noise: the same per-pixel |change| with random signs.",
        "",
        head + "".join(f" {c} |" for c in cleaners),
        "|---|---|---|---|---|---|---|" + "---|" * len(cleaners),
    ]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['image']} | {r['method']} | error: {r['error']} |")
            continue
        worst = f"{r['worst'][0]} {100 * r['worst'][1]:.0f} %" if r.get("worst") else "-"
        kept = "".join(f" {100 * r['kept'][c]:.0f} % |" if c in r["kept"] else " skipped |" for c in cleaners)
        lines.append(
            f"| {r['image']} {r['size']}² | {r['method']} | {r['target']} | "
            f"{r['strength']:.3f} ({r['x_noise']}) | "
            f"{r['decoded_share']:.3f} ({r['noise_decoded_share']:.3f}) | "
            f"{r['transfer_taesana']:.3f} ({r['transfer_x_noise']}) | {worst} |{kept}"
        )
    lines += after_table(result, "Strength left after each cleaner", "strength", "after", "noise_after")
    lines += after_table(
        result, "What the model sees (decoded share) after each cleaner", "decoded_share", "decoded_after",
        "noise_decoded_after",
    )  # fmt: skip
    lines += ["", "## Per method: mean (min-max) over the images", ""]
    lines += [
        "| method | strength | decoded share | taesana | kept, worst cleaner |",
        "|---|---|---|---|---|",
    ]
    groups: dict = {}
    for r in result["rows"]:
        if "error" not in r:
            groups.setdefault(r["method"], []).append(r)
    for method, rows in groups.items():

        def span(values, fmt="{:.3f}"):
            mean, low, high = sum(values) / len(values), min(values), max(values)
            return f"{fmt.format(mean)} ({fmt.format(low)} to {fmt.format(high)})"

        worst = [r["worst"][1] for r in rows if r.get("worst")]
        lines.append(
            f"| {method} | {span([r['strength'] for r in rows])} | "
            f"{span([r['decoded_share'] for r in rows])} | "
            f"{span([r['transfer_taesana'] for r in rows])} | {span(worst, '{:.2f}') if worst else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from fixative.checks import purify
    from fixative.models import load_encoders
    from fixative.plugins import hooks

    model = str(MODELS / "taef2_encoder.pth")
    taef2 = load_encoders([model], hooks(), device="cpu")[0]
    taesana = load_encoders([str(MODELS / "taesana_encoder.pth")], hooks(), device="cpu")[0]
    encoders = {"taef2": taef2, "taesana": taesana}
    wanted = [c for c in args.cleaners.split(",") if c]
    cleaners = [c for c in purify.standard() if not wanted or c.name in wanted]
    if args.images == "all":
        images = sorted(p.name for p in (SHARED / "images").iterdir() if p.suffix.lower() in (".png", ".jpg"))
    else:
        images = [v for v in args.images.split(",") if v]
    label = args.label or (Path(args.engine).resolve().parent.name if args.engine else "this checkout")
    started = time.strftime("%Y-%m-%d %H:%M")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fixative-efficacy-") as scratch:
        for size in (int(s) for s in args.sizes.split(",") if s):
            for name in images:
                art, anchor = load(name, size), load(anchor_for(name), size)
                data = Path(scratch) / "in.pt"
                torch.save({"art": art, "anchor": anchor}, data)
                for method in (m for m in args.methods.split(",") if m):
                    spec = {
                        "input": str(data), "output": str(Path(scratch) / "out.pt"), "model": model,
                        "method": method, "quality": args.quality, "intensity": args.intensity,
                        "preset": preset_changes(args.preset),
                    }  # fmt: skip
                    row = {"image": name, "size": size, "method": method}
                    t0 = time.perf_counter()
                    try:
                        recorded = protect_with(spec, args.engine)
                        protected = torch.load(spec["output"])
                        row.update(measure(art, protected, recorded, method, anchor, encoders, cleaners))
                    except RuntimeError as exc:
                        row["error"] = str(exc)[:200]
                    row["seconds"] = round(time.perf_counter() - t0, 1)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    result = {
        "started": started, "label": label, "quality": args.quality, "intensity": args.intensity,
        "preset": args.preset,
        "sizes": ", ".join(f"{s}²" for s in args.sizes.split(",") if s),
        "cleaners": [c.name for c in cleaners], "rows": rows,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    safe = "".join(ch if ch.isalnum() else "-" for ch in label)
    for stem in (f"efficacy-{safe}-{time.strftime('%Y%m%d-%H%M%S')}", f"latest-efficacy-{safe}"):
        (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
        (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
