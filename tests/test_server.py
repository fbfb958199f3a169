"""The engine server over real loopback HTTP, with the real taef2 encoder at tiny sizes."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from fixative.hosts.server import ServerSettings, ensure_token, start_in_thread

from .conftest import DEFAULT_EPS_255

TERMINAL = ("done", "failed", "cancelled")


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    """A private config folder for the token and server.json (never the user's own)."""
    folder = tmp_path_factory.mktemp("config")
    old = os.environ.get("FIXATIVE_CONFIG_DIR")
    os.environ["FIXATIVE_CONFIG_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("FIXATIVE_CONFIG_DIR", None)
    else:
        os.environ["FIXATIVE_CONFIG_DIR"] = old


@pytest.fixture(scope="module")
def server(taef2_path, config_dir):
    from fixative.hosts.server.runtime import remove_server_info, write_server_info

    settings = ServerSettings(models=[str(taef2_path)], max_queue=32, janitor_interval=0.1)
    running = start_in_thread(settings, token=ensure_token(config_dir))
    write_server_info(running.url, os.getpid(), config_dir)
    yield running
    running.stop()
    remove_server_info(os.getpid(), config_dir)
    assert not running.manager.root.exists(), "uploads and results must be removed at shutdown"


@pytest.fixture(scope="module")
def wave96(artwork_path) -> Image.Image:
    image = Image.open(artwork_path).convert("RGB")
    image.thumbnail((96, 96))
    return image


def auth(server) -> dict:
    return {"Authorization": f"Bearer {server.token}"}


def submit(
    server, data: bytes, options: dict | None = None, filename: str = "art.png", **files
) -> requests.Response:
    parts = {"file": (filename, data)}
    parts.update({name: (name, content) for name, content in files.items()})
    return requests.post(
        f"{server.url}/jobs",
        headers=auth(server),
        files=parts,
        data={"options": json.dumps(options or {})},
        timeout=30,
    )


def wait(server, job_id: str, timeout: float = 60.0, poll: float = 0.05) -> list[dict]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(f"{server.url}/jobs/{job_id}", headers=auth(server), timeout=10).json()
        seen.append(state)
        if state["state"] in TERMINAL:
            return seen
        time.sleep(poll)
    raise AssertionError(f"job {job_id} did not finish: {seen[-1]}")


def wait_running(server, job_id: str, min_step: int = 1, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = requests.get(f"{server.url}/jobs/{job_id}", headers=auth(server), timeout=10).json()
        if state["state"] == "running" and state["step"] >= min_step:
            return state
        assert state["state"] not in TERMINAL, state
        time.sleep(0.02)
    raise AssertionError("job never started")


def decode_result(server, job_id: str) -> tuple[np.ndarray, dict]:
    import base64

    body = requests.get(f"{server.url}/jobs/{job_id}/result", headers=auth(server), timeout=30).json()
    image = Image.open(io.BytesIO(base64.b64decode(body["image_base64"])))
    return np.asarray(image.convert("RGB")), body


def test_result_equals_in_process_protect(server, wave96, taef2_path):
    import fixative

    options = {"method": "style", "quality": "fast", "steps": 4, "seed": 3}
    response = submit(server, png_bytes(wave96), options, filename="wave.png")
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    states = wait(server, job_id)
    assert states[-1]["state"] == "done", states[-1]
    progress = [s["progress"] for s in states]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert states[-1]["step"] == states[-1]["total"] == 4
    pixels, body = decode_result(server, job_id)

    local = fixative.protect(wave96, models=[str(taef2_path)], **options)
    np.testing.assert_array_equal(pixels, np.asarray(local.image))
    assert body["format"] == "png" and body["check"] is None
    assert body["report"]["strength"] == local.report["strength"]
    assert body["report"]["source"] == "wave.png"
    assert not (server.manager.root / job_id / "upload").exists(), "upload must go when the job ends"

    assert requests.delete(f"{server.url}/jobs/{job_id}", headers=auth(server)).status_code == 200
    assert not (server.manager.root / job_id).exists()
    gone = requests.get(f"{server.url}/jobs/{job_id}", headers=auth(server))
    assert gone.status_code == 404 and "no job" in gone.json()["error"]


def test_preview_shows_what_the_model_sees(server, wave96):
    """Editors ask for ``preview``: the report then carries decode(encode(protected)) as a PNG."""
    import base64

    response = submit(server, png_bytes(wave96), {"quality": "fast", "steps": 1, "preview": True})
    job_id = response.json()["id"]
    assert wait(server, job_id)[-1]["state"] == "done"
    _, body = decode_result(server, job_id)
    view = Image.open(io.BytesIO(base64.b64decode(body["report"]["model_view_png_base64"])))
    assert view.mode == "RGB" and view.size == wave96.size


def test_progress_events_stream_to_the_end(server, wave96):
    job_id = submit(server, png_bytes(wave96), {"quality": "fast", "steps": 3}).json()["id"]
    events = []
    with requests.get(
        f"{server.url}/jobs/{job_id}/events", headers=auth(server), stream=True, timeout=60
    ) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["state"] == "done"
    steps = [e["step"] for e in events]
    assert steps == sorted(steps) and steps[-1] == 3 and len(set(steps)) >= 3


def test_cancel_mid_run_then_next_job_runs(server, wave96):
    job_id = submit(server, png_bytes(wave96), {"quality": "fast", "steps": 500}).json()["id"]
    wait_running(server, job_id, min_step=2)
    first = time.monotonic()
    wait_running(server, job_id, min_step=3)
    step_seconds = time.monotonic() - first  # about 0.1 s; much more when the CI machine is overloaded
    asked = time.monotonic()
    answer = requests.post(f"{server.url}/jobs/{job_id}/cancel", headers=auth(server)).json()
    assert answer["cancel_requested"] or answer["state"] == "cancelled"
    final = wait(server, job_id, timeout=30, poll=0.02)[-1]
    assert final["state"] == "cancelled"
    # Within a second, and in any case within the step that was running (protect checks between tiles).
    assert time.monotonic() - asked < max(1.0, 1.5 * step_seconds + 0.2)
    assert final["step"] < 500
    assert requests.get(f"{server.url}/jobs/{job_id}/result", headers=auth(server)).status_code == 409

    follow = submit(server, png_bytes(wave96), {"quality": "fast", "steps": 1}).json()["id"]
    assert wait(server, follow)[-1]["state"] == "done"


def test_twenty_concurrent_jobs_are_neither_lost_nor_mixed_up(server, artwork_path):
    source = Image.open(artwork_path).convert("RGB")
    source.thumbnail((128, 128))
    errors: list[str] = []

    def client(worker: int) -> None:
        for k in range(5):
            index = worker * 5 + k
            width = 40 + 2 * index  # every job has its own size, crop and seed
            crop = source.crop((index, 0, index + width, 48))
            name = f"job{index}.png"
            try:
                response = submit(
                    server, png_bytes(crop), {"quality": "fast", "steps": 1, "seed": index}, name
                )
                assert response.status_code == 202, response.text
                job_id = response.json()["id"]
                assert wait(server, job_id, timeout=120, poll=0.1)[-1]["state"] == "done"
                pixels, body = decode_result(server, job_id)
                assert pixels.shape == (48, width, 3), (name, pixels.shape)
                assert body["report"]["source"] == name and body["report"]["seed"] == index
                change = np.abs(pixels.astype(int) - np.asarray(crop, dtype=int))
                assert change.max() <= DEFAULT_EPS_255  # its own picture
            except AssertionError as exc:
                errors.append(f"{name}: {exc}")

    threads = [threading.Thread(target=client, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors


def test_token_is_required(server, wave96):
    assert requests.get(f"{server.url}/health").status_code == 401
    wrong = requests.get(f"{server.url}/health", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "wrong token"
    upload = requests.post(f"{server.url}/jobs", files={"file": ("a.png", png_bytes(wave96))})
    assert upload.status_code == 401 and "token" in upload.json()["error"]
    assert requests.get(f"{server.url}/openapi.json").status_code == 401  # the docs need the token too
    schema = requests.get(f"{server.url}/openapi.json", headers=auth(server)).json()
    assert schema["info"]["title"] == "Fixative engine"
    health = requests.get(f"{server.url}/health", headers=auth(server)).json()
    assert health["version"] and health["devices"] == ["cpu"]


def test_foreign_host_and_origin_are_refused(server):
    """A DNS-rebinding page reaches the engine under its own name: refused before the token is looked at."""
    for host in ("evil.com", "evil.com:80", "127.0.0.1.evil.com", ""):
        refused = requests.get(f"{server.url}/openapi.json", headers={**auth(server), "Host": host})
        assert refused.status_code == 421, host
        assert "refused" in refused.json()["error"]
    port = server.url.rsplit(":", 1)[1]
    other_page = {**auth(server), "Origin": "http://evil.com"}
    assert requests.get(f"{server.url}/health", headers=other_page).status_code == 403
    for name in ("127.0.0.1", "localhost"):
        own = {**auth(server), "Host": f"{name}:{port}", "Origin": f"http://{name}:{port}"}
        assert requests.get(f"{server.url}/health", headers=own).status_code == 200


def test_corrupt_upload_is_400_saying_why(server, wave96):
    truncated = png_bytes(wave96)[:300]
    answer = submit(server, truncated, filename="broken.png")
    assert answer.status_code == 400
    assert "broken.png" in answer.json()["error"] and "corrupt" in answer.json()["error"]
    assert submit(server, b"not an image at all").status_code == 400
    bad_option = submit(server, png_bytes(wave96), {"colour": "blue"})
    assert bad_option.status_code == 400 and "colour" in bad_option.json()["error"]
    bad_method = submit(server, png_bytes(wave96), {"method": "paint"})
    assert bad_method.status_code == 400 and "paint" in bad_method.json()["error"]


def test_oversized_uploads_are_413(server, wave96):
    settings = server.manager.settings
    old_bytes, old_pixels = settings.max_upload_bytes, settings.max_pixels
    try:
        settings.max_upload_bytes = 50_000
        noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8))
        big = submit(server, png_bytes(noise))
        assert big.status_code == 413 and "limit" in big.json()["error"]
        settings.max_upload_bytes = old_bytes
        settings.max_pixels = 96 * 50
        many = submit(server, png_bytes(wave96), filename="wide.png")
        assert many.status_code == 413 and "pixels" in many.json()["error"]
    finally:
        settings.max_upload_bytes, settings.max_pixels = old_bytes, old_pixels


def test_full_queue_is_429(server, wave96):
    settings = server.manager.settings
    old = settings.max_queue
    settings.max_queue = 1
    data = png_bytes(wave96)
    try:
        running = submit(server, data, {"quality": "fast", "steps": 500}).json()["id"]
        wait_running(server, running)
        waiting = submit(server, data, {"quality": "fast", "steps": 1})
        assert waiting.status_code == 202 and waiting.json()["position"] == 0
        refused = submit(server, data, {"quality": "fast", "steps": 1})
        assert refused.status_code == 429 and "queue is full" in refused.json()["error"]
        assert refused.headers["retry-after"]
        cancelled = requests.post(
            f"{server.url}/jobs/{waiting.json()['id']}/cancel", headers=auth(server)
        ).json()
        assert cancelled["state"] == "cancelled"  # a queued job ends at once
        requests.post(f"{server.url}/jobs/{running}/cancel", headers=auth(server))
        assert wait(server, running)[-1]["state"] == "cancelled"
    finally:
        settings.max_queue = old


def test_job_without_polls_is_dropped_when_its_lease_ends(server, wave96):
    job_id = submit(
        server, png_bytes(wave96), {"quality": "fast", "steps": 500, "lease_seconds": 0.5}
    ).json()["id"]
    time.sleep(2.0)  # nobody asks about the job meanwhile
    state = server.manager.status(job_id, touch=False)
    assert state["state"] == "cancelled" and "no client" in state["error"]


def test_token_file_is_private_and_kept(tmp_path):
    first = ensure_token(tmp_path)
    assert ensure_token(tmp_path) == first and len(first) >= 32
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "token").stat().st_mode) == 0o600


def test_python_client_protects_cancels_and_explains(server, wave96, tmp_path, taef2_path):
    import fixative
    from fixative.client import Client, JobCancelled, JobFailed, ServerError, Unauthorised

    client = Client()  # found through server.json and the token file
    assert client.url == server.url
    path = tmp_path / "wave.png"
    wave96.save(path)
    calls = []
    written, report = client.protect_file(
        path, quality="fast", steps=2, seed=1, progress=lambda done, total, info: calls.append((done, total))
    )
    assert written == tmp_path / "wave.protected.png" and report["steps"] == 2
    assert calls and calls[-1] == (2, 2)
    local = fixative.protect(wave96, models=[str(taef2_path)], quality="fast", steps=2, seed=1)
    np.testing.assert_array_equal(np.asarray(Image.open(written).convert("RGB")), np.asarray(local.image))
    with pytest.raises(fixative.FixativeError, match="already exists"):
        client.protect_file(path, quality="fast", steps=1)

    asked = []

    def cancel_after_a_few_polls() -> bool:
        asked.append(1)
        return len(asked) > 6

    with pytest.raises(JobCancelled):
        client.protect(path, quality="fast", steps=500, cancel=cancel_after_a_few_polls)
    with pytest.raises(ServerError, match="epsilon") as refused:  # refused at submit, never queued
        client.protect(path, epsilon=0.9)
    assert refused.value.status == 400 and not isinstance(refused.value, JobFailed)
    with pytest.raises(ServerError, match="not an image") as bad:
        client.protect(b"nonsense")
    assert bad.value.status == 400
    with pytest.raises(Unauthorised):
        Client(server.url, token="wrong").health()


def test_cli_protect_with_server(server, wave96, tmp_path):
    from fixative.hosts.cli import main

    path = tmp_path / "art.png"
    wave96.save(path)
    out = tmp_path / "art.protected.png"
    assert (
        main(
            [
                "protect",
                str(path),
                "--server",
                server.url,
                "--quality",
                "fast",
                "--steps",
                "1",
                "-q",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert Image.open(out).size == wave96.size
    assert json.loads((tmp_path / "r.json").read_text())["output"] == str(out)
    assert main(["protect", str(path), "--server", server.url, "--steps", "1", "-q"]) == 2  # never overwrites


def test_serve_refuses_a_public_address_without_the_flag(capsys):
    from fixative.hosts.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--no-preload"]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_serve_ready_line_discovery_and_stop(tmp_path, monkeypatch, capsys):
    from fixative.hosts.cli import main

    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path))
    env = dict(os.environ)
    command = [
        sys.executable,
        "-m",
        "fixative",
        "serve",
        "--port",
        "0",
        "--ready-line",
        "--no-preload",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("FIXATIVE_READY "), (line, process.stderr.read() if process.poll() else "")
        ready = json.loads(line[len("FIXATIVE_READY ") :])
        info = json.loads((tmp_path / "server.json").read_text())
        assert info["url"] == ready["url"] and info["pid"] == ready["pid"] == process.pid
        token = (tmp_path / "token").read_text().strip()
        health = requests.get(
            ready["url"] + "/health", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert health.status_code == 200
        assert main(["serve", "--stop"]) == 0
        assert "stopped" in capsys.readouterr().out
        assert process.wait(timeout=20) == 0
        assert process.stdout.read() == "", "exactly one line on stdout"
        assert not (tmp_path / "server.json").exists()
    finally:
        if process.poll() is None:
            process.kill()


def test_options_are_served_from_the_schema(server):
    from fixative.options import JobOptions, editor_choices

    assert requests.get(f"{server.url}/options").status_code == 401
    served = requests.get(f"{server.url}/options", headers=auth(server)).json()
    assert served["choices"] == editor_choices()
    assert served["schema"] == JobOptions.model_json_schema()


def test_every_option_is_checked_at_submit(server, wave96):
    before = server.manager.counts()["waiting"] + server.manager.counts()["running"]
    for options, wanted in (
        ({"steps": 0}, "steps"),
        ({"steps": 100000}, "steps"),
        ({"method": "paint"}, "method"),
        ({"nonsense": 1}, "unknown option"),
        ({"method": "concept"}, "anchor"),
        ({"device": "cuda:7"}, "not served"),
    ):
        answer = submit(server, png_bytes(wave96), options)
        assert answer.status_code == 400 and wanted in answer.json()["error"], options
    assert server.manager.counts()["waiting"] + server.manager.counts()["running"] == before  # none queued


def test_a_tiny_image_is_protected_at_its_own_size(server):
    tiny = Image.fromarray(np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5)
    response = submit(server, png_bytes(tiny), {"quality": "fast", "steps": 1})
    assert response.status_code == 202, response.text
    states = wait(server, response.json()["id"])
    assert states[-1]["state"] == "done", states[-1]
    pixels, _ = decode_result(server, response.json()["id"])
    assert pixels.shape == (4, 4, 3)


def test_a_job_measuring_after_its_last_step_says_what_it_measures(tmp_path):
    """After the last step the engine measures (over a minute at 2048²): the status names that part and
    gives no time left from the steps, which would read 0 s."""
    from fixative.hosts.server.jobs import Job
    from fixative.options import JobOptions

    job = Job(id="j", filename="a.png", folder=tmp_path, options=JobOptions())
    job.state, job.step, job.total, job.started, job.first_step_at = (
        "running",
        20,
        20,
        time.time() - 9,
        time.time() - 8,
    )
    assert job.status()["eta"] == 0 and job.status()["doing"] is None
    job.doing = "the copy served at half size"
    assert job.status()["doing"] == "the copy served at half size" and job.status()["eta"] is None
    job.state = "done"
    assert job.status()["doing"] is None
