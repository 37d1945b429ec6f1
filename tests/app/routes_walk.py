"""Enumerates the app's routes for the tests that must cover every one of them."""

from __future__ import annotations

import re

from fastapi.routing import APIRoute

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")


def _walk(items, out: list) -> None:  # noqa: ANN001
    for item in items:
        if hasattr(item, "effective_candidates"):  # FastAPI >= 0.16x keeps included routers nested
            _walk(item.effective_candidates(), out)
        elif hasattr(item, "original_route"):
            if isinstance(item.original_route, APIRoute):
                out.extend((m, item.path) for m in sorted(item.original_route.methods) if m != "HEAD")
        elif isinstance(item, APIRoute):
            out.extend((m, item.path) for m in sorted(item.methods) if m != "HEAD")


def routes(app) -> list[tuple[str, str]]:  # noqa: ANN001
    out: list[tuple[str, str]] = []
    _walk(app.routes, out)
    return out


def params(path: str) -> list[str]:
    return PARAM.findall(path)


def fill(path: str, values: dict[str, object]) -> str:
    return PARAM.sub(lambda m: str(values[m.group(1)]), path)
