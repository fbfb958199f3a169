"""Step 3 of the data path: optimise the perturbation under the perceptual budget."""

from . import eot
from .budget import bound, lpips_distance, lpips_weights_present, project, texture_mask
from .loop import OptimiseResult, run

__all__ = [
    "OptimiseResult",
    "bound",
    "eot",
    "lpips_distance",
    "lpips_weights_present",
    "project",
    "run",
    "texture_mask",
]
