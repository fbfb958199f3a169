"""The Krita extension: two actions (Tools → Scripts, shortcut-able) and the timer that finishes jobs."""

from __future__ import annotations

import os
import sys

from krita import Extension

from . import settings as settings_module
from .compat import QMessageBox, QTimer, exec_dialog
from .engine import EngineStatus
from .operations import Controller, OperationError
from .pixels import PixelFormatError
from .settings import ProtectSettings

EXPORT_ACTION = "fixative_export_protected_copy"
LAYER_ACTION = "fixative_protect_new_layer"
BATCH_ENV = "FIXATIVE_KRITA_BATCH"  # "1": actions use the remembered settings and never open a dialog
POLL_MS = 200

_instance: FixativeExtension | None = None


def instance() -> FixativeExtension | None:
    """The extension Krita loaded (the docker and scripts reach the controller through it)."""
    return _instance


class FixativeExtension(Extension):
    def __init__(self, parent) -> None:
        super().__init__(parent)
        global _instance
        _instance = self
        self.app = parent
        self.controller = Controller()
        self.controller.listeners.append(self._finished)
        self.engine_status = EngineStatus()
        self.timer: QTimer | None = None

    # --- Krita hooks ----------------------------------------------------------------------------
    def setup(self) -> None:
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._tick)

    def createActions(self, window) -> None:  # noqa: N802 - Krita's name
        export = window.createAction(EXPORT_ACTION, "Export Protected Copy…", "tools/scripts")
        export.setToolTip("Save a protected copy of the image with Fixative; the document is not changed")
        export.triggered.connect(lambda *_: self.export_protected_copy())
        layer = window.createAction(LAYER_ACTION, "Protect into New Layer", "tools/scripts")
        layer.setToolTip("Add a protected copy as a new layer above; the original stays untouched")
        layer.triggered.connect(lambda *_: self.protect_into_new_layer())

    # --- settings -------------------------------------------------------------------------------
    def load_settings(self) -> ProtectSettings:
        return settings_module.load(self.app)

    def save_settings(self, chosen: ProtectSettings) -> None:
        settings_module.save(self.app, chosen)

    def interactive(self) -> bool:
        batch = getattr(self.app, "batchmode", lambda: False)()
        return os.environ.get(BATCH_ENV) != "1" and not batch

    # --- actions --------------------------------------------------------------------------------
    def export_protected_copy(self, output_path: str | None = None):
        """Ask (interactive) or use the remembered settings (batch), then start; returns the operation."""
        document = self.app.activeDocument()
        if document is None:
            return self._error("Open an image first.")
        chosen = self.load_settings()
        default = settings_module.default_output_path(document.fileName(), chosen, document.name())
        overwrite = False
        if output_path is None and self.interactive():
            from .ui import ExportDialog

            dialog = ExportDialog(chosen, settings_module.unique_path(default), self._window())
            if not exec_dialog(dialog):
                return None
            chosen, output_path = dialog.settings(), dialog.output_path()
            overwrite = dialog.overwrite_confirmed
            self.save_settings(chosen)
        elif output_path is None:
            output_path = settings_module.unique_path(default)
        try:
            operation = self.controller.start_export(document, output_path, chosen, overwrite=overwrite)
        except (OperationError, PixelFormatError) as exc:
            return self._error(str(exc))
        self._start_polling()
        return operation

    def protect_into_new_layer(self):
        document = self.app.activeDocument()
        if document is None:
            return self._error("Open an image first.")
        try:
            operation = self.controller.start_new_layer(document, self.load_settings())
        except (OperationError, PixelFormatError) as exc:
            return self._error(str(exc))
        self._start_polling()
        return operation

    # --- plumbing -------------------------------------------------------------------------------
    def _start_polling(self) -> None:
        if self.timer is None:
            self.setup()
        self.timer.start()

    def _tick(self) -> None:
        self.controller.poll()
        if not self.controller.busy and self.timer is not None:
            self.timer.stop()

    def _window(self):
        window = self.app.activeWindow()
        return window.qwindow() if window is not None else None

    def _finished(self, operation) -> None:
        line = f"Fixative: {operation.message}"
        print(line, file=sys.stderr)
        window = self._window()
        if window is not None and hasattr(window, "statusBar"):
            window.statusBar().showMessage(line, 15000)
        if operation.state == "failed" and self.interactive():
            QMessageBox.warning(window, "Fixative", operation.message)

    def _error(self, message: str) -> None:
        print(f"Fixative: {message}", file=sys.stderr)
        if self.interactive():
            QMessageBox.warning(self._window(), "Fixative", message)
        return None
