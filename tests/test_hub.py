"""`fixative models --get` against a local stand-in for the Hugging Face Hub (issue 20): download, resume
after an interrupted transfer, a checksum mismatch refused and removed, offline refused in one line, the
file found by discovery afterwards; `fixative doctor` without encoders and with one."""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from fixative.hosts.cli import main
from fixative.models import hub

from .conftest import TAESD_DIR

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class StandInHub(http.server.BaseHTTPRequestHandler):
    """``/{repo}/resolve/{revision}/{file}`` with HEAD and ranged GET, as huggingface_hub asks for them."""

    files: dict[str, bytes] = {}
    cut_after: int | None = None  # the first GET of a file is cut after this many bytes
    requests: list[tuple[str, str, str | None]] = []

    def _file(self) -> tuple[str, bytes] | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2] == "resolve":
            name = parts[-1]
            if name in self.files:
                return name, self.files[name]
        return None

    def _headers(self, status: int, name: str, data: bytes, start: int = 0) -> None:
        self.send_response(status)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{hub.hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        found = self._file()
        StandInHub.requests.append(("HEAD", self.path, None))
        if found is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.end_headers()
            return
        self._headers(200, *found)

    def do_GET(self) -> None:  # noqa: N802
        found = self._file()
        wanted = self.headers.get("Range")
        StandInHub.requests.append(("GET", self.path, wanted))
        if found is None:
            self.send_response(404)
            self.end_headers()
            return
        name, data = found
        start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
        self._headers(206 if start else 200, name, data, start)
        body = data[start:]
        if StandInHub.cut_after is not None and not start:
            StandInHub.cut_after, cut = None, StandInHub.cut_after
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True  # the transfer breaks off midway (EOF before Content-Length)
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stand_in_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    encoder, decoder = TAESD_DIR / "taef2_encoder.pth", TAESD_DIR / "taef2_decoder.pth"
    if not encoder.exists():
        pytest.skip(f"{encoder} not present")
    StandInHub.files = {
        "taef2_encoder.pth": encoder.read_bytes(),
        "taef2_decoder.pth": decoder.read_bytes(),
        "taesana_encoder.pth": b"not the pinned file" * 1000,
    }
    StandInHub.cut_after, StandInHub.requests = None, []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandInHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("FIXATIVE_MODELS", str(tmp_path / "no-models-here"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ComfyUI / A1111 folders either
    yield cache
    server.shutdown()


def _weights_in(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*.pth") if p.is_file())


def test_get_downloads_checks_and_is_found_afterwards(stand_in_hub, capsys):
    assert main(["models"]) == 1  # nothing yet
    capsys.readouterr()
    assert main(["models", "--get", "taef2"]) == 0
    out = capsys.readouterr().out
    assert "2 file(s) checked" in out
    assert [p.name for p in _weights_in(stand_in_hub)] == ["taef2_decoder.pth", "taef2_encoder.pth"]
    assert main(["models"]) == 0
    assert "taef2" in capsys.readouterr().out and str(stand_in_hub) in "".join(
        str(e.source) for e in __import__("fixative.models", fromlist=["x"]).find_models(_hooks())
    )
    gets = [r for r in StandInHub.requests if r[0] == "GET"]
    assert main(["models", "--get", "taef2"]) == 0  # already there: nothing fetched again
    assert [r for r in StandInHub.requests if r[0] == "GET"] == gets
    assert main(["models", "--list"]) == 0
    assert "taef2      5.4 MB  MIT  downloaded" in capsys.readouterr().out


def _hooks():
    from fixative.plugins import hooks

    return hooks()


def test_an_interrupted_transfer_resumes(stand_in_hub, monkeypatch):
    """The connection breaks off midway: the same get continues with a Range request, not from zero."""
    import huggingface_hub.constants

    # huggingface_hub keeps what it received in 10 MB chunks (a 335 MB VAE resumes at the last one); the
    # encoder is 2.7 MB, so chunks of 256 KiB make the same resume visible here
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)
    StandInHub.cut_after = 4 * 256 * 1024
    paths = hub.get("taef2")
    assert any(r[2] == f"bytes={4 * 256 * 1024}-" for r in StandInHub.requests if r[0] == "GET")
    assert hub.sha256_of(paths[0]) == hub.CATALOGUE["taef2"].files[0].sha256


def test_a_checksum_mismatch_is_refused_and_removed(stand_in_hub, capsys):
    assert main(["models", "--get", "taesana"]) == 2
    err = capsys.readouterr().err.strip().replace("\r", "\n").splitlines()
    assert "taesana_encoder.pth" in err[0]  # the progress bar (stderr), then one error line
    errors = [line for line in err if line.startswith("fixative: error:")]
    assert len(errors) == 1 and "checksum mismatch" in errors[0] and "removed" in errors[0]
    assert not _weights_in(stand_in_hub)
    assert not [p for p in (stand_in_hub).rglob("*") if p.is_file() and "blobs" in p.parts]


def test_offline_is_refused_in_one_line(stand_in_hub, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "--get", "taef2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HF_HUB_OFFLINE is set" in err
    assert not StandInHub.requests  # not one request went out
    assert main(["models", "--get", "sdxl-nope"]) == 2
    assert "known: taef2" in capsys.readouterr().err


def test_cancel_stops_the_transfer_and_leaves_nothing(stand_in_hub, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)
    cancel = threading.Event()
    seen = []

    def progress(name: str, done: int, total: int) -> None:
        seen.append((name, done, total))
        if done >= 512 * 1024:
            cancel.set()

    with pytest.raises(hub.DownloadCancelled):
        hub.get("taef2", progress=progress, cancel=cancel)
    assert seen[0][0] == "taef2_encoder.pth" and seen[0][2] == 2704692 and seen[-1][1] == 512 * 1024
    assert not [p for p in stand_in_hub.rglob("*") if p.is_file() and p.suffix in (".pth", ".incomplete")]
    assert len(hub.get("taef2")) == 2  # the next get starts again and finishes


def test_doctor_without_encoders_and_with_one(stand_in_hub, capsys):
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "problem: none found" in out and "fixative models --get taef2" in out
    assert "python" in out and "torch" in out and "device    CPU" in out
    hub.get("taef2")
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "encoders  taef2 (32 ch, tiny)" in out and "problem" not in out


def test_the_engine_gets_the_encoder_for_a_plug_in(stand_in_hub, tmp_path):
    """The plug-ins' "Get the recommended encoder": the stdlib client asks the engine, sees progress, and
    can cancel; afterwards the engine finds the encoder."""
    from fixative.fixative_client import EngineCancelled, EngineClient, EngineError
    from fixative.hosts.server.jobs import ServerSettings
    from fixative.hosts.server.runtime import start_in_thread

    running = start_in_thread(ServerSettings(preload=False), token="t" * 43)
    try:
        client = EngineClient(running.url, token=running.token)
        with pytest.raises(EngineError, match="no downloadable encoder named 'nope'"):
            client.get_model("nope")
        with pytest.raises(EngineCancelled):
            client.get_model("taef2", should_cancel=lambda: True, poll=0.01)
        assert not _weights_in(stand_in_hub)
        seen = []
        state = client.get_model("taef2", on_progress=seen.append, poll=0.01)
        assert state["state"] == "done" and len(state["paths"]) == 2
        assert any(m["family"] == "taef2" for m in client.models())
        with pytest.raises(EngineError, match="checksum mismatch"):
            client.get_model("taesana", poll=0.01)
    finally:
        running.stop()
