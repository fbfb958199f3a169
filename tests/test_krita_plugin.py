"""The Krita plug-in outside Krita: a mock ``krita`` module, fake engine clients, real pixel layouts."""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins" / "krita"), str(Path(__file__).resolve().parent / "krita_mock")]

import krita  # noqa: E402  (the mock)
from fixative_krita import engine, operations, pixels, pngio, settings  # noqa: E402

from fixative import fixative_client  # noqa: E402


# --- pixel conversion for every depth ---------------------------------------------------------------
def _doc_bytes(model: str, depth: str, logical: list[tuple]) -> bytes:
    return b"".join(krita.pack_pixel(model, depth, values) for values in logical)


RGBA_PIXELS = [(1.0, 0.0, 0.0, 1.0), (0.0, 0.5, 1.0, 0.5), (0.2, 0.4, 0.6, 0.0), (0.0, 0.0, 0.0, 1.0)]


@pytest.mark.parametrize("depth", ["U8", "U16"])
def test_integer_rgba_is_bgra_in_memory(depth):
    data = _doc_bytes("RGBA", depth, RGBA_PIXELS)
    converted = pixels.to_rgba8(data, 2, 2, "RGBA", depth, "sRGB-elle-V2-srgbtrc.icc")
    assert converted.rgba[:4] == bytes([255, 0, 0, 255])  # red stays red, not blue
    assert converted.rgba[4:8] == bytes([0, 128, 255, 128])
    assert converted.rgba[8:12] == bytes([51, 102, 153, 0])
    assert (depth == "U16") == any("16-bit integer" in note for note in converted.notes)


@pytest.mark.parametrize("depth", ["F16", "F32"])
def test_linear_float_is_rgba_and_gets_the_srgb_curve(depth):
    data = _doc_bytes(
        "RGBA",
        depth,
        [(1.0, 0.0, 0.0, 1.0), (0.5, 0.5, 0.5, 0.5), (0.214, 0.0031, 0.0, 1.0), (1.0, 1.0, 1.0, 0.25)],
    )
    converted = pixels.to_rgba8(data, 2, 2, "RGBA", depth, "sRGB-elle-V2-g10.icc")
    rgba = converted.rgba
    assert rgba[:4] == bytes([255, 0, 0, 255])
    assert rgba[4:7] == bytes([188, 188, 188])  # linear 0.5 -> sRGB 188
    assert rgba[7] == 128  # alpha is never gamma-encoded
    assert abs(rgba[8] - 128) <= 1 and rgba[9] == 10  # 0.214 linear ~ 50% sRGB; toe is linear (12.92x)
    assert rgba[15] == 64
    assert any("linear-light" in note for note in converted.notes)
    assert any(DEPTH in note for note in converted.notes for DEPTH in ("16-bit float", "32-bit float"))


def test_float_with_srgb_curve_profile_is_not_gamma_encoded_twice():
    data = _doc_bytes("RGBA", "F32", [(0.5, 0.25, 1.0, 1.0)])
    converted = pixels.to_rgba8(data, 1, 1, "RGBA", "F32", "sRGB-elle-V2-srgbtrc.icc")
    assert converted.rgba == bytes([128, 64, 255, 255])
    assert not any("linear" in note for note in converted.notes)


def test_hdr_values_are_clipped_with_a_note():
    data = _doc_bytes("RGBA", "F32", [(4.0, -0.5, 0.5, 1.0)])
    converted = pixels.to_rgba8(data, 1, 1, "RGBA", "F32", "sRGB-elle-V2-srgbtrc.icc")
    assert converted.rgba == bytes([255, 0, 128, 255])
    assert any("clipped" in note for note in converted.notes)


@pytest.mark.parametrize("depth", ["U8", "U16", "F16", "F32"])
def test_grey_documents_become_grey_rgb(depth):
    profile = "Gray-D50-elle-V2-g10.icc" if depth.startswith("F") else "Gray-D50-elle-V2-srgbtrc.icc"
    data = _doc_bytes("GRAYA", depth, [(0.0, 1.0), (1.0, 0.5)])
    rgba = pixels.to_rgba8(data, 2, 1, "GRAYA", depth, profile).rgba
    assert rgba == bytes([0, 0, 0, 255, 255, 255, 255, 128])


