"""Calibration of ``fixative check`` without the original: what it says of clean images and matched noise
that carry a protected file's metadata, and of genuine protections.

    python -m bench.calibrate_check                   # every shared image at 256², every method (~27 min)
    python -m bench.calibrate_check --sizes 256,512 --methods style,edit
    python -m bench.calibrate_check --full --images hokusai_great_wave.jpg  # every cleaner, with the original

For every image and method: the genuine protection (default settings, taef2), the clean original and matched
noise (the protection's own |change| with random signs), the latter two saved with the protection's metadata.
Each is checked without the original; the table gives the detection agreement (recorded target / best
decoy), the estimated strength beside the exact one, and the verdict. The thresholds in
``fixative.checks.estimate`` must keep every null file from "protected"; this shows by how much.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .visibility import RESULTS, SHARED, all_images, anchor_for, load, write_latest


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.calibrate_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="")
    p.add_argument("--sizes", default="256")
    p.add_argument("--methods", default="style,concept,edit")
    p.add_argument(
        "--full",
        action="store_true",
        help="check with the original through every cleaner (check's default; ~1 min per file at 256²) "
        "instead of the quick subset; the JSON keeps each cleaner's row",
    )
    p.add_argument("--out", default=str(RESULTS))
    return p.parse_args(argv)


def save(rgb, artwork, path: Path, metadata: dict) -> Path:
    import numpy as np
    from PIL import Image

    from fixative.save import save_image

    pil = Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), "RGB")
    return save_image(pil, artwork, path, metadata, overwrite=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    import fixative
    from fixative.checks.null import matched_noise
    from fixative.load import to_artwork

    model = str(SHARED / "models" / "taesd" / "taef2_encoder.pth")
    rows = []
    with tempfile.TemporaryDirectory(prefix="fixative-calibrate-") as scratch:
        folder = Path(scratch)
        for size in (int(s) for s in args.sizes.split(",") if s):
            for name in [v for v in args.images.split(",") if v] or all_images():
                art = load(name, size)
                anchor = load(anchor_for(name), size)
                for method in [m for m in args.methods.split(",") if m]:
                    extra = {"target": anchor, "concept": "its own subject"} if method == "concept" else {}
                    result = fixative.protect(art, method, models=[model], **extra)
                    artwork = to_artwork(art)
                    original = save(art, artwork, folder / "original.png", {})
                    files = {
                        "protection": result.save(folder / "protected.png", overwrite=True),
                        "clean + metadata": save(art, artwork, folder / "clean.png", result.metadata),
                        "noise + metadata": save(
                            matched_noise(art, result.rgb, 1, levels=255),
                            artwork,
                            folder / "noise.png",
                            result.metadata,
                        ),
                    }
                    for kind, path in files.items():
                        options = dict(models=[model], fast=True, transfer=False)
                        if method == "concept":
                            options["target"] = anchor
                        t0 = time.perf_counter()
                        estimated = fixative.check(path, **options)
                        exact = fixative.check(path, original=original, **{**options, "fast": not args.full})
                        row = {
                            "image": name, "size": size, "method": method, "file": kind,
                            "agreement": (estimated.estimate or {}).get("agreement"),
                            "best_decoy": best_decoy(estimated.estimate),
                            "detected": (estimated.estimate or {}).get("detected"),
                            "estimated": estimated.strength, "exact": exact.strength,
                            "verdict": estimated.verdict, "verdict_exact": exact.verdict,
                            "seconds": round(time.perf_counter() - t0, 1),
                        }  # fmt: skip
                        if args.full:
                            row["reason_exact"] = exact.verdict_reason
                            row["encoders_exact"] = [e.to_dict() for e in exact.encoders]
                            row["robustness_exact"] = [r.to_dict() for r in exact.robustness]
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    write_latest(args.out, "calibrate-check", rows, markdown(rows))
    return 0


def best_decoy(estimate: dict | None) -> float | None:
    return max(map(abs, (estimate or {}).get("decoys", {}).values()), default=None)


def markdown(rows: list[dict]) -> str:
    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    lines = [
        "| image | size | method | file | agreement | best decoy | estimated | exact | verdict (no original) "
        "| verdict (with original) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['image']} | {r['size']}² | {r['method']} | {r['file']} | {fmt(r['agreement'])} | "
            f"{fmt(r['best_decoy'])} | {fmt(r['estimated'])} | {fmt(r['exact'])} | {r['verdict']} | "
            f"{r['verdict_exact']} |"
        )
    nulls = [r for r in rows if r["file"] != "protection" and r["agreement"] is not None]
    real = [r for r in rows if r["file"] == "protection" and r["agreement"] is not None]
    errors = [
        abs(r["estimated"] - r["exact"])
        for r in real
        if r["estimated"] is not None and r["exact"] is not None
    ]
    lines += [
        "",
        f"- null files (clean or noise with copied metadata): {len(nulls)}, largest agreement "
        f"{fmt(max((r['agreement'] for r in nulls), default=None))}, called protected: "
        f"{sum(r['verdict'].startswith('protected') for r in nulls)}",
        f"- genuine protections: {len(real)}, smallest agreement "
        f"{fmt(min((r['agreement'] for r in real), default=None))}, "
        f"detected: {sum(bool(r['detected']) for r in real)}",
        f"- |estimated - exact| strength of genuine protections: mean "
        f"{fmt(sum(errors) / len(errors) if errors else None)}, largest {fmt(max(errors, default=None))}",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
