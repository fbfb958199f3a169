#!/usr/bin/env python3
"""Fixative for GIMP 3: protect artworks against style mimicry and AI edits.

Two procedures:
  * ``file-fixative-export``: an export file type "Protected image (Fixative)" writing a protected
    PNG (or JPEG when the file name ends in .jpg/.jpeg);
  * ``plug-in-fixative-protect``: Filters > Fixative > Protect..., putting the protected pixels in a
    new layer above the active one, as one undo step.

GIMP's Python has no torch, so the work happens in the Fixative engine (``fixative serve``), reached
through ``fixative_client.py`` (standard library only) that ``fixative install gimp`` copies next to
this script. Every job is submitted with a short lease: when GIMP kills the plug-in (the user pressed
Cancel), nobody polls the job any more and the engine drops it and frees its memory.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import tempfile
from collections.abc import Callable

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

try:  # GimpUi needs GTK; batch runs (gimp-console) work without it.
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi  # noqa: E402
except (ImportError, ValueError):
    GimpUi = None
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gio, GLib, GObject  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
try:
    import fixative_client  # copied here by `fixative install gimp`
except ImportError:
    fixative_client = None

EXPORT_PROC = "file-fixative-export"
FILTER_PROC = "plug-in-fixative-protect"
GET_ENCODER_PROC = "plug-in-fixative-get-encoder"
RECOMMENDED_ENCODER = "taef2"
GET_ENCODER_MENU = "Filters > Fixative > Get the Recommended Encoder"
# Seconds the engine keeps a job nobody polls: the plug-in polls every half second, so a killed
# plug-in's job is dropped within this time.
LEASE_SECONDS = 10
ENGINE_START_TIMEOUT = 180.0
ENGINE_HELP = (
    "Install the Fixative engine (pip install fixative), then run `fixative install gimp` "
    "so GIMP knows how to start it."
)
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe")
DIALOG_ARGUMENTS = ("method", "intensity", "quality", "target")
EXPORT_DIALOG_ARGUMENTS = ("max-side",)  # the filter's new layer must match the canvas


class PluginError(Exception):
    """A problem the user can act on; its text is shown in GIMP's message box as one line."""


# ----------------------------------------------------------------------------------------------
# Plug-in logic that does not need a running GIMP (unit-tested with mocked gi.repository parts).
# ----------------------------------------------------------------------------------------------


def option_choices() -> dict:
    """The engine's option choices (``GET /options``) when it runs, else the copy the client carries."""
    if fixative_client is None:
        return {}
    try:
        engine = fixative_client.EngineClient.discover()
    except Exception:  # never let a registration fail over this
        engine = None
    return fixative_client.option_choices(engine)


def choice_pairs(name: str, choices: dict | None = None) -> tuple:
    """(value, label) pairs of one option, e.g. the methods."""
    entry = (choices if choices is not None else option_choices()).get(name) or {}
    return tuple((item["value"], item.get("label", item["value"])) for item in entry.get("choices", []))


def output_format_for(path: str | None) -> str:
    """The engine's output format for an export target: JPEG for .jpg/.jpeg names, PNG otherwise."""
    return "jpeg" if path and path.lower().endswith(JPEG_SUFFIXES) else "png"


def build_options(
    method: str,
    intensity: str,
    quality: str,
    steps: int = 0,
    models: str = "",
    output_format: str = "png",
    seed: int = 0,
    max_side: int = 0,
) -> dict:
    """Options for ``POST /jobs``: the same keys as ``fixative.protect`` plus format and lease
    (``max_side``: an export's longest side as posted, 0 for full size)."""
    choices = option_choices()
    for value, what in ((method, "method"), (intensity, "intensity"), (quality, "quality")):
        allowed = [nick for nick, _label in choice_pairs(what, choices)]
        if value not in allowed:
            raise PluginError(f"unknown {what} {value!r} (use one of: {', '.join(allowed)})")
    options = {
        "method": method,
        "intensity": intensity,
        "quality": quality,
        "format": output_format,
        "seed": int(seed),
        "lease_seconds": LEASE_SECONDS,
    }
    if steps and steps > 0:
        options["steps"] = int(steps)
    if max_side and max_side > 0:
        options["max_side"] = int(max_side)
    model_list = [m.strip() for m in (models or "").split(",") if m.strip()]
    if model_list:
        options["models"] = model_list
    return options