@pytest.mark.parametrize("depth", ["U16", "F16", "F32"])
def test_standard_library_path_matches_numpy(monkeypatch, depth):
    values = [(i / 97 % 1.0, (i * 7) / 97 % 1.0, (i * 13) / 97 % 1.0, (i * 3) / 97 % 1.0) for i in range(97)]
    data = _doc_bytes("RGBA", depth, values)
    with_numpy = pixels.to_rgba8(data, 97, 1, "RGBA", depth, "sRGB-elle-V2-g10.icc").rgba
    monkeypatch.setattr(pixels, "np", None)
    without = pixels.to_rgba8(data, 97, 1, "RGBA", depth, "sRGB-elle-V2-g10.icc").rgba
    assert max(abs(a - b) for a, b in zip(with_numpy, without, strict=True)) <= 1


def test_models_and_sizes_we_cannot_convert_are_refused():
    with pytest.raises(pixels.PixelFormatError, match="CMYKA"):
        pixels.to_rgba8(bytes(5), 1, 1, "CMYKA", "U8")
    with pytest.raises(pixels.PixelFormatError, match="expected 16 bytes"):
        pixels.to_rgba8(bytes(15), 2, 2, "RGBA", "U8")
    assert pixels.needs_krita_conversion("RGBA", "AdobeRGB1998.icc")
    assert pixels.needs_krita_conversion("LABA", "Lab identity built-in")
    assert not pixels.needs_krita_conversion("RGBA", "sRGB-elle-V2-g10.icc")


def test_blend_keeps_protection_only_inside_the_selection(monkeypatch):
    original = bytes([100, 100, 100, 200] * 3)
    protected = bytes([108, 92, 100, 255] * 3)
    mask = bytes([0, 128, 255])
    for numpy_module in (pixels.np, None):
        monkeypatch.setattr(pixels, "np", numpy_module)
        out = pixels.blend_in_mask(original, protected, mask)
        assert out[0:4] == original[0:4]
        assert out[4:8] == bytes([104, 96, 100, 200])
        assert out[8:12] == bytes([108, 92, 100, 200])  # alpha is always the original's


# --- PNG codec ----------------------------------------------------------------------------------
def test_png_round_trip_and_pillow_compatibility(small_artwork):
    image = small_artwork.crop((0, 0, 61, 47)).convert("RGBA")
    rgba = image.tobytes()
    encoded = pngio.encode(rgba, 61, 47)
    assert Image.open(io.BytesIO(encoded)).convert("RGBA").tobytes() == rgba
    for mode in ("RGB", "RGBA", "L", "LA"):  # Pillow picks adaptive filters (Sub/Up/Avg/Paeth)
        buffer = io.BytesIO()
        image.convert(mode).save(buffer, "PNG", optimize=True)
        width, height, decoded = pngio.decode(buffer.getvalue())
        assert (width, height) == (61, 47)
        assert decoded == image.convert(mode).convert("RGBA").tobytes()
    rgb_only = pngio.encode(rgba, 61, 47, keep_alpha=False)
    assert Image.open(io.BytesIO(rgb_only)).mode == "RGB"
    grey = pngio.encode_grey(bytes(range(12)), 4, 3)
    assert Image.open(io.BytesIO(grey)).tobytes() == bytes(range(12))


def test_metadata_chunks_are_found_and_carried():
    info = PngImagePlugin.PngInfo()
    info.add_itxt("fixative", json.dumps({"method": "style"}))
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2)).save(buffer, "PNG", pnginfo=info)
    carried = pngio.metadata_chunks(buffer.getvalue())
    assert any(kind == b"iTXt" and b"fixative" in payload for kind, payload in carried)
    rebuilt = pngio.encode(bytes(16), 2, 2, extra=carried)
    assert json.loads(Image.open(io.BytesIO(rebuilt)).text["fixative"]) == {"method": "style"}
    with pytest.raises(pngio.PngError):
        pngio.decode(b"GIF89a")


