"""The perceptual budget: how much each pixel may change, from a classical just-noticeable-difference model.

The JND map needs no learned weights (LPIPS's AlexNet is never on the machine). It follows the Chou-Li /
Yang et al. family, on the artwork's luminance and chroma separately (YCbCr, BT.601):

* luminance adaptation ``T_l`` (Chou & Li 1995): the threshold of a change on a uniform background of
  grey level ``bg``. It is measured for small targets; a noise field spread over a flat area is seen at
  about half that amplitude (probability summation), and the flat-field threshold is capped, so smooth
  skies and gradients get no grain whatever their brightness;
* texture masking ``T_t = eta * G * W_e * S`` (Yang et al. 2005): busy texture (large luminance gradient
  ``G``, on the scale of Chou & Li's operators) hides change, but not at isolated strong edges (``W_e``:
  Canny edges, widened and blurred), where a change shows as a halo; and only where the texture is itself
  clearly visible (``S``: local contrast from 1x to 2x the flat-field threshold, as a masker must be
  suprathreshold to mask, and never in the image's flattest fifth), so faint gradients count as flat;
* the two combine as ``T_l + T_t - C * min(T_l, T_t)`` (NAMM, ``C = 0.3``);
* chroma: vision tolerates far more fine chroma change than luminance change in texture, and little in
  flat areas (colour blotches), so ``JND_C = chroma_flat + chroma_gain * T_t``.

``--intensity`` picks a multiple of this map (``Intensity.jnd_scale``) under a hard L-infinity cap per RGB
channel (``Intensity.epsilon``), which every output honours exactly. The optimiser moves the perturbation
in YCbCr, each channel in steps relative to its own per-pixel limit (``PerceptualBudget``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import kornia
import numpy as np
import torch
import torch.nn.functional as F

# RGB -> (Y, Cb, Cr) without the offsets (BT.601, as kornia.color.rgb_to_ycbcr): changes map linearly.
_YCC = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.299 * 0.564, -0.587 * 0.564, 0.886 * 0.564],
        [0.701 * 0.713, -0.587 * 0.713, -0.114 * 0.713],
    ]
)
_RGB = torch.linalg.inv(_YCC)
_BACKGROUND = (
    torch.tensor(
        [
            [1, 1, 1, 1, 1],
            [1, 2, 2, 2, 1],
            [1, 2, 0, 2, 1],
            [1, 2, 2, 2, 1],
            [1, 1, 1, 1, 1],
        ],
        dtype=torch.float32,
    )
    / 32
)  # Chou & Li's weighted mean of the 5 x 5 neighbourhood


@dataclass(frozen=True)
class JndModel:
    """The constants of the model, in 0..255 grey levels (as the papers state them)."""

    summation: float = 0.5  # flat-field threshold of a noise field relative to Chou & Li's small targets
    flat_cap: float = 1.5  # the luminance threshold of flat areas never exceeds this
    eta: float = 0.117  # texture masking gain (Yang et al. 2005)
    overlap: float = 0.3  # NAMM overlap between the two maskings
    edge_weight: float = 0.1  # masking left at isolated strong edges (no halo)
    masker_from: float = 1.0  # texture masks from this local contrast, in flat-field thresholds ...
    masker_full: float = 2.0  # ... fully from twice that
    flat_share: float = 0.2  # ... and never in the image's flattest fifth
    chroma_flat: float = 1.0  # chroma threshold of flat areas (one level of one RGB channel fits)
    chroma_gain: float = 2.0  # chroma tolerates this much more texture masking than luminance


def to_ycc(rgb_change: torch.Tensor) -> torch.Tensor:
    """A change of RGB (..., 3, H, W) as a change of (Y, Cb, Cr)."""
    return torch.einsum("ij,...jhw->...ihw", _YCC.to(rgb_change), rgb_change)


def to_rgb(ycc_change: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,...jhw->...ihw", _RGB.to(ycc_change), ycc_change)


def gradient_in_ycc(rgb_gradient: torch.Tensor) -> torch.Tensor:
    """The gradient of a loss with respect to a (Y, Cb, Cr) change, from its gradient in RGB."""
    return torch.einsum("ji,...jhw->...ihw", _RGB.to(rgb_gradient), rgb_gradient)


def luminance_adaptation(background: torch.Tensor) -> torch.Tensor:
    """Chou & Li (1995): visibility threshold on a uniform background (both in 0..255 grey levels)."""
    dark = 17 * (1 - torch.sqrt(background.clamp(0, 127) / 127)) + 3
    bright = 3 / 128 * (background - 127) + 3
    return torch.where(background <= 127, dark, bright)


def canny_edges(luma: torch.Tensor, strip: int = 512, halo: int = 16) -> torch.Tensor:
    """(1, 1, H, W) 0/1: kornia's Canny edges of ``luma`` (1, 1, H, W), the same pixels, computed faster.

    kornia's hysteresis grows weak edges one pixel per pass over the whole image until nothing changes
    (20 s at 2048², 144 s with a 4.8 GB peak at 4096²); it keeps exactly the 8-connected weak-or-strong
    components that hold a strong pixel, which OpenCV's connected components find in one pass. The rest
    (blur, gradient, non-maximum suppression: a few pixels of reach) runs in strips with a ``halo``, so
    its full-image buffers never exist at once."""
    import cv2  # a dependency already (check's AdverseCleaner); imported here to keep start-up quick

    parts = []
    for _, window, keep in row_strips(luma.shape[-2], strip, halo):
        _, thresholded = kornia.filters.canny(
            luma[..., window, :], low_threshold=0.1, high_threshold=0.25, hysteresis=False
        )  # 0, 0.5 (weak), 1 (strong)
        parts.append(thresholded[..., keep, :])
    levels = torch.cat(parts, dim=-2)[0, 0].cpu()
    count, labels = cv2.connectedComponents((levels > 0).numpy().astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[np.unique(labels[(levels == 1).numpy()])] = True
    keep[0] = False  # the background
    return torch.from_numpy(keep[labels]).to(luma)[None, None]


def edge_map(luma: torch.Tensor, strip: int = 512, halo: int = 8) -> torch.Tensor:
    """(1, 1, H, W) in 0..1: isolated strong edges (Canny), widened and softened; 0 in texture and flat.
    After the edges themselves, in strips of rows (the filters below reach 6 rows in all)."""
    edges = canny_edges(luma)
    out = torch.empty_like(edges)
    for span, window, keep in row_strips(edges.shape[-2], strip, halo):
        part = edges[..., window, :]
        widened = F.max_pool2d(part, 5, stride=1, padding=2)
        density = kornia.filters.box_blur(part, (9, 9), border_type="reflect")  # one line: 1/9
        isolated = widened * (1 - ((density - 0.15) / 0.2).clamp(0, 1))  # edges close together are texture
        soft = kornia.filters.gaussian_blur2d(isolated, (5, 5), (1.0, 1.0), border_type="reflect")
        out[..., span, :] = soft[..., keep, :].clamp(0, 1)
    return out


MODEL = JndModel()


@torch.no_grad()
def jnd_map(
    rgb: torch.Tensor, model: JndModel | None = None, strip: int = 512, halo: int = 8
) -> torch.Tensor:
    """(3, H, W): the just-noticeable change of Y, Cb and Cr at each pixel of ``rgb`` (3, H, W), in 0..1.

    Every operator reaches at most a few pixels (the 7 x 7 contrast window), so the map is computed in
    strips of rows with a ``halo``, the same values as on the whole image; at 4096² its dozen full-size
    buffers had put a protect's peak over 4 GB. Only the edges and one quantile look at the whole image."""
    model = model or MODEL
    luma = kornia.color.rgb_to_y(rgb[None].float())  # Y alone: a slice of YCbCr kept all three alive
    edges = edge_map(luma, strip, halo)
    strips = list(row_strips(luma.shape[-2], strip, halo))
    contrast = local_std(luma, 7, strip, scale=255)
    floor = _quantile(contrast, model.flat_share)
    out = torch.empty((3, *luma.shape[-2:]), dtype=luma.dtype, device=luma.device)
    for span, window, keep in strips:
        levels = luma[..., window, :] * 255
        background = F.conv2d(F.pad(levels, (2,) * 4, mode="replicate"), _BACKGROUND.to(levels)[None, None])
        flat = (model.summation * luminance_adaptation(background)).clamp(max=model.flat_cap)[..., keep, :]
        # Luminance gradient on the scale of Chou & Li's 5 x 5 operators (a step of h grey levels gives h).
        gradient = (kornia.filters.sobel(levels, normalized=False) / 4)[..., keep, :]
        # A masker must be clearly visible itself: from 1x to 3x the flat-field threshold, and never below
        # the image's own flattest fifth (so its flattest areas stay flat however busy the artwork is).
        start = torch.maximum(model.masker_from * flat, floor)
        masking = (
            (contrast[..., span, :] - start) / ((model.masker_full - 1) * start).clamp_min(1e-3)
        ).clamp(0, 1)
        texture = model.eta * gradient * (1 - (1 - model.edge_weight) * edges[..., span, :]) * masking
        luminance = flat + texture - model.overlap * torch.minimum(flat, texture)
        chroma = model.chroma_flat + model.chroma_gain * texture
        out[0, span] = luminance[0, 0] / 255
        out[1:, span] = (chroma[0] / 255).expand(2, -1, -1)
    return out


