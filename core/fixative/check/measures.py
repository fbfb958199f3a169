"""Perceptual cost of a protection: PSNR and SSIM (kornia), LPIPS when its weights are present, L-infinity."""

from __future__ import annotations

import kornia
import torch

from ..optimise.budget import lpips_distance


@torch.no_grad()
def perceptual(original: torch.Tensor, protected: torch.Tensor) -> dict:
    """Both (3, H, W) 0..1. L-infinity is reported in 0..255 steps, as artists think of it."""
    a, b = original[None].float(), protected[None].float()
    mse = float((a - b).pow(2).mean())
    out = {
        "linf_255": round(float((a - b).abs().max()) * 255, 3),
        "psnr_db": round(float(kornia.metrics.psnr(b, a, 1.0)), 3) if mse > 0 else float("inf"),
        "ssim": round(float(kornia.metrics.ssim(b, a, 11).mean()), 5),
        "lpips": None,
    }
    if min(a.shape[-2:]) >= 32:
        small = _limit(a), _limit(b)
        dist = lpips_distance(small[1], small[0])
        out["lpips"] = None if dist is None else round(float(dist), 5)
    return out


def _limit(x: torch.Tensor, longest: int = 1024) -> torch.Tensor:
    h, w = x.shape[-2:]
    if max(h, w) <= longest:
        return x
    scale = longest / max(h, w)
    return torch.nn.functional.interpolate(x, size=(round(h * scale), round(w * scale)), mode="area")