# --- settings -----------------------------------------------------------------------------------
def test_settings_round_trip_through_krita_and_survive_bad_values(tmp_path):
    app = krita.Krita()
    assert settings.load(app) == settings.ProtectSettings()
    chosen = settings.ProtectSettings(
        method="edit",
        intensity="high",
        quality="fast",
        output_format="webp",
        output_dir=str(tmp_path),
        source="layer",
        steps=12,
        max_side=1024,
    )
    settings.save(app, chosen)
    assert settings.load(app) == chosen
    app.writeSetting(settings.GROUP, "method", "nonsense")
    app.writeSetting(settings.GROUP, "steps", "lots")
    loaded = settings.load(app)
    assert loaded.method == "style" and loaded.steps == 0 and loaded.intensity == "high"
    assert chosen.engine_options("webp") == {
        "method": "edit",
        "intensity": "high",
        "quality": "fast",
        "format": "webp",
        "seed": 0,
        "preview": True,
        "steps": 12,
    }
    # the longest side posted goes with an export only: a new layer must match the canvas
    assert chosen.engine_options("png", export=True)["max_side"] == 1024
    app.writeSetting(settings.GROUP, "max_side", "-5")
    assert settings.load(app).max_side == 0


def test_output_paths_never_clobber(tmp_path):
    ours = settings.ProtectSettings(output_format="jpg")
    expected = str(tmp_path / "wave.protected.jpg")
    assert settings.default_output_path(str(tmp_path / "wave.kra"), ours) == expected
    (tmp_path / "wave.protected.jpg").write_bytes(b"x")
    assert settings.unique_path(expected) == str(tmp_path / "wave.protected-2.jpg")
    elsewhere = settings.ProtectSettings(output_dir=str(tmp_path / "out"))
    expected = str(tmp_path / "out" / "Untitled.protected.png")
    assert settings.default_output_path("", elsewhere, "Untitled") == expected


# --- engine jobs (worker thread, fake clients) -----------------------------------------------------
class FakeEngine:
    """Behaves like ``EngineClient.protect``: progress callbacks, cancellation, a PNG back."""

    def __init__(self, steps: int = 3, fail: str | None = None, delay: float = 0.0, shift: int = 4):
        self.steps, self.fail, self.delay, self.shift = steps, fail, delay, shift
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
        self.calls.append({"image": image_bytes, "options": options, "filename": filename, "mask": mask})
        for step in range(1, self.steps + 1):
            if should_cancel and should_cancel():
                raise fixative_client.EngineCancelled("cancelled")
            if on_progress:
                on_progress(
                    {
                        "state": "running",
                        "progress": step / self.steps,
                        "step": step,
                        "total": self.steps,
                        "eta": (self.steps - step) * 0.5,
                    }
                )
            time.sleep(self.delay)
        if self.fail:
            raise fixative_client.EngineError(self.fail, status=422)
        width, height, rgba = pngio.decode(image_bytes)
        shifted = bytearray(rgba)
        for i in range(0, len(shifted), 4):
            shifted[i] = min(255, shifted[i] + self.shift)
        info = PngImagePlugin.PngInfo()
        info.add_itxt("fixative", json.dumps({"method": options["method"]}))
        buffer = io.BytesIO()
        Image.frombytes("RGBA", (width, height), bytes(shifted)).save(buffer, "PNG", pnginfo=info)
        return buffer.getvalue(), {
            "strength": 0.5,
            "encoders": [
                {"name": "taef2", "noise_strength": 0.02, "vs_noise": 25.0, "decoded_share": 0.3},
            ],
            "perceptual": {"psnr_db": 40.0, "linf_255": 4},
            "seconds": 0.1,
            "notes": ["engine note"],
        }