def _quantile(x: torch.Tensor, q: float) -> torch.Tensor:
    flat = x.flatten()
    return torch.quantile(flat[:: max(1, flat.numel() // 500_000)], q)


def row_strips(height: int, strip: int, halo: int):
    """Strips of rows: (rows of the output, rows read with the ``halo`` around them, the output's rows
    within those read). An operator that reaches at most ``halo`` rows gives the whole image's values."""
    for top in range(0, height, strip):
        first, bottom = max(0, top - halo), min(height, top + strip)
        yield slice(top, bottom), slice(first, min(height, bottom + halo)), slice(top - first, bottom - first)


def local_std(luma: torch.Tensor, window: int = 7, strip: int = 512, scale: float = 1.0) -> torch.Tensor:
    """(1, 1, H, W): the standard deviation of ``scale`` x ``luma`` (1, 1, H, W) over ``window`` x ``window``
    pixels (reflected at the borders): local contrast, where a change hides. In strips of rows, without the
    whole image's full-size temporaries: the same values to float rounding (the pooling sums of a strip's
    first rows may add in another order: within 1e-5 of the whole image's at 0..1). ``jnd_map`` has always
    used these strips, so budgets are unchanged."""
    out = torch.empty_like(luma)
    for span, rows, keep in row_strips(luma.shape[-2], strip, window + 1):
        x = luma[..., rows, :] * scale
        mean = kornia.filters.box_blur(x, (window, window), border_type="reflect")
        square = kornia.filters.box_blur(x * x, (window, window), border_type="reflect")
        out[..., span, :] = (square - mean * mean).clamp_min(0).sqrt()[..., keep, :]
    return out


@dataclass
class PerceptualBudget:
    """Where and how much the perturbation may go: a per-pixel bound on each of |ΔY|, |ΔCb|, |ΔCr|
    (``limit``, 3 x H x W) under a hard cap on every RGB channel (``cap``)."""

    limit: torch.Tensor  # (3, H, W) in 0..1, zero outside the user's mask
    cap: float

    def to(self, device) -> PerceptualBudget:
        return PerceptualBudget(self.limit.to(device), self.cap)

    def project(
        self, delta: torch.Tensor, images: torch.Tensor, rounds: int = 3, strip: int = 512
    ) -> torch.Tensor:
        """Back inside the box in YCbCr, the cap in RGB and the valid pixel range (alternating
        projections; the last one is the RGB one, so the cap and the range always hold exactly)."""

        def rows(d: torch.Tensor, x: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
            for _ in range(rounds):
                d = to_rgb(torch.maximum(torch.minimum(to_ycc(d), limit), -limit))
                d = (x + d.clamp(-self.cap, self.cap)).clamp(0, 1) - x
            return d

        return _by_rows(rows, delta, images, self.limit.to(delta), strip=strip)

    def step(
        self, delta: torch.Tensor, direction: torch.Tensor, share: float, strip: int = 512
    ) -> torch.Tensor:
        """``delta`` moved against ``direction`` (a YCbCr gradient), each channel by ``share`` of its own
        per-pixel limit: flat pixels move in small steps, busy ones in large ones."""

        def rows(d: torch.Tensor, towards: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
            return d - to_rgb(share * limit * towards.sign())

        return _by_rows(rows, delta, direction, self.limit.to(delta), strip=strip)

    def noise(self, images: torch.Tensor, seed: int = 0, strip: int = 512) -> torch.Tensor:
        """``images`` (B, 3, H, W) plus the whole budget with random signs (each YCbCr channel at its
        limit, then projected): the largest change of no direction at all the budget allows."""
        g = torch.Generator().manual_seed(seed)
        signs = torch.randint(0, 2, self.limit.shape, generator=g, dtype=torch.uint8).to(images.device)

        def rows(x: torch.Tensor, s: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
            return to_rgb(limit * (s.to(x) * 2 - 1)).expand_as(x)

        change = _by_rows(rows, images, signs, self.limit.to(images), strip=strip)  # strip-sized temporaries
        del signs
        return self.project(change, images, strip=strip).add_(images)

    def exceeded(
        self, original: torch.Tensor, changed: torch.Tensor, tolerance: float = 1e-6
    ) -> torch.Tensor:
        """(H, W) bool: pixels whose change leaves the YCbCr box."""
        return outside_box(self.limit, original, changed, tolerance)

    def quantise(
        self,
        original: torch.Tensor,
        delta: torch.Tensor,
        levels: int = 255,
        gradient: torch.Tensor | None = None,
        strip: int = 512,
    ) -> torch.Tensor:
        """The protected pixels on the file's grid (multiples of 1/levels), inside the cap and the box.

        Each pixel's change goes to the grid point, among the 27 around it (each channel one level below,
        at or above its nearest level) that stay inside, where the loss is lowest to first order
        (``gradient``: the loss's gradient at ``original + delta``) or, without one, the nearest. The
        optimiser ends on the box's edge, so rounding every channel to its nearest level left over half
        the pixels outside, and pulling those back toward the original (what this did before) cost 13-17 %
        of the strength and of what the model sees (docs/visibility.md). That pulled-back point is a
        candidate too, and the answer when no other is inside. In strips of rows: pixels are independent."""
        given = [] if gradient is None else [gradient.to(original.device).float()]

        def rows(o: torch.Tensor, d: torch.Tensor, limit: torch.Tensor, *g: torch.Tensor) -> torch.Tensor:
            return _quantise_rows(limit, self.cap, o, d, levels, g[0] if g else None)

        return _by_rows(
            rows, original.float(), delta.float(), self.limit.to(original.device), *given, strip=strip
        )


def _by_rows(per_pixel: Callable[..., torch.Tensor], *tensors: torch.Tensor, strip: int = 512):
    """``per_pixel`` (an operation where each pixel depends on itself alone) over strips of rows, so that
    its temporaries stay strip-sized: at 4096² a whole-image projection held ~1 GB of them. The result
    has the first tensor's shape, dtype and device."""
    out = torch.empty_like(tensors[0])
    for span, _, _ in row_strips(out.shape[-2], strip, 0):
        out[..., span, :] = per_pixel(*(t[..., span, :] for t in tensors))
    return out


def outside_box(
    limit: torch.Tensor, original: torch.Tensor, changed: torch.Tensor, tolerance: float = 1e-6
) -> torch.Tensor:
    """(H, W) bool: pixels whose change of Y, Cb or Cr passes ``limit`` (3, H, W)."""
    ycc = to_ycc((changed - original).float())
    return (ycc.abs() > limit.to(ycc) + tolerance).any(dim=0)


_NEIGHBOURS = [  # each channel one level below, at or above its nearest level
    torch.tensor(c, dtype=torch.float32).view(3, 1, 1) for c in itertools.product((-1, 0, 1), repeat=3)
]


def _quantise_rows(
    limit: torch.Tensor,
    cap: float,
    original: torch.Tensor,
    delta: torch.Tensor,
    levels: int,
    gradient: torch.Tensor | None,
) -> torch.Tensor:
    """``PerceptualBudget.quantise`` on a strip of rows."""
    base = (original * levels).round()
    exact = (original + delta) * levels - base  # the change, in levels
    most = float(int(cap * levels + 1e-6))

    def legal(steps: torch.Tensor) -> torch.Tensor:  # within the cap and the pixel range
        steps = steps.clamp(-most, most)
        return (base + steps).clamp(0, levels) - base

    def cost(steps: torch.Tensor) -> torch.Tensor:
        if gradient is None:
            return (steps - exact).pow(2).sum(0)
        return (gradient * (steps - exact)).sum(0)

    unchanged = base / levels

    def outside(steps: torch.Tensor) -> torch.Tensor:
        return outside_box(limit, unchanged, (base + steps) / levels)

    # The fallback, and the first candidate: nearest levels, pulled back until inside.
    nearest = exact.round()
    best = legal(nearest)
    for _ in range(int(most) + 1):
        out = outside(best)
        if not bool(out.any()):
            break
        best = torch.where(out[None], best - best.sign(), best)
    score = cost(best)
    for offset in _NEIGHBOURS:
        steps = legal(nearest + offset.to(exact.device))
        inside = ~outside(steps)
        candidate = cost(steps)
        take = inside & (candidate < score)
        best = torch.where(take[None], steps, best)
        score = torch.where(take, candidate, score)
    return (base + best) / levels


def perceptual_budget(
    rgb: torch.Tensor,
    jnd_scale: float,
    cap: float,
    user_mask: torch.Tensor | None = None,
    perceptual: bool = True,
    grey: bool = False,
) -> PerceptualBudget:
    """``jnd_scale`` JNDs per pixel (``perceptual=False``: the cap alone), luminance only for a grey
    artwork (its chroma cannot carry a change), zero outside the user's mask."""
    limit = jnd_scale * jnd_map(rgb) if perceptual else torch.full((3, *rgb.shape[1:]), 4.0 * cap)
    if grey:
        limit[1:] = 0
    if user_mask is not None:
        limit = limit * user_mask.to(limit).clamp(0, 1).reshape(1, *rgb.shape[1:])
    return PerceptualBudget(limit.to(rgb.device), cap)


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


def lpips_distance(a: torch.Tensor, b: torch.Tensor, per_image: bool = False) -> torch.Tensor | None:
    """LPIPS between (B, 3, H, W) batches: the mean, or one distance per image (``per_image``)."""
    model = lpips_model(str(a.device))
    if model is None:
        return None
    dist = model(a * 2 - 1, b * 2 - 1)
    return dist.flatten() if per_image else dist.mean()
