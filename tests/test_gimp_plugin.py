"""The GIMP 3 plug-in's own logic, outside GIMP: ``gi.repository`` is replaced by small fakes.

The real GIMP run lives in ``test_gimp_real.py``; these tests pin down what the plug-in sends to the
engine, what it writes, and how it touches the image (one undo group, original layer untouched).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import stat
import sys
import tempfile
import types
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from PIL import Image

from fixative import fixative_client
from fixative.hosts.install import gimp as install_gimp

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "plugins" / "gimp" / "fixative-protect"
PLUGIN_SCRIPT = PLUGIN_DIR / "fixative-protect.py"


# ---------------------------------------------------------------------------------------------
# Fakes for gi.repository
# ---------------------------------------------------------------------------------------------


class FakeGLibError(Exception):
    """Stands in for GLib.Error: an exception class with new_literal, like the real one."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @classmethod
    def new_literal(cls, domain, message, code):
        return cls(message)


class FakeGFile:
    def __init__(self, path: str | None) -> None:
        self.path = path

    def get_path(self):
        return self.path

    def get_uri(self):
        return f"file://{self.path}"

    def get_basename(self):
        return os.path.basename(self.path) if self.path else None


class FakeLayer:
    """Base class for ``Gimp.Layer`` so the plug-in's isinstance check works."""


