"""The engine's front door (ASGI middleware): every request is checked here before any route runs.

1. The Host header must name this engine by a loopback name and its port (or the address it was told to
   listen on), and an Origin, when sent, must be such a page: a DNS-rebinding page gets 421/403.
2. The token (``Authorization: Bearer``) on everything except ``/hello`` (the proof of identity a client
   asks for before it sends the token) and the routes ``public`` names; or the web page's session cookie
   (``sessions.py``), whose changing requests must also carry the page's own header.
3. The upload limit (413).

A refused body is read to the end and dropped, so the client always gets to read the answer (closing a
socket with unread data would reset the connection instead).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .sessions import PAGE_HEADER

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class UploadTooLarge(Exception):
    """Raised from inside ``receive`` when a request body passes the upload limit."""


def allowed_hosts(port: int, extra: tuple[str, ...] = ()) -> set[str]:
    """The Host header values that name this engine."""
    names = [*LOOPBACK_NAMES, *extra]
    allowed = {f"{name}:{port}" for name in names}
    if port == 80:
        allowed |= set(names)
    return allowed


class Gate:
    def __init__(
        self,
        app: ASGIApp,
        token: str,
        limit: Callable[[], int],
        public: tuple[str, ...] = ("/hello",),
        extra_hosts: tuple[str, ...] = (),
        session: Callable[[dict], bool] | None = None,
    ) -> None:
        self.app = app
        self.token = token.encode()
        self.limit = limit
        self.public = public
        self.extra_hosts = extra_hosts
        self.session = session  # accepts a request by its cookie (the web page), when given

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        refused = self._refusal(scope, headers)
        if refused is not None:
            await _drain(receive)
            await _json(send, *refused)
            return
        limit = self.limit()
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _drain(receive)
            await _json(send, 413, f"upload is larger than the {mib(limit)} limit of this engine")
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    if message.get("more_body"):
                        await _drain(receive)
                    raise UploadTooLarge(f"upload is larger than the {mib(limit)} limit of this engine")
            return message

        await self.app(scope, counting_receive, send)

    def _refusal(self, scope: Scope, headers: dict) -> tuple[int, str] | None:
        port = (scope.get("server") or ("", 0))[1]
        hosts = allowed_hosts(port, self.extra_hosts)
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in hosts:
            return 421, f"this engine answers only to {sorted(hosts)[0]} (Host {host or 'missing'!r} refused)"
        origin = headers.get(b"origin")
        if origin is not None and origin.decode("latin-1").lower() not in {f"http://{h}" for h in hosts}:
            return 403, "requests from other web pages are refused"
        if scope["path"] in self.public:
            return None
        scheme, _, given = headers.get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and given.strip():
            return None if secrets.compare_digest(given.strip(), self.token) else (401, "wrong token")
        if self.session is not None and self.session(headers):
            if scope.get("method") not in ("GET", "HEAD") and PAGE_HEADER not in headers:
                return 403, "changes with the page's cookie must come from the Fixative page itself"
            return None
        return 401, (
            "missing token: send 'Authorization: Bearer <token>' (the token is in the Fixative config folder)"
        )


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _json(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def mib(n: int) -> str:
    return f"{n / 1024 / 1024:.0f} MiB" if n >= 1024 * 1024 else f"{n} bytes"