def options_from_values(values: dict, output_format: str) -> dict:
    """``build_options`` from the dialog's stored values (the export and the filter share them)."""
    return build_options(
        values["method"],
        values["intensity"],
        values["quality"],
        values["steps"],
        values["models"],
        output_format,
        values["seed"],
        values.get("max_side", 0),
    )


def engine_message(exc: BaseException) -> str:
    """One line the user can act on, whatever went wrong while talking to the engine."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.replace("fixative install <editor>", "fixative install gimp")
    if fixative_client is not None and isinstance(exc, fixative_client.EngineNotInstalled):
        if "fixative install gimp" not in text:
            text = f"{text}. {ENGINE_HELP}"
        return f"No Fixative engine found: {text}"
    if fixative_client is not None and isinstance(exc, fixative_client.EngineNotRunning):
        return f"The Fixative engine is not running and could not be started: {text}"
    if "no image encoder found" in text.lower():
        return f"Fixative: {text}. In GIMP: {GET_ENCODER_MENU} gets it for you."
    return f"Fixative: {text}"


class CancelWatch:
    """Turns SIGTERM/SIGINT (GIMP stopping the plug-in) into a polite cancel of the engine job.

    GIMP may also kill the plug-in outright; then the job's lease runs out on the server instead.
    """

    def __init__(self) -> None:
        self.cancelled = False
        self._previous: dict = {}

    def __enter__(self) -> CancelWatch:
        for signum in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGINT", None)):
            if signum is None:
                continue
            try:
                self._previous[signum] = signal.signal(signum, self._on_signal)
            except (ValueError, OSError):  # not the main thread, or not allowed on this OS
                pass
        return self

    def _on_signal(self, signum, frame) -> None:
        self.cancelled = True

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def __call__(self) -> bool:
        return self.cancelled


def progress_reporter(label: str):
    """A client ``on_progress`` callback that drives GIMP's progress bar."""
    state = {"text": None}

    def on_progress(status: dict) -> None:
        fraction = status.get("progress") or 0.0
        step, total = status.get("step"), status.get("total")
        if status.get("state") == "queued":
            text = f"{label}: waiting for the engine..."
        elif status.get("doing"):  # after the last step: the engine measures what it made
            text = f"{label}: measuring {status['doing']}..."
        elif step is not None and total:
            eta = status.get("eta")
            text = f"{label}: step {step}/{total}" + (f", about {int(eta)} s left" if eta else "")
        else:
            text = f"{label}..."
        if text != state["text"]:
            Gimp.progress_set_text(text)
            state["text"] = text
        Gimp.progress_update(max(0.0, min(1.0, float(fraction))))

    return on_progress


def connect_engine():
    """A client for a running engine, starting the recorded one when none answers."""
    if fixative_client is None:
        raise PluginError(
            "fixative_client.py is missing next to the plug-in; reinstall it with `fixative install gimp`"
        )
    Gimp.progress_set_text("Connecting to the Fixative engine (starting it if needed)...")
    try:
        return fixative_client.ensure_engine(timeout=ENGINE_START_TIMEOUT)
    except fixative_client.EngineError as exc:
        raise PluginError(engine_message(exc)) from exc


def protect_bytes(
    image_bytes: bytes,
    options: dict,
    filename: str,
    label: str,
    mask: bytes | None = None,
    target: bytes | None = None,
) -> tuple[bytes, dict]:
    """Send one image (and optional mask) to the engine and wait for the protected bytes, showing progress."""
    client = connect_engine()
    with CancelWatch() as cancelled:
        try:
            return client.protect(
                image_bytes,
                options=options,
                filename=filename,
                on_progress=progress_reporter(label),
                should_cancel=cancelled,
                mask=mask,
                target=target,
            )
        except fixative_client.EngineError as exc:
            if cancelled():
                raise PluginError("Fixative: cancelled") from exc
            raise PluginError(engine_message(exc)) from exc


def get_encoder() -> dict:
    """Have the engine download the recommended encoder (checked by SHA-256), on GIMP's progress bar."""
    client = connect_engine()

    def on_progress(status: dict) -> None:
        done, total = int(status.get("done") or 0), int(status.get("total") or 0)
        Gimp.progress_set_text(f"Fixative: downloading {status.get('file') or RECOMMENDED_ENCODER}...")
        Gimp.progress_update(max(0.0, min(1.0, done / total)) if total else 0.0)

    with CancelWatch() as cancelled:
        try:
            return client.get_model(RECOMMENDED_ENCODER, on_progress=on_progress, should_cancel=cancelled)
        except fixative_client.EngineError as exc:
            if cancelled():
                raise PluginError("Fixative: download cancelled; nothing was kept") from exc
            raise PluginError(engine_message(exc)) from exc


