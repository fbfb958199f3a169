"""Built-in procedural style targets: style-shifted copies of the artwork, made with kornia ops.

Each keeps the artwork's layout (so the target is reachable under a small budget) and changes what a
style model learns: palette, stroke and texture.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F


def _edges(rgb: torch.Tensor) -> torch.Tensor:
    grey = kornia.color.rgb_to_grayscale(rgb[None])
    return kornia.filters.sobel(grey)[0].clamp(0, 1)


def charcoal(rgb: torch.Tensor, seed: int = 0, grain: str = "fibre") -> torch.Tensor:
    """Monochrome, hard strokes, lifted blacks on textured paper: the opposite of a colourful painted style.

    The paper's texture is random noise blurred over about 1.5 pixels (``grain="fibre"``, since
    2026-12-06). Until then it was per-pixel noise (``grain="pixel"``, kept to rebuild the targets of files
    made then), which noise of a protection's size also moved toward: matched noise scored up to 0.075 on
    photos and 0.12 on a picture a third flat white. Plain paper took that away but left a photo nothing to
    move toward (the rocket: strength 0.04 against 0.36). Fibre, on photos: matched noise at or below 0.004,
    strength within 5 % of the pixel grain's or above it (docs/efficacy.md)."""
    g = torch.Generator().manual_seed(seed)
    grey = kornia.color.rgb_to_grayscale(rgb[None])[0]
    edges = _edges(rgb)
    paper = torch.rand(1, *rgb.shape[1:], generator=g) * 0.15
    if grain == "fibre":  # blurred, then the pixel grain's mean (0.075) and spread (0.15 / sqrt 12) again
        blurred = kornia.filters.gaussian_blur2d(paper[None], (9, 9), (1.5, 1.5), border_type="reflect")[0]
        paper = (blurred - blurred.mean()) / blurred.std().clamp_min(1e-6) * (0.15 / 12**0.5) + 0.075
    out = (grey * 0.8 + 0.1 - edges * 2.0 + paper).clamp(0, 1)
    return out.expand(3, -1, -1).contiguous()


def pop(rgb: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Posterised flat colour with a rotated hue and bold outlines: for subdued, textured artworks."""
    hsv = kornia.color.rgb_to_hsv(rgb[None])
    hsv[:, 0] = (hsv[:, 0] + 2.4) % (2 * torch.pi)
    hsv[:, 1] = (hsv[:, 1] * 1.6 + 0.25).clamp(0, 1)
    shifted = kornia.color.hsv_to_rgb(hsv)[0]
    poster = (shifted * 4).round() / 4
    return (poster - _edges(rgb) * 1.5).clamp(0, 1)


def mosaic(rgb: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Cubist blocks: nearest-neighbour cells with dark grout lines."""
    _, h, w = rgb.shape
    cell = max(8, min(h, w) // 24)
    small = F.interpolate(rgb[None], size=(max(1, h // cell), max(1, w // cell)), mode="area")
    blocks = F.interpolate(small, size=(h, w), mode="nearest")[0]
    grid = torch.ones(1, h, w)
    grid[:, ::cell, :] = 0.2
    grid[:, :, ::cell] = 0.2
    return (blocks * grid).clamp(0, 1)


STYLES = {"charcoal": charcoal, "pop": pop, "mosaic": mosaic}


def auto_style(rgb: torch.Tensor) -> str:
    """Colourful artworks get charcoal, near-monochrome ones get pop: always far from the original."""
    saturation = kornia.color.rgb_to_hsv(rgb[None])[:, 1].mean()
    return "charcoal" if float(saturation) > 0.2 else "pop"
