"""The GIMP 3 plug-in inside a real GIMP 3 (Debian 13 chroot), talking to a real ``fixative serve``.

Debian 12 ships GIMP 2.10 without Python, so ``.ci/run`` builds (once, then reuses) a Debian 13 chroot
with ``gimp python3-gi gir1.2-gimp-3.0`` (``tests/gimp_chroot.sh``). The test bind-mounts a scratch
folder of the checkout over the chroot's /mnt (GIMP's HOME and temporary folder live there, so nothing is
written into the chroot), installs the plug-in there with ``fixative install gimp``, starts the engine on
the host (the chroot shares the host's loopback), and runs ``gimp-console-3.0`` batch scripts that call
the export type and the filter non-interactively. Each batch writes a JSON report; pixels and metadata
are checked here with Fixative's own loader.

Skips (with the reason) when not root, when the chroot is not built, or when the model is absent.
Env: FIXATIVE_GIMP_CHROOT (chroot folder). The dialog test also needs Xvfb on the host (it skips without).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixative import fixative_client

from .display import virtual_display

pytestmark = pytest.mark.editor

ROOT = Path(__file__).resolve().parents[1]
CHROOT = Path(os.environ.get("FIXATIVE_GIMP_CHROOT", "/var/cache/fixative-gimp-chroot"))
BATCH_TIMEOUT = 420.0
SERVER_START_TIMEOUT = 120.0
INSIDE = "/mnt"  # the scratch folder (in the checkout) as GIMP sees it, bind-mounted over the chroot's /mnt
PLUGINS = "home/.config/GIMP/3.0/plug-ins"  # below the scratch folder: GIMP's HOME is in it too


def _kill_group(process: subprocess.Popen) -> None:
    """Stop a process we started and everything it spawned (GIMP starts one process per plug-in)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