def png_bytes(size=(8, 6), color=(200, 30, 40, 255)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def make_fake_gi():
    gimp = MagicMock(name="Gimp")
    gimp.PlugIn = type("PlugIn", (), {"error_quark": staticmethod(lambda: 7)})
    FakeLayer.new_from_drawable = MagicMock(name="new_from_drawable")
    gimp.Layer = FakeLayer
    gimp.RunMode = types.SimpleNamespace(
        INTERACTIVE="interactive", NONINTERACTIVE="noninteractive", WITH_LAST_VALS="last"
    )
    gimp.PDBStatusType = types.SimpleNamespace(
        SUCCESS="success", EXECUTION_ERROR="error", CANCEL="cancel", CALLING_ERROR="calling"
    )
    gimp.ImageBaseType = types.SimpleNamespace(RGB="rgb", GRAY="gray", INDEXED="indexed")
    gimp.Precision = types.SimpleNamespace(U8_NON_LINEAR="u8", U16_LINEAR="u16")

    saved: dict = {}

    def file_save(run_mode, image, gfile, options):
        Path(gfile.get_path()).write_bytes(png_bytes())
        saved.setdefault("images", []).append(image)

    def file_load_layer(run_mode, image, gfile):
        layer = MagicMock(name="protected-layer")
        layer.loaded_bytes = Path(gfile.get_path()).read_bytes()
        return layer

    gimp.file_save.side_effect = file_save
    gimp.file_load_layer.side_effect = file_load_layer
    gimp.saved = saved
    gimp.Selection.is_empty.return_value = True

    glib = MagicMock(name="GLib")
    glib.Error = FakeGLibError
    gio = MagicMock(name="Gio")
    gio.File.new_for_path.side_effect = FakeGFile
    gobject = MagicMock(name="GObject")
    gimpui = MagicMock(name="GimpUi")

    gi = types.ModuleType("gi")
    gi.require_version = lambda name, version: None
    repository = types.ModuleType("gi.repository")
    modules = {
        "Gimp": gimp,
        "GimpUi": gimpui,
        "GLib": glib,
        "Gio": gio,
        "GObject": gobject,
        "Gegl": MagicMock(name="Gegl"),
    }
    for name, module in modules.items():
        setattr(repository, name, module)
    gi.repository = repository
    return gi, repository


@pytest.fixture
def plugin(monkeypatch):
    """The plug-in script loaded as a module against fake gi parts and the real client."""
    gi, repository = make_fake_gi()
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", repository)
    monkeypatch.setitem(sys.modules, "fixative_client", fixative_client)
    spec = importlib.util.spec_from_file_location("fixative_protect_plugin", PLUGIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeClient:
    """Records what the plug-in submits and answers like EngineClient.protect."""

    def __init__(
        self, answer: bytes | None = None, error: Exception | None = None, temp_dir: Path | None = None
    ) -> None:
        self.answer = answer if answer is not None else png_bytes(color=(1, 2, 3, 255))
        self.error = error
        self.temp_dir = temp_dir
        self.calls: list[dict] = []

    def protect(
        self,
        image_bytes,
        options=None,
        filename="image.png",
        on_progress=None,
        should_cancel=None,
        poll=0.5,
        target=None,
        mask=None,
    ):
        self.calls.append(
            {
                "bytes": image_bytes,
                "options": options,
                "filename": filename,
                "should_cancel": should_cancel,
                "mask": mask,
                "target": target,
            }
        )
        if self.temp_dir is not None:  # GIMP may SIGKILL the plug-in now: no temporary files may exist
            assert list(self.temp_dir.iterdir()) == []
        for status in (
            {"state": "queued", "progress": 0.0},
            {"state": "running", "progress": 0.5, "step": 2, "total": 4, "eta": 3},
            {"state": "done", "progress": 1.0, "step": 4, "total": 4},
        ):
            on_progress(status)
        if self.error:
            raise self.error
        return self.answer, {
            "strength": 0.5,
            "encoders": [{"name": "taef2", "noise_strength": 0.02, "vs_noise": 25.0}],
        }


def make_config(**overrides):
    values = {
        "method": "style",
        "intensity": "default",
        "quality": "fast",
        "steps": 3,
        "models": "",
        "seed": 0,
        "target": None,
        "max-side": 0,  # the export's only
    }
    values.update(overrides)
    config = MagicMock(name="config")
    config.get_property.side_effect = values.__getitem__
    return config


def make_image():
    image = MagicMock(name="image")
    duplicate = MagicMock(name="duplicate")
    duplicate.get_base_type.return_value = "gray"
    duplicate.get_precision.return_value = "u16"
    image.duplicate.return_value = duplicate
    image.get_item_position.return_value = 2
    return image, duplicate


def make_source_layer():
    layer = MagicMock(spec=FakeLayer, name="source-layer")
    layer.is_group = MagicMock(return_value=False)
    layer.get_name = MagicMock(return_value="Background")
    layer.get_offsets = MagicMock(return_value=(True, 5, 9))
    layer.get_parent = MagicMock(return_value=None)
    layer.get_width = MagicMock(return_value=8)
    layer.get_height = MagicMock(return_value=6)
    return layer


def last_status(procedure):
    args = procedure.new_return_values.call_args.args
    return args[0], args[1]


# ---------------------------------------------------------------------------------------------
# Pure logic
# ---------------------------------------------------------------------------------------------


def test_script_is_executable_and_named_after_its_folder():
    assert PLUGIN_SCRIPT.name == PLUGIN_DIR.name + ".py"
    assert os.access(PLUGIN_SCRIPT, os.X_OK)
    assert PLUGIN_SCRIPT.read_text().startswith("#!/usr/bin/env python3")
    assert not (PLUGIN_DIR / "fixative_client.py").exists(), "the client is copied at install time only"


def test_build_options_carries_lease_and_only_real_overrides(plugin):
    options = plugin.build_options("concept", "high", "slow")
    assert options == {
        "method": "concept",
        "intensity": "high",
        "quality": "slow",
        "format": "png",
        "seed": 0,
        "lease_seconds": plugin.LEASE_SECONDS,
    }
    assert 0 < plugin.LEASE_SECONDS <= 30
    options = plugin.build_options(
        "edit", "low", "fast", steps=4, models=" taef2 , /m/x.pth,", output_format="jpeg", seed=3
    )
    assert options["steps"] == 4 and options["models"] == ["taef2", "/m/x.pth"]
    assert options["format"] == "jpeg" and options["seed"] == 3 and "max_side" not in options
    assert plugin.options_from_values(
        {"method": "style", "intensity": "default", "quality": "fast", "steps": 0, "models": "", "seed": 0,
         "max_side": 1024}, "png",
    )["max_side"] == 1024  # fmt: skip


@pytest.mark.parametrize(
    "bad", [("glaze", "default", "default"), ("style", "max", "default"), ("style", "default", "instant")]
)
def test_build_options_rejects_unknown_values_in_one_line(plugin, bad):
    with pytest.raises(plugin.PluginError) as info:
        plugin.build_options(*bad)
    assert "\n" not in str(info.value) and "use one of" in str(info.value)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.png", "png"),
        ("A.JPG", "jpeg"),
        ("x.jpeg", "jpeg"),
        ("noext", "png"),
        (None, "png"),
        ("photo.jpg.png", "png"),
    ],
)
def test_output_format_follows_the_file_name(plugin, name, expected):
    assert plugin.output_format_for(name) == expected


