"""A virtual X display for the real-editor tests: Xvfb on loopback TCP only, started with no lock file and
no socket, so nothing is written under /tmp (``xvfb-run`` left ``/tmp/.X<n>-lock`` and
``/tmp/.X11-unix/X<n>`` behind, outside the checkout the test command may write in)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

X_TCP_PORT = 6000  # display N listens on 6000 + N


def _taken(number: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", X_TCP_PORT + number)) == 0


@contextlib.contextmanager
def virtual_display(screen: str = "1280x1024x24", wait_s: float = 15.0) -> Iterator[str | None]:
    """``DISPLAY`` of a fresh Xvfb (``127.0.0.1:N``; no authority needed), or None when Xvfb is not
    installed or does not come up. The server and its process group are stopped on the way out."""
    if shutil.which("Xvfb") is None:
        yield None
        return
    number = next(n for n in range(40 + os.getpid() % 50, 400) if not _taken(n))
    command = ["Xvfb", f":{number}", "-nolock", "-nolisten", "unix", "-listen", "tcp", "-ac"]
    server = subprocess.Popen(
        [*command, "-screen", "0", screen],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + wait_s
        while server.poll() is None and not _taken(number) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield f"127.0.0.1:{number}" if server.poll() is None and _taken(number) else None
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)
