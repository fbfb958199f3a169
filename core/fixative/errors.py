"""One exception type for everything a user can get wrong.

Hosts (CLI, server, editor plug-ins) print ``str(error)`` as a single line; anything that is not a
``FixativeError`` is a bug and keeps its traceback.
"""

from __future__ import annotations


class FixativeError(Exception):
    """A problem with the user's input, files or models, explained in one line."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class BadImageError(FixativeError):
    """The file is missing, unreadable, corrupt, too large or of an unsupported kind."""


class ModelNotFoundError(FixativeError):
    """No encoder could be found or loaded."""


class BadParameterError(FixativeError):
    """An option has a value outside what it accepts."""


class TargetWithinNoise(FixativeError):
    """Noise the size of the whole budget already moves the latents far from the target (a flat picture
    and a target close to it): a pull toward it would not be measurable. ``reach`` is that noise's
    strength, the weakest encoder's."""

    def __init__(self, reach: float, encoder: str) -> None:
        self.reach, self.encoder = reach, encoder
        super().__init__(f"noise of the budget's size scores {reach:.2f} toward the target on {encoder}")


class Cancelled(FixativeError):  # noqa: N818 - reads as "raise Cancelled"
    """The caller asked to stop; nothing was written."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)
