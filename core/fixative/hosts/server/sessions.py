"""The web page's way in, as Jupyter does it: ``fixative ui`` asks the engine (with the token) for a
one-time ticket, opens ``/?ticket=…``; the page trades the ticket for an HttpOnly, SameSite=Strict session
cookie and drops it from the address bar. The token itself never reaches the browser."""

from __future__ import annotations

import secrets
import threading
import time

COOKIE = "fixative_session"
PAGE_HEADER = b"x-fixative-page"  # sent by the page's own script: a form on another site cannot send it
TICKET_SECONDS = 120.0
SESSION_SECONDS = 12 * 3600.0


class Sessions:
    """One-time tickets and the sessions they became; thread-safe, in memory (a restart logs out)."""

    def __init__(self) -> None:
        self._tickets: dict[str, float] = {}
        self._sessions: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue_ticket(self) -> str:
        ticket = secrets.token_urlsafe(24)
        with self._lock:
            self._tickets[ticket] = time.monotonic() + TICKET_SECONDS
        return ticket

    def redeem(self, ticket: str) -> str | None:
        """A new session id for a ticket not used before and not expired (a ticket works once)."""
        with self._lock:
            expires = self._tickets.pop(ticket, None)
            if expires is None or time.monotonic() > expires:
                return None
            session = secrets.token_urlsafe(32)
            self._sessions[session] = time.monotonic() + SESSION_SECONDS
            return session

    def valid(self, session: str | None) -> bool:
        if not session:
            return False
        with self._lock:
            expires = self._sessions.get(session)
            if expires is None:
                return False
            if time.monotonic() > expires:
                del self._sessions[session]
                return False
            return True

    def accepts(self, headers: dict) -> bool:
        """Whether a request's Cookie header carries a live session (what ``Gate`` asks)."""
        return self.valid(session_from_cookie(headers.get(b"cookie", b"").decode("latin-1")))


def session_from_cookie(cookie: str) -> str | None:
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE:
            return value
    return None
