"""The plug-in inside a real Krita (Debian's ``krita`` on a virtual X display) and a real ``fixative serve``.

Flow: temp HOME -> ``fixative install krita`` -> a tiny driver plug-in (also enabled in kritarc) that opens
an artwork, checks Krita's real pixel layouts for 16-bit integer and 16/32-bit float against the plug-in's
conversions, triggers the **Export Protected Copy…** action on its non-interactive path, waits for the job
and quits. Krita exits 0 even when a script fails, so everything is judged from the driver's result file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import DEFAULT_EPS_255
from .display import alive, virtual_display

pytestmark = pytest.mark.editor

KRITA_TIMEOUT = 420

DRIVER = r'''
import json, os, sys, time, traceback
from krita import Extension, Krita
try:
    from PyQt5.QtCore import QTimer
except ImportError:
    from PyQt6.QtCore import QTimer

RESULT = os.environ["FIXATIVE_KRITA_TEST_RESULT"]
IMAGE = os.environ["FIXATIVE_KRITA_TEST_IMAGE"]
OUT_DIR = os.environ["FIXATIVE_KRITA_TEST_OUT"]
state = {"log": []}


def write(**values):
    state.update(values)
    with open(RESULT + ".tmp", "w") as handle:
        json.dump(state, handle, indent=1)
    os.replace(RESULT + ".tmp", RESULT)


def quit_krita():
    timer = QTimer()
    timer.setInterval(2000)
    timer.timeout.connect(lambda: Krita.instance().action("file_quit").trigger())
    timer.start()
    state["quit_timer"] = timer
    Krita.instance().action("file_quit").trigger()


def layout_probe(doc):
    """Krita converts a copy to each depth with LCMS; the plug-in must read back the same 8-bit pixels."""
    from fixative_krita import pixels
    w, h = doc.width(), doc.height()
    base = pixels.to_rgba8(bytes(doc.pixelData(0, 0, w, h)), w, h, doc.colorModel(), doc.colorDepth(),
                           doc.colorProfile()).rgba
    report = {}
    for depth, profile in (("U16", "sRGB-elle-V2-srgbtrc.icc"), ("F16", "sRGB-elle-V2-g10.icc"),
                           ("F32", "sRGB-elle-V2-g10.icc")):
        copy = doc.clone()
        copy.setBatchmode(True)
        copy.setColorSpace("RGBA", depth, profile)
        copy.waitForDone()
        copy.refreshProjection()
        converted = pixels.to_rgba8(bytes(copy.pixelData(0, 0, w, h)), w, h, copy.colorModel(),
                                    copy.colorDepth(), copy.colorProfile())
        diff = max(abs(a - b) for a, b in zip(base, converted.rgba))
        report[depth] = {"max_diff": diff, "profile": copy.colorProfile(), "notes": converted.notes}
        copy.close()
    return report


class Driver(Extension):
    def __init__(self, parent):
        super().__init__(parent)
        self.started = time.monotonic()

    def setup(self):
        Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(500, self.run))

    def createActions(self, window):
        pass

    def run(self):
        try:
            app = Krita.instance()
            import fixative_krita.extension as ext
            write(plugin_loaded=ext.instance() is not None,
                  actions={name: app.action(name) is not None
                           for name in ("fixative_export_protected_copy", "fixative_protect_new_layer")},
                  docker=any(d.windowTitle() == "Fixative" for d in app.dockers()))
            doc = app.openDocument(IMAGE)
            app.activeWindow().addView(doc)
            app.setActiveDocument(doc)
            doc.waitForDone()
            write(document={"size": [doc.width(), doc.height()], "model": doc.colorModel(),
                            "depth": doc.colorDepth(), "profile": doc.colorProfile()})
            write(layouts=layout_probe(doc))
            app.writeSetting("fixative", "output_dir", OUT_DIR)
            app.writeSetting("fixative", "quality", "fast")
            app.writeSetting("fixative", "steps", "3")
            app.action("fixative_export_protected_copy").trigger()
            self.timer = QTimer()
            self.timer.setInterval(300)
            self.timer.timeout.connect(self.poll)
            self.timer.start()
        except Exception:
            write(error=traceback.format_exc())
            quit_krita()

    def poll(self):
        try:
            import fixative_krita.extension as ext
            controller = ext.instance().controller
            if controller.current is not None:
                state["log"].append(controller.current.job.snapshot()["message"])
                limit = float(os.environ.get("FIXATIVE_KRITA_TEST_LIMIT", "300"))
                if time.monotonic() - self.started > limit:
                    controller.cancel()
                return
            self.timer.stop()
            op = controller.last
            write(operation=None if op is None else {
                "state": op.state, "message": op.message, "path": op.result_path, "notes": op.notes,
                "report": {k: v for k, v in op.report.items() if k in ("strength", "perceptual", "steps")},
                "model_view": "model_view_png_base64" in op.report})
            docks = [d for d in Krita.instance().dockers() if d.windowTitle() == "Fixative"]
            bodies = [getattr(d, "body", None) for d in docks]
            write(docker_preview=[b.preview_caption.text() for b in bodies if b is not None])
        except Exception:
            write(error=traceback.format_exc())
        quit_krita()


Krita.instance().addExtension(Driver(Krita.instance()))
'''

DESKTOP = """[Desktop Entry]
Type=Service
ServiceTypes=Krita/PythonPlugin
X-KDE-Library=fixative_test_driver
X-Python-2-Compatible=false
Name=Fixative test driver
"""


def _needs(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        pytest.skip(f"{program} is not installed (apt-get install krita xvfb)")
    return path


@pytest.fixture
def krita_home(tmp_path, taef2_path):
    _needs("krita")
    _needs("Xvfb")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "FIXATIVE_CONFIG"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        TMPDIR=str(tmp_path / "run"),  # Krita's krita-opengl.txt
        QT_QPA_PLATFORM="xcb",
        FIXATIVE_MODELS=str(taef2_path.parents[1]),
        HF_HUB_OFFLINE="1",
    )
    (tmp_path / "run").mkdir(mode=0o700)
    home.mkdir()
    install = subprocess.run(
        [sys.executable, "-m", "fixative", "install", "krita"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert install.returncode == 0, install.stderr
    assert "Restart Krita" in install.stdout
    pykrita = home / ".local/share/krita/pykrita"
    driver = pykrita / "fixative_test_driver"
    driver.mkdir()
    (driver / "__init__.py").write_text(textwrap.dedent(DRIVER))
    (pykrita / "fixative_test_driver.desktop").write_text(DESKTOP)
    kritarc = home / ".config" / "kritarc"
    text = kritarc.read_text()
    assert "enable_fixative_krita=true" in text
    kritarc.write_text(
        text.replace(
            "enable_fixative_krita=true", "enable_fixative_krita=true\nenable_fixative_test_driver=true"
        )
    )
    return home, env


@pytest.fixture
def engine(krita_home, taef2_path):
    """``fixative serve`` pinned to taef2, found by the plug-in through server.json in the temp HOME."""
    home, env = krita_home
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fixative",
            "serve",
            "--port",
            "0",
            "--ready-line",
            "--model",
            str(taef2_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(home / "serve.log", "wb"),
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        line = ""
        while time.monotonic() < deadline and not line.startswith("FIXATIVE_READY"):
            line = server.stdout.readline()
            if not line and server.poll() is not None:
                pytest.fail("fixative serve exited: " + (home / "serve.log").read_text()[-2000:])
        assert line.startswith("FIXATIVE_READY"), "fixative serve never printed its ready line"
        yield server
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_export_action_inside_krita(krita_home, engine, tmp_path, artwork_path):
    home, env = krita_home
    source = tmp_path / "wave.png"
    image = Image.open(artwork_path).convert("RGB")
    image.thumbnail((96, 96))
    image.save(source)
    original_bytes = source.read_bytes()
    out_dir = tmp_path / "exports"
    result_file = tmp_path / "result.json"
    env = dict(
        env,
        FIXATIVE_KRITA_BATCH="1",
        FIXATIVE_KRITA_TEST_RESULT=str(result_file),
        FIXATIVE_KRITA_TEST_IMAGE=str(source),
        FIXATIVE_KRITA_TEST_OUT=str(out_dir),
        FIXATIVE_KRITA_TEST_LIMIT=str(KRITA_TIMEOUT - 60),
    )
    for attempt in (1, 2):
        log, display_lost = _run_krita(env, result_file)
        # Krita that could not reach the display never ran the driver: once, on a fresh display, again
        if result_file.exists() or "could not connect to display" not in log or attempt == 2:
            break
    lost = " (the X server had stopped answering)" if display_lost else ""
    assert result_file.exists(), f"the driver never ran{lost}; Krita said:\n{log}"
    result = json.loads(result_file.read_text())
    assert "error" not in result, result["error"]
    assert result["plugin_loaded"], f"the plug-in did not load:\n{log}"
    assert all(result["actions"].values()), result["actions"]
    assert result["docker"], "the Fixative docker was not created"
    for depth, probe in result["layouts"].items():  # Krita's real memory layouts match our conversions
        assert probe["max_diff"] <= 1, (depth, probe)
    operation = result["operation"]
    assert operation and operation["state"] == "done", operation
    assert operation["model_view"], "the engine sent no 'what the model sees' preview"
    assert result["docker_preview"] == ["What the model sees"], result["docker_preview"]
    exported = Path(operation["path"])
    assert exported == out_dir / "wave.protected.png" and exported.is_file()
    protected = Image.open(exported)
    assert protected.size == image.size
    delta = np.abs(np.asarray(protected.convert("RGB"), dtype=int) - np.asarray(image, dtype=int))
    assert 0 < delta.max() <= DEFAULT_EPS_255, delta.max()
    from fixative.load import load_image

    metadata = load_image(exported).metadata
    assert metadata and metadata.get("method") == "style", metadata
    assert source.read_bytes() == original_bytes, "the opened artwork was modified"


def _run_krita(env: dict[str, str], result_file: Path) -> tuple[str, bool]:
    """Krita on a fresh virtual display until it quits: the tail of its output, and whether the display had
    stopped answering by then (a failure of the machine's X server, not of the plug-in)."""
    with virtual_display() as display:
        if display is None:
            pytest.skip("Xvfb did not start: Krita needs a display")
        process = subprocess.Popen(
            ["krita", "--nosplash"],
            env=dict(env, DISPLAY=display),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = process.communicate(timeout=KRITA_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            partial = result_file.read_text() if result_file.exists() else "no result file"
            pytest.fail(f"Krita did not finish within {KRITA_TIMEOUT} s; driver state: {partial[-3000:]}")
        return output.decode(errors="replace")[-4000:], not alive(display)
