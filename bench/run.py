"""Fixative's speed benchmark: the reference PGD loop against each ``--quality`` preset, in one run.

    python -m bench.run            # the full suite (long on a CPU: see docs/speed.md)
    python -m bench.run --smoke    # tiny sizes, a minute; what the test suite runs
    python -m bench.run --device cuda --quick   # the quick device check (bench/quick.py), minutes on a GPU

Every configuration runs in a fresh subprocess (``bench.probe``) so its peak resident memory is its own;
reference and presets are interleaved and repeated so shared-machine noise hits them alike; medians are
reported with the load average seen around each measurement. Writes ``bench/results/bench-<time>.json``
and ``.md`` side by side (and ``latest.json`` / ``latest.md``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FIXATIVE_SHARED", ROOT.parent / "shared"))
RESULTS = ROOT / "bench" / "results"
# Peak resident bytes per pixel of one whole-image reference step, measured on this project's machine
# (docs/speed.md): taef2 3.05 GB at 1024², the SD-sized VAE 4.43 GB at 512².
REFERENCE_BYTES_PER_PIXEL = {"taef2": 2900, "sd": 17000}


def physical_memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def reference_does_not_fit(encoder: str, size: int) -> str | None:
    """Why the whole-image reference cannot run at ``size`` here (None if it can): over 3/4 of the RAM."""
    need = REFERENCE_BYTES_PER_PIXEL.get(encoder, max(REFERENCE_BYTES_PER_PIXEL.values())) * size * size
    memory = physical_memory_gb()
    if memory is not None and need / 2**30 > 0.75 * memory:
        return (
            f"the whole-image reference needs about {need / 2**30:.0f} GB; this machine has {memory:.0f} GB"
        )
    return None


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def _names(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from fixative.options import PRECISIONS

    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes and few steps: checks the suite runs")
    p.add_argument(
        "--images",
        type=_names,
        default=["hokusai_great_wave.jpg"],
        help="artworks (names in the shared images folder, or paths), comma-separated",
    )
    p.add_argument(
        "--race-sizes", type=_ints, default=[512, 1024, 2048], help="sizes of the strength race (square)"
    )
    p.add_argument("--race-encoders", type=_names, default=["taef2", "sd"], help="taef2 and/or sd")
    p.add_argument(
        "--sizes", type=_ints, default=[512, 1024, 2048, 4096], help="sizes of the speed/memory scan"
    )
    p.add_argument(
        "--encoders", type=_names, default=["taef2", "sd"], help="encoders of the speed/memory scan"
    )
    p.add_argument("--qualities", type=_names, default=["fast", "default", "slow"])
    p.add_argument(
        "--cold",
        action="store_true",
        help="also race each preset from seeded noise instead of the start bank (what the bank buys)",
    )
    p.add_argument("--method", default="style", choices=["style", "edit"])
    p.add_argument("--ref-steps", type=int, default=100, help="steps of the reference PGD loop")
    p.add_argument("--repeats", type=int, default=1, help="race repetitions (medians reported)")
    p.add_argument("--rate-steps", type=int, default=2, help="steps timed per speed/memory configuration")
    p.add_argument(
        "--max-tiles",
        type=int,
        default=4,
        help="tiles timed per step in the scan; more tiles are extrapolated by count (labelled)",
    )
    p.add_argument(
        "--tile", type=int, default=0, help="fixative's tile size (0: each encoder's default, as users get)"
    )
    p.add_argument(
        "--split-view",
        default="auto",
        choices=["auto", "on", "off"],
        help="scan: hold the decoder's graph and the encoder's one after the other (auto: above 2048², as "
        "protect does)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads per probe (0 = all cores)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the quick device check instead of the race: peak, seconds per step against the FLOP-based "
        "limit per precision, and a 512² default protection (bench/quick.py)",
    )
    p.add_argument("--device", default="cpu", help="device of the quick check: cpu or cuda (default cpu)")
    p.add_argument(
        "--compile",
        default=None,
        help="quick check: torch.compile modes to time, comma-separated (none, eager, default, "
        "reduce-overhead = CUDA graphs, max-autotune); default on cuda: default,reduce-overhead",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="encoders' precision for every runner, the reference too (default auto, as users get: bf16 "
        "on a CPU that computes it natively, else fp32)",
    )
    p.add_argument("--timeout", type=float, default=4 * 3600, help="seconds allowed per probe")
    p.add_argument("--models", default=str(SHARED / "models"))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.smoke:  # tiny defaults; options given explicitly still win
        given = set(argv if argv is not None else sys.argv[1:])
        smoke = {"race_sizes": [64], "sizes": [64, 128], "ref_steps": 4, "rate_steps": 1}
        for key, value in smoke.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, value)
    return args


def _image_path(name: str) -> str:
    path = Path(name)
    return str(path if path.exists() else SHARED / "images" / name)


def probe(spec: dict, args: argparse.Namespace) -> dict:
    """Run one configuration in a fresh interpreter and return its JSON result (or the error)."""
    env = dict(
        os.environ,
        FIXATIVE_BENCH_THREADS=str(args.threads),
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    load_before = os.getloadavg()[0]
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.probe", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": f"exit {done.returncode}: {tail[0][:300]}"}
    out = json.loads(lines[-1].removeprefix("BENCH-RESULT "))
    out["load"] = round((load_before + os.getloadavg()[0]) / 2, 2)
    return out


def _median(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def race(args: argparse.Namespace, log) -> list[dict]:
    """Reference, then each preset stopping at the reference's final strength; interleaved, repeated."""
    rows = []
    for encoder in args.race_encoders:
        for image in args.images:
            for size in args.race_sizes:
                base = {
                    "mode": "race",
                    "encoder": encoder,
                    "image": _image_path(image),
                    "size": size,
                    "models": args.models,
                    "method": args.method,
                    "ref_steps": args.ref_steps,
                    "tile": args.tile,
                    "precision": args.precision,
                }
                variants = [(q, q, True) for q in args.qualities]
                if args.cold:  # the presets that use the start bank, from seeded noise: what the bank buys
                    variants += [(f"{q} (random start)", q, False) for q in args.qualities if _banked(q)]
                runs: dict[str, list[dict]] = {"reference": [], **{label: [] for label, _, _ in variants}}
                too_big = reference_does_not_fit(encoder, size)
                if too_big:
                    log(f"race {encoder} {size}px: not run, {too_big}")
                    rows.append({**_row(encoder, image, size, "reference", []), "skipped": too_big})
                    continue
                for repeat in range(args.repeats):
                    ref = probe({**base, "runner": "reference"}, args)
                    runs["reference"].append(ref)
                    log(f"race {encoder} {size}px #{repeat + 1} reference: {_brief(ref)}")
                    goal = ref.get("strength")
                    for label, quality, bank in variants:
                        out = (
                            probe({**base, "runner": quality, "stop_at": goal, "bank": bank}, args)
                            if goal is not None
                            else {"error": "reference failed"}
                        )
                        runs[label].append(out)
                        log(f"race {encoder} {size}px #{repeat + 1} {label}: {_brief(out)}")
                ref_seconds = _median(runs["reference"], "seconds")
                ref_strength = _median(runs["reference"], "strength")
                for runner, results in runs.items():
                    row = _row(encoder, image, size, runner, results)
                    for key in (
                        "seconds",
                        "steps",
                        "strength",
                        "strength_jpeg75",
                        "strength_resize0.5",
                        "decoded_share",
                        "peak_rss_mb",
                        "linf_255",
                        "load",
                    ):
                        row[key] = _median(results, key)
                    if row["seconds"] and row["steps"]:
                        row["seconds_per_step"] = row["seconds"] / row["steps"]
                    if runner != "reference" and row["seconds"] and ref_seconds:
                        row["speedup"] = ref_seconds / row["seconds"]
                        row["reached"] = (
                            row["strength"] is not None
                            and ref_strength is not None
                            and row["strength"] >= ref_strength - 0.005
                        )
                    row["history"] = next((r["history"] for r in results if "history" in r), [])
                    row["start"] = next((r["start"] for r in results if "start" in r), None)
                    rows.append(row)
    return rows


