"""Step 2 of the data path: the target each protection pulls the image's features toward."""

from .base import Target, TargetRequest, fit_to, make_target, rebuild_target

__all__ = ["Target", "TargetRequest", "fit_to", "make_target", "rebuild_target"]
