"""ASGI middleware: the anonymous CSRF cookie and security headers."""

from __future__ import annotations

from http.cookies import SimpleCookie

from app.auth.security import new_token

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
     b"script-src 'self'; frame-ancestors 'none'; form-action 'self'"),
]


class StudioMiddleware:
    def __init__(self, app, *, secure_cookies: bool) -> None:  # noqa: ANN001
        self.app = app
        self.secure = secure_cookies

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = SimpleCookie()
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                try:
                    cookies.load(value.decode("latin-1"))
                except Exception:  # a malformed cookie header is ignored, not a 500
                    pass
        existing = cookies.get("studio_csrf")
        token = existing.value if existing else new_token(24)
        scope["studio_csrf_cookie"] = token

        async def send_wrapper(message) -> None:  # noqa: ANN001
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if existing is None:
                    cookie = f"studio_csrf={token}; Path=/; HttpOnly; SameSite=Lax"
                    if self.secure:
                        cookie += "; Secure"
                    headers.append((b"set-cookie", cookie.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)