def _banked(name: str) -> bool:
    from fixative.presets import quality

    return quality(name).bank_start


def _row(encoder: str, image: str, size: int, runner: str, results: list[dict]) -> dict:
    return {
        "encoder": encoder,
        "image": Path(image).name,
        "size": size,
        "runner": runner,
        "repeats": len(results),
        "errors": [r["error"] for r in results if "error" in r],
    }


def rate(args: argparse.Namespace, log) -> list[dict]:
    """Seconds per step and peak memory by size, fixative tiled against the reference's whole image."""
    rows = []
    image = _image_path(args.images[0])
    for encoder in args.encoders:
        for size in args.sizes:
            too_big = reference_does_not_fit(encoder, size)
            if too_big:
                log(f"scan {encoder} {size}px reference: not run, {too_big}")
            runners = ["fixative"] + ([] if too_big else ["reference"])
            for runner in runners:
                spec = {
                    "mode": "rate",
                    "runner": runner,
                    "encoder": encoder,
                    "image": image,
                    "size": size,
                    "models": args.models,
                    "method": args.method,
                    "steps": args.rate_steps,
                    "max_tiles": args.max_tiles,
                    "split_view": {"auto": None, "on": True, "off": False}[args.split_view],
                    "tile": args.tile,
                    "precision": args.precision,
                }
                out = probe(spec, args)
                log(f"scan {encoder} {size}px {runner}: {_brief(out)}")
                rows.append(
                    {"encoder": encoder, "size": size, "pixels": size * size, "runner": runner, **out}
                )
    return rows