def store_to_gfile(gfile, data: bytes) -> None:
    path = gfile.get_path()
    if path:  # whole file or nothing, with the permissions a normal save gives
        fixative_client.write_atomically(path, data)
    else:  # a remote location (GVfs): GIO writes to a temporary and renames, too
        gfile.replace_contents(data, None, False, Gio.FileCreateFlags.REPLACE_DESTINATION, None)


def config_values(config) -> dict:
    """The procedure arguments shared by the export and the filter."""
    return {
        "method": config.get_property("method"),
        "intensity": config.get_property("intensity"),
        "quality": config.get_property("quality"),
        "steps": config.get_property("steps"),
        "models": config.get_property("models") or "",
        "seed": config.get_property("seed"),
        "target": config.get_property("target"),
    }


def read_target(gfile) -> bytes | None:
    """The optional reference image (style image, concept anchor or edit target) as file bytes."""
    if gfile is None:
        return None
    path = gfile.get_path()
    if not path:
        raise PluginError("Fixative: the target image must be a local file")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise PluginError(f"Fixative: cannot read the target image {path}: {exc.strerror or exc}") from exc


# ----------------------------------------------------------------------------------------------
# Talking to GIMP: pixels out as a PNG, protected pixels back in.
# ----------------------------------------------------------------------------------------------


def _as_8bit_rgb(image, rgb: bool = True) -> None:
    """The engine works on 8-bit sRGB; grayscale/indexed and high-bit-depth copies are converted."""
    if rgb and image.get_base_type() != Gimp.ImageBaseType.RGB:
        image.convert_rgb()
    if image.get_precision() != Gimp.Precision.U8_NON_LINEAR:
        image.convert_precision(Gimp.Precision.U8_NON_LINEAR)


def _save_png(image, name: str) -> bytes:
    """PNG bytes through GIMP's own exporter; the file lives only for this call, not while the engine
    works, so a plug-in killed by a cancel leaves nothing behind."""
    with tempfile.TemporaryDirectory(prefix="fixative-gimp-") as folder:
        path = os.path.join(folder, name)
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path), None)
        with open(path, "rb") as handle:
            return handle.read()


def flattened_png(image) -> bytes:
    """What the export would show: all visible layers merged, as PNG bytes (the image is untouched)."""
    copy = image.duplicate()
    try:
        copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
        _as_8bit_rgb(copy)
        return _save_png(copy, "fixative-export-source.png")
    finally:
        copy.delete()


def layer_png(layer) -> bytes:
    """One layer's own pixels (not the composite) as PNG bytes, in a throw-away image."""
    scratch = Gimp.Image.new(layer.get_width(), layer.get_height(), Gimp.ImageBaseType.RGB)
    try:
        copy = Gimp.Layer.new_from_drawable(layer, scratch)
        scratch.insert_layer(copy, None, 0)
        copy.set_offsets(0, 0)
        _as_8bit_rgb(scratch)
        return _save_png(scratch, "fixative-layer-source.png")
    finally:
        scratch.delete()


def selection_mask_png(image, layer) -> bytes | None:
    """The selection over the layer's area as a grayscale PNG (white: may change), or None without one.

    GIMP filters act inside the selection; so does this one, through the engine's mask.
    """
    if Gimp.Selection.is_empty(image):
        return None
    _ok, x, y = layer.get_offsets()
    scratch = Gimp.Image.new(layer.get_width(), layer.get_height(), Gimp.ImageBaseType.GRAY)
    Gimp.context_push()
    try:
        copy = Gimp.Layer.new_from_drawable(image.get_selection(), scratch)
        scratch.insert_layer(copy, None, 0)
        copy.set_offsets(-x, -y)
        Gimp.context_set_background(Gegl.Color.new("black"))  # layer parts off the canvas: unselected
        scratch.flatten()
        _as_8bit_rgb(scratch, rgb=False)
        return _save_png(scratch, "fixative-selection-mask.png")
    finally:
        Gimp.context_pop()
        scratch.delete()


