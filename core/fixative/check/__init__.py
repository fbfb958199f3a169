"""Step 4 of the data path: measure how protected an image is, and whether it survives purification.

``fixative/__init__`` rebinds ``fixative.check`` to the ``check`` function (the API hosts call). So that
``import fixative.check.purify`` and ``fixative.check.purify.jpeg`` keep working through that name, the
submodules are also attributes of the function.
"""

from . import html_report, measures, purify, report, runner
from .measures import perceptual
from .runner import PROTECTED_STRENGTH, SURVIVES_STRENGTH, check, run_check

for _module in (html_report, measures, purify, report, runner):
    setattr(check, _module.__name__.rsplit(".", 1)[-1], _module)
check.perceptual, check.run_check = perceptual, run_check

__all__ = ["PROTECTED_STRENGTH", "SURVIVES_STRENGTH", "check", "perceptual", "run_check"]
