"""A virtual X display for the real-editor tests: Xvfb on loopback TCP only, started with no lock file and
no socket, so nothing is written under /tmp (``xvfb-run`` left ``/tmp/.X<n>-lock`` and
``/tmp/.X11-unix/X<n>`` behind, outside the checkout the test command may write in)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator

X_TCP_PORT = 6000  # display N listens on 6000 + N
_USED: set[int] = set()  # numbers this test run has had: a port just closed is not reused at once


def _taken(number: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", X_TCP_PORT + number)) == 0


def _answers(number: int) -> bool:
    """True when an X server on ``number`` accepts a connection setup. The TCP port is bound before the
    server has set up its screen and keyboard (and it may still die there), so an open port is not enough."""
    setup = struct.pack("<cxHHHHxx", b"l", 11, 0, 0, 0)  # little-endian, protocol 11.0, no authorisation
    try:
        with socket.create_connection(("127.0.0.1", X_TCP_PORT + number), timeout=5) as probe:
            probe.sendall(setup)
            return probe.recv(1) == b"\x01"  # 1: Success (0: Failed, 2: Authenticate)
    except OSError:
        return False


def alive(display: str) -> bool:
    """True when the X server of ``display`` (as :func:`virtual_display` gave it) still accepts clients."""
    return _answers(int(display.rsplit(":", 1)[1]))


@contextlib.contextmanager
def virtual_display(screen: str = "1280x1024x24", wait_s: float = 20.0) -> Iterator[str | None]:
    """``DISPLAY`` of a fresh Xvfb (``127.0.0.1:N``; no authority needed) once it answers a client, or None
    when Xvfb is not installed or does not come up. The server and its process group are stopped on the
    way out. ``-noreset``: a client leaving (the readiness probe among them) does not reset the server."""
    if shutil.which("Xvfb") is None:
        yield None
        return
    start = 40 + os.getpid() % 50
    number = next(n for n in range(start, 400) if n not in _USED and not _taken(n))
    _USED.add(number)
    command = ["Xvfb", f":{number}", "-nolock", "-nolisten", "unix", "-listen", "tcp", "-ac", "-noreset"]
    server = subprocess.Popen(
        [*command, "-screen", "0", screen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + wait_s
        ready = False
        while server.poll() is None and time.monotonic() < deadline:
            if _answers(number):
                ready = True
                break
            time.sleep(0.1)
        yield f"127.0.0.1:{number}" if ready and server.poll() is None else None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