def _wait(job_or_controller, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if isinstance(job_or_controller, operations.Controller):
            finished = job_or_controller.poll()
            if finished is not None:
                return finished
        elif job_or_controller.finished:
            return job_or_controller.snapshot()
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_job_reports_progress_and_result_off_the_calling_thread():
    fake = FakeEngine(steps=4, delay=0.05)
    job = engine.ProtectJob(
        pngio.encode(bytes(4 * 4), 2, 2), {"method": "style"}, client_factory=lambda: fake
    )
    assert job.snapshot()["state"] == "starting"
    job.start()
    seen = set()
    deadline = time.monotonic() + 10
    while not job.finished and time.monotonic() < deadline:
        seen.add(job.snapshot()["step"])
        time.sleep(0.01)
    status = job.snapshot()
    assert status["state"] == "done" and status["progress"] == 1.0
    assert seen & {1, 2, 3}, "progress was not visible while the job ran"
    assert job.result_bytes.startswith(pngio.SIGNATURE) and job.report["strength"] == 0.5


def test_job_cancel_and_failure_are_one_line_states():
    slow = FakeEngine(steps=50, delay=0.02)
    job = engine.ProtectJob(pngio.encode(bytes(4), 1, 1), {"method": "style"}, client_factory=lambda: slow)
    job.start()
    time.sleep(0.1)
    job.cancel()
    assert _wait(job)["state"] == "cancelled" and job.result_bytes is None
    failing = FakeEngine(fail="image too small for the encoder\nsecond line")
    job = engine.ProtectJob(pngio.encode(bytes(4), 1, 1), {}, client_factory=lambda: failing)
    status = _wait(job.start())
    assert status["state"] == "failed" and status["error"] == "image too small for the encoder"


def test_missing_engine_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path / "config"))
    status = _wait(engine.ProtectJob(b"png", {}, client_factory=fixative_client.ensure_engine).start())
    assert status["state"] == "failed" and "fixative install" in status["error"]
    checker = engine.EngineStatus()
    assert checker.check_now()[0] == "missing"
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "engine.json").write_text(json.dumps({"command": ["fixative", "serve"]}))
    assert checker.check_now()[0] == "stopped"
    running = engine.EngineStatus(
        discover=lambda: type("C", (), {"health": lambda self: {"version": "9"}})(),
        engine_recorded=lambda: True,
    )
    assert running.check_now() == ("running", "Engine running (9).")
    assert engine.format_eta(75) == "1 min 15 s" and engine.format_eta(3) == "3 s"


# --- the two actions, end to end against mock documents ----------------------------------------------
def _checker_document(
    model="RGBA", depth="U8", profile="sRGB-elle-V2-srgbtrc.icc", path="", selection=None, width=8, height=6
):
    logical = [
        ((x * 30 % 256) / 255, (y * 40 % 256) / 255, 0.5, 1.0) for y in range(height) for x in range(width)
    ]
    if model == "GRAYA":
        logical = [(r, a) for r, _, _, a in logical]
    data = _doc_bytes(model, depth, logical)
    return krita.Document(width, height, model, depth, profile, data, path=path, selection=selection)


def test_export_writes_the_engines_file_and_never_the_document(tmp_path):
    fake = FakeEngine()
    controller = operations.Controller(client_factory=lambda: fake)
    document = _checker_document(path=str(tmp_path / "wave.png"))
    with pytest.raises(operations.OperationError, match="overwrite the document"):
        controller.start_export(document, str(tmp_path / "wave.png"), settings.ProtectSettings())
    with pytest.raises(operations.OperationError, match=r"\.png, \.jpg"):
        controller.start_export(document, str(tmp_path / "wave.gif"), settings.ProtectSettings())
    out = tmp_path / "wave.protected.png"
    operation = controller.start_export(document, str(out), settings.ProtectSettings(method="concept"))
    assert controller.busy
    with pytest.raises(operations.OperationError, match="already running"):
        controller.start_new_layer(document, settings.ProtectSettings())
    finished = _wait(controller)
    assert finished is operation and finished.state == "done", finished.message
    assert fake.calls[0]["options"]["method"] == "concept" and fake.calls[0]["mask"] is None
    sent = Image.open(io.BytesIO(fake.calls[0]["image"]))
    assert sent.mode == "RGB" and sent.size == (8, 6)  # opaque canvas goes as RGB
    assert Image.open(out).text["fixative"] and "strength 0.50 (matched noise 0.02, 25×)" in finished.message
    # a figure the engine did not measure is said to be missing, never filled in
    assert "what the model sees 0.30 (matched noise not measured) of the way" in finished.message
    assert "engine note" in finished.notes
    with pytest.raises(operations.OperationError, match="already exists"):
        controller.start_export(document, str(out), settings.ProtectSettings())
    posted = settings.ProtectSettings(max_side=640)
    controller.start_new_layer(document, posted)
    _wait(controller)
    controller.start_export(document, str(tmp_path / "posted.png"), posted)
    _wait(controller)
    assert "max_side" not in fake.calls[1]["options"] and fake.calls[2]["options"]["max_side"] == 640