def add_protected_layer(image, source, png_bytes: bytes):
    """Insert the protected pixels as a new layer right above ``source``, at the same offsets."""
    with tempfile.TemporaryDirectory(prefix="fixative-gimp-") as folder:
        path = os.path.join(folder, "fixative-protected.png")
        with open(path, "wb") as handle:
            handle.write(png_bytes)
        layer = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, Gio.File.new_for_path(path))
    layer.set_name(f"{source.get_name()} (protected)")
    _ok, x, y = source.get_offsets()
    image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
    layer.set_offsets(x, y)
    return layer


def tell_summary(what: str, report: dict) -> None:
    """What the protection measured, each model figure beside its null (``fixative_client.summarise``), in
    GIMP's message area (the Error Console, or the terminal of a batch run)."""
    summary = fixative_client.summarise(report) if fixative_client is not None else ""
    if summary:
        Gimp.message(f"Fixative protected {what}: {summary}")


def _error_values(procedure, message: str, status=None):
    error = GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    return procedure.new_return_values(status or Gimp.PDBStatusType.EXECUTION_ERROR, error)


def answers_errors(run: Callable) -> Callable:
    """A procedure's errors as GIMP's return values, in one line (never a traceback): what the user can act
    on as it is, anything from files or GLib named as Fixative's."""

    @functools.wraps(run)
    def answering(procedure, *args):
        try:
            return run(procedure, *args)
        except PluginError as exc:
            return _error_values(procedure, str(exc))
        except (OSError, GLib.Error) as exc:
            return _error_values(procedure, f"Fixative: {exc}")

    return answering


def _run_dialog(procedure, config, image, title: str, export: bool) -> bool:
    if GimpUi is None:
        raise PluginError("GIMP's user interface library is not available; run non-interactively")
    GimpUi.init("fixative-protect")
    if export:
        dialog = GimpUi.ExportProcedureDialog.new(procedure, config, image)
    else:
        dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    dialog.fill([*DIALOG_ARGUMENTS, *(EXPORT_DIALOG_ARGUMENTS if export else ())])
    try:
        return bool(dialog.run())
    finally:
        dialog.destroy()


@answers_errors
def run_export(procedure, run_mode, image, gfile, options, metadata, config, run_data):
    """File > Export As > Protected image (Fixative)."""
    interactive = run_mode == Gimp.RunMode.INTERACTIVE
    if interactive and not _run_dialog(procedure, config, image, "", export=True):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    values = dict(config_values(config), max_side=config.get_property("max-side"))
    target = gfile.get_path() or gfile.get_uri()
    fmt = output_format_for(gfile.get_basename() or target)
    job_options = options_from_values(values, fmt)
    Gimp.progress_init(f"Protecting {os.path.basename(target)} with Fixative")
    target_bytes = read_target(values["target"])
    protected, report = protect_bytes(
        flattened_png(image), job_options, "image.png", "Fixative", target=target_bytes
    )
    store_to_gfile(gfile, protected)
    Gimp.progress_end()
    tell_summary(os.path.basename(target), report)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


