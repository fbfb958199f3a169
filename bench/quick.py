"""The quick device check (issue 18): ``python -m bench.run --device cuda --quick``.

In one process, a few minutes on one GPU:

1. the device's own matrix peak in each precision, measured (a square matmul), in TFLOP/s;
2. one optimiser step of the SD-sized VAE encoder (diffusers ``AutoencoderKL`` in the SD1.5 configuration,
   random weights: same cost as real ones) at 512², per precision: seconds per step, the step's FLOPs
   counted by ``torch.utils.flop_counter`` (forward and backward, not assumed), and the FLOP-based limit
   (FLOPs / measured peak) beside it;
3. with ``--compile`` (default on CUDA: ``default,reduce-overhead``), the same step in the fastest precision
   with the encoder and decoder under ``torch.compile`` in each mode named (``reduce-overhead`` replays CUDA
   graphs; ``eager`` traces with TorchDynamo and runs eagerly, the CPU test's mode): seconds per step after
   the warm-up and the warm-up itself (the compile time);
4. ``fixative.optimise.run`` at quality ``default`` on the SD-sized encoder and on taef2 at 512², whole:
   seconds and steps (the issue's goal for the SD-sized one is under a second on a GPU); with compiled
   modes timed, once more on the SD-sized encoder in the fastest of them, compilation included.

``--smoke`` shrinks it to 64² and two steps, and the compiled protection of part 4 runs on taef2 (what the
test suite runs on a CPU, where TorchDynamo's tracing of the SD-sized VAE for dynamic shapes takes 15 s
and taef2's 5 s: the same path either way). Writes
``bench/results/quick-<time>.json`` / ``.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

SD_FORWARD_TFLOP_512 = 1.08  # the figure for the SD VAE encoder's forward pass at 512², to compare
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# torch.compile settings per --compile mode; "reduce-overhead" captures CUDA graphs.
COMPILE_MODES = {
    "eager": {"backend": "eager"},
    "default": {},
    "reduce-overhead": {"mode": "reduce-overhead"},
    "max-autotune": {"mode": "max-autotune"},
}


def compile_modes(value: str | None, device: torch.device) -> list[str]:
    """The ``--compile`` modes to time: the ones named, or on CUDA ``default`` and ``reduce-overhead``."""
    if value is None:
        return ["default", "reduce-overhead"] if device.type == "cuda" else []
    modes = [m.strip() for m in value.split(",") if m.strip() and m.strip() != "none"]
    unknown = [m for m in modes if m not in COMPILE_MODES]
    if unknown:
        raise SystemExit(f"--compile: unknown mode {unknown[0]!r}; use none or {', '.join(COMPILE_MODES)}")
    return modes


def compiled(encoder, mode: str, dynamic: bool = False):
    """``encoder`` with its encoder and decoder modules under ``torch.compile`` (in place). A step's timing
    sees one shape (``dynamic=False``: the fastest kernels); a whole protection sees a new size with each
    served copy the EOT draws, and compiled for fixed shapes it compiled each module once per size: 10
    graphs in a 20-step `default` at 64², against 4 with ``dynamic=True`` (TorchDynamo's count, ``eager``
    backend on the CPU), each compile costing far more than a step on a GPU."""
    for module in (encoder.encoder, encoder.decoder):
        if module is not None:
            module.compile(dynamic=dynamic, **COMPILE_MODES[mode])
    return encoder


def graphs_compiled() -> int:
    """How many graphs TorchDynamo has compiled in this process (each a compilation a run paid for)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 8192, repeats: int = 10) -> dict:
    """Achieved TFLOP/s of a square matmul in ``dtype`` on ``device``: the limit a step is held against."""
    size = size if device.type == "cuda" else 1024
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b  # warm-up
    synchronise(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronise(device)
    seconds = (time.perf_counter() - started) / repeats
    return {"dtype": str(dtype).removeprefix("torch."), "n": size, "tflops": 2 * size**3 / seconds / 1e12}


def step_cost(encoder, art: torch.Tensor, goal, budget, steps: int, count: bool = True) -> dict:
    """Seconds per optimiser step (median after a warm-up step, which is also reported) and, with
    ``count``, the FLOPs of one step, counted."""
    from torch.utils.flop_counter import FlopCounterMode

    from fixative.optimise import loop

    x = art[None].to(encoder.device)
    budget = budget.to(encoder.device)
    problem = loop.prepare(x, budget, [encoder], goal, max(x.shape[-2:]))  # one tile: the whole image
    device = encoder.device
    delta = torch.zeros_like(x)
    flops = forward_flops = 0
    if count:
        with FlopCounterMode(display=False) as counter:
            loop.gradient(problem, delta, lambda v: v)
        with torch.no_grad(), FlopCounterMode(display=False) as forward:
            encoder(x)
        flops, forward_flops = counter.get_total_flops(), forward.get_total_flops()
    timings = []
    for _ in range(steps + 1):  # the first one pays the warm-up
        synchronise(device)
        t0 = time.perf_counter()
        grad, _ = loop.gradient(problem, delta, lambda v: v)
        delta = budget.project(delta - 1e-3 * grad.sign(), x)
        synchronise(device)
        timings.append(time.perf_counter() - t0)
    return {
        "seconds_per_step": statistics.median(timings[1:]),
        "warm_up_seconds": timings[0],
        "step_tflop": flops / 1e12,
        "forward_tflop": forward_flops / 1e12,
    }


def protect_time(encoder, art: torch.Tensor, goal, budget, steps: int | None = None) -> dict:
    """``fixative.optimise.run`` at quality ``default`` (``steps`` to shorten it), whole: seconds, steps."""
    import dataclasses

    from fixative.optimise import run
    from fixative.presets import quality

    preset = quality("default")
    if steps:
        preset = dataclasses.replace(preset, steps=steps, eot_start=min(preset.eot_start, steps - 1))
    synchronise(encoder.device)
    result = run(art, [encoder], goal, budget, preset, seed=0)
    synchronise(encoder.device)
    return {"seconds": result.seconds, "steps": result.steps, "strength": result.history[-1]}


def quick(args: argparse.Namespace, image: str, log, save=lambda found: None) -> dict:
    from fixative.optimise import perceptual_budget
    from fixative.plugins import hooks
    from fixative.presets import intensity
    from fixative.targets import TargetRequest, make_target

    from .probe import load_artwork, load_encoder

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device here")
    size, steps = (64, 2) if args.smoke else (512, 5)
    modes = compile_modes(args.compile, device)
    precisions = ["fp32", "bf16", "fp16"] if device.type == "cuda" else ["fp32", "bf16"]
    art = load_artwork(image, size)
    budget = perceptual_budget(art, intensity("default").jnd_scale, intensity("default").epsilon)
    goal = make_target(TargetRequest(method=args.method, artwork=art, seed=0), hooks())
    out: dict = {"device": describe(device), "size": size, "steps": [], "protect": []}
    for name in precisions:
        peak = matmul_peak(device, DTYPES[name])
        log(f"{args.device}: {name} matmul peak {peak['tflops']:.2f} TFLOP/s (n={peak['n']}, measured)")
        encoder = load_encoder("sd", args.models).to(device=device, dtype=DTYPES[name])
        cost = step_cost(encoder, art, goal, budget, steps)
        limit = cost["step_tflop"] / peak["tflops"]
        row = {"encoder": "sd", "precision": name, **cost, "peak_tflops": peak["tflops"]}
        row["flop_limit_seconds"] = limit
        row["share_of_limit"] = limit / cost["seconds_per_step"]
        out["steps"].append(row)
        save(out)
        log(
            f"sd {size}² {name}: {cost['seconds_per_step']:.4f} s/step; the step is "
            f"{cost['step_tflop']:.3f} TFLOP (forward {cost['forward_tflop']:.3f}), limit "
            f"{limit:.4f} s at the measured peak ({100 * row['share_of_limit']:.0f} % of it)"
        )
        del encoder
    fastest = min(out["steps"], key=lambda r: r["seconds_per_step"])["precision"]
    out["compiled"] = []
    for mode in modes:
        encoder = compiled(load_encoder("sd", args.models).to(device=device, dtype=DTYPES[fastest]), mode)
        cost = step_cost(encoder, art, goal, budget, steps, count=False)
        out["compiled"].append({"encoder": "sd", "precision": fastest, "mode": mode, **cost})
        save(out)
        log(
            f"sd {size}² {fastest} torch.compile {mode}: {cost['seconds_per_step']:.4f} s/step "
            f"(warm-up with compilation {cost['warm_up_seconds']:.1f} s)"
        )
        del encoder
    runs = [("sd", None), ("taef2", None)]
    if out["compiled"]:  # the fastest compiled mode protects too (its compilation counts in the time)
        fastest_mode = min(out["compiled"], key=lambda r: r["seconds_per_step"])["mode"]
        runs.append(("taef2" if args.smoke else "sd", fastest_mode))
    for name, mode in runs:
        encoder = load_encoder(name, args.models).to(device=device, dtype=DTYPES[fastest])
        encoder = compiled(encoder, mode, dynamic=True) if mode else encoder
        graphs = graphs_compiled()
        timing = protect_time(encoder, art, goal, budget, steps=3 if args.smoke else None)
        if mode:
            timing["graphs_compiled"] = graphs_compiled() - graphs
        out["protect"].append({"encoder": name, "precision": fastest, "compile": mode, **timing})
        save(out)
        how = f"{fastest}, torch.compile {mode}, dynamic shapes" if mode else fastest
        log(f"{name} {size}² default ({how}): {timing['seconds']:.2f} s, {timing['steps']} steps")
        del encoder
    return out


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name}, {props.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def markdown(result: dict) -> str:
    size = result["size"]
    lines = [
        f"# Quick device check ({result['started']})",
        "",
        f"{result['device']}. FLOP limit: the step's counted FLOPs / the measured matmul peak in its "
        "precision.",
        f"The issue's figure for the SD VAE encoder's forward pass at 512²: {SD_FORWARD_TFLOP_512} TFLOP.",
        *(
            ["", "**Unfinished**: the run stopped before its last part; the rows below are what it measured."]
            if not result.get("finished", True)
            else []
        ),
        "",
        "| encoder | size | precision | s / step | step TFLOP (forward) | peak TFLOP/s | FLOP limit s "
        "| share of limit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["steps"]:
        lines.append(
            f"| SD-sized | {size}² | {r['precision']} | {r['seconds_per_step']:.4f} | {r['step_tflop']:.3f} "
            f"({r['forward_tflop']:.3f}) | {r['peak_tflops']:.2f} | {r['flop_limit_seconds']:.4f} | "
            f"{100 * r['share_of_limit']:.0f} % |"
        )
    if result.get("compiled"):
        lines += [
            "",
            "| encoder | size | precision | torch.compile mode | s / step | warm-up (compile) s |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["compiled"]:
            lines.append(
                f"| SD-sized | {size}² | {r['precision']} | {r['mode']} | {r['seconds_per_step']:.4f} | "
                f"{r['warm_up_seconds']:.1f} |"
            )
    lines += [
        "",
        "| encoder | size | precision | torch.compile (dynamic shapes) | `default` seconds | steps "
        "| strength | graphs compiled |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in result["protect"]:
        lines.append(
            f"| {r['encoder']} | {size}² | {r['precision']} | {r.get('compile') or 'no'} | "
            f"{r['seconds']:.2f} | {r['steps']} | {r['strength']:.3f} | {r.get('graphs_compiled', '–')} |"
        )
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace, image: str, log) -> int:
    """Run the quick check on ``image`` (a path) and write its table and JSON, again after each part: a
    run stopped at a lent machine's time limit still leaves what it measured (``"finished": false``)."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    def write(found: dict, finished: bool) -> str:
        result = {"started": started, "finished": finished, **found}
        text = markdown(result)
        for name in (f"quick-{stamp}", "latest-quick"):
            (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
            (out_dir / f"{name}.md").write_text(text)
        return text

    print(write(quick(args, image, log, save=lambda found: write(found, False)), True))
    return 0
