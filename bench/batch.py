"""Images per minute: `fixative batch` on a local Ray with 1 and 2 CPU actors against the plain CLI over
the same folder (issue 17's overhead goal: at most 15 % at 2 actors for 256² images).

    python -m bench.batch                  # 8 crops of the shared artworks at 256², default quality
    python -m bench.batch --images 4 --quality fast

Each configuration runs as a fresh `python -m fixative` process (what a user runs), writing into its own
folder; wall time includes start-up (Ray's included). Writes bench/results/batch-<time>.md/.json.
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

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FIXATIVE_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "bench" / "results"


def make_folder(folder: Path, count: int, size: int) -> None:
    sources = sorted((SHARED / "images").glob("*.*"))
    sources = [p for p in sources if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    for index in range(count):
        image = Image.open(sources[index % len(sources)]).convert("RGB")
        side = min(image.size)
        image = image.crop((0, 0, side, side)).resize((size, size), Image.LANCZOS)
        image.save(folder / f"img{index:03d}.png")


def timed(argv: list[str]) -> float:
    env = dict(os.environ, FIXATIVE_MODELS=str(SHARED / "models"))
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fixative", *argv], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed: {done.stderr.strip().splitlines()[-1:]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.batch", description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--quality", default="default")
    args = p.parse_args(argv)
    options = ["--quality", args.quality, "--model", "taef2"]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "in"
        source.mkdir()
        make_folder(source, args.images, args.size)
        configs = {
            "CLI (one process)": ["protect", str(source), "--out-dir", f"{scratch}/cli", "-q", *options],
            "batch, 1 actor": [
                "batch",
                str(source),
                "--out-dir",
                f"{scratch}/r1",
                "--actors",
                "1",
                "-q",
                *options,
            ],
            "batch, 2 actors": [
                "batch",
                str(source),
                "--out-dir",
                f"{scratch}/r2",
                "--actors",
                "2",
                "-q",
                *options,
            ],
        }
        for name, command in configs.items():
            seconds = timed(command)
            rows.append(
                {
                    "config": name,
                    "seconds": round(seconds, 1),
                    "images_per_minute": round(args.images / seconds * 60, 1),
                }
            )
            print(f"{name:<20} {seconds:7.1f} s  {rows[-1]['images_per_minute']:6.1f} images/min", flush=True)
    cli = rows[0]["images_per_minute"]
    for row in rows[1:]:
        row["vs_cli"] = round(row["images_per_minute"] / cli, 2)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    header = f"{args.images} images at {args.size}², quality {args.quality}, taef2, {os.cpu_count()} CPUs\n\n"
    table = "| configuration | wall s | images / min | vs CLI |\n|---|---|---|---|\n" + "".join(
        f"| {r['config']} | {r['seconds']} | {r['images_per_minute']} | {r.get('vs_cli', 1.0)} |\n"
        for r in rows
    )
    (RESULTS / f"batch-{stamp}.md").write_text(header + table)
    (RESULTS / f"batch-{stamp}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