def test_export_with_selection_sends_the_selection_as_the_engines_mask(tmp_path):
    selection = krita.Selection(2, 1, [bytes([255, 255, 128])] * 2)
    document = _checker_document(selection=selection)
    fake = FakeEngine()
    controller = operations.Controller(client_factory=lambda: fake)
    controller.start_export(document, str(tmp_path / "sel.webp"), settings.ProtectSettings())
    finished = _wait(controller)
    assert finished.state == "done", finished.message
    mask = Image.open(io.BytesIO(fake.calls[0]["mask"]))
    assert mask.mode == "L" and mask.size == (8, 6)
    assert mask.getpixel((2, 1)) == 255 and mask.getpixel((4, 2)) == 128 and mask.getpixel((0, 0)) == 0
    assert fake.calls[0]["options"]["format"] == "webp"
    assert any("only the selection" in note for note in finished.notes)


@pytest.mark.parametrize(
    "depth,profile",
    [
        ("U8", "sRGB-elle-V2-srgbtrc.icc"),
        ("U16", "sRGB-elle-V2-srgbtrc.icc"),
        ("F16", "sRGB-elle-V2-g10.icc"),
        ("F32", "sRGB-elle-V2-g10.icc"),
    ],
)
def test_protect_into_new_layer_adds_an_exact_8bit_layer_above(depth, profile):
    selection = krita.Selection(1, 1, [bytes([255, 0, 255])] * 3)
    document = _checker_document(depth=depth, profile=profile, selection=selection)
    fake = FakeEngine(shift=6)
    controller = operations.Controller(client_factory=lambda: fake)
    controller.start_new_layer(document, settings.ProtectSettings(method="edit"))
    finished = _wait(controller)
    assert finished.state == "done", finished.message
    sent = Image.open(io.BytesIO(fake.calls[0]["image"]))
    assert sent.size == (3, 3)  # only the selection's bounds went to the engine
    layers = document.rootNode().childNodes()
    assert [layer.name() for layer in layers] == ["Background", "Protected (edit)"]
    layer = layers[-1]
    assert (layer.colorModel(), layer.colorDepth()) == ("RGBA", "U8")
    original = pixels.to_rgba8(document.pixelData(0, 0, 8, 6), 8, 6, "RGBA", depth, profile).rgba
    written = layer.pixelData(0, 0, 8, 6)  # BGRA

    def red(data, x, y, offset):
        return data[(y * 8 + x) * 4 + offset]

    assert red(written, 1, 1, 2) == min(255, red(original, 1, 1, 0) + 6)  # selected: shifted red
    assert red(written, 2, 1, 2) == red(original, 2, 1, 0)  # mask 0 inside the bounds: untouched
    assert written[(0 * 8 + 0) * 4 + 3] == 0  # outside the bounds the layer is transparent
    untouched = _checker_document(depth=depth, profile=profile)
    assert document.pixelData(0, 0, 8, 6) == untouched.pixelData(0, 0, 8, 6)
    assert document.refreshed >= 1
    assert (depth != "U8") == any("8-bit sRGB" in note for note in finished.notes)


def test_layer_source_and_unconvertible_layers():
    document = _checker_document(model="GRAYA", profile="Gray-D50-elle-V2-srgbtrc.icc")
    captured = operations.capture(document, "layer")
    assert captured.rgba[0] == captured.rgba[1] == captured.rgba[2]
    cmyk = krita.Document(2, 2, "CMYKA", "U8", "Chemical proof", bytes(20))
    with pytest.raises(operations.OperationError, match="convert it to RGB"):
        operations.capture(cmyk, "layer")
    with pytest.raises(operations.OperationError, match="Open an image"):
        operations.capture(None)
    empty = _checker_document(selection=krita.Selection(0, 0, [bytes(2)]))
    with pytest.raises(operations.OperationError, match="selection is empty"):
        operations.capture(empty)


def test_engine_failure_leaves_no_file_and_no_layer(tmp_path):
    document = _checker_document()
    controller = operations.Controller(client_factory=lambda: FakeEngine(fail="no encoder found"))
    controller.start_export(document, str(tmp_path / "x.png"), settings.ProtectSettings())
    finished = _wait(controller)
    assert finished.state == "failed" and finished.message == "no encoder found"
    assert not (tmp_path / "x.png").exists() and list(tmp_path.iterdir()) == []
    controller.start_new_layer(document, settings.ProtectSettings())
    assert _wait(controller).state == "failed"
    assert len(document.rootNode().childNodes()) == 1


def test_package_registers_only_inside_krita(monkeypatch):
    import importlib

    import fixative_krita

    assert krita.Krita.instance() is None
    importlib.reload(fixative_krita)  # outside Krita: nothing registered, nothing crashes
    assert not hasattr(fixative_krita, "_app")


