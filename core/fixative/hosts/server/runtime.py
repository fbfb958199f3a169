"""Running the engine: token and discovery files, a listening socket, uvicorn, and stopping it again.

The token and ``server.json`` live in the same config folder the standard-library client reads
(``fixative.fixative_client.config_dir``), so there is one definition of where they are.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ...errors import FixativeError
from ...fixative_client import (
    DEFAULT_PORT,
    SERVER_FILE,
    TOKEN_FILE,
    EngineClient,
    EngineError,
    config_dir,
    process_alive,
    read_server_info,
)
from ...version import __version__
from .app import create_app
from .jobs import JobManager, ServerSettings


def ensure_token(folder: Path | None = None) -> str:
    """The engine's token, created (owner-only) on first start and kept afterwards."""
    folder = folder or config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
        if token:
            if os.name == "posix" and path.stat().st_mode & 0o077:
                path.chmod(0o600)  # someone loosened it; a readable token lets other users in
            return token
        path.unlink()
        return ensure_token(folder)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(token + "\n")
    return token


def write_server_info(url: str, pid: int, folder: Path | None = None) -> Path:
    """``server.json`` for plug-ins to find this engine; written atomically, owner-only."""
    folder = folder or config_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / SERVER_FILE
    temp = path.with_name(f".{SERVER_FILE}.{pid}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"url": url, "pid": pid, "version": __version__}, handle)
    os.replace(temp, path)
    return path


def remove_server_info(pid: int, folder: Path | None = None) -> None:
    """Remove ``server.json`` if it still describes this process (a newer engine may have replaced it)."""
    path = (folder or config_dir()) / SERVER_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if info.get("pid") == pid:
        path.unlink(missing_ok=True)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_for(host: str, port: int) -> str:
    """The URL clients on this machine use (a wildcard bind is reached through loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port); a busy port is a one-line error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if os.name == "posix":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise FixativeError(
                f"port {port} on {host} is already in use (another Fixative engine? "
                "`fixative serve --stop` stops it; --port 0 picks a free port)"
            ) from None
        raise FixativeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


@dataclass
class RunningServer:
    """An engine serving from a background thread (tests, notebooks): ``url``, ``token``, ``stop()``."""

    url: str
    token: str
    manager: JobManager
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _uvicorn(
    manager: JobManager,
    token: str,
    log_level: str = "warning",
    on_stopped: Callable[[], None] | None = None,
    extra_hosts: tuple[str, ...] = (),
) -> uvicorn.Server:
    holder: dict = {}

    def request_shutdown() -> None:
        holder["server"].should_exit = True

    app = create_app(manager, token, request_shutdown, on_stopped, extra_hosts=extra_hosts)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    holder["server"] = server
    return server


def start_in_thread(
    settings: ServerSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    timeout: float = 30.0,
) -> RunningServer:
    """Serve in a daemon thread and return once it answers; no discovery file is written."""
    sock = bind(host, port)
    token = token or secrets.token_urlsafe(32)
    manager = JobManager(settings)
    server = _uvicorn(manager, token)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fixative-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise FixativeError("the engine did not start")
        time.sleep(0.02)
    return RunningServer(url_for(host, sock.getsockname()[1]), token, manager, server, thread)


def serve(
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    ready_line: bool = False,
    allow_remote: bool = False,
    log_level: str = "info",
) -> int:
    """Run the engine in the foreground until Ctrl+C, SIGTERM, or ``fixative serve --stop``."""
    if not is_loopback(host):
        if not allow_remote:
            raise FixativeError(
                f"{host} is not a loopback address; anyone who can reach it could use this "
                "engine. Pass --allow-remote to do it anyway"
            )
        print(
            f"fixative: warning: listening on {host}, reachable from other machines; requests still need the "
            "token, but traffic is not encrypted",
            file=sys.stderr,
        )
    token = ensure_token()
    running = EngineClient.discover()  # only an engine that proves it holds the token counts
    if running is not None:
        info = read_server_info() or {}
        raise FixativeError(
            f"a Fixative engine is already running at {running.url} (pid {info.get('pid')}); "
            "`fixative serve --stop` stops it"
        )
    sock = bind(host, port)
    url = url_for(host, sock.getsockname()[1])
    manager = JobManager(settings)
    pid = os.getpid()
    extra = () if is_loopback(host) or host in ("0.0.0.0", "::", "") else (host,)
    server = _uvicorn(
        manager, token, log_level=log_level, on_stopped=lambda: remove_server_info(pid), extra_hosts=extra
    )

    announce = threading.Thread(
        target=_announce,
        args=(server, url, pid, ready_line, settings.devices),
        name="fixative-announce",
        daemon=True,
    )
    announce.start()
    try:
        server.run(sockets=[sock])
    finally:
        remove_server_info(pid)
        sock.close()
    return 0


def _announce(server: uvicorn.Server, url: str, pid: int, ready_line: bool, devices: list[str]) -> None:
    """Once listening: write ``server.json``, then the ready line (for the plug-in that started us) or a
    human line."""
    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.02)
    write_server_info(url, pid)
    if ready_line:
        print("FIXATIVE_READY " + json.dumps({"url": url, "pid": pid, "version": __version__}), flush=True)
        _silence_stdout()  # whoever read the line may go away; later writes must not hit a closed pipe
    else:
        print(
            f"Fixative engine {__version__} listening on {url} (devices: {', '.join(devices)}); "
            "stop it with Ctrl+C or `fixative serve --stop`",
            file=sys.stderr,
            flush=True,
        )


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def stop_running(timeout: float = 15.0) -> str:
    """Stop the engine named in ``server.json``: ask it over HTTP, signal its pid if it does not answer.

    The token goes only to an engine that proves it holds it; a stale ``server.json`` is removed."""
    had_file = (config_dir() / SERVER_FILE).exists()
    info = read_server_info()  # removes a file whose process is gone
    if info is None:
        if had_file:
            return "no engine was running; removed its stale server.json"
        raise FixativeError("no Fixative engine is running (no server.json in the config folder)")
    pid = int(info.get("pid") or 0)
    try:
        EngineClient(info["url"], timeout=5.0)._request("POST", "/shutdown")
        asked = True
    except EngineError:
        asked = False
    if not asked:
        if not process_alive(pid) or not _looks_like_engine(pid):
            remove_server_info(pid)
            return f"no engine was running at {info['url']}; removed its stale server.json"
        os.kill(pid, signal.SIGTERM)  # alive but not answering: ask the process itself
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid) or read_server_info() is None:
            return f"stopped the Fixative engine at {info['url']} (pid {pid})"
        time.sleep(0.1)
    raise FixativeError(f"the engine (pid {pid}) did not stop within {timeout:.0f} s")


def _looks_like_engine(pid: int) -> bool:
    """Guard against signalling an unrelated process that reused a stale pid (checked where /proc exists)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not cmdline.parent.exists():
        return True
    try:
        return b"fixative" in cmdline.read_bytes()
    except OSError:
        return False
