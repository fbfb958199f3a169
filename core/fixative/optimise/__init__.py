"""Step 3 of the data path: optimise the perturbation under the perceptual budget."""

from . import eot
from .budget import PerceptualBudget, jnd_map, lpips_distance, lpips_weights_present, perceptual_budget
from .loop import OptimiseResult, run

__all__ = [
    "OptimiseResult",
    "PerceptualBudget",
    "eot",
    "jnd_map",
    "lpips_distance",
    "lpips_weights_present",
    "perceptual_budget",
    "run",
]
