"""Widgets: the export dialog and the docker. Everything slow runs in ``engine``'s threads; these only read
snapshots from a QTimer, so Krita never freezes."""

from __future__ import annotations

import os

from . import settings as settings_module
from .compat import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPixmap,
    QProgressBar,
    QPushButton,
    QSpinBox,
    Qt,
    QTimer,
    QVBoxLayout,
    QWidget,
    enum,
    image_from_rgba,
)
from .engine import EncoderDownload, choices_version, needs_encoder
from .settings import SOURCES, ProtectSettings, choice_pairs


def _combo(items, current: str, box: QComboBox | None = None) -> QComboBox:
    box = box or QComboBox()
    box.clear()
    for item in items:
        value, label = item if isinstance(item, tuple) else (item, item.capitalize())
        box.addItem(label, value)
    index = box.findData(current)
    box.setCurrentIndex(max(0, index))
    return box


class SettingsForm(QWidget):
    """Method, intensity, quality, source and steps: shared by the dialog and the docker."""

    def __init__(self, current: ProtectSettings, parent=None) -> None:
        super().__init__(parent)
        layout = QFormLayout(self)
        self.method = _combo(choice_pairs("method"), current.method)
        self.intensity = _combo(choice_pairs("intensity"), current.intensity)
        self.quality = _combo(choice_pairs("quality"), current.quality)
        self.choices_seen = choices_version()
        self.source = _combo(SOURCES, current.source)
        self.steps = QSpinBox()
        self.steps.setRange(0, 2000)
        self.steps.setSpecialValueText("preset")
        self.steps.setValue(current.steps)
        self.steps.setToolTip("0 lets the quality preset decide; fewer steps are faster and weaker")
        layout.addRow("Protection", self.method)
        layout.addRow("Intensity", self.intensity)
        layout.addRow("Quality", self.quality)
        layout.addRow("Pixels", self.source)
        layout.addRow("Steps", self.steps)
        self._base = current

    def update_choices(self) -> None:
        """Rebuild the combos from the engine's options schema, keeping what is chosen."""
        for name, box in (("method", self.method), ("intensity", self.intensity), ("quality", self.quality)):
            _combo(choice_pairs(name), box.currentData(), box)
        self.choices_seen = choices_version()

    def settings(self) -> ProtectSettings:
        return ProtectSettings(
            method=self.method.currentData(),
            intensity=self.intensity.currentData(),
            quality=self.quality.currentData(),
            source=self.source.currentData(),
            steps=self.steps.value(),
            output_format=self._base.output_format,
            output_dir=self._base.output_dir,
            max_side=self._base.max_side,
        ).validated()