def test_progress_reporter_drives_gimp_progress(plugin):
    report = plugin.progress_reporter("Fixative")
    report({"state": "queued", "progress": 0.0})
    report({"state": "running", "progress": 0.25, "step": 1, "total": 4, "eta": 6.4})
    report({"state": "running", "progress": 1.7, "step": 4, "total": 4})
    report({"state": "running", "progress": 1.0, "step": 4, "total": 4, "doing": "transfer"})
    fractions = [call.args[0] for call in plugin.Gimp.progress_update.call_args_list]
    assert fractions == [0.0, 0.25, 1.0, 1.0]
    texts = [call.args[0] for call in plugin.Gimp.progress_set_text.call_args_list]
    assert texts[0].endswith("waiting for the engine...")
    assert "step 1/4" in texts[1] and "6 s left" in texts[1]
    assert texts[-1] == "Fixative: measuring transfer..."  # after the last step


def test_engine_not_installed_explains_what_to_do(plugin, monkeypatch):
    def not_installed(timeout):
        raise fixative_client.EngineNotInstalled("no engine command recorded")

    monkeypatch.setattr(fixative_client, "ensure_engine", not_installed)
    with pytest.raises(plugin.PluginError) as info:
        plugin.connect_engine()
    message = str(info.value)
    assert "fixative install gimp" in message and "\n" not in message


def test_missing_client_is_reported(plugin, monkeypatch):
    monkeypatch.setattr(plugin, "fixative_client", None)
    with pytest.raises(plugin.PluginError, match="fixative install gimp"):
        plugin.connect_engine()


def test_cancel_watch_turns_sigterm_into_cancel_and_restores_handler(plugin):
    before = signal.getsignal(signal.SIGTERM)
    with plugin.CancelWatch() as cancelled:
        assert not cancelled()
        os.kill(os.getpid(), signal.SIGTERM)
        assert cancelled()
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------------------------------------
# Export procedure
# ---------------------------------------------------------------------------------------------


