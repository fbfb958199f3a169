"""How visible a change is, measured three ways that need no learned weights:

* ``jnd_exceed_share``: the share of pixels whose change passes one just-noticeable difference of the
  budget's visual model (``optimise.budget.jnd_map`` of the original) in Y, Cb or Cr;
* ``flat_rms_255``: the RMS change (RGB, in 0..255 levels) in the flattest 15 % of the image (lowest
  local luminance contrast over 7 x 7 pixels), where grain shows first;
* MS-SSIM (torchmetrics), beside the PSNR and SSIM of ``measures.perceptual``.
"""

from __future__ import annotations

import kornia
import torch

from ..optimise.budget import jnd_map, to_ycc

FLAT_SHARE = 0.15
WINDOW = 7


def local_contrast(rgb: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """(H, W): the standard deviation of luminance around each pixel."""
    luma = kornia.color.rgb_to_ycbcr(rgb[None].float())[:, :1]
    mean = kornia.filters.box_blur(luma, (window, window), border_type="reflect")
    square = kornia.filters.box_blur(luma * luma, (window, window), border_type="reflect")
    return (square - mean * mean).clamp_min(0).sqrt()[0, 0]


@torch.no_grad()
def flat_rms_255(original: torch.Tensor, protected: torch.Tensor, share: float = FLAT_SHARE) -> float:
    contrast = local_contrast(original).flatten()
    count = max(1, int(share * contrast.numel()))
    flattest = torch.argsort(contrast)[:count]
    change = (protected.float() - original.float()).reshape(3, -1)[:, flattest]
    return float(change.pow(2).mean().sqrt()) * 255


@torch.no_grad()
def jnd_exceed_share(original: torch.Tensor, protected: torch.Tensor, tolerance: float = 1e-6) -> float:
    ycc = to_ycc(protected.float() - original.float())
    return float((ycc.abs() > jnd_map(original) + tolerance).any(dim=0).float().mean())


@torch.no_grad()
def ms_ssim(original: torch.Tensor, protected: torch.Tensor) -> float | None:
    """MS-SSIM with as many of the five standard scales as the image's size allows (None below 3)."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    side = min(original.shape[-2:])
    betas = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    scales = next(
        (n for n in (5, 4, 3) if side // (n - 1) ** 2 > 11 - 1 and side >= 2**n), 0
    )  # torchmetrics' rule
    if scales == 0:
        return None
    weights = tuple(b / sum(betas[:scales]) for b in betas[:scales])
    value = multiscale_structural_similarity_index_measure(
        protected[None].float(), original[None].float(), data_range=1.0, betas=weights
    )
    return float(value)


@torch.no_grad()
def most_visible_region(
    original: torch.Tensor, protected: torch.Tensor, size: int = 64
) -> tuple[int, int, int]:
    """(top, left, size) of the square where the change is largest relative to the JND (for a zoomed view)."""
    _, h, w = original.shape
    size = max(8, min(size, h, w))
    ycc = to_ycc(protected.float() - original.float()).abs() / jnd_map(original).clamp_min(1e-4)
    energy = ycc.amax(dim=0)[None, None]
    pooled = torch.nn.functional.avg_pool2d(energy, size, stride=max(1, size // 4))
    index = int(pooled.flatten().argmax())
    top, left = divmod(index, pooled.shape[-1])
    stride = max(1, size // 4)
    return min(top * stride, h - size), min(left * stride, w - size), size
