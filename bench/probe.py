"""One benchmark configuration, run in a fresh process so its peak resident memory is its own.

``python -m bench.probe '<json spec>'`` prints one JSON line. Two modes:

* ``race``: the whole optimisation (reference PGD, or ``fixative.optimise.run`` at a quality preset
  stopping at ``stop_at``), then strength and robustness (JPEG 75, 0.5x downscale) of the 8-bit result.
* ``rate``: seconds per optimiser step and peak memory at a size, from ``steps`` steps over at most
  ``max_tiles`` tiles (the rest is extrapolated by tile count, and the output says so).
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import statistics
import sys
import time

import torch


def _threads() -> int:
    count = int(os.environ.get("FIXATIVE_BENCH_THREADS", "0")) or (os.cpu_count() or 1)
    torch.set_num_threads(count)
    return count


REFERENCE_EPSILON = 8 / 255


def load_encoder(name: str, models_dir: str, precision: str = "fp32"):
    """``taef2`` (the real tiny FLUX.2 encoder) or ``sd`` (SD1.5-configured AutoencoderKL, random weights),
    in ``precision`` (``auto`` as ``fixative protect`` resolves it)."""
    from fixative.models import load_encoders, resolve_dtype
    from fixative.plugins import hooks

    if name == "taef2":
        path = os.path.join(models_dir, "taesd", "taef2_encoder.pth")
        return load_encoders([path], hooks(), device="cpu", dtype=precision)[0]
    if name == "sd":
        from fixative.models.autoencoder_kl import wrap

        vae = sd_sized_vae()
        return wrap(vae, "sd", "sd15-random", "random").to(resolve_dtype(precision, torch.device("cpu")))
    raise SystemExit(f"unknown encoder {name!r}; use taef2 or sd")


def sd_sized_vae():
    """diffusers' ``AutoencoderKL`` in the SD1.5 configuration with random weights (seed 0): random weights
    cost exactly as much time and memory as real ones, so it measures speed and memory only."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512],
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )


def load_artwork(path: str, size: int) -> torch.Tensor:
    """The artwork resized (cover + centre crop) to size x size, as (3, H, W) 0..1 on the 8-bit grid."""
    from fixative.load import load_image
    from fixative.targets import fit_to

    return quantised(fit_to(load_image(path).rgb, size, size))  # 8-bit, like a real file


def quantised(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb.clamp(0, 1) * 255).round() / 255


def purifications() -> dict:
    """JPEG 75 and 0.5x downscale-upscale: check's real ones (libjpeg, Pillow)."""
    from fixative.checks.purify import downscale_upscale, jpeg

    return {"jpeg75": lambda x: jpeg(x, 75), "resize0.5": lambda x: downscale_upscale(x, 0.5)}


@torch.no_grad()
def measure(encoder, goal, original: torch.Tensor, protected: torch.Tensor, tile: int) -> dict:
    """Strength (``fixative.features.strength``) clean and after each purification of the protected image,
    and the decoded share when the encoder has a decoder."""
    from fixative.features import StrengthProbe

    probe = StrengthProbe.build(encoder, goal, original, tile)
    out = {"strength": probe.strength(protected, original)[0]}
    # What the model sees (the decoder's picture) moved toward the target's: the share issue 15 asks for.
    out["decoded_share"] = probe.decoded_share(protected, original)
    for name, purify in purifications().items():
        out[f"strength_{name}"] = probe.strength(quantised(purify(protected[None]))[0], original)[0]
    return out


def race(spec: dict, encoder, art: torch.Tensor, goal, budget) -> dict:
    from fixative.optimise import run
    from fixative.presets import quality

    from .reference import pgd

    tile = spec.get("tile") or encoder.tile  # 0/absent: the encoder's own default, as users get
    if spec["runner"] == "reference":
        o = art[None]
        started = time.perf_counter()  # the target counts, as it does inside fixative's run()
        target = goal.features(encoder, o, None if goal.image is None else goal.image[None])
        result = pgd(art, encoder, target, budget, steps=spec.get("ref_steps", 100))
        seconds = time.perf_counter() - started
        steps, delta, history = result.steps, result.delta, result.history
        gradient = None  # a plain loop rounds each pixel to its nearest level inside the box
    else:
        preset = quality(spec["runner"])  # "bank": false races a preset that uses the start bank without it
        preset = dataclasses.replace(preset, bank_start=preset.bank_start and spec.get("bank", True))
        result = run(art, [encoder], goal, budget, preset, seed=0, tile=tile, stop_at=spec.get("stop_at"))
        seconds, steps, delta, history = result.seconds, result.steps, result.delta, result.history
        gradient = result.gradient
    # on the file's grid and inside the box, as ``protect`` writes it (budget.quantise)
    protected = budget.quantise(art, delta, gradient=gradient)
    out = {
        "seconds": seconds,
        "steps": steps,
        "linf_255": float((protected - art).abs().max()) * 255,
        "history": [round(h, 4) for h in history if h is not None],
        "start": "none (reference)" if spec["runner"] == "reference" else result.start,
    }
    out.update(measure(encoder, goal, art, protected, tile))
    return out


