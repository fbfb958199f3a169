"""The Fixative docker (Settings → Dockers → Fixative)."""

from __future__ import annotations

from krita import DockWidget

from . import extension as extension_module
from .compat import QLabel


class FixativeDockWidget(DockWidget):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Fixative")
        owner = extension_module.instance()
        if owner is None:  # Krita always creates extensions first; say so rather than crash if not
            self.setWidget(
                QLabel("Fixative failed to load; see Settings → Manage Resources → Python Plugins.")
            )
            return
        from .ui import FixativeDocker

        self.body = FixativeDocker(owner)
        self.setWidget(self.body)

    def canvasChanged(self, canvas) -> None:  # noqa: N802 - Krita's name
        """The docker works on whichever document is active when a button is pressed; nothing to cache."""
