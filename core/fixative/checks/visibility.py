"""How visible a change is, measured three ways that need no learned weights:

* ``jnd_exceed_share``: the share of pixels whose change passes one just-noticeable difference of the
  budget's visual model (``optimise.budget.jnd_map`` of the original) in Y, Cb or Cr;
* ``flat_rms_255``: the RMS change (RGB, in 0..255 levels) in the flattest 15 % of the image (lowest
  local luminance contrast over 7 x 7 pixels), where grain shows first;
* MS-SSIM, beside the PSNR and SSIM of ``measures.perceptual``.
"""

from __future__ import annotations

from collections.abc import Callable

import kornia
import torch

from ..optimise.budget import jnd_map, local_std, outside_box, row_strips, to_ycc

FLAT_SHARE = 0.15
WINDOW = 7


def local_contrast(rgb: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """(H, W): the standard deviation of luminance around each pixel."""
    return local_std(kornia.color.rgb_to_y(rgb[None].float()), window)[0, 0]


@torch.no_grad()
def flat_rms_255(original: torch.Tensor, protected: torch.Tensor, share: float = FLAT_SHARE) -> float:
    contrast = local_contrast(original).flatten()
    count = max(1, int(share * contrast.numel()))
    flattest = torch.argsort(contrast)[:count]
    del contrast
    change = protected.reshape(3, -1)[:, flattest].float() - original.reshape(3, -1)[:, flattest].float()
    return float(change.pow(2).mean().sqrt()) * 255


@torch.no_grad()
def jnd_exceed_share(
    original: torch.Tensor, protected: torch.Tensor, tolerance: float = 1e-6, strip: int = 512
) -> float:
    """The share of pixels whose change passes the original's JND map in Y, Cb or Cr. The change is
    compared in strips of rows (pixel by pixel, so the same count): whole-image, its YCbCr copy and the
    comparison's temporaries put a 4096² protect's report at its highest point (an SD-sized run, 4.06 GB)."""
    limit = jnd_map(original)
    over = 0
    for span, _, _ in row_strips(original.shape[-2], strip, 0):
        before, after = original[:, span].float(), protected[:, span].float()
        over += int(outside_box(limit[:, span], before, after, tolerance).sum())
    return over / (original.shape[-2] * original.shape[-1])


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang, Simoncelli & Bovik (2003)


@torch.no_grad()
def ms_ssim(original: torch.Tensor, protected: torch.Tensor) -> float | None:
    """MS-SSIM (Wang et al. 2003: 11-pixel Gaussian window, sigma 1.5, contrast-structure at the finer
    scales, SSIM at the coarsest) with as many of the five scales as the image allows (None below 3).
    Written on kornia's Gaussian filter: torchmetrics' version needs ~14 s to import on this CPU."""
    side = min(original.shape[-2:])
    scales = next((n for n in (5, 4, 3) if side // 2 ** (n - 1) >= 11), 0)
    if scales == 0:
        return None
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales])
    weights = weights / weights.sum()
    x, y = original[None].float(), protected[None].float()
    c1, c2 = 0.01**2, 0.03**2
    values = []

    def blur(t: torch.Tensor) -> torch.Tensor:
        return kornia.filters.gaussian_blur2d(t, (11, 11), (1.5, 1.5), border_type="reflect")

    def similarity(x: torch.Tensor, y: torch.Tensor, coarsest: bool) -> torch.Tensor:
        mx, my = blur(x), blur(y)
        vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
        cs = (2 * cov + c2) / (vx + vy + c2)
        return (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs if coarsest else cs

    for scale in range(scales):
        coarsest = scale == scales - 1
        values.append(windowed_mean(lambda a, b, c=coarsest: similarity(a, b, c), x, y))
        if not coarsest:
            x, y = torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2)
    stacked = torch.stack(values).clamp_min(0)
    return float(torch.prod(stacked ** weights.to(stacked)))


@torch.no_grad()
def ssim(original: torch.Tensor, protected: torch.Tensor) -> float:
    """kornia's SSIM (11-pixel Gaussian window), its map averaged strip by strip."""
    return float(
        windowed_mean(
            lambda a, b: kornia.metrics.ssim(b, a, 11), original[None].float(), protected[None].float()
        )
    )


def windowed_mean(
    image_map: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    halo: int = 5,
    strip: int = 512,
) -> torch.Tensor:
    """The mean of the map ``image_map`` makes of ``x`` and ``y`` (1, C, H, W), whose window reaches
    ``halo`` rows: strip by strip, the same figure as on the whole image without its dozen full-size
    buffers (at 4096² they had put a protect's peak over 4 GB)."""
    total = torch.zeros((), dtype=torch.float64)
    for _, window, keep in row_strips(x.shape[-2], strip, halo):
        total += image_map(x[..., window, :], y[..., window, :])[..., keep, :].double().sum().cpu()
    return total / x.numel()


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
