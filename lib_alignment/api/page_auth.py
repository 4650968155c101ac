"""Auth for routes the WebUI page itself calls (the gallery's Like buttons): the WebUI's API auth, or the
page's token.

With `--api-auth`, A1111's page has no API password to send. Our tab puts a per-process token into the
page (a gradio component value, so with `--gradio-auth` only a logged-in page gets it); a request that
carries it in the X-Alignment-Page-Token header counts as the page. Anyone who can use the page can already
do everything these routes do through it, so the token grants no more than the page does.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from .. import webui_facade as webui

HEADER = "X-Alignment-Page-Token"
_TOKEN = secrets.token_urlsafe(32)


def page_token() -> str:
    """This process's page token (new at every start: a page open across a restart must be reloaded)."""
    return _TOKEN


def token_html() -> str:
    """A hidden element carrying the token, for the page scripts to read."""
    return f'<div id="alignment_page_token" data-token="{_TOKEN}" style="display:none"></div>'


def _basic_ok(header: str, credentials: dict[str, str]) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return False
    expected = credentials.get(user)
    return expected is not None and secrets.compare_digest(password, expected)


def page_or_api_auth(request: Any) -> None:
    """FastAPI dependency: passes when the WebUI has no API auth, or the request carries its user and
    password (HTTP Basic), or the page token; else 401."""
    credentials = webui.api_credentials()
    if not credentials:
        return
    token = request.headers.get(HEADER, "")
    if token and secrets.compare_digest(token, _TOKEN):
        return
    if _basic_ok(request.headers.get("authorization", ""), credentials):
        return
    from fastapi import HTTPException

    raise HTTPException(status_code=401, detail="Incorrect username or password, or a page token from before a restart (reload the page)")


def dependency() -> Any:
    """page_or_api_auth as a FastAPI dependency (Request annotated for FastAPI 0.94's signature reading)."""
    from fastapi import Depends, Request

    def check(request: Request) -> None:
        page_or_api_auth(request)

    check.__annotations__ = {"request": Request, "return": None}
    return Depends(check)