def test_export_writes_engine_bytes_and_leaves_image_alone(plugin, monkeypatch, tmp_path):
    scratch_dir = tmp_path / "tmp"
    scratch_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_dir))
    client = FakeClient(temp_dir=scratch_dir)
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: client)
    image, duplicate = make_image()
    target = tmp_path / "out.jpg"
    procedure = MagicMock(name="procedure")
    plugin.run_export(
        procedure,
        plugin.Gimp.RunMode.NONINTERACTIVE,
        image,
        FakeGFile(str(target)),
        None,
        None,
        make_config(method="edit", intensity="high", steps=3, **{"max-side": 640}),
        None,
    )
    status, _error = last_status(procedure)
    assert status == "success"
    assert target.read_bytes() == client.answer
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask, "not left private like a temporary file"
    sent = client.calls[0]
    assert sent["options"]["format"] == "jpeg" and sent["options"]["method"] == "edit"
    assert sent["options"]["steps"] == 3 and sent["options"]["lease_seconds"] == plugin.LEASE_SECONDS
    assert sent["options"]["max_side"] == 640  # the longest side posted
    assert Image.open(io.BytesIO(sent["bytes"])).size == (8, 6)
    # The flattening happened on a duplicate, converted to 8-bit RGB, then deleted.
    duplicate.merge_visible_layers.assert_called_once()
    duplicate.convert_rgb.assert_called_once()
    duplicate.convert_precision.assert_called_once_with("u8")
    duplicate.delete.assert_called_once()
    assert plugin.Gimp.saved["images"] == [duplicate]
    assert not image.merge_visible_layers.called and not image.flatten.called
    plugin.Gimp.progress_init.assert_called_once()
    assert [c.args[0] for c in plugin.Gimp.progress_update.call_args_list][-1] == 1.0


def test_export_failure_keeps_existing_file_and_reports_one_line(plugin, monkeypatch, tmp_path):
    client = FakeClient(error=fixative_client.EngineError("out of memory\nwhile encoding"))
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: client)
    image, _duplicate = make_image()
    target = tmp_path / "keep.png"
    target.write_bytes(b"previous export")
    procedure = MagicMock(name="procedure")
    plugin.run_export(
        procedure,
        plugin.Gimp.RunMode.NONINTERACTIVE,
        image,
        FakeGFile(str(target)),
        None,
        None,
        make_config(),
        None,
    )
    status, error = last_status(procedure)
    assert status == "error"
    assert error.message == "Fixative: out of memory while encoding"
    assert target.read_bytes() == b"previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_export_dialog_cancel_writes_nothing(plugin, monkeypatch, tmp_path):
    client = FakeClient()
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: client)
    plugin.GimpUi.ExportProcedureDialog.new.return_value.run.return_value = False
    image, _duplicate = make_image()
    procedure = MagicMock(name="procedure")
    gfile = FakeGFile(str(tmp_path / "x.png"))
    interactive = plugin.Gimp.RunMode.INTERACTIVE
    plugin.run_export(procedure, interactive, image, gfile, None, None, make_config(), None)
    assert last_status(procedure)[0] == "cancel"
    assert client.calls == [] and list(tmp_path.iterdir()) == []
    dialog = plugin.GimpUi.ExportProcedureDialog.new.return_value
    dialog.fill.assert_called_once_with(["method", "intensity", "quality", "target", "max-side"])
    dialog.destroy.assert_called_once()


# ---------------------------------------------------------------------------------------------
# Filter procedure
# ---------------------------------------------------------------------------------------------


def test_filter_adds_one_layer_in_one_undo_group(plugin, monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    client = FakeClient(temp_dir=tmp_path)
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: client)
    image, _duplicate = make_image()
    source = make_source_layer()
    events: list[str] = []
    image.undo_group_start.side_effect = lambda: events.append("start")
    image.undo_group_end.side_effect = lambda: events.append("end")
    image.insert_layer.side_effect = lambda *a: events.append("insert")
    procedure = MagicMock(name="procedure")
    plugin.run_filter(
        procedure,
        plugin.Gimp.RunMode.NONINTERACTIVE,
        image,
        [source],
        make_config(quality="slow", models="taef2"),
        None,
    )
    assert last_status(procedure)[0] == "success"
    assert events == ["start", "insert", "end"]
    assert list(tmp_path.iterdir()) == []
    layer, parent, position = image.insert_layer.call_args.args
    assert layer.loaded_bytes == client.answer
    assert parent is None and position == 2
    layer.set_name.assert_called_once_with("Background (protected)")
    layer.set_offsets.assert_called_once_with(5, 9)
    image.set_selected_layers.assert_called_once_with([layer])
    # The original layer is only read (its pixels are copied out), never changed.
    changed = [name for name, *_ in source.method_calls if not name.startswith(("get_", "is_"))]
    assert changed == []
    plugin.Gimp.Layer.new_from_drawable.assert_called_once()
    assert plugin.Gimp.Layer.new_from_drawable.call_args.args[0] is source
    options = client.calls[0]["options"]
    assert options["models"] == ["taef2"] and options["format"] == "png" and options["quality"] == "slow"
    assert client.calls[0]["mask"] is None, "no selection: the whole layer is protected"
    assert client.calls[0]["target"] is None


