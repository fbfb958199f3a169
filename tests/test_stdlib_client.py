"""The standard-library client the editor plug-ins carry: imports, end to end, oldest Python, engine start."""

from __future__ import annotations

import ast
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixative import fixative_client as fc
from fixative.hosts.server import ServerSettings, ensure_token, start_in_thread

CLIENT = Path(fc.__file__)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(taef2_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("config")
    running = start_in_thread(
        ServerSettings(models=[str(taef2_path)], janitor_interval=0.1), token=ensure_token(folder)
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def wave64(artwork_path) -> Image.Image:
    image = Image.open(artwork_path).convert("RGB")
    image.thumbnail((64, 64))
    return image


def test_imports_nothing_outside_the_standard_library():
    tree = ast.parse(CLIENT.read_text(encoding="utf-8"))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports break once the file is copied into a plug-in"
            modules.add(node.module.split(".")[0])
    outside = sorted(m for m in modules if m not in sys.stdlib_module_names and m != "__future__")
    assert not outside, f"fixative_client.py imports {outside}"
    assert "urllib" in modules and "json" in modules


def test_config_dir_follows_the_platform_rules(monkeypatch, tmp_path):
    monkeypatch.delenv("FIXATIVE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert fc.config_dir() == tmp_path / "fixative"
    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path / "override"))
    assert fc.config_dir() == tmp_path / "override"


def test_end_to_end_equals_in_process(server, wave64, taef2_path):
    import fixative

    client = fc.EngineClient(server.url, token=server.token)
    health = client.health()
    assert health["status"] == "ok" and health["devices"] == ["cpu"]
    assert any(m["family"] for m in client.models())
    seen: list[dict] = []
    options = {"quality": "fast", "steps": 3, "seed": 5}
    data, report = client.protect(
        png_bytes(wave64), options, filename="wave.png", on_progress=seen.append, poll=0.05
    )
    assert seen[-1]["state"] == "done" and seen[-1]["progress"] == 1.0
    assert all(set(s) >= {"id", "state", "progress", "step", "total", "eta", "error"} for s in seen)
    local = fixative.protect(wave64, models=[str(taef2_path)], **options)
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(local.image)
    )
    assert report["strength"] == local.report["strength"]
    # the line every host shows: the engine's own figures, each beside its null
    first = report["encoders"][0]
    line = fc.summarise(report)
    assert line.startswith(f"strength {report['strength']:.2f} (matched noise "), line
    shown = float(line.split("(matched noise ")[1].split(",")[0].split(")")[0])
    assert abs(shown - first["noise_strength"]) <= 0.005, (line, first)
    assert f"what the model sees {first['decoded_share']:.2f} (matched noise" in line
    assert f"flat areas {report['perceptual']['flat_rms_255']:.1f}/255 RMS" in line
    with pytest.raises(fc.EngineError) as gone:  # protect() deleted the job once it had the result
        client.status(seen[-1]["id"])
    assert gone.value.status == 404


def test_summary_never_fills_in_a_figure():
    measured = {
        "strength": 0.2512,
        "encoders": [
            {"name": "taef2", "noise_strength": 0.0104, "vs_noise": 24.15, "decoded_share": 0.281,
             "noise_decoded_share": -0.004},
            {"name": "taesana", "noise_strength": -0.01, "vs_noise": None},
        ],
        "perceptual": {"flat_rms_255": 1.31, "psnr_db": 33.4, "linf_255": 12.0},
        "seconds": 21.3,
        "verify": {"verdict": "protected"},
    }  # fmt: skip
    assert fc.summarise(measured) == (
        "strength 0.25 (matched noise 0.01, 24×), what the model sees 0.28 (matched noise -0.004) of the "
        "way, flat areas 1.3/255 RMS, PSNR 33.4 dB, max change 12/255, 21.3 s, models: taef2, taesana, "
        "check: protected"
    )
    served = {"purification": "served at 0.5", "strength": 0.0712, "noise_strength": 0.0002}
    line = fc.summarise(dict(measured, served=served))  # a large picture's report
    assert "way, a copy served at half size keeps 0.07 (matched noise 0.000), flat areas" in line
    bare = fc.summarise({"strength": 0.4})
    assert bare == "strength 0.40 (matched noise not measured)"
    assert fc.summarise({}) == ""


def test_errors_are_one_line_with_status(server, wave64):
    client = fc.EngineClient(server.url, token=server.token)
    with pytest.raises(fc.EngineError) as bad:
        client.submit(b"\x89PNG\r\n\x1a\n truncated", "broken.png")
    assert bad.value.status == 400 and "broken.png" in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(fc.EngineError) as denied:
        fc.EngineClient(server.url, token="wrong").health()
    assert denied.value.status == 401 and "token" in str(denied.value)
    with pytest.raises(fc.EngineCancelled):
        client.protect(png_bytes(wave64), {"quality": "fast", "steps": 500}, should_cancel=lambda: True)
    with pytest.raises(fc.EngineError, match="epsilon"):
        client.protect(png_bytes(wave64), {"epsilon": 2.0}, poll=0.05)
    closed = fc.EngineClient("http://127.0.0.1:9", token="x", timeout=2)
    with pytest.raises(fc.EngineNotRunning):
        closed.health()


