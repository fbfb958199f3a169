"""The web page (``hosts/web``): ``/`` trades a one-time ticket for the session cookie, then serves the
app; without either it shows how to open the page, never the app. ``POST /ui/ticket`` (token only) is what
``fixative ui`` asks for; ``/ui/<asset>`` needs the cookie (or the token) like every other route."""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from ..errors import ApiError
from ..sessions import COOKIE, SESSION_SECONDS

router = APIRouter()
WEB = Path(__file__).resolve().parents[2] / "web"
ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@router.get("/", include_in_schema=False)
def index(request: Request, ticket: str | None = None):
    sessions = request.app.state.sessions
    if ticket is not None:
        session = sessions.redeem(ticket)
        if session is None:
            return how_to_open("This link was used already or has expired: links work once.")
        response = RedirectResponse("/", status_code=303, headers=SECURITY_HEADERS)  # drops the ticket
        response.set_cookie(
            COOKIE, session, max_age=int(SESSION_SECONDS), path="/", httponly=True, samesite="strict"
        )
        return response
    if sessions.valid(_cookie(request)):
        page = WEB / "index.html"
        return FileResponse(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)
    return how_to_open("")


@router.get("/ui/{name}", include_in_schema=False)
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise ApiError(404, f"no such page file: {name}")
    return FileResponse(WEB / name, media_type=ASSETS[name], headers=SECURITY_HEADERS)


@router.post("/ui/ticket", summary="a one-time URL that opens the web page (what `fixative ui` asks for)")
def ticket(request: Request) -> dict:
    if not request.headers.get("authorization"):
        raise ApiError(403, "tickets are given for the token only (run `fixative ui`)")
    host = request.headers.get("host", "127.0.0.1")
    return {"url": f"http://{host}/?ticket={request.app.state.sessions.issue_ticket()}"}


def _cookie(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def how_to_open(reason: str) -> HTMLResponse:
    text = (WEB / "how-to-open.html").read_text(encoding="utf-8")
    return HTMLResponse(
        text.replace("{reason}", html.escape(reason)), status_code=401, headers=SECURITY_HEADERS
    )