def rate(spec: dict, encoder, art: torch.Tensor, goal, budget) -> dict:
    """Time optimiser steps; fixative's over at most ``max_tiles`` tiles, the reference on the whole image.

    Fixative's step is `default`'s: the latents and, where the encoder has a decoder, what the model sees
    (``view_weight``), whose decoder pass is most of the step's time and memory (issue 15)."""
    from fixative.optimise import loop
    from fixative.presets import quality

    steps = spec.get("steps", 2)
    if spec["runner"] == "reference":
        from .reference import pgd

        target = goal.features(encoder, art[None], None if goal.image is None else goal.image[None])
        result = pgd(art, encoder, target, budget, steps=steps + 1)
        per_step = statistics.median(result.step_seconds[1:])  # the first step pays one-off warm-up
        return {"seconds_per_step": per_step, "tiles": 1, "tiles_timed": 1, "extrapolated": False}
    x = art[None]
    timings = []
    view_weight = quality("default").view_weight
    with loop.reuse_freed_memory_for(x):  # as fixative's run() does on a CPU
        problem = sampled_problem(
            x,
            budget,
            encoder,
            goal,
            spec.get("tile") or encoder.tile,
            spec.get("max_tiles"),
            view_weight,
            spec.get("split_view"),
        )
        total = problem.total
        delta = torch.zeros_like(x)
        for _ in range(steps + 1):  # the first step pays one-off warm-up and is not counted
            t0 = time.perf_counter()
            grad, _ = loop.gradient(problem, delta, lambda v: v, view_weight=view_weight)
            delta = budget.project(delta - 1e-3 * grad.sign(), x)
            timings.append(time.perf_counter() - t0)
    per_step = statistics.median(timings[1:])
    scale = total / len(problem.tiles)
    return {
        "seconds_per_step": per_step * scale,
        "view": problem.view_start[0] is not None,
        "split_view": problem.split_view,
        "tiles": total,
        "tiles_timed": len(problem.tiles),
        "extrapolated": scale > 1,
    }


def sampled_problem(
    x,
    budget,
    encoder,
    goal,
    tile: int,
    max_tiles: int | None,
    view_weight: float = 0.0,
    split_view: bool | None = None,
):
    """fixative's optimisation problem for ``x`` (``loop.prepare``), keeping only the first ``max_tiles``
    tiles: a step on a few tiles of a huge image is timed and extrapolated, with the image-sized buffers
    still allocated so peak memory stays representative. ``total``: how many tiles the whole image has."""
    from fixative.features import DEFAULT_OVERLAP, tiles
    from fixative.optimise import loop

    problem = loop.prepare(x, budget, [encoder], goal, tile, view_weight, max_tiles, split_view)
    h, w = x.shape[-2:]
    problem.total = len(tiles(h, w, tile, DEFAULT_OVERLAP))
    return problem


def main(argv: list[str] | None = None) -> None:
    spec = json.loads((argv or sys.argv[1:])[0])
    threads = _threads()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from fixative.models import precision_name
    from fixative.optimise import perceptual_budget
    from fixative.plugins import hooks
    from fixative.presets import intensity
    from fixative.targets import TargetRequest, make_target

    started = time.perf_counter()
    encoder = load_encoder(spec["encoder"], spec["models"], spec.get("precision", "fp32"))
    art = load_artwork(spec["image"], spec["size"])
    goal = make_target(TargetRequest(method=spec.get("method", "style"), artwork=art, seed=0), hooks())
    # Fixative's default perceptual budget (1 JND per pixel) under the reference's L-inf 8/255: both share it.
    budget = perceptual_budget(art, intensity("default").jnd_scale, REFERENCE_EPSILON)
    out = (
        race(spec, encoder, art, goal, budget)
        if spec["mode"] == "race"
        else rate(spec, encoder, art, goal, budget)
    )
    # MB = 10^6 bytes, as everywhere in docs/ (ru_maxrss is in KiB on Linux; until 2026-12-05 this divided
    # by 1024 and so reported MiB, 4.6 % below MB)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    out["wall_seconds"] = time.perf_counter() - started
    out["threads"] = threads
    out["precision"] = precision_name(encoder.dtype)
    print("BENCH-RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