def test_target_image_is_sent_and_a_missing_one_reported(plugin, monkeypatch, tmp_path):
    client = FakeClient()
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: client)
    anchor = tmp_path / "anchor.png"
    anchor.write_bytes(png_bytes(color=(9, 9, 9, 255)))
    image, _duplicate = make_image()
    procedure = MagicMock(name="procedure")
    config = make_config(method="concept", target=FakeGFile(str(anchor)))
    batch = plugin.Gimp.RunMode.NONINTERACTIVE
    plugin.run_export(procedure, batch, image, FakeGFile(str(tmp_path / "o.png")), None, None, config, None)
    assert last_status(procedure)[0] == "success"
    # the artist is told what was measured, beside its null
    told = plugin.Gimp.message.call_args.args[0]
    assert told == "Fixative protected o.png: strength 0.50 (matched noise 0.02, 25×), models: taef2", told
    assert client.calls[0]["target"] == anchor.read_bytes()
    assert client.calls[0]["options"]["method"] == "concept"

    config = make_config(target=FakeGFile(str(tmp_path / "gone.png")))
    plugin.run_filter(procedure, batch, image, [make_source_layer()], config, None)
    status, error = last_status(procedure)
    assert status == "error" and "cannot read the target image" in error.message
    assert len(client.calls) == 1


def test_filter_sends_the_selection_as_mask(plugin, monkeypatch):
    client = FakeClient()
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: client)
    plugin.Gimp.Selection.is_empty.return_value = False
    image, _duplicate = make_image()
    source = make_source_layer()
    layer_scratch, scratch = MagicMock(name="layer-scratch"), MagicMock(name="mask-scratch")
    scratch.get_base_type.return_value = "gray"
    scratch.get_precision.return_value = "u8"
    plugin.Gimp.Image.new.side_effect = [layer_scratch, scratch]
    procedure = MagicMock(name="procedure")
    plugin.run_filter(procedure, plugin.Gimp.RunMode.NONINTERACTIVE, image, [source], make_config(), None)
    assert last_status(procedure)[0] == "success"
    mask = client.calls[0]["mask"]
    assert mask is not None and Image.open(io.BytesIO(mask)).size == (8, 6)
    # The selection copy is shifted by the layer's offsets, on black, and the context is restored.
    selection_copy = plugin.Gimp.Layer.new_from_drawable.call_args_list[-1]
    assert selection_copy.args[0] is image.get_selection.return_value
    plugin.Gimp.Layer.new_from_drawable.return_value.set_offsets.assert_any_call(-5, -9)
    plugin.Gegl.Color.new.assert_called_with("black")
    assert plugin.Gimp.context_push.call_count == plugin.Gimp.context_pop.call_count == 1
    scratch.flatten.assert_called_once()
    assert not scratch.convert_rgb.called
    assert plugin.Gimp.Image.new.call_args_list[-1].args == (8, 6, "gray")
    assert layer_scratch.delete.called and scratch.delete.called


def test_filter_failure_leaves_image_untouched(plugin, monkeypatch):
    client = FakeClient(error=fixative_client.EngineError("job cancelled"))
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: client)
    image, _duplicate = make_image()
    procedure = MagicMock(name="procedure")
    plugin.run_filter(
        procedure, plugin.Gimp.RunMode.NONINTERACTIVE, image, [make_source_layer()], make_config(), None
    )
    status, error = last_status(procedure)
    assert status == "error" and "job cancelled" in error.message
    assert not image.undo_group_start.called and not image.insert_layer.called


