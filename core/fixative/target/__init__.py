"""Step 2 of the data path: the target each protection pulls the image's features toward."""

from .base import METHODS, Target, TargetRequest, fit_to, make_target

__all__ = ["METHODS", "Target", "TargetRequest", "fit_to", "make_target"]