# --- installer ----------------------------------------------------------------------------------
def test_resource_and_kritarc_paths_per_os(tmp_path):
    from fixative.hosts.install import krita as inst

    home = tmp_path
    assert inst.krita_resource_dir("linux", {}, home) == home / ".local" / "share" / "krita"
    assert inst.krita_resource_dir("linux", {"XDG_DATA_HOME": "/x"}, home) == Path("/x/krita")
    assert inst.krita_resource_dir("win32", {"APPDATA": "C:/A"}, home) == Path("C:/A/krita")
    assert inst.krita_resource_dir("darwin", {}, home) == home / "Library" / "Application Support" / "krita"
    assert inst.kritarc_path("linux", {}, home) == home / ".config" / "kritarc"
    assert inst.kritarc_path("win32", {"LOCALAPPDATA": "C:/L"}, home) == Path("C:/L/kritarc")
    assert inst.kritarc_path("darwin", {}, home) == home / "Library" / "Preferences" / "kritarc"


def test_kritarc_edit_keeps_everything_else():
    from fixative.hosts.install.krita import enable_in_kritarc

    original = (
        "[General]\nCase=Kept\nweird[$e]=$HOME/x\n\n[python]\nenable_other=true\n\n[Theme]\nName=Dark\n"
    )
    edited = enable_in_kritarc(original)
    ours = "enable_other=true\nenable_fixative_krita=true\n"
    assert edited == original.replace("enable_other=true\n", ours)
    assert enable_in_kritarc(edited) == edited
    switched_off = original.replace("other=true", "fixative_krita=false")
    assert enable_in_kritarc(switched_off).count("fixative_krita=true") == 1
    assert enable_in_kritarc("") == "[python]\nenable_fixative_krita=true\n"
    assert enable_in_kritarc("[A]\r\nb=1\r\n").endswith("\r\n[python]\r\nenable_fixative_krita=true\r\n")


def test_fixative_install_krita_cli(tmp_path, monkeypatch, capsys):
    from fixative.hosts.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / ".local" / "share"))
    monkeypatch.delenv("FIXATIVE_CONFIG_DIR", raising=False)
    (tmp_path / ".config").mkdir()
    (tmp_path / ".config" / "kritarc").write_text("[General]\nkept=1\n")
    (tmp_path / ".config" / "fixative").mkdir()
    (tmp_path / ".config" / "fixative" / "engine.json").write_text(json.dumps({"other": 1}))
    assert main(["install", "krita"]) == 0
    pykrita = tmp_path / ".local" / "share" / "krita" / "pykrita"
    assert (pykrita / "fixative_krita.desktop").read_text().count("X-KDE-Library=fixative_krita") == 1
    installed_client = pykrita / "fixative_krita" / "fixative_client.py"
    assert installed_client.read_bytes() == Path(fixative_client.__file__).read_bytes()
    assert (pykrita / "fixative_krita" / "operations.py").is_file()
    assert "kept=1" in (tmp_path / ".config" / "kritarc").read_text()
    assert "[python]\nenable_fixative_krita=true" in (tmp_path / ".config" / "kritarc").read_text()
    recorded = json.loads((tmp_path / ".config" / "fixative" / "engine.json").read_text())
    assert recorded == {"other": 1, "command": [sys.executable, "-m", "fixative", "serve", "--ready-line"]}
    assert "Restart Krita" in capsys.readouterr().out
    custom = tmp_path / "res"
    assert main(["install", "krita", "--resource-dir", str(custom)]) == 0
    assert (custom / "pykrita" / "fixative_krita" / "__init__.py").is_file()
    assert not (ROOT / "plugins" / "krita" / "fixative_krita" / "fixative_client.py").exists()


def test_installed_package_uses_its_own_client_copy(tmp_path):
    """The package imports the client copied next to it (Krita's Python has no fixative package)."""
    import subprocess

    from fixative.hosts.install import krita as inst

    inst.install(tmp_path / "res", kritarc=tmp_path / "kritarc", config_dir=tmp_path / "cfg")
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; sys.modules['fixative'] = None\n"
        "from fixative_krita import engine; print(engine.client.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "res" / "pykrita")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "fixative_krita.fixative_client", out.stderr


