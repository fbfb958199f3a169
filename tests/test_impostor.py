"""A program that took the engine's recorded port never receives the token (issue 19): every client asks
for a proof first (``GET /hello``) and refuses to go on without a right one."""

from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from fixative import fixative_client
from fixative.hosts.client import Client


class Impostor(http.server.BaseHTTPRequestHandler):
    """Answers everything with a plausible but wrong proof, and records every header it is sent."""

    seen: list[dict] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        Impostor.seen.append(dict(self.headers))
        body = json.dumps({"service": "fixative", "version": "0", "proof": "0" * 64, "status": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def impostor(tmp_path, monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path))
    (tmp_path / fixative_client.TOKEN_FILE).write_text("secret-token-" + "x" * 32)
    # the pid is alive (ours), so the record looks current: only the proof can tell the impostor apart
    (tmp_path / fixative_client.SERVER_FILE).write_text(json.dumps({"url": url, "pid": os.getpid()}))
    Impostor.seen = []
    yield url
    server.shutdown()


def _no_token_was_sent() -> bool:
    return bool(Impostor.seen) and not any(
        "secret-token" in value for headers in Impostor.seen for value in headers.values()
    )


def test_the_stdlib_client_sends_no_token_to_an_impostor(impostor):
    assert fixative_client.EngineClient.discover() is None  # not our engine
    with pytest.raises(fixative_client.EngineUntrusted):
        fixative_client.EngineClient(impostor).health()
    assert _no_token_was_sent()


def test_the_python_client_sends_no_token_to_an_impostor(impostor):
    with pytest.raises(fixative_client.EngineUnauthorised):
        Client("auto").health()
    assert _no_token_was_sent()


def test_a_record_of_a_dead_engine_is_removed_unread(tmp_path, monkeypatch):
    monkeypatch.setenv("FIXATIVE_CONFIG_DIR", str(tmp_path))
    record = tmp_path / fixative_client.SERVER_FILE
    record.write_text(json.dumps({"url": "http://127.0.0.1:9", "pid": 2**22 + 12345}))
    assert fixative_client.read_server_info() is None
    assert not record.exists()


def test_serve_stop_sends_no_token_to_an_impostor(impostor, tmp_path):
    """`fixative serve --stop` with the record pointing at a stranger: no token, no signal, record gone."""
    import subprocess
    import sys

    from fixative.hosts.server.runtime import stop_running

    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = tmp_path / fixative_client.SERVER_FILE
        record.write_text(json.dumps({"url": impostor, "pid": stranger.pid}))
        message = stop_running(timeout=2)
        assert "no engine was running" in message
        assert not record.exists()
        assert stranger.poll() is None  # not signalled
        assert _no_token_was_sent()
    finally:
        stranger.kill()
        stranger.wait()
