"""Step 3 of the data path: optimise the perturbation under the perceptual budget."""

from . import eot
from .budget import lpips_distance, lpips_weights_present, per_pixel_limit, project, texture_mask
from .loop import OptimiseResult, run

__all__ = [
    "OptimiseResult",
    "eot",
    "lpips_distance",
    "lpips_weights_present",
    "per_pixel_limit",
    "project",
    "run",
    "texture_mask",
]