@pytest.mark.parametrize("case", ["two", "group", "none"])
def test_filter_needs_exactly_one_pixel_layer(plugin, monkeypatch, case):
    monkeypatch.setattr(fixative_client, "ensure_engine", lambda timeout: pytest.fail("engine not needed"))
    group = make_source_layer()
    group.is_group.return_value = True
    drawables = {"two": [make_source_layer(), make_source_layer()], "group": [group], "none": []}[case]
    procedure = MagicMock(name="procedure")
    image, _ = make_image()
    plugin.run_filter(procedure, plugin.Gimp.RunMode.NONINTERACTIVE, image, drawables, make_config(), None)
    status, error = last_status(procedure)
    assert status == "error" and "exactly one pixel layer" in error.message


# ---------------------------------------------------------------------------------------------
# Registration
# ---------------------------------------------------------------------------------------------


def test_registers_export_type_and_filter_with_same_arguments(plugin):
    gimp = plugin.Gimp
    instance = plugin.FixativeProtect()
    assert instance.do_query_procedures() == [plugin.EXPORT_PROC, plugin.FILTER_PROC, plugin.GET_ENCODER_PROC]

    export = instance.do_create_procedure(plugin.EXPORT_PROC)
    args = gimp.ExportProcedure.new.call_args.args
    assert args[3] is False, "GIMP must not rewrite the engine's metadata"
    assert args[4] is plugin.run_export
    export.set_menu_label.assert_called_once_with("Protected image (Fixative)")
    export.set_extensions.assert_called_once_with("png,jpg,jpeg")
    assert export.set_priority.call_args.args[0] > 0

    flt = instance.do_create_procedure(plugin.FILTER_PROC)
    assert gimp.ImageProcedure.new.call_args.args[3] is plugin.run_filter
    flt.add_menu_path.assert_called_once_with("<Image>/Filters/Fixative")
    assert flt.set_menu_label.call_args.args[0].startswith("_Protect")

    for procedure, own in ((export, ["max-side"]), (flt, [])):  # a new layer must match the canvas
        choices = [c.args[0] for c in procedure.add_choice_argument.call_args_list]
        ints = [c.args[0] for c in procedure.add_int_argument.call_args_list]
        strings = [c.args[0] for c in procedure.add_string_argument.call_args_list]
        assert choices == ["method", "intensity", "quality"]
        assert ints == [*own, "steps", "seed"] and strings == ["models"]
        target = procedure.add_file_argument.call_args
        assert target.args[0] == "target" and target.args[4] is True, "the target image is optional"
        defaults = {c.args[0]: c.args[4] for c in procedure.add_choice_argument.call_args_list}
        assert defaults == {"method": "style", "intensity": "default", "quality": "default"}


# ---------------------------------------------------------------------------------------------
# Installer
# ---------------------------------------------------------------------------------------------


def test_install_places_plugin_client_and_engine_command(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "xdg"))
    plugins = tmp_path / "plug-ins"
    stale = plugins / "fixative-protect" / "old-file.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("stale")
    (plugins / "someone-else").mkdir()

    script = install_gimp.install(plugins)
    folder = plugins / "fixative-protect"
    assert script == folder / "fixative-protect.py"
    assert script.stat().st_mode & stat.S_IXUSR
    assert script.read_bytes() == PLUGIN_SCRIPT.read_bytes()
    client_source = Path(fixative_client.__file__).read_bytes()
    assert (folder / "fixative_client.py").read_bytes() == client_source
    assert not stale.exists() and (plugins / "someone-else").is_dir()
    assert sorted(p.name for p in plugins.iterdir()) == ["fixative-protect", "someone-else"]

    engine = json.loads((fixative_client.config_dir() / "engine.json").read_text())
    assert engine["command"] == [sys.executable, "-m", "fixative", "serve", "--ready-line"]


