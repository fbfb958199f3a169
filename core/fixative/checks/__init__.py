"""Step 4 of the data path: measure how protected an image is, and whether it survives purification.

Plain functions the API's ``check`` pipeline (``fixative.api.check``) calls: ``purify`` (what attackers
run), ``robustness``, ``measures`` (perceptual cost, what the model sees), ``estimate`` (a stand-in for a
missing original), ``verdict`` and the two renderings (``report``: terminal and JSON, ``html_report``).
"""

from .measures import feature_shift, model_view, perceptual
from .verdict import ESTIMATE_MARGIN, PROTECTED_STRENGTH, SURVIVES_STRENGTH, Visuals, verdict

__all__ = [
    "ESTIMATE_MARGIN",
    "PROTECTED_STRENGTH",
    "SURVIVES_STRENGTH",
    "Visuals",
    "feature_shift",
    "model_view",
    "perceptual",
    "verdict",
]