class ExportDialog(QDialog):
    """Export Protected Copy…: settings plus output path and format; the caller remembers the choices."""

    def __init__(self, current: ProtectSettings, output_path: str, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export Protected Copy")
        layout = QVBoxLayout(self)
        self.form = SettingsForm(current)
        layout.addWidget(self.form)
        row = QHBoxLayout()
        self.path = QLineEdit(output_path)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.fmt = _combo(choice_pairs("format"), current.output_format)
        self.fmt.currentIndexChanged.connect(self._format_changed)
        row.addWidget(self.path, 1)
        row.addWidget(self.fmt)
        row.addWidget(browse)
        layout.addWidget(QLabel("Save the protected copy as:"))
        layout.addLayout(row)
        self.max_side = QSpinBox()
        self.max_side.setRange(0, 65535)
        self.max_side.setSpecialValueText("full size")
        self.max_side.setSuffix(" px")
        self.max_side.setValue(current.max_side)
        self.max_side.setToolTip(
            "The copy at most this many pixels on its longest side is protected and saved: a site's smaller "
            "copy of a full-size protection keeps 2-5x less (at least 64 px)"
        )
        posted = QFormLayout()
        posted.addRow("Longest side posted", self.max_side)
        layout.addLayout(posted)
        hint = QLabel(
            "The original document is never changed. JPEG/WebP compression is part of the "
            "optimisation only at Default or Slow quality."
        )
        hint.setWordWrap(True)
        layout.addWidget(hint)
        buttons = QDialogButtonBox(
            enum(QDialogButtonBox, "StandardButton", "Ok")
            | enum(QDialogButtonBox, "StandardButton", "Cancel")
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.overwrite_confirmed = False

    def _format_changed(self) -> None:
        root, _ = os.path.splitext(self.path.text())
        if root:
            self.path.setText(f"{root}.{self.fmt.currentData()}")

    def _browse(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Save protected copy", self.path.text(), "Images (*.png *.jpg *.jpeg *.webp *.tif *.tiff)"
        )
        if chosen:
            self.path.setText(chosen)
            self.overwrite_confirmed = os.path.exists(chosen)  # the file dialog asked already

    def output_path(self) -> str:
        return self.path.text().strip()

    def settings(self) -> ProtectSettings:
        chosen = self.form.settings()
        chosen.output_format = self.fmt.currentData()
        chosen.max_side = self.max_side.value()
        folder = os.path.dirname(self.output_path())
        chosen.output_dir = folder or chosen.output_dir
        return chosen


class FixativeDocker(QWidget):
    """The docker body: settings, two buttons, progress with step/ETA, Cancel, engine status, report, preview.

    Built by ``docker.FixativeDockWidget`` inside Krita; kept a plain QWidget so it can be shown anywhere.
    """

    PREVIEW_SIZE = 220

    def __init__(self, extension, parent=None) -> None:
        super().__init__(parent)
        self.extension = extension
        layout = QVBoxLayout(self)
        self.form = SettingsForm(extension.load_settings())
        layout.addWidget(self.form)
        buttons = QHBoxLayout()
        self.export_button = QPushButton("Export Protected Copy…")
        self.layer_button = QPushButton("Protect into New Layer")
        self.export_button.clicked.connect(self._export)
        self.layer_button.clicked.connect(self._layer)
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.layer_button)
        layout.addLayout(buttons)
        progress_row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self._cancel)
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout.addLayout(progress_row)
        self.get_encoder_button = QPushButton("Get the recommended encoder (taef2, 5.4 MB)")
        self.get_encoder_button.setVisible(False)
        self.get_encoder_button.clicked.connect(self._get_encoder)
        layout.addWidget(self.get_encoder_button)
        self.download: EncoderDownload | None = None
        self.message = self._wrapping_label("Ready.")
        self.engine = self._wrapping_label("Checking the Fixative engine…")
        self.summary = self._wrapping_label("")
        self.notes = self._wrapping_label("")
        self.preview = QLabel()
        self.preview.setAlignment(enum(Qt, "AlignmentFlag", "AlignCenter"))
        self.preview_caption = QLabel("")
        for widget in (
            self.message,
            self.engine,
            self.summary,
            self.notes,
            self.preview_caption,
            self.preview,
        ):
            layout.addWidget(widget)
        layout.addStretch(1)
        extension.controller.listeners.append(self._finished)
        self.timer = QTimer(self)
        self.timer.setInterval(250)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self.engine_timer = QTimer(self)
        self.engine_timer.setInterval(5000)
        self.engine_timer.timeout.connect(extension.engine_status.refresh)
        self.engine_timer.start()
        extension.engine_status.refresh()

    @staticmethod
    def _wrapping_label(text: str) -> QLabel:
        label = QLabel(text)
        label.setWordWrap(True)
        return label

    def _remember(self) -> ProtectSettings:
        current = self.extension.load_settings()
        chosen = self.form.settings()
        # the export dialog's own choices (format, folder, longest side posted) stay as it saved them
        chosen.output_format, chosen.output_dir = current.output_format, current.output_dir
        chosen.max_side = current.max_side
        self.extension.save_settings(chosen)
        return chosen

    def _export(self) -> None:
        self._remember()
        self.extension.export_protected_copy()

    def _layer(self) -> None:
        self._remember()
        self.extension.protect_into_new_layer()

    def _get_encoder(self) -> None:
        self.download = EncoderDownload().start()

    def _cancel(self) -> None:
        if self.download is not None and not self.download.finished:
            self.download.cancel()
        else:
            self.extension.controller.cancel()

    def refresh(self) -> None:
        """Timer tick: copy the worker's snapshot into the widgets (never waits on anything)."""
        state, text = self.extension.engine_status.snapshot()
        self.engine.setText(f"Engine: {text}")
        if self.form.choices_seen != choices_version():
            self.form.update_choices()
        downloading = self.download is not None and not self.download.finished
        if self.download is not None:
            status = self.download.snapshot()
            self.progress.setValue(int(1000 * float(status["progress"])))
            self.message.setText(status["message"])
            if not downloading:
                if status["state"] == "done":
                    self.extension.engine_status.refresh()
                self.download = None
        wanted = state == "no-encoder" or needs_encoder(self.message.text())
        self.get_encoder_button.setVisible(wanted and not downloading)
        operation = self.extension.controller.current
        running = operation is not None or downloading
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(not running)
        self.layer_button.setEnabled(not running)
        if operation is not None:
            status = operation.job.snapshot()
            self.progress.setValue(int(1000 * float(status.get("progress") or 0.0)))
            self.message.setText(status["message"])

    def _finished(self, operation) -> None:
        self.progress.setValue(1000 if operation.state == "done" else 0)
        self.message.setText(operation.message)
        from .operations import summarise

        self.summary.setText(summarise(operation.report))
        self.notes.setText("\n".join(f"• {note}" for note in operation.notes))
        self._show_preview(operation)

    def _show_preview(self, operation) -> None:
        """'What the model sees' when the engine sent it, else the protected pixels themselves."""
        import base64

        picture = None
        check = operation.report.get("check") if isinstance(operation.report, dict) else None
        for source in (operation.report, check if isinstance(check, dict) else {}):
            for key in ("model_view_png_base64", "preview_png_base64", "model_view", "preview"):
                value = source.get(key) if isinstance(source, dict) else None
                if isinstance(value, str) and len(value) > 100:
                    pixmap = QPixmap()
                    if pixmap.loadFromData(base64.b64decode(value)):
                        picture, caption = pixmap, "What the model sees"
                        break
            if picture is not None:
                break
        if picture is None and operation.protected_rgba is not None:
            x, y, w, h = operation.capture.region
            picture = QPixmap.fromImage(image_from_rgba(operation.protected_rgba, w, h))
            caption = "Protected result"
        if picture is None:
            self.preview.clear()
            self.preview_caption.setText("")
            return
        self.preview_caption.setText(caption)
        self.preview.setPixmap(
            picture.scaled(
                self.PREVIEW_SIZE,
                self.PREVIEW_SIZE,
                enum(Qt, "AspectRatioMode", "KeepAspectRatio"),
                enum(Qt, "TransformationMode", "SmoothTransformation"),
            )
        )


def remember_dialog_choices(app, dialog: ExportDialog) -> ProtectSettings:
    chosen = dialog.settings()
    settings_module.save(app, chosen)
    return chosen