class FakeDownloader:
    """The stdlib client's ``get_model`` as the engine answers it: progress, then done (or cancelled)."""

    def __init__(self, chunks: int = 20, delay: float = 0.01, fail: str | None = None) -> None:
        self.chunks, self.delay, self.fail = chunks, delay, fail
        self.asked: list[str] = []

    def get_model(self, name, on_progress=None, should_cancel=None, poll=0.3):
        self.asked.append(name)
        total = 5_400_000
        for index in range(1, self.chunks + 1):
            if should_cancel is not None and should_cancel():
                raise fixative_client.EngineCancelled("the download was cancelled")
            on_progress({"file": "taef2_encoder.pth", "done": total * index // self.chunks, "total": total})
            time.sleep(self.delay)
        if self.fail:
            raise fixative_client.EngineError(self.fail)
        return {"state": "done", "paths": ["/cache/taef2_encoder.pth"]}


def test_the_docker_can_get_the_recommended_encoder_through_the_engine():
    """issue 20: no encoder -> the docker's button; the download shows progress, can be cancelled, and a
    checksum failure is one line."""
    empty = type("C", (), {"health": lambda self: {"version": "9"}, "models": lambda self: []})()
    status = engine.EngineStatus(discover=lambda: empty, engine_recorded=lambda: True)
    assert status.check_now()[0] == "no-encoder"
    assert engine.needs_encoder(
        "no image encoder found. Get the recommended one with `fixative models --get taef2`"
    )

    fake = FakeDownloader()
    download = engine.EncoderDownload(client_factory=lambda: fake).start()
    seen = set()
    while not download.finished:
        seen.add(round(download.snapshot()["progress"], 1))
        time.sleep(0.005)
    assert download.snapshot()["state"] == "done" and fake.asked == ["taef2"]
    assert len(seen) > 2, "progress was not visible while it downloaded"

    slow = engine.EncoderDownload(client_factory=lambda: FakeDownloader(chunks=200)).start()
    time.sleep(0.05)
    slow.cancel()
    assert slow.wait(10)["state"] == "cancelled" and "nothing was kept" in slow.snapshot()["message"]

    bad = engine.EncoderDownload(
        client_factory=lambda: FakeDownloader(fail="taef2_encoder.pth: checksum mismatch")
    )
    final = bad.start().wait(10)
    assert final["state"] == "failed" and "checksum mismatch" in final["message"]


EXPORT_DIALOG_PROBE = """
import json, sys, types
from PyQt5.QtWidgets import QApplication
app = QApplication([])
sys.modules["krita"] = types.ModuleType("krita")  # ui.py needs only Qt
from fixative_krita import ui
from fixative_krita.settings import ProtectSettings
dialog = ui.ExportDialog(ProtectSettings(max_side=800), "/nowhere/art.protected.png")
shown = [dialog.max_side.text()]
dialog.max_side.setValue(0)
shown.append(dialog.max_side.text())
dialog.max_side.setValue(1024)
chosen = dialog.settings()
print(json.dumps({"shown": shown, "chosen": chosen.max_side,
                  "export": chosen.engine_options("png", export=True).get("max_side"),
                  "layer": chosen.engine_options("png").get("max_side")}))
"""


def test_the_export_dialog_offers_the_longest_side_posted_in_real_pyqt(tmp_path):
    """The dialog's own widgets, in the PyQt5 that Krita's Python uses (the system's), off screen."""
    import subprocess

    python = Path("/usr/bin/python3")
    if not python.exists() or subprocess.run([python, "-c", "import PyQt5.QtWidgets"]).returncode != 0:
        pytest.skip("no system Python with PyQt5 (Debian's python3-pyqt5 comes with Krita)")
    env = {"QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path),
           "PYTHONPATH": str(ROOT / "plugins" / "krita"), "PATH": "/usr/bin:/bin"}  # fmt: skip
    tmp_path.chmod(0o700)
    done = subprocess.run(
        [python, "-c", EXPORT_DIALOG_PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe == {"shown": ["800 px", "full size"], "chosen": 1024, "export": 1024, "layer": None}


def test_the_measuring_after_the_last_step_is_said():
    job = engine.ProtectJob(pngio.encode(bytes(4), 1, 1), {}, client_factory=lambda: FakeEngine())
    job._on_progress({"state": "running", "step": 20, "total": 20, "eta": None, "doing": "transfer"})
    assert job.snapshot()["message"] == "Measuring transfer…"
