"""The perceptual budget: a hard L-infinity bound shaped by a texture-aware mask, and optional LPIPS.

Flat colour areas (where noise shows, as in flat-colour illustration) get a small share of epsilon;
busy texture gets all of it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import kornia
import torch


def texture_mask(rgb: torch.Tensor, min_share: float, window: int = 9) -> torch.Tensor:
    """(1, H, W) in [min_share, 1]: the local contrast of the artwork, smoothed so the mask has no edges."""
    grey = kornia.color.rgb_to_grayscale(rgb[None].float())
    mean = kornia.filters.box_blur(grey, (window, window), border_type="reflect")
    var = kornia.filters.box_blur(grey * grey, (window, window), border_type="reflect") - mean * mean
    std = var.clamp_min(0).sqrt()
    reference = torch.quantile(std.flatten()[:: max(1, std.numel() // 200_000)], 0.75).clamp_min(0.02)
    busy = (std / reference).clamp(0, 1)
    busy = kornia.filters.gaussian_blur2d(
        busy, (window, window), (window / 3, window / 3), border_type="reflect"
    )
    return (min_share + (1 - min_share) * busy)[0]


def per_pixel_limit(
    rgb: torch.Tensor,
    epsilon: float,
    min_share: float,
    user_mask: torch.Tensor | None = None,
    texture_aware: bool = True,
) -> torch.Tensor:
    """The per-pixel budget ``limit`` (1, H, W): never above epsilon, zero outside the user's mask."""
    shape = texture_mask(rgb, min_share) if texture_aware and min_share < 1 else torch.ones(1, *rgb.shape[1:])
    limit = epsilon * shape.to(rgb.device)
    if user_mask is not None:
        limit = limit * user_mask.to(limit.device).float().clamp(0, 1).reshape(1, *rgb.shape[1:])
    return limit


def project(delta: torch.Tensor, limit: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Back inside the budget and the valid pixel range."""
    delta = torch.maximum(torch.minimum(delta, limit), -limit)
    return (images + delta).clamp(0, 1) - images


def lpips_weights_present() -> bool:
    """LPIPS needs torchvision's AlexNet weights, which are never downloaded at run time here."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return any(checkpoints.glob("alexnet-*.pth"))


@lru_cache(maxsize=2)
def lpips_model(device: str = "cpu"):
    """The LPIPS metric, or None when its backbone weights are not on this machine."""
    if not lpips_weights_present():
        return None
    import lpips

    model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    model.requires_grad_(False)
    return model


def lpips_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    model = lpips_model(str(a.device))
    if model is None:
        return None
    return model(a * 2 - 1, b * 2 - 1).mean()
