"""Peak memory of a whole ``fixative protect`` at a size, as a user runs it (issue 18: 4096² within 4 GB).

    python -m bench.memory                       # 4096², default settings, one optimiser step
    python -m bench.memory --size 2048 --steps 3 --limit-gb 4
    python -m bench.memory --size 512 --model path/to/vae     # another encoder (file, folder or name)
    python -m bench.memory --model sd --max-tiles 4 --steps 2  # the SD-sized VAE, each pass cut to 4 tiles

The speed scan (``bench.run --sizes``) times optimiser steps on a few tiles; this runs everything else too
(load, budget, target, the steps, rounding to the file's grid, the report's measurements, transfer, save)
in a fresh process and reads its peak resident set size. Peak memory does not grow with the number of
steps (each step frees what it took, the last step's gradient and the starting point's change included:
tests pin both; until 2026-12-06 they did not, and a one-step run understated a long one), so one step
stands for a whole run at a fraction of the time (about 10 minutes at 4096² on a 2-core CPU). Exit
status 1 when the peak is over ``--limit-gb``.

``--model sd`` protects with the SD-sized VAE of ``bench.probe`` (random weights, saved as a diffusers
folder for the run). A pass of it over a 4096² image's 324 tiles takes over an hour on a 2-core CPU, so
``--max-tiles N`` runs every pass (the target's, the steps', the report's) over the first N tiles only:
every image-sized buffer of the run is still made, and a pass holds one tile's graph at a time, the same
for every tile of one size, so the peak is the whole run's but for what more tiles would leave behind in
the heap (``--max-tiles 32`` against 4 says how much). The output says the tiles were cut; the strength
it reports then covers those tiles only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .run import SHARED


def artwork_at(name: str, size: int, folder: Path) -> Path:
    """The shared artwork resized to cover ``size`` x ``size`` (centre crop), written as PNG."""
    from PIL import Image, ImageOps

    source = Path(name) if Path(name).exists() else SHARED / "images" / name
    with Image.open(source) as image:
        fitted = ImageOps.fit(image.convert("RGB"), (size, size), Image.Resampling.LANCZOS)
    path = folder / f"{source.stem}-{size}.png"
    fitted.save(path)
    return path


def sd_folder(folder: Path) -> str:
    """``bench.probe``'s SD-sized VAE saved as a diffusers folder, for ``--model``."""
    from .probe import sd_sized_vae

    path = folder / "sd-sized-vae"
    sd_sized_vae().save_pretrained(path)
    return str(path)


def protect_with_tiles_cut(max_tiles: int, cli_args: list[str]) -> int:
    """``fixative <cli_args>`` in this process, every pass over the first ``max_tiles`` tiles (0: all)."""
    from fixative import features
    from fixative.hosts.cli import main as cli
    from fixative.optimise import loop

    if max_tiles > 0:
        every = features.tiles

        def first(*args, **kwargs):
            return every(*args, **kwargs)[:max_tiles]

        features.tiles = loop.tiles = first  # the probes' tiles (target, report) and the optimiser's
    sys.argv = ["fixative", *cli_args]
    return int(cli() or 0)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cut-tiles"]:  # the child process (below): --cut-tiles N -- protect ...
        return protect_with_tiles_cut(int(argv[1]), argv[3:])
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default="hokusai_great_wave.jpg", help="shared image name, or a path")
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--method", default="style", choices=["style", "edit"])
    p.add_argument("--limit-gb", type=float, default=4.0)
    p.add_argument("--models", default=str(SHARED / "models"))
    p.add_argument(
        "--model",
        help="encoder to protect with (file, folder or name; 'sd': the SD-sized VAE with random weights; "
        "default: the one protect picks)",
    )
    p.add_argument("--max-tiles", type=int, help="run every pass over the first N tiles only (see above)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fixative-memory-") as scratch:
        folder = Path(scratch)
        source = artwork_at(args.image, args.size, folder)
        report = folder / "report.json"
        model = sd_folder(folder) if args.model == "sd" else args.model
        command = [sys.executable, "-m", "bench.memory", "--cut-tiles", str(args.max_tiles or 0), "--"]
        command += ["protect", str(source), "-o", str(folder / "out.png")]
        command += ["--steps", str(args.steps), "--method", args.method, "--json", str(report), "-q"]
        command += ["--model", model] if model else []
        started = time.perf_counter()
        env = {**os.environ, "FIXATIVE_MODELS": os.environ.get("FIXATIVE_MODELS", args.models)}
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=Path(__file__).parents[1])
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(f"protect failed (exit {done.returncode}): {done.stderr.strip()[-500:]}", file=sys.stderr)
            return 1
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9  # Linux: kB
        measured = json.loads(report.read_text())
        measured = measured[0] if isinstance(measured, list) else measured
    within = peak_gb <= args.limit_gb
    print(
        json.dumps(
            {
                "size": args.size,
                "steps": args.steps,
                "method": args.method,
                "encoders": [e.get("name") for e in measured.get("encoders", [])],
                "peak_rss_gb": round(peak_gb, 2),
                "limit_gb": args.limit_gb,
                "tiles_cut_to": args.max_tiles,
                "within": within,
                "seconds": round(seconds, 1),
                "strength": measured.get("strength"),
                "precision": measured.get("precision"),
            }
        )
    )
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
