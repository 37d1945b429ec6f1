"""Page rendering kit: templates, the navigation, flash messages, redirects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer

from app.deps import csrf_token_for
from app.home import glossary

ROOT = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(ROOT / "templates"))
templates.env.globals["glossary"] = glossary  # setting_label / setting_term / BY_SLUG in every page
FLASH_COOKIE = "studio_flash"

# (href, label) in the order the top bar shows them. Domains append theirs in main.py.
NAV_ITEMS: list[tuple[str, str]] = [("/", "Home")]
# Shown after the domains' items (main.py appends theirs in between).
NAV_TAIL: list[tuple[str, str]] = [("/glossary", "Glossary")]


def _flash_serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(request.app.state.secret_key, salt="flash")


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def current_nav(path: str) -> str | None:
    """The nav item a page belongs to: the longest href that is the path or a parent of it."""
    matches = [h for h, _ in NAV_ITEMS + NAV_TAIL if path == h or (h != "/" and path.startswith(h + "/"))]
    return max(matches, key=len, default=None)


def render(request: Request, name: str, context: dict[str, Any] | None = None, *,
           status_code: int = 200) -> HTMLResponse:
    flashes: list[tuple[str, str]] = []
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            flashes = [tuple(x) for x in _flash_serializer(request).loads(raw)]
        except (BadSignature, ValueError, TypeError):
            flashes = []
    ctx: dict[str, Any] = {
        "viewer": getattr(request.state, "viewer", None),
        "csrf_token": csrf_token_for(request),
        "nav_items": NAV_ITEMS + NAV_TAIL,
        "nav_current": current_nav(request.url.path),
        "flashes": flashes,
        "form": {},
        "errors": {},
        "error": None,
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if raw:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect(request: Request, url: str, *, flash: tuple[str, str] | None = None) -> RedirectResponse:
    """Post/redirect/get; an htmx request gets HX-Redirect so the whole page changes."""
    response = RedirectResponse(url, status_code=303)
    if is_htmx(request):
        response.headers["HX-Redirect"] = url
    if flash:
        value = _flash_serializer(request).dumps([list(flash)])
        response.set_cookie(FLASH_COOKIE, value, httponly=True, samesite="lax", path="/",
                            secure=request.app.state.settings.secure_cookies)
    return response


def safe_next(url: str | None) -> str:
    """Only same-site relative paths are followed after log-in (no open redirect)."""
    if url and url.startswith("/") and not url.startswith("//") and "\\" not in url:
        return url
    return "/"


def to_json(value: Any) -> str:
    return json.dumps(value, default=str)
