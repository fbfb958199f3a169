"""What ``check`` and ``protect`` measure besides strength: perceptual cost (PSNR, SSIM, LPIPS where its
weights exist, and the visibility figures of ``visibility``), how far features moved at all, and what the
model sees (its decoder's picture of an image)."""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F

from .. import features
from ..optimise.budget import lpips_distance
from ..reports import Visibility
from . import visibility

VIEW_LONGEST = 512  # "what the model sees" is decoded at most this large (it is a picture, not a figure)


@torch.no_grad()
def perceptual(original: torch.Tensor, protected: torch.Tensor) -> Visibility:
    """Both (3, H, W) 0..1. L-infinity is reported in 0..255 steps, as artists think of it."""
    a, b = original[None].float(), protected[None].float()
    mse = float((a - b).pow(2).mean())
    lpips = None
    if min(a.shape[-2:]) >= 32:
        dist = lpips_distance(_limit(b), _limit(a))
        lpips = None if dist is None else round(float(dist), 5)
    ms_ssim = visibility.ms_ssim(original, protected)
    return Visibility(
        linf_255=round(float((a - b).abs().max()) * 255, 3),
        psnr_db=round(float(kornia.metrics.psnr(b, a, 1.0)), 3) if mse > 0 else float("inf"),
        ssim=round(visibility.ssim(original, protected), 5),
        lpips=lpips,
        ms_ssim=None if ms_ssim is None else round(ms_ssim, 5),
        jnd_exceed_share=round(visibility.jnd_exceed_share(original, protected), 5),
        flat_rms_255=round(visibility.flat_rms_255(original, protected), 3),
    )


def _limit(x: torch.Tensor, longest: int = 1024) -> torch.Tensor:
    h, w = x.shape[-2:]
    if max(h, w) <= longest:
        return x
    scale = longest / max(h, w)
    return F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="area")


def feature_shift(encoder, original: torch.Tensor, protected: torch.Tensor, tile: int) -> float:
    """How far the features moved at all, target aside: D(protected, original) / mean square of the
    original's features (0 = unchanged). Measurable whenever the original is, even without metadata; with a
    target, ``StrengthProbe.compare`` gives it from the features it encoded anyway."""
    o = features.encode(encoder, original[None].to(encoder.device), tile)
    p = features.encode(encoder, protected[None].to(encoder.device), tile)
    return features.shift(p, o)


def model_view(encoder, rgb: torch.Tensor) -> torch.Tensor:
    """What the model sees: decoder(encoder(x)) at a picture-sized resolution (hosts show it too)."""
    x = rgb[None].float()
    h, w = x.shape[-2:]
    scale = min(1.0, VIEW_LONGEST / max(h, w))
    size = (max(16, round(h * scale)), max(16, round(w * scale)))
    if size != (h, w):
        x = F.interpolate(x, size=size, mode="area")
    m = int(getattr(encoder, "downscale", 8))
    ph, pw = (-size[0]) % m, (-size[1]) % m
    padded = F.pad(x, (0, pw, 0, ph), mode="replicate") if (ph or pw) else x
    with torch.no_grad():
        out = encoder.decode(encoder(padded.to(encoder.device)))
    return out[0, :, : size[0], : size[1]].float().cpu()
