"""The one place that names a Qt binding, so moving to Krita 6 (PyQt6) is a change here, not everywhere.

Krita 5 ships PyQt5; Krita 6 ships PyQt6, where enums are scoped (``Qt.AlignmentFlag.AlignLeft``) and
``exec_`` is ``exec``. Modules import Qt names from here and use the helpers for the differences.
"""

from __future__ import annotations

try:  # Krita 5.x
    from PyQt5 import QtCore, QtGui, QtWidgets

    QT_API = "PyQt5"
except ImportError:  # Krita 6.x
    from PyQt6 import QtCore, QtGui, QtWidgets

    QT_API = "PyQt6"

QByteArray, Qt, QTimer = QtCore.QByteArray, QtCore.Qt, QtCore.QTimer
QImage, QPixmap = QtGui.QImage, QtGui.QPixmap
QComboBox = QtWidgets.QComboBox
QDialog = QtWidgets.QDialog
QDialogButtonBox = QtWidgets.QDialogButtonBox
QFileDialog = QtWidgets.QFileDialog
QFormLayout = QtWidgets.QFormLayout
QHBoxLayout = QtWidgets.QHBoxLayout
QLabel = QtWidgets.QLabel
QLineEdit = QtWidgets.QLineEdit
QMessageBox = QtWidgets.QMessageBox
QProgressBar = QtWidgets.QProgressBar
QPushButton = QtWidgets.QPushButton
QSpinBox = QtWidgets.QSpinBox
QVBoxLayout = QtWidgets.QVBoxLayout
QWidget = QtWidgets.QWidget


def enum(owner: object, scope: str, name: str):
    """``Qt.AlignLeft`` on PyQt5, ``Qt.AlignmentFlag.AlignLeft`` on PyQt6."""
    scoped = getattr(owner, scope, None)
    if scoped is not None and hasattr(scoped, name):
        return getattr(scoped, name)
    return getattr(owner, name)


def exec_dialog(dialog) -> int:
    """``exec_()`` was renamed ``exec()`` in PyQt6."""
    runner = getattr(dialog, "exec", None) or dialog.exec_
    return int(runner())


def rgba8888_format():
    return enum(QImage, "Format", "Format_RGBA8888")


def image_from_rgba(rgba: bytes, width: int, height: int):
    """A QImage that owns a copy of tightly packed RGBA8 pixels."""
    return QImage(rgba, width, height, width * 4, rgba8888_format()).copy()


def rgba_from_image_bytes(data: bytes) -> tuple[int, int, bytes]:
    """Decode PNG/JPEG/... bytes with Qt (fast C++), as tightly packed RGBA8."""
    image = QImage.fromData(QByteArray(data))
    if image.isNull():
        raise ValueError("the engine returned an image Qt cannot read")
    image = image.convertToFormat(rgba8888_format())
    width, height = image.width(), image.height()
    bits = image.constBits()
    if hasattr(bits, "setsize"):
        bits.setsize(image.sizeInBytes() if hasattr(image, "sizeInBytes") else image.byteCount())
    raw = bytes(bits)
    stride = image.bytesPerLine()
    if stride == width * 4:
        return width, height, raw[: width * height * 4]
    return width, height, b"".join(raw[row * stride : row * stride + width * 4] for row in range(height))
