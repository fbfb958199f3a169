"""Flat pictures: whether the target Fixative chooses lies beyond the noise of the budget.

    python -m bench.flat                                  # the reach table and the protections (~3 min)
    python -m bench.flat --sizes 128,256,512 --protect ""   # the reach table alone, at three sizes

Strength reads as "how far toward the target", so it means something only where the target lies farther
from the picture than any change of the budget's size moves the latents. On a flat picture the grey edit
target or the posterised 'pop' style can lie closer than that: noise then scores far below zero toward them,
and so does whatever the optimiser makes. Two tables, taef2:

- **reach**: the strength toward each built-in target of noise the size of the whole budget (each YCbCr
  channel at its per-pixel limit, random signs; ``loop.reach_of_noise``), on the twelve shared pictures and
  on made flat ones; ``api.protect.REACH_FLOOR`` is the line under which Fixative takes its next choice;
- **protect**: each flat picture protected at the defaults, Fixative choosing the target, beside the same
  with its first choice named (``--pattern grey``, ``--style`` the automatic style: a named target is always
  kept, so this is what Fixative did before it checked).
"""

from __future__ import annotations

import argparse
import json

from .visibility import RESULTS, SHARED, write_latest

FLAT = ("black", "white", "grey", "red", "skin", "gradient", "grey+circle", "white+text")
TARGETS = (("style", None), ("style", "charcoal"), ("style", "pop"), ("style", "mosaic"), ("edit", None),
           ("edit", "pattern"))  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.flat", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="256", help="square sizes of the reach table")
    p.add_argument("--protect", default=",".join(FLAT), help="flat pictures to protect ('' for none)")
    p.add_argument("--protect-size", type=int, default=256)
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def flat_picture(name: str, size: int):
    """The made flat pictures: solid colours, a grey ramp, a thin circle on grey, a word on white."""
    from PIL import Image, ImageDraw

    colours = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (128, 128, 128), "red": (200, 30, 30),
               "skin": (230, 190, 160)}  # fmt: skip
    if name in colours:
        return Image.new("RGB", (size, size), colours[name])
    if name == "gradient":
        return Image.linear_gradient("L").resize((size, size)).convert("RGB")
    picture = Image.new("RGB", (size, size), (128, 128, 128) if name == "grey+circle" else (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    if name == "grey+circle":
        draw.ellipse((size // 3, size // 3, size // 2, size // 2), outline=(0, 0, 0), width=3)
    else:
        draw.text((10, 10), "sketch", fill=(0, 0, 0))
    return picture


def pictures(size: int) -> dict:
    from PIL import Image

    shared = sorted(p for p in (SHARED / "images").iterdir() if p.suffix in (".jpg", ".png"))
    lanczos = Image.Resampling.LANCZOS
    out = {p.name: Image.open(p).convert("RGB").resize((size, size), lanczos) for p in shared}
    return out | {name: flat_picture(name, size) for name in FLAT}


def reach_row(name: str, picture, encoders, size: int) -> dict:
    """Each built-in target's reach on one picture (Fixative's own choice first), and which it takes."""
    import torch

    from fixative.api.protect import REACH_FLOOR, target_request
    from fixative.load import to_artwork
    from fixative.optimise import loop, perceptual_budget
    from fixative.options import ProtectOptions
    from fixative.plugins import hooks
    from fixative.presets import intensity
    from fixative.targets import make_target

    art = to_artwork(picture)
    preset = intensity("default")
    budget = perceptual_budget(art.rgb, preset.jnd_scale, preset.epsilon, None, True, grey=art.grey)
    row = {"picture": name, "size": size, "reach": {}}
    for method, name_asked in TARGETS:
        asked = {"style": name_asked} if method == "style" else {"pattern": name_asked}
        opts = ProtectOptions(method=method, **{k: v for k, v in asked.items() if v})
        goal = make_target(target_request(art, opts, None, torch.device("cpu")), hooks())
        problem = loop.prepare(art.rgb[None], budget, encoders, goal, 512)
        reach = loop.reach_of_noise(problem)[0]
        row["reach"][f"{method}:{name_asked or 'chosen'}"] = round(reach, 3) if reach > -1e6 else -1e6
    row["under_floor"] = [k for k, v in row["reach"].items() if k.endswith("chosen") and v < REACH_FLOOR]
    return row


def protect_row(name: str, picture, model: str, method: str) -> dict:
    import fixative
    from fixative.load import to_artwork
    from fixative.targets.styles import auto_style

    row = {"picture": name, "method": method}
    first = {"style": auto_style(to_artwork(picture).rgb)} if method == "style" else {"pattern": "grey"}
    for way, asked in (("first choice named", first), ("Fixative's choice", {})):
        report = fixative.protect(picture, method, models=[model], **asked).report
        e = report.encoders[0]
        target = report.target
        row[way] = {
            "target": (target.get("details") or {}).get("style") or target["kind"],
            "strength": e.strength,
            "noise": e.noise_strength,
            "decoded_share": e.decoded_share,
            "noise_decoded": e.noise_decoded_share,
            "optimise_seconds": report.optimise_seconds,
        }
    return row


def main(argv=None) -> int:
    args = parse_args(argv)
    from fixative.models import load_encoders
    from fixative.plugins import hooks

    model = str(SHARED / "models" / "taesd" / "taef2_encoder.pth")
    encoders = load_encoders([model], hooks(), device="cpu", dtype="auto")  # as protect runs it
    rows: list[dict] = []
    for size in [int(v) for v in args.sizes.split(",") if v]:
        for name, picture in pictures(size).items():
            rows.append(reach_row(name, picture, encoders, size))
            print(json.dumps(rows[-1]), flush=True)
    made = [v for v in args.protect.split(",") if v]
    protected = []
    for name in made:
        for method in ("style", "edit"):
            protected.append(protect_row(name, flat_picture(name, args.protect_size), model, method))
            print(json.dumps(protected[-1]), flush=True)
    write_latest(args.out, "flat", {"reach": rows, "protect": protected}, markdown(rows, protected))
    return 0


def markdown(rows: list[dict], protected: list[dict]) -> str:
    keys = [f"{m}:{n or 'chosen'}" for m, n in TARGETS]
    lines = ["| picture | size | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in rows:
        cells = [f"{r['reach'][k]:.3f}" if r["reach"][k] > -1e6 else "< -1e6" for k in keys]
        lines.append(f"| {r['picture']} | {r['size']} | " + " | ".join(cells) + " |")
    if protected:
        head = "| picture | method | way | target | strength (noise) | decoded share (noise) | seconds |"
        lines += ["", head, "|---|---|---|---|---|---|---|"]
        for r in protected:
            for way in ("first choice named", "Fixative's choice"):
                w = r[way]
                lines.append(
                    f"| {r['picture']} | {r['method']} | {way} | {w['target']} | {w['strength']:.2f} "
                    f"({w['noise']:.2f}) | {w['decoded_share']:.3f} ({w['noise_decoded']:.3f}) | "
                    f"{w['optimise_seconds']:.1f} |"
                )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