def _graphs(row: dict) -> str:
    """How the scan's step held the decoder's and the encoder's graphs (``–`` without a decoder's view)."""
    if not row.get("view"):
        return "–"
    return "one after the other" if row.get("split_view") else "together"


def growth(rows: list[dict]) -> dict:
    """Log-log slope of time and memory against pixel count (1 = linear, 0 = flat)."""
    out = {}
    for encoder in sorted({r["encoder"] for r in rows}):
        for runner in ("fixative", "reference"):
            pts = [r for r in rows if r["encoder"] == encoder and r["runner"] == runner and "error" not in r]
            if len(pts) < 2:
                continue
            first, last = pts[0], pts[-1]
            span = math.log(last["pixels"] / first["pixels"])
            out[f"{encoder}/{runner}"] = {
                "pixels": [first["pixels"], last["pixels"]],
                "time_exponent": round(
                    math.log(last["seconds_per_step"] / first["seconds_per_step"]) / span, 3
                ),
                "memory_ratio": round(last["peak_rss_mb"] / first["peak_rss_mb"], 3),
                "memory_exponent": round(math.log(last["peak_rss_mb"] / first["peak_rss_mb"]) / span, 3),
            }
    return out


def _brief(out: dict) -> str:
    if "error" in out:
        return "ERROR " + out["error"]
    keys = ("seconds", "steps", "strength", "seconds_per_step", "peak_rss_mb", "load")
    return ", ".join(f"{k}={out[k]:.4g}" for k in keys if isinstance(out.get(k), (int, float)))


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def markdown(result: dict) -> str:
    """The run as a table; a section whose part was not run (e.g. ``--sizes ""``) is left out."""
    m = result["machine"]
    lines = [
        f"# Fixative benchmark, {result['started']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, torch {m['torch']}, "
        f"{m['threads']} threads; load average {m['load_start']} at start, {m['load_end']} at end; "
        f"precision {result['config'].get('precision', 'fp32')} (bf16 in hardware: "
        f"{_fmt(m.get('native_bf16'))}), the same for every runner.",
        f"Budget: texture-aware L-inf, 8/255 at most (default mask), same per-pixel limit for all; "
        f"method {result['config']['method']}; reference = {result['config']['ref_steps']} signed-gradient "
        "steps of 1/255, whole image, no EOT.",
    ]
    if result["race"]:
        lines += [
            "",
            "## Strength race (time to reach the reference's final strength)",
            "",
            "| encoder | size | runner | seconds | steps | s/step | strength | after JPEG 75 | after 0.5x | "
            "decoded share | speedup | reached | start | peak RSS MB | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
    for r in result["race"]:
        if r.get("skipped"):
            lines.append(
                f"| {r['encoder']} | {r['size']}² | reference | not run: {r['skipped']} |" + " |" * 11
            )
            continue
        lines.append(
            f"| {r['encoder']} | {r['size']}² | {r['runner']} | {_fmt(r['seconds'])} | {_fmt(r['steps'])} | "
            f"{_fmt(r.get('seconds_per_step'))} | {_fmt(r['strength'])} | {_fmt(r['strength_jpeg75'])} | "
            f"{_fmt(r['strength_resize0.5'])} | {_fmt(r.get('decoded_share'))} | {_fmt(r.get('speedup'))} | "
            f"{_fmt(r.get('reached'))} | "
            f"{_fmt(r.get('start'))} | "
            f"{_fmt(r['peak_rss_mb'])} | {_fmt(r['load'])} |"
        )
    if result["rate"]:
        lines += [
            "",
            "## Seconds per step and peak memory by size",
            "",
            "fixative's step is `default`'s: the latents, and what the model sees where the encoder has a "
            "decoder (the reference: the latents only); above 2048² the decoder's graph and the encoder's "
            "are held one after the other (loop.SPLIT_VIEW_PIXELS).",
            "",
            "| encoder | size | runner | s/step | tiles (timed) | extrapolated | view graphs | peak RSS MB "
            "| load |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    for r in result["rate"]:
        if "error" in r:
            lines.append(f"| {r['encoder']} | {r['size']}² | {r['runner']} | error: {r['error']} | | | | | |")
            continue
        lines.append(
            f"| {r['encoder']} | {r['size']}² | {r['runner']} | {_fmt(r['seconds_per_step'])} | "
            f"{r['tiles']} ({r['tiles_timed']}) | {_fmt(r['extrapolated'])} | {_graphs(r)} | "
            f"{_fmt(r['peak_rss_mb'])} | "
            f"{_fmt(r['load'])} |"
        )
    if result["growth"]:
        lines += [
            "",
            "## Growth with pixel count (log-log slopes: 1 = linear, 0 = flat)",
            "",
            "| encoder/runner | pixels | time exponent | memory ratio | memory exponent |",
            "|---|---|---|---|---|",
        ]
    for key, g in result["growth"].items():
        lines.append(
            f"| {key} | {g['pixels'][0]}→{g['pixels'][1]} | {g['time_exponent']} | {g['memory_ratio']} | "
            f"{g['memory_exponent']} |"
        )
    return "\n".join(lines) + "\n"


def machine(threads: int) -> dict:
    import torch

    from fixative.models.base import native_bf16

    memory_gb = physical_memory_gb()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads or os.cpu_count(),
        "load_start": round(os.getloadavg()[0], 2),
        "native_bf16": native_bf16(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(args.threads),
        "config": {k: v for k, v in vars(args).items()},
    }

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.quick:
        from . import quick

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        return quick.main(args, _image_path(args.images[0]), log)
    result["race"] = race(args, log)
    result["rate"] = rate(args, log)
    result["growth"] = growth(result["rate"])
    result["machine"]["load_end"] = round(os.getloadavg()[0], 2)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = markdown(result)
    for name in (f"bench-{stamp}", "latest"):
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
        (out_dir / f"{name}.md").write_text(text)
    print(text)
    print(f"written: {out_dir / f'bench-{stamp}.json'} and .md", file=sys.stderr)
    failed = [r for r in result["race"] + result["rate"] if r.get("error") or r.get("errors")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