def test_install_keeps_other_engine_json_keys(tmp_path):
    config = tmp_path / "cfg"
    config.mkdir()
    (config / "engine.json").write_text(json.dumps({"command": ["old"], "note": "kept"}))
    install_gimp.install(tmp_path / "p", config_dir=config)
    data = json.loads((config / "engine.json").read_text())
    assert data["note"] == "kept" and data["command"][1:] == ["-m", "fixative", "serve", "--ready-line"]


def test_install_without_sources_says_so(tmp_path):
    with pytest.raises(install_gimp.FixativeError, match="plug-in sources not found"):
        install_gimp.install(tmp_path / "p", source=tmp_path / "nowhere", config_dir=tmp_path / "c")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "platform, env, expected",
    [
        ("linux", {}, "HOME/.config/GIMP/3.0/plug-ins"),
        ("linux", {"XDG_CONFIG_HOME": "/x"}, "/x/GIMP/3.0/plug-ins"),
        ("win32", {"APPDATA": "/appdata"}, "/appdata/GIMP/3.0/plug-ins"),
        ("darwin", {}, "HOME/Library/Application Support/GIMP/3.0/plug-ins"),
    ],
)
def test_default_plugins_dir_per_os(platform, env, expected):
    found = install_gimp.gimp_plugins_dir(platform, env, home=Path("HOME"))
    assert found.as_posix() == expected


def test_cli_install_gimp(tmp_path, monkeypatch, capsys):
    from fixative.hosts.cli import main

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "xdg"))
    assert main(["install", "gimp", "--plugins-dir", str(tmp_path / "plug-ins")]) == 0
    assert (tmp_path / "plug-ins" / "fixative-protect" / "fixative-protect.py").is_file()
    assert "installed" in capsys.readouterr().out
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    assert main(["install", "gimp", "--plugins-dir", str(blocked)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("fixative: error:") and "\n" not in err


class FakeDownloadingClient:
    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.asked = error, []

    def get_model(self, name, on_progress=None, should_cancel=None, poll=0.3):
        self.asked.append(name)
        on_progress({"state": "running", "file": "taef2_encoder.pth", "done": 1, "total": 2})
        if self.error:
            raise self.error
        return {"state": "done", "paths": ["x"]}


def test_get_the_recommended_encoder_from_the_menu(plugin, monkeypatch):
    """issue 20: the filter's error names the menu entry, which has the engine download the encoder."""
    missing = fixative_client.EngineError(
        "no image encoder found. Get the recommended one with `fixative models --get taef2`"
    )
    assert plugin.GET_ENCODER_MENU in plugin.engine_message(missing)
    gimp = plugin.Gimp
    instance = plugin.FixativeProtect()
    menu = instance.do_create_procedure(plugin.GET_ENCODER_PROC)
    assert gimp.ImageProcedure.new.call_args.args[3] is plugin.run_get_encoder
    menu.add_menu_path.assert_called_once_with("<Image>/Filters/Fixative")
    menu.add_choice_argument.assert_not_called()

    fake = FakeDownloadingClient()
    monkeypatch.setattr(plugin, "connect_engine", lambda: fake)
    procedure = MagicMock(name="procedure")
    plugin.run_get_encoder(procedure, "interactive", None, [], None, None)
    assert last_status(procedure)[0] == "success" and fake.asked == ["taef2"]
    gimp.progress_update.assert_any_call(0.5)

    failing = FakeDownloadingClient(fixative_client.EngineError("taef2_encoder.pth: checksum mismatch"))
    monkeypatch.setattr(plugin, "connect_engine", lambda: failing)
    plugin.run_get_encoder(procedure, "interactive", None, [], None, None)
    status, error = last_status(procedure)
    assert status == "error" and "checksum mismatch" in error.message
