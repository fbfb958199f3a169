"""What the two actions do, free of widgets: read pixels, run a ProtectJob, write the file or the layer.

The GUI calls ``Controller.poll()`` from a QTimer; reading and writing Krita documents happens only there
(Krita's API is not thread-safe), while the worker thread only talks HTTP.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from . import pixels, pngio
from .engine import ProtectJob, client_module, describe_error
from .settings import ProtectSettings

LAYER_SUFFIX = "Protected"


class OperationError(Exception):
    """A problem the user can fix; its message is one line."""


@dataclass
class Capture:
    """The pixels we send, as 8-bit sRGB, and where they go back."""

    width: int
    height: int
    rgba: bytes  # whole canvas (or whole layer extent == canvas), 8-bit sRGB RGBA
    region: tuple[int, int, int, int]  # x, y, w, h sent to the engine (selection bounds or everything)
    mask: bytes | None  # one byte per region pixel, from the selection; None = everything
    notes: list[str] = field(default_factory=list)
    node: object | None = None  # the active layer when protecting a layer

    @property
    def whole(self) -> bool:
        return self.mask is None and self.region == (0, 0, self.width, self.height)

    def region_rgba(self) -> bytes:
        return pixels.crop(self.rgba, self.width, *self.region)

    def full_mask(self) -> bytes | None:
        """The selection over the whole canvas (0 outside its bounds), one byte per pixel."""
        if self.mask is None:
            return None
        x, y, w, h = self.region
        canvas = bytearray(self.width * self.height)
        for row in range(h):
            start = (y + row) * self.width + x
            canvas[start : start + w] = self.mask[row * w : (row + 1) * w]
        return bytes(canvas)


def _intersect(x: int, y: int, w: int, h: int, width: int, height: int) -> tuple[int, int, int, int]:
    left, top = max(0, x), max(0, y)
    right, bottom = min(width, x + w), min(height, y + h)
    return left, top, max(0, right - left), max(0, bottom - top)


def _krita_converted_projection(document, width: int, height: int) -> bytes:
    """Let Krita's colour management convert a copy of the image to 8-bit sRGB (CMYK, Lab, wide gamut…)."""
    copy = document.clone()
    try:
        if hasattr(copy, "setBatchmode"):
            copy.setBatchmode(True)
        copy.setColorSpace("RGBA", "U8", pixels.SRGB_PROFILE)
        copy.waitForDone()
        copy.refreshProjection()
        return bytes(copy.pixelData(0, 0, width, height))
    finally:
        copy.close()


def capture(document, source: str = "image") -> Capture:
    """Read the projection (``source="image"``) or the active layer, honouring the selection."""
    if document is None:
        raise OperationError("Open an image first.")
    width, height = int(document.width()), int(document.height())
    document.waitForDone()
    node = None
    if source == "layer":
        node = document.activeNode()
        if node is None:
            raise OperationError("Select a layer first (or protect the whole image).")
        model, depth, profile = node.colorModel(), node.colorDepth(), node.colorProfile()
        if pixels.needs_krita_conversion(model, profile):
            raise OperationError(
                f"The active layer is {model} ({profile}); convert it to RGB/sRGB "
                "or protect the whole image instead."
            )
        reader = node.pixelData if node.type() == "paintlayer" else node.projectionPixelData
        converted = pixels.to_rgba8(bytes(reader(0, 0, width, height)), width, height, model, depth, profile)
        notes = converted.notes
        rgba = converted.rgba
    else:
        model, depth, profile = document.colorModel(), document.colorDepth(), document.colorProfile()
        if pixels.needs_krita_conversion(model, profile):
            rgba = pixels.to_rgba8(
                _krita_converted_projection(document, width, height),
                width,
                height,
                "RGBA",
                "U8",
                pixels.SRGB_PROFILE,
            ).rgba
            depth_name = pixels.DEPTH_NAMES.get(depth, depth)
            notes = [
                f"the image is {model}/{depth_name} ({profile}); Krita converted a copy to 8-bit sRGB "
                "for the engine, so colours may shift slightly"
            ]
        else:
            converted = pixels.to_rgba8(
                bytes(document.pixelData(0, 0, width, height)), width, height, model, depth, profile
            )
            rgba, notes = converted.rgba, converted.notes
    region, mask = (0, 0, width, height), None
    selection = document.selection()
    if selection is not None and selection.width() > 0 and selection.height() > 0:
        region = _intersect(
            selection.x(), selection.y(), selection.width(), selection.height(), width, height
        )
        if region[2] == 0 or region[3] == 0:
            raise OperationError(
                "The selection is outside the image; clear it or select part of the artwork."
            )
        mask = bytes(selection.pixelData(*region))
        if mask.count(0) == len(mask):
            raise OperationError("The selection is empty; clear it or select part of the artwork.")
        notes.append(
            f"only the selection ({region[2]}×{region[3]} px at {region[0]},{region[1]}) was protected"
        )
    return Capture(width, height, rgba, region, mask, notes, node)