@answers_errors
def run_filter(procedure, run_mode, image, drawables, config, run_data):
    """Filters > Fixative > Protect...: a protected copy of the active layer, as one undo step."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer) or drawables[0].is_group():
        raise PluginError("Fixative: select exactly one pixel layer to protect")
    source = drawables[0]
    if run_mode == Gimp.RunMode.INTERACTIVE and not _run_dialog(
        procedure, config, image, "Protect with Fixative", export=False
    ):
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
    values = config_values(config)
    job_options = options_from_values(values, "png")
    Gimp.progress_init(f"Protecting layer '{source.get_name()}' with Fixative")
    target_bytes = read_target(values["target"])
    source_png, mask_png = layer_png(source), selection_mask_png(image, source)
    protected, report = protect_bytes(
        source_png, job_options, "layer.png", "Fixative", mask=mask_png, target=target_bytes
    )
    # Only now touch the image, in one undo group: a failed or cancelled run changes nothing.
    image.undo_group_start()
    try:
        layer = add_protected_layer(image, source, protected)
    finally:
        image.undo_group_end()
    image.set_selected_layers([layer])
    Gimp.progress_end()
    Gimp.displays_flush()
    tell_summary(f"layer '{layer.get_name()}'", report)
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


@answers_errors
def run_get_encoder(procedure, run_mode, image, drawables, config, run_data):
    """Filters > Fixative > Get the Recommended Encoder: what a first protection without one asks for."""
    Gimp.progress_init(f"Fixative: getting the recommended encoder ({RECOMMENDED_ENCODER}, 5.4 MB)")
    get_encoder()
    Gimp.progress_end()
    Gimp.message(f"Fixative: the {RECOMMENDED_ENCODER} encoder is ready (checked by SHA-256).")
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


# ----------------------------------------------------------------------------------------------
# Registration.
# ----------------------------------------------------------------------------------------------


def _choice(values) -> Gimp.Choice:
    choice = Gimp.Choice.new()
    for index, (nick, label) in enumerate(values):
        choice.add(nick, index, label, "")
    return choice


def add_protection_arguments(procedure) -> None:
    """The same arguments on both procedures, so batch scripts set them by name; the choices come from
    the engine's options schema."""
    flags = GObject.ParamFlags.READWRITE
    choices = option_choices()
    for name, label in (("method", "_Method"), ("intensity", "_Intensity"), ("quality", "_Quality")):
        entry = choices.get(name) or {}
        procedure.add_choice_argument(
            name,
            label,
            entry.get("help", name),
            _choice(choice_pairs(name, choices)),
            entry.get("default", "default"),
            flags,
        )
    procedure.add_int_argument("steps", "Steps", "Optimisation steps (0: from quality)", 0, 100000, 0, flags)
    procedure.add_string_argument(
        "models", "Models", "Comma-separated encoder names or paths (empty: engine default)", "", flags
    )
    procedure.add_int_argument("seed", "Seed", "Random seed (same seed, same result)", 0, 2**31 - 1, 0, flags)
    procedure.add_file_argument(
        "target",
        "_Target image",
        "Optional reference: a style image, the concept anchor (needed by 'concept') or an edit target",
        Gimp.FileChooserAction.OPEN,
        True,
        None,
        flags,
    )


class FixativeProtect(Gimp.PlugIn):
    """The GIMP entry point: declares the export file type and the filter."""

    def do_query_procedures(self):
        return [EXPORT_PROC, FILTER_PROC, GET_ENCODER_PROC]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        if name == GET_ENCODER_PROC:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_get_encoder, None)
            procedure.set_image_types("*")
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.ALWAYS)
            procedure.set_menu_label("_Get the Recommended Encoder")
            procedure.add_menu_path("<Image>/Filters/Fixative")
            procedure.set_documentation(
                "Download the encoder Fixative needs",
                "Has the Fixative engine download the recommended image encoder (taef2, 5.4 MB) from the "
                "Hugging Face Hub and check it against its pinned SHA-256.",
                name,
            )
            procedure.set_attribution("Fixative contributors", "Fixative contributors", "2025")
            return procedure
        if name == EXPORT_PROC:
            # export_metadata=False: GIMP's own metadata writer must not replace the engine's
            # provenance metadata in the protected file.
            procedure = Gimp.ExportProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, False, run_export, None)
            procedure.set_image_types("*")
            procedure.set_menu_label("Protected image (Fixative)")
            procedure.set_format_name("Fixative")
            procedure.set_documentation(
                "Export a copy protected by Fixative",
                "Writes a PNG (or JPEG for .jpg/.jpeg names) whose pixels carry Fixative's protection "
                "against style mimicry, concept poisoning or AI edits. Needs the Fixative engine "
                "(fixative serve).",
                name,
            )
            procedure.set_mime_types("image/png,image/jpeg")
            procedure.set_extensions("png,jpg,jpeg")
            # Plain PNG/JPEG exporters keep priority when the type is chosen by extension.
            procedure.set_priority(100)
            procedure.add_int_argument(
                "max-side",
                "Longest side _posted (px)",
                "Protect and save the copy at most this many pixels on its longest side, the size you "
                "post: a site's smaller copy of a full-size protection keeps 2-5x less (0: full size; "
                "else 64 or more)",
                0,
                65535,
                0,
                GObject.ParamFlags.READWRITE,
            )
        else:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_filter, None)
            procedure.set_image_types("RGB*, GRAY*, INDEXED*")
            procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
            procedure.set_menu_label("_Protect...")
            procedure.add_menu_path("<Image>/Filters/Fixative")
            procedure.set_documentation(
                "Protect the active layer with Fixative",
                "Adds a protected copy of the active layer above it (the original stays untouched; "
                "one undo step removes it). Needs the Fixative engine (fixative serve).",
                name,
            )
        procedure.set_attribution("Fixative contributors", "Fixative contributors", "2025")
        add_protection_arguments(procedure)
        return procedure


if __name__ == "__main__":
    Gimp.main(FixativeProtect.__gtype__, sys.argv)