def test_result_in_another_format_and_cancel_by_id(server, wave64):
    client = fc.EngineClient(server.url, token=server.token)
    job = client.submit(png_bytes(wave64), "wave.png", {"quality": "fast", "steps": 1, "format": "jpg"})
    while client.status(job)["state"] not in fc.TERMINAL_STATES:
        time.sleep(0.05)
    data, report = client.result(job)
    assert data[:3] == b"\xff\xd8\xff" and report["steps"] == 1
    client.delete(job)
    long_job = client.submit(png_bytes(wave64), "wave.png", {"quality": "fast", "steps": 500})
    client.cancel(long_job)
    deadline = time.monotonic() + 5
    while client.status(long_job)["state"] != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_discover_and_not_installed(monkeypatch, tmp_path, server):
    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path))
    assert fc.EngineClient.discover() is None
    with pytest.raises(fc.EngineNotInstalled, match="fixative install"):
        fc.ensure_engine(timeout=5)
    (tmp_path / "engine.json").write_text(
        json.dumps({"command": [str(tmp_path / "no-such-fixative"), "serve"]})
    )
    with pytest.raises(fc.EngineNotInstalled, match="missing"):
        fc.ensure_engine(timeout=5)
    (tmp_path / "token").write_text(server.token)
    (tmp_path / "server.json").write_text(json.dumps({"url": server.url, "pid": os.getpid(), "version": "x"}))
    found = fc.ensure_engine(timeout=5)  # a running engine is found, nothing is started
    assert found.url == server.url and found.health()["status"] == "ok"


def test_ensure_engine_starts_the_recorded_engine_and_it_stops(monkeypatch, tmp_path):
    from fixative.hosts.server.runtime import stop_running

    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path))
    command = [sys.executable, "-m", "fixative", "serve", "--no-preload", "--log-level", "warning"]
    (tmp_path / "engine.json").write_text(json.dumps({"command": command}))
    client = fc.ensure_engine(timeout=120)
    try:
        assert client.health()["status"] == "ok"
        info = json.loads((tmp_path / "server.json").read_text())
        assert info["url"] == client.url
        if os.name == "posix":
            assert (tmp_path / "token").stat().st_mode & 0o077 == 0
        assert fc.EngineClient.discover().url == client.url
        if os.name == "posix":  # a plain SIGTERM (logout, service manager) is a clean stop too
            os.kill(info["pid"], signal.SIGTERM)
            deadline = time.monotonic() + 30
            while (tmp_path / "server.json").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        if (tmp_path / "server.json").exists():
            assert "stopped" in stop_running(timeout=30)
    assert not (tmp_path / "server.json").exists()
    assert fc.EngineClient.discover() is None


def _old_pythons() -> list[str]:
    """Interpreters older than this one that the plug-ins must support (3.8, 3.9), where installed."""
    candidates = []
    for version in ("3.8", "3.9"):
        candidates += [
            shutil.which(f"python{version}") or "",
            f"/usr/bin/python{version}",
            *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}*/bin/python{version}"))),
        ]
    for path in candidates:
        if not path or not os.path.isfile(path):
            continue
        try:
            probe = subprocess.run(
                [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0 and probe.stdout.strip() in ("3.8", "3.9"):
            return [path]  # the oldest one found is enough
    return []


OLD_PYTHON_SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import fixative_client as fc
client = fc.EngineClient(sys.argv[2], token=sys.argv[3])
states = []
data, report = client.protect(open(sys.argv[4], "rb").read(), {"quality": "fast", "steps": 2, "seed": 7},
                              filename="wave.png", on_progress=states.append, poll=0.05)
open(sys.argv[5], "wb").write(data)
try:
    fc.EngineClient(sys.argv[2], token="wrong").health()
except fc.EngineError as exc:
    denied = exc.status
print(json.dumps({"python": sys.version_info[:2], "last": states[-1]["state"], "steps": report["steps"],
                  "denied": denied}))
"""


@pytest.mark.parametrize("python", _old_pythons() or [None])
def test_runs_under_the_oldest_supported_python(python, server, wave64, tmp_path, taef2_path):
    if python is None:
        pytest.skip("no Python 3.8/3.9 on this machine")
    import fixative

    folder = tmp_path / "plugin"
    folder.mkdir()
    shutil.copy(CLIENT, folder / "fixative_client.py")  # as the installers do
    (tmp_path / "in.png").write_bytes(png_bytes(wave64))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    run = subprocess.run(
        [
            python,
            "-c",
            OLD_PYTHON_SCRIPT,
            str(folder),
            server.url,
            server.token,
            str(tmp_path / "in.png"),
            str(tmp_path / "out.png"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["python"][0] == 3 and answer["python"][1] < sys.version_info[1]
    assert answer == dict(answer, last="done", steps=2, denied=401)
    local = fixative.protect(wave64, models=[str(taef2_path)], quality="fast", steps=2, seed=7)
    np.testing.assert_array_equal(
        np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(local.image)
    )


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_write_atomically_gives_a_plain_file_and_keeps_a_replaced_files_mode(tmp_path):
    fresh = fc.write_atomically(tmp_path / "sub" / "new.png", b"new")
    assert fresh.read_bytes() == b"new"
    assert fresh.stat().st_mode & 0o777 == 0o666 & ~_umask(), "not left private like a temporary file"
    kept = tmp_path / "shared.png"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    fc.write_atomically(kept, b"newer")
    assert kept.read_bytes() == b"newer" and kept.stat().st_mode & 0o777 == 0o640
    with pytest.raises(FileExistsError):
        fc.write_atomically(kept, b"clobber", replace=False)
    assert kept.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.png", "sub"], "no temporary left behind"


def test_write_atomically_without_hard_links_still_refuses_to_clobber(monkeypatch, tmp_path):
    def no_links(_source, _target):
        raise PermissionError(1, "Operation not permitted")  # what FAT/exFAT and some shares answer

    monkeypatch.setattr(fc.os, "link", no_links)
    written = fc.write_atomically(tmp_path / "usb.png", b"new", replace=False)
    assert written.read_bytes() == b"new"
    with pytest.raises(FileExistsError):
        fc.write_atomically(written, b"clobber", replace=False)
    assert written.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["usb.png"]