def decode_image(data: bytes) -> tuple[int, int, bytes]:
    """Engine output -> RGBA8, with Qt when present (fast), else the standard-library PNG reader."""
    try:
        from .compat import rgba_from_image_bytes
    except ImportError:
        return pngio.decode(data)
    return rgba_from_image_bytes(data)


def summarise(report: dict) -> str:
    """The engine's one-line summary (``fixative_client.summarise``): each model figure beside its null."""
    return client_module().summarise(report) if report else ""


@dataclass
class Operation:
    kind: str  # "export" | "layer"
    document: object
    capture: Capture
    settings: ProtectSettings
    job: ProtectJob
    output_path: str = ""
    state: str = "running"  # running | done | failed | cancelled
    message: str = ""
    result_path: str = ""
    layer: object | None = None
    report: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    protected_rgba: bytes | None = None  # the protected region, for the docker's preview

    @property
    def finished(self) -> bool:
        return self.state != "running"


class Controller:
    """Starts operations and finishes them on the GUI thread when ``poll()`` sees the job end."""

    def __init__(self, client_factory: Callable[[], object] | None = None) -> None:
        self.client_factory = client_factory
        self.current: Operation | None = None
        self.last: Operation | None = None
        self.listeners: list[Callable[[Operation], None]] = []

    @property
    def busy(self) -> bool:
        return self.current is not None

    def _begin(self, kind: str, document, settings: ProtectSettings, output_format: str) -> Operation:
        """Export sends the whole image plus the selection as the engine's mask, so the engine writes the
        final file (any format, metadata included); a new layer sends only the selection's bounds and
        blends the result here, which is faster on a big canvas."""
        if self.busy:
            raise OperationError("A protection is already running; wait for it or cancel it.")
        captured = capture(document, settings.source)
        mask = None
        if kind == "export":
            image, w, h = captured.rgba, captured.width, captured.height
            full_mask = captured.full_mask()
            mask = pngio.encode_grey(full_mask, w, h) if full_mask is not None else None
        else:
            x, y, w, h = captured.region
            image = captured.region_rgba()
        payload = pngio.encode(image, w, h, keep_alpha=not pixels.is_opaque(image))
        name = os.path.splitext(os.path.basename(document.fileName() or "artwork"))[0] + ".png"
        job = ProtectJob(
            payload,
            settings.engine_options(output_format, export=kind == "export"),
            filename=name,
            client_factory=self.client_factory,
            mask=mask,
        )
        operation = Operation(kind, document, captured, settings, job, notes=list(captured.notes))
        self.current = operation
        job.start()
        return operation

    def start_export(
        self, document, output_path: str, settings: ProtectSettings, overwrite: bool = False
    ) -> Operation:
        output_path = os.path.abspath(os.path.expanduser(output_path))
        extension = os.path.splitext(output_path)[1].lower().lstrip(".")
        extension = {"jpeg": "jpg", "tiff": "tif"}.get(extension, extension)
        if extension not in ("png", "jpg", "webp", "tif"):
            raise OperationError(f"{os.path.basename(output_path)}: save as .png, .jpg, .webp or .tif.")
        source_file = document.fileName() if document is not None else ""
        if source_file and os.path.abspath(source_file) == output_path:
            raise OperationError("Refusing to overwrite the document itself; choose another file name.")
        if os.path.exists(output_path) and not overwrite:
            raise OperationError(f"{output_path} already exists; choose another name.")
        operation = self._begin("export", document, settings, extension)
        operation.output_path = output_path
        return operation

    def start_new_layer(self, document, settings: ProtectSettings) -> Operation:
        return self._begin("layer", document, settings, "png")

    def cancel(self) -> None:
        if self.current is not None:
            self.current.job.cancel()

    def poll(self) -> Operation | None:
        """Call from the GUI thread (QTimer). Returns the operation that just finished, if any."""
        operation = self.current
        if operation is None:
            return None
        status = operation.job.snapshot()
        operation.message = status["message"]
        if status["state"] not in ("done", "failed", "cancelled"):
            return None
        self.current = None
        self.last = operation
        if status["state"] == "done":
            try:
                self._finish(operation)
                operation.state = "done"
            except Exception as exc:  # writing failed: say why, keep the original untouched
                operation.state, operation.message = "failed", describe_error(exc)
        else:
            operation.state = status["state"]
            operation.message = status.get("error") or status["message"]
        for listener in list(self.listeners):
            listener(operation)
        return operation

    def _protected_region(self, operation: Operation) -> bytes:
        """The protected selection bounds as RGBA8, blended into the original through the selection."""
        captured = operation.capture
        x, y, w, h = captured.region
        width, height, protected = decode_image(operation.job.result_bytes or b"")
        if operation.kind == "export":  # the engine got the whole canvas
            if (width, height) != (captured.width, captured.height):
                raise OperationError(
                    f"the engine returned {width}×{height} px for a "
                    f"{captured.width}×{captured.height} px image"
                )
            protected = pixels.crop(protected, width, x, y, w, h)
        elif (width, height) != (w, h):
            raise OperationError(f"the engine returned {width}×{height} px for a {w}×{h} px request")
        return pixels.blend_in_mask(captured.region_rgba(), protected, captured.mask)

    def _finish(self, operation: Operation) -> None:
        captured, job = operation.capture, operation.job
        operation.report = dict(job.report or {})
        operation.notes += [n for n in operation.report.get("notes", []) if n not in operation.notes]
        x, y, w, h = captured.region
        if operation.kind == "export":
            data = job.result_bytes or b""
            if not data:
                raise OperationError("the engine returned no image")
            # whole file or nothing, with the permissions a normal save gives
            operation.result_path = str(client_module().write_atomically(operation.output_path, data))
            try:  # the preview is a nicety; a format Qt cannot read must not fail the export
                operation.protected_rgba = self._protected_region(operation)
            except (OperationError, ValueError, pngio.PngError):
                operation.protected_rgba = None
            operation.message = f"Saved {operation.result_path}"
        else:
            operation.protected_rgba = self._protected_region(operation)
            operation.layer = self._add_layer(operation, operation.protected_rgba)
            operation.message = f"Added layer “{operation.layer.name()}”"
        summary = summarise(operation.report)
        if summary:
            operation.message += f" ({summary})"

    def _add_layer(self, operation: Operation, protected: bytes):
        """A new 8-bit sRGB paint layer above the source, so the perturbation is stored exactly as made."""
        document, captured = operation.document, operation.capture
        x, y, w, h = captured.region
        label = f"{LAYER_SUFFIX} ({operation.settings.method})"
        layer = document.createNode(label, "paintlayer")
        profile = document.colorProfile()
        if (
            (document.colorModel(), document.colorDepth()) != ("RGBA", "U8")
            or not pixels.is_srgb_family(profile)
            or pixels.is_linear_profile(profile)
        ):
            layer.setColorSpace("RGBA", "U8", pixels.SRGB_PROFILE)
            operation.notes.append("the new layer is 8-bit sRGB so the protection is stored exactly as made")
        layer.setPixelData(pixels.rgba8_to_bgra8(protected), x, y, w, h)
        if captured.node is not None:
            parent, above = captured.node.parentNode(), captured.node
        else:
            parent = document.rootNode()
            children = parent.childNodes()
            above = children[-1] if children else None
        parent.addChildNode(layer, above)
        document.refreshProjection()
        return layer