@pytest.fixture(scope="module")
def chroot() -> Path:
    """The GIMP 3 chroot ``.ci/run`` builds (tests/gimp_chroot.sh); the tests never build it themselves."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the GIMP 3 chroot needs Linux and root (chroot, mount)")
    if shutil.which("chroot") is None:
        pytest.skip("no chroot command on this machine")
    if not (CHROOT / ".fixative-gimp-ready").exists():
        pytest.skip(f"no GIMP 3 chroot at {CHROOT}: .ci/run builds it (or run tests/gimp_chroot.sh as root)")
    return CHROOT


@pytest.fixture(scope="module")
def mounted(chroot):
    """/proc and /dev inside the chroot for the duration of the tests (GIMP and GLib expect both)."""
    mounted_points: list[Path] = []
    for source, target, args in (
        ("proc", chroot / "proc", ["-t", "proc"]),
        ("/dev", chroot / "dev", ["--bind"]),
    ):
        if os.path.ismount(target):
            continue
        done = subprocess.run(["mount", *args, source, str(target)], capture_output=True, text=True)
        if done.returncode == 0:
            mounted_points.append(target)
    yield chroot
    for target in reversed(mounted_points):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture(scope="module")
def workdir(mounted):
    """A scratch folder in the checkout, seen as /mnt from GIMP (a bind mount): everything the tests and
    GIMP write (plug-in install, GIMP's settings, temporary files) lands there, never in the chroot."""
    host = ROOT / ".test-scratch" / f"gimp-{uuid.uuid4().hex[:8]}"
    for sub in ("home", "tmp"):
        (host / sub).mkdir(parents=True)
    target = mounted / INSIDE.lstrip("/")
    if os.path.ismount(target):
        pytest.skip(f"{target} is already a mount point (another test run?)")
    done = subprocess.run(["mount", "--bind", str(host), str(target)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount the scratch folder into the chroot: {done.stderr.strip()}")
    try:
        yield host, INSIDE
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
        shutil.rmtree(host, ignore_errors=True)


@pytest.fixture(scope="module")
def artwork(workdir, artwork_path):
    """A ~256 px copy of a real artwork, inside the chroot."""
    host, inside = workdir
    image = Image.open(artwork_path).convert("RGB")
    image.thumbnail((256, 256))
    image.save(host / "art.png")
    return image


@pytest.fixture(scope="module")
def engine(workdir, taef2_path):
    """``fixative serve`` on the host, its token and server.json copied where the plug-in looks."""
    host, inside = workdir
    config = host / "host-config"
    config.mkdir()
    scratch = host / "host-tmp"  # the engine's job folders: a killed engine cannot leave them in /tmp
    scratch.mkdir()
    env = dict(
        os.environ,
        TMPDIR=str(scratch),
        FIXATIVE_CONFIG_DIR=str(config),
        FIXATIVE_MODELS=str(taef2_path.parents[1]),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="2",
    )
    log = open(host / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "fixative", "serve", "--ready-line", "--port", "0", "--model", "taef2"],
        stdout=subprocess.PIPE,
        stderr=log,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    url = None
    try:
        while time.monotonic() < deadline:
            line = process.stdout.readline().decode("utf-8", "replace")
            if not line:
                break
            if line.startswith(fixative_client.READY_PREFIX):
                url = json.loads(line[len(fixative_client.READY_PREFIX) :])["url"]
                break
        if url is None:
            _kill_group(process)
            log.close()
            pytest.fail(
                "fixative serve did not print its ready line: "
                + (host / "server.log").read_text(errors="replace")[-600:]
            )
        plugin_config = host / "config"
        plugin_config.mkdir()
        for name in (fixative_client.TOKEN_FILE, fixative_client.SERVER_FILE):
            shutil.copy2(config / name, plugin_config / name)
        client = fixative_client.EngineClient(url, token=(config / "token").read_text().strip())
        yield {"client": client, "config_inside": f"{inside}/config", "host_config": config, "env": env}
    finally:
        _kill_group(process)
        log.close()


@pytest.fixture(scope="module")
def installed(workdir, engine):
    """``fixative install gimp`` below the scratch HOME (engine.json: the test config)."""
    plugins = workdir[0] / PLUGINS
    command = [sys.executable, "-m", "fixative", "install", "gimp", "--plugins-dir", str(plugins)]
    done = subprocess.run(command, capture_output=True, text=True, env=engine["env"], timeout=120)
    assert done.returncode == 0, done.stderr
    script = plugins / "fixative-protect" / "fixative-protect.py"
    assert os.access(script, os.X_OK) and (script.parent / "fixative_client.py").is_file()
    engine_json = json.loads((engine["host_config"] / "engine.json").read_text())
    assert engine_json["command"] == [sys.executable, "-m", "fixative", "serve", "--ready-line"]
    return script


BATCH_PRELUDE = """
import json, traceback
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
W = {inside!r}
report = {{"steps": []}}

def run(name, **props):
    proc = Gimp.get_pdb().lookup_procedure(name)
    if proc is None:
        raise RuntimeError("procedure %s is not registered" % name)
    config = proc.create_config()
    for key, value in props.items():
        if isinstance(value, list):  # object arrays (drawables) have their own setter
            config.set_core_object_array(key, value)
        else:
            config.set_property(key, value)
    values = proc.run(config)
    status = values.index(0)
    if status != Gimp.PDBStatusType.SUCCESS:
        message = values.index(1) if values.length() > 1 else ""
        raise RuntimeError("%s failed (%s): %s" % (name, status, message))
    report["steps"].append(name)

def save_layer(layer, path):
    scratch = Gimp.Image.new(layer.get_width(), layer.get_height(), Gimp.ImageBaseType.RGB)
    copy = Gimp.Layer.new_from_drawable(layer, scratch)
    scratch.insert_layer(copy, None, 0)
    copy.set_offsets(0, 0)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, scratch, Gio.File.new_for_path(path), None)
    scratch.delete()

try:
    image = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(W + "/art.png"))
    common = dict(method="style", intensity="default", quality="fast", steps={steps}, models="taef2")
{body}
except Exception:
    report["error"] = traceback.format_exc()
with open(W + "/{report_name}", "w") as handle:
    json.dump(report, handle)
if "error" in report:
    raise RuntimeError(report["error"])
"""


def write_batch(host: Path, inside: str, body: str, report_name: str, steps: int) -> str:
    code = BATCH_PRELUDE.format(
        inside=inside,
        steps=steps,
        report_name=report_name,
        body=textwrap.indent(textwrap.dedent(body), "    "),
    )
    script = host / f"{report_name}.py"
    script.write_text(code)
    return f"{inside}/{report_name}.py"


def gimp_command(chroot: Path, batch_inside: str, config_inside: str, extra_env: tuple = ()) -> list[str]:
    env = [
        f"HOME={INSIDE}/home",
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "LANG=C.UTF-8",
        f"FIXATIVE_CONFIG_DIR={config_inside}",
        "NO_AT_BRIDGE=1",
        "GIO_USE_VFS=local",
        f"XDG_RUNTIME_DIR={INSIDE}/tmp",
        f"TMPDIR={INSIDE}/tmp",
        *extra_env,
    ]
    return [
        "chroot",
        str(chroot),
        "/usr/bin/env",
        "-i",
        *env,
        "gimp-console-3.0",
        "-i",
        "--no-data",
        "--no-fonts",
        "--batch-interpreter=python-fu-eval",
        "-b",
        f"exec(open({batch_inside!r}).read())",
        "--quit",
    ]


def run_gimp(chroot: Path, batch_inside: str, config_inside: str, timeout: float = BATCH_TIMEOUT):
    return run_gimp_command(gimp_command(chroot, batch_inside, config_inside), timeout)


def run_gimp_command(command: list[str], timeout: float = BATCH_TIMEOUT):
    """Run GIMP in its own process group so a timeout kills it and every plug-in it started."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        pytest.fail(f"gimp-console did not finish within {timeout:.0f} s (killed)")
    return process.returncode, output.decode("utf-8", "replace")


def linf_255(a: Image.Image, b: Image.Image) -> int:
    first = np.asarray(a.convert("RGB"), dtype=np.int16)
    second = np.asarray(b.convert("RGB"), dtype=np.int16)
    return int(np.abs(first - second).max())


def test_export_and_filter_inside_gimp(mounted, workdir, artwork, engine, installed, anchor_path):
    from fixative.load import load_image

    host, inside = workdir
    anchor = Image.open(anchor_path).convert("RGB")
    anchor.thumbnail((128, 128))
    anchor.save(host / "anchor.png")
    body = """
    run("file-fixative-export", **{"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": image,
        "file": Gio.File.new_for_path(W + "/out.png")}, **common)
    run("file-fixative-export", **{"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": image,
        "file": Gio.File.new_for_path(W + "/out.jpg")}, **common)
    before = [layer.get_name() for layer in image.get_layers()]
    original = image.get_layers()[0]
    run("plug-in-fixative-protect", **{"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": image,
        "drawables": [original]}, **common)
    layers = image.get_layers()
    report["layers_before"] = before
    report["layers_after"] = [layer.get_name() for layer in layers]
    report["image_size"] = [image.get_width(), image.get_height()]
    pdb = Gimp.get_pdb()
    report["filter_menu"] = list(pdb.lookup_procedure("plug-in-fixative-protect").get_menu_paths())
    exporter = pdb.lookup_procedure("file-fixative-export")
    report["export_label"] = exporter.get_menu_label()
    save_layer(layers[0], W + "/layer-top.png")
    save_layer(layers[1], W + "/layer-original.png")
    anchor = Gio.File.new_for_path(W + "/anchor.png")
    run("file-fixative-export", **{"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": image,
        "file": Gio.File.new_for_path(W + "/concept.png")}, **dict(common, method="concept", target=anchor),
        **{"max-side": 128})  # the copy posted at 128 px
    # A selection limits the protection to it, as with any GIMP filter.
    selected = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(W + "/art.png"))
    selected.select_rectangle(Gimp.ChannelOps.REPLACE, 0, 0, 64, 48)
    run("plug-in-fixative-protect", **{"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": selected,
        "drawables": [selected.get_layers()[0]]}, **common)
    save_layer(selected.get_layers()[0], W + "/layer-selection.png")
    """
    batch = write_batch(host, inside, body, "report.json", steps=2)
    code, output = run_gimp(mounted, batch, engine["config_inside"])
    report_path = host / "report.json"
    assert report_path.exists(), f"the batch wrote no report (exit {code}): {output[-2000:]}"
    report = json.loads(report_path.read_text())
    assert "error" not in report, report["error"] + output[-1500:]
    assert code == 0, output[-2000:]
    # each protection tells the artist its measured figures beside their null (GIMP's message area)
    assert "Fixative protected out.png: strength " in output and "(matched noise " in output, output[-2000:]
    assert "Fixative protected layer '" in output, output[-2000:]
    assert report["steps"] == [
        "file-fixative-export",
        "file-fixative-export",
        "plug-in-fixative-protect",
        "file-fixative-export",
        "plug-in-fixative-protect",
    ]

    original = Image.open(host / "art.png").convert("RGB")
    exported = load_image(host / "out.png")
    budget = exported.metadata["budget"]["epsilon_255"]
    assert exported.metadata["method"] == "style" and exported.metadata["encoder_names"]
    protected_png = Image.open(host / "out.png")
    assert protected_png.format == "PNG" and protected_png.size == original.size
    assert 0 < linf_255(protected_png, original) <= budget + 1

    concept = load_image(host / "concept.png").metadata
    assert concept["method"] == "concept" and concept["target"]["kind"] != exported.metadata["target"]["kind"]
    assert max(Image.open(host / "concept.png").size) == 128 and concept["options"]["max_side"] == 128

    jpeg = Image.open(host / "out.jpg")
    assert jpeg.format == "JPEG" and jpeg.size == original.size
    assert load_image(host / "out.jpg").metadata["method"] == "style"

    before = report["layers_before"]
    assert report["layers_after"] == [f"{before[0]} (protected)", *before], report
    assert report["image_size"] == list(original.size)
    assert report["filter_menu"] == ["<Image>/Filters/Fixative"]
    assert report["export_label"] == "Protected image (Fixative)"
    top = Image.open(host / "layer-top.png")
    untouched = Image.open(host / "layer-original.png")
    assert top.size == original.size
    assert linf_255(untouched, original) == 0, "the original layer must stay untouched"
    assert 0 < linf_255(top, original) <= budget + 1

    in_selection = Image.open(host / "layer-selection.png").convert("RGB")
    assert 0 < linf_255(in_selection.crop((0, 0, 64, 48)), original.crop((0, 0, 64, 48))) <= budget + 1
    outside = np.asarray(in_selection, dtype=np.int16) - np.asarray(original, dtype=np.int16)
    outside[:48, :64] = 0
    assert np.abs(outside).max() == 0, "pixels outside the selection must not change"


def test_missing_engine_is_explained_inside_gimp(mounted, workdir, artwork, installed):
    host, inside = workdir
    empty = host / "empty-config"
    empty.mkdir()
    body = """
    try:
        run("file-fixative-export", **{"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": image,
            "file": Gio.File.new_for_path(W + "/never.png")}, **common)
    except RuntimeError as exc:
        report["message"] = str(exc)
    """
    batch = write_batch(host, inside, body, "missing.json", steps=1)
    code, output = run_gimp(mounted, batch, f"{inside}/empty-config", timeout=240)
    report = json.loads((host / "missing.json").read_text())
    assert "error" not in report, report.get("error")
    message = report["message"]
    assert "No Fixative engine found" in message and "fixative install gimp" in message, message
    assert not (host / "never.png").exists()


def test_killed_gimp_makes_the_engine_drop_the_job(mounted, workdir, artwork, engine, installed):
    """GIMP kills the plug-in on Cancel: the job's lease runs out and the engine stops it."""
    host, inside = workdir
    client = engine["client"]
    body = """
    run("plug-in-fixative-protect", **{"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": image,
        "drawables": [image.get_layers()[0]]}, **common)
    """
    batch = write_batch(host, inside, body, "killed.json", steps=10000)
    finished_before = client.health()["queue"]["finished"]
    scratch_before = set((host / "tmp").glob("fixative-gimp-*"))
    process = subprocess.Popen(
        gimp_command(mounted, batch, engine["config_inside"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while client.health()["queue"]["running"] == 0:
            assert process.poll() is None, "GIMP ended before its job started"
            assert time.monotonic() < deadline, "the plug-in's job never started running"
            time.sleep(0.5)
        _kill_group(process)  # what GIMP does to a plug-in whose progress is cancelled, and more
        lease = 10
        deadline = time.monotonic() + lease + 30
        while True:
            queue = client.health()["queue"]
            if queue["running"] == 0 and queue["waiting"] == 0:
                break
            assert time.monotonic() < deadline, f"the engine kept the orphaned job: {queue}"
            time.sleep(0.5)
        assert queue["finished"] > finished_before
        log = (host / "server.log").read_text(errors="replace").lower()
        assert "nobody polled" in log, log[-800:]  # the lease ran out: the client was gone
        assert set((host / "tmp").glob("fixative-gimp-*")) == scratch_before, "temporary files left behind"
    finally:
        _kill_group(process)


def test_every_gimp_api_the_plugin_uses_exists(mounted, installed):
    """The dialog path cannot run headless: at least every Gimp/GimpUi name it uses must exist in 3.0."""
    source = installed.read_text()
    names = sorted(set(re.findall(r"\b(Gimp(?:Ui)?\.[A-Za-z_][A-Za-z0-9_.]*[A-Za-z0-9_])", source)))
    names += [
        f"GimpUi.{dialog}.{method}"
        for dialog in ("ProcedureDialog", "ExportProcedureDialog")
        for method in ("fill", "run", "destroy")
    ]
    assert "GimpUi.ExportProcedureDialog.new" in names and "Gimp.ExportProcedure.new" in names
    checker = f"""
import gi, json
gi.require_version("Gimp", "3.0"); gi.require_version("GimpUi", "3.0")
from gi.repository import Gimp, GimpUi
missing = []
for name in {names!r}:
    obj = {{"Gimp": Gimp, "GimpUi": GimpUi}}[name.split(".")[0]]
    try:
        for part in name.split(".")[1:]:
            obj = getattr(obj, part)
    except AttributeError:
        missing.append(name)
print(json.dumps(missing))
"""
    done = subprocess.run(
        [
            "chroot",
            str(mounted),
            "/usr/bin/env",
            "-i",
            f"HOME={INSIDE}/home",
            "PATH=/usr/bin:/bin",
            "python3",
            "-c",
            checker,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-1500:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


@pytest.fixture(scope="module")
def xdisplay():
    """An Xvfb on the host, reached from the chroot over loopback TCP (GimpUi needs a display)."""
    with virtual_display("1024x768x24") as display:
        if display is None:
            pytest.skip("no Xvfb on this machine, or it did not start: the GimpUi dialog check needs one")
        yield display


AUTO_OK_SITECUSTOMIZE = '''
"""Test helper loaded by every Python plug-in GIMP starts: accepts each GimpUi procedure dialog."""
import os

if os.environ.get("FIXATIVE_TEST_DIALOG_LOG"):
    from gi.repository import GLib

    def _accept_dialogs():
        try:
            from gi.repository import GimpUi, Gtk
        except (ImportError, ValueError):  # this process has no GimpUi loaded (yet)
            return True
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, GimpUi.ProcedureDialog) and window.get_visible():
                with open(os.environ["FIXATIVE_TEST_DIALOG_LOG"], "a") as log:
                    log.write(type(window).__name__ + "\\n")
                window.response(Gtk.ResponseType.OK)
        return True

    GLib.timeout_add(300, _accept_dialogs)
'''


def test_interactive_runs_show_the_dialogs(mounted, workdir, artwork, engine, installed, xdisplay):
    """Interactive export and filter on a virtual display: the plug-in's GimpUi dialogs open, OK goes on."""
    host, inside = workdir
    site = host / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(AUTO_OK_SITECUSTOMIZE)
    body = """
    run("file-fixative-export", **{"run-mode": Gimp.RunMode.INTERACTIVE, "image": image,
        "file": Gio.File.new_for_path(W + "/interactive.png")}, **common)
    run("plug-in-fixative-protect", **{"run-mode": Gimp.RunMode.INTERACTIVE, "image": image,
        "drawables": [image.get_layers()[0]]}, **common)
    report["layers_after"] = [layer.get_name() for layer in image.get_layers()]
    """
    batch = write_batch(host, inside, body, "interactive.json", steps=1)
    extra = (
        f"DISPLAY={xdisplay}",
        f"PYTHONPATH={inside}/site",
        f"FIXATIVE_TEST_DIALOG_LOG={inside}/dialogs.log",
    )
    code, output = run_gimp_command(
        gimp_command(mounted, batch, engine["config_inside"], extra_env=extra), timeout=240
    )
    report = json.loads((host / "interactive.json").read_text())
    assert "error" not in report, report.get("error", "") + output[-1500:]
    assert (host / "dialogs.log").read_text().split() == ["ExportProcedureDialog", "ProcedureDialog"]
    assert Image.open(host / "interactive.png").size == artwork.size
    assert report["layers_after"][0].endswith("(protected)") and len(report["layers_after"]) == 2
