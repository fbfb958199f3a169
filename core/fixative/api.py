"""The Python API every host calls: ``protect`` (load -> target -> optimise -> check -> save)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from . import __version__, features
from .check.measures import perceptual
from .errors import BadParameterError
from .load import Artwork, load_image, to_artwork
from .models import Encoder, load_encoders
from .optimise import bound, run
from .presets import intensity as intensity_preset
from .presets import quality as quality_preset
from .save import output_path_for, save_image, to_pil
from .target import TargetRequest, make_target


@dataclass
class ProtectResult:
    """The protected image (same mode and size as the input) and the measured report."""

    image: Image.Image
    artwork: Artwork
    rgb: torch.Tensor  # protected pixels (3, H, W) 0..1, as quantised in ``image``
    report: dict
    metadata: dict

    def save(self, path: str | Path, overwrite: bool = False, jpeg_quality: int = 95) -> Path:
        return save_image(
            self.image, self.artwork, path, self.metadata, overwrite=overwrite, jpeg_quality=jpeg_quality
        )


def _as_tensor_image(image, name: str) -> torch.Tensor | None:
    if image is None:
        return None
    return to_artwork(image, name).rgb


def protect(
    image,
    method: str = "style",
    *,
    intensity: str = "default",
    quality: str = "default",
    models: list | str | Encoder | None = None,
    target=None,
    concept: str | None = None,
    anchor: str | None = None,
    style: str | None = None,
    pattern: str | None = None,
    pipeline: str | None = None,
    mask=None,
    epsilon: float | None = None,
    steps: int | None = None,
    optimizer: str = "pgd",
    lpips_weight: float | None = None,
    texture_aware: bool = True,
    tile: int | None = None,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype | None = "fp32",
    seed: int = 0,
    allow_download: bool = False,
    progress: Callable[[int, int, dict], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> ProtectResult:
    """Protect one image. ``image`` may be a path, bytes, PIL image, array or (3, H, W) tensor.

    ``method`` is "style" (cloak), "concept" (poison, with ``target`` anchor image and ``concept``
    caption) or "edit" (shield). ``target`` is a user image (style image, anchor, or edit target).
    ``mask`` (H, W) in 0..1 limits where the perturbation may go. ``tile`` bounds memory (default: 512 px
    for tiny autoencoders, 256 px for full VAEs).
    """
    started = time.perf_counter()
    artwork = to_artwork(image)
    preset = intensity_preset(intensity)
    effort = quality_preset(quality)
    if epsilon is not None:
        if not 0 < epsilon <= 64 / 255:
            raise BadParameterError(f"epsilon must be in (0, 64/255], got {epsilon}")
        preset = type(preset)(epsilon, preset.min_mask, preset.lpips_budget, preset.lpips_weight)
    if steps is not None:
        if not 0 <= steps <= 10_000:
            raise BadParameterError(f"steps must be between 0 and 10000, got {steps}")
        clean = round(effort.eot_start * steps / effort.steps) if effort.steps else 0  # same clean share
        effort = dataclasses.replace(
            effort, steps=steps, coarse_steps=min(effort.coarse_steps, steps), eot_start=clean
        )
    if lpips_weight is not None and lpips_weight < 0:
        raise BadParameterError("lpips weight must be >= 0")
    encoders = load_encoders(models, device=device, dtype=dtype, allow_download=allow_download)
    dev = encoders[0].device
    if tile is None:  # memory is bounded by the tile: the hungriest encoder of the ensemble decides
        tile = min(getattr(e, "tile", features.DEFAULT_TILE) for e in encoders)
    elif tile < 64:
        raise BadParameterError(f"tile must be at least 64 pixels, got {tile}")
    request = TargetRequest(
        method=method,
        artwork=artwork.rgb,
        image=_as_tensor_image(target, "target"),
        concept=concept,
        anchor=anchor,
        style=style,
        pattern=pattern,
        pipeline=pipeline,
        seed=seed,
        device=dev,
    )
    goal = make_target(request)
    user_mask = None
    if mask is not None:
        user_mask = torch.as_tensor(mask, dtype=torch.float32)
        if user_mask.ndim == 3:
            user_mask = user_mask.squeeze(0) if user_mask.shape[0] == 1 else user_mask.squeeze(-1)
        if tuple(user_mask.shape) != tuple(artwork.rgb.shape[1:]):
            raise BadParameterError(
                f"mask size {tuple(user_mask.shape)} does not match the image {tuple(artwork.rgb.shape[1:])}"
            )
    limit = bound(artwork.rgb, preset.epsilon, preset.min_mask, user_mask, texture_aware)
    weight = preset.lpips_weight if lpips_weight is None else lpips_weight
    result = run(
        artwork.rgb,
        encoders,
        goal,
        limit,
        effort,
        seed=seed,
        optimizer=optimizer,
        lpips_weight=weight,
        lpips_budget=preset.lpips_budget,
        tile=tile,
        progress=progress,
        cancel=cancel,
    )
    protected_pil = to_pil(artwork, artwork.rgb + result.delta, epsilon=preset.epsilon)
    protected = to_artwork(
        protected_pil.convert("RGB") if protected_pil.mode not in ("I;16",) else protected_pil
    ).rgb
    if artwork.bits == 16:
        protected = (artwork.rgb + result.delta).clamp(0, 1)
    encoder_reports = measure_strength(artwork.rgb, protected, encoders, goal, tile)
    report = {
        "version": __version__,
        "source": artwork.source,
        "size": list(artwork.size),
        "mode": artwork.mode,
        "method": method,
        "target": goal.describe(),
        "intensity": intensity,
        "quality": quality,
        "budget": {
            "epsilon_255": round(preset.epsilon * 255, 3),
            "texture_aware": texture_aware,
            "min_mask": preset.min_mask,
            "masked": user_mask is not None,
        },
        "encoders": encoder_reports,
        "strength": min(e["strength"] for e in encoder_reports),
        "perceptual": perceptual(artwork.rgb, protected),
        "steps": result.steps,
        "stopped_early": result.stopped_early,
        "optimise_seconds": round(result.seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(dev),
        "seed": seed,
        "notes": list(artwork.notes),
    }
    if report["perceptual"]["lpips"] is None:
        report["notes"].append("LPIPS not measured: its AlexNet weights are not on this machine")
    metadata = {
        "fixative": __version__,
        "method": method,
        "target": goal.describe(),
        "encoders": [e.source or e.name for e in encoders],
        "encoder_names": [e.name for e in encoders],
        "budget": report["budget"],
        "intensity": intensity,
        "quality": quality,
        "seed": seed,
    }
    if goal.caption:
        metadata["caption"] = goal.caption
    return ProtectResult(
        image=protected_pil, artwork=artwork, rgb=protected, report=report, metadata=metadata
    )


def measure_strength(
    original: torch.Tensor, protected: torch.Tensor, encoders: list, goal, tile: int
) -> list[dict]:
    """Per encoder: feature distance to the target before/after, and the relative strength."""
    out = []
    for encoder in encoders:
        dev = encoder.device
        o, p = original[None].to(dev), protected[None].to(dev)
        tiles = features.tiles(o.shape[-2], o.shape[-1], tile)
        timg = None if goal.image is None else goal.image[None].to(dev)
        t_feats = [goal.features(encoder, t.crop(o), None if timg is None else t.crop(timg)) for t in tiles]
        with torch.no_grad():
            o_feats = [encoder(t.crop(o)) for t in tiles]
            p_feats = [encoder(t.crop(p)) for t in tiles]
        before, after = features.distance(o_feats, t_feats), features.distance(p_feats, t_feats)
        out.append(
            {
                "name": encoder.name,
                "family": encoder.family,
                "distance_before": round(before, 5),
                "distance_after": round(after, 5),
                "strength": round(features.strength(p_feats, o_feats, t_feats), 4),
            }
        )
    return out


def protect_file(
    path: str | Path, out: str | Path | None = None, overwrite: bool = False, **options
) -> tuple[Path, dict]:
    """Protect a file and write ``NAME.protected.png`` (or ``out``); returns the path and the report."""
    artwork = load_image(path)
    result = protect(artwork, **options)
    target = Path(out) if out else output_path_for(path)
    written = result.save(target, overwrite=overwrite)
    result.report["output"] = str(written)
    return written, result.report
