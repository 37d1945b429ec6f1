"""create_app(): routers, middleware, templates, static files and the one error handler."""

from __future__ import annotations

import logging
from urllib.parse import quote

from app.boot import collector_paused

with collector_paused():  # the imports below build the routes: see app.boot
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.params import Depends
    from fastapi.responses import JSONResponse, RedirectResponse, Response
    from fastapi.staticfiles import StaticFiles
    from sqlalchemy.exc import DataError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from app import queue, web  # noqa: F401  (queue: registers the after-commit hook)
    from app.ab.routes import api as ab_api
    from app.ab.routes import pages as ab_pages
    from app.api import openapi as api_docs
    from app.api import limits
    from app.api.limits import BodyLimitMiddleware
    from app.api.openai.routes import router as openai_api
    from app.auth.routes import pages as auth_pages
    from app.compare.routes import pages as compare_pages
    from app.costs.routes import api as costs_api
    from app.costs.routes import pages as costs_pages
    from app.config import Settings, get_settings
    from app.db import session_factory
    from app.datasets.routes import api as datasets_api
    from app.datasets.routes import pages as datasets_pages
    from app.datasets.cleaning_routes import pages as cleaning_pages
    from app.datasets.cleaning_api import api as cleaning_api
    from app.deps import csrf_protect
    from app.errors import StudioError
    from app.evaluations.routes import api as evaluations_api
    from app.evaluations.routes import pages as evaluations_pages
    from app.health import router as health_router
    from app.home.routes import pages as home_pages
    from app.runs.pages import pages as runs_pages
    from app.runs.routes import api as runs_api
    from app.models_registry.routes import api as models_api
    from app.registry.routes import api as registry_api
    from app.registry.routes import pages as registry_pages
    from app.middleware import StudioMiddleware
    from app.playground.routes import api as playground_api
    from app.playground.routes import pages as playground_pages
    from app.storage import open_store
    from app.sweeps.routes import api as sweeps_api
    from app.sweeps.routes import pages as sweeps_pages
    from app.teams.routes import api as team_api
    from app.teams.routes import pages as team_pages
    from app.notifications.routes import api as notifications_api
    from app.notifications.routes import pages as notifications_pages

log = logging.getLogger("studio")
API_PREFIXES = ("/api/", "/v1/")


def _wants_json(request: Request) -> bool:
    return (request.url.path.startswith(API_PREFIXES)
            or request.headers.get("authorization", "").lower().startswith("bearer ")
            or "application/json" in request.headers.get("accept", "").split(";")[0])


def error_response(request: Request, status: int, code: str, message: str,
                   param: str | None = None, details: dict | None = None) -> Response:
    if _wants_json(request):
        # One error schema for both APIs; it is also the shape the openai SDK reads.
        body = {"error": {"message": message, "type": code, "code": code, "param": param}}
        if details:
            body["error"]["details"] = details
        return JSONResponse(body, status_code=status)
    if status == 401:
        return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
    if web.is_htmx(request):
        response = web.templates.TemplateResponse(
            request, "components/_toast.html", {"kind": "error", "message": message})
        response.headers.update({"HX-Retarget": "#toasts", "HX-Reswap": "outerHTML"})
        return response
    titles = {403: "Not allowed", 404: "Not found", 413: "Too large", 422: "Please check your input",
              429: "Slow down", 500: "Something went wrong", 503: "Not available right now"}
    return web.render(request, "errors/error.html",
                      {"title": titles.get(status, "Something went wrong"), "message": message},
                      status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def _studio_error(request: Request, exc: StudioError) -> Response:
        response = error_response(request, exc.status_code, exc.code, exc.message, exc.param, exc.details)
        if "retry_after_s" in exc.details:  # 429: tell clients (the openai SDK included) when to retry
            response.headers["Retry-After"] = str(exc.details["retry_after_s"])
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            problems.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        param = ".".join(str(x) for x in exc.errors()[0].get("loc", ())[1:]) if exc.errors() else None
        return error_response(request, 422, "invalid_input", "; ".join(problems) or "Invalid input.",
                              param=param or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = {404: "There is nothing at this address.",
                   405: "This address does not accept that method."}.get(exc.status_code, str(exc.detail))
        return error_response(request, exc.status_code, "not_found" if exc.status_code == 404 else "http_error",
                              message)

    @app.exception_handler(OverflowError)
    @app.exception_handler(DataError)
    async def _out_of_range(request: Request, exc: Exception) -> Response:
        # An id or number beyond what the database column holds (e.g. 2**70 in a path).
        return error_response(request, 422, "invalid_input", "A number in the request is out of range.")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "internal_error",
                              "Something went wrong on our side. The error was logged; please try again.")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.ensure_dirs()
    app = FastAPI(title="Fine-tuning Studio", version="0.1.0", dependencies=[Depends(csrf_protect)],
                  docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.session_factory = session_factory(settings)
    app.state.store = open_store(settings)
    app.state.secret_key = settings.resolved_secret_key()
    app.state.rate_limiter = limits.limiter_for(settings)
    app.add_middleware(StudioMiddleware, secure_cookies=settings.secure_cookies)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_json_bytes,
                       max_upload_bytes=settings.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=str(web.ROOT / "static")), name="static")
    for router in (health_router, auth_pages, home_pages, team_pages, team_api, runs_api, models_api,
                   datasets_pages, cleaning_pages, datasets_api, cleaning_api, openai_api, compare_pages, runs_pages,
                   evaluations_api, evaluations_pages, ab_pages, ab_api, sweeps_api, sweeps_pages,
                   notifications_pages, notifications_api, costs_pages, costs_api, playground_pages, playground_api,
                   registry_api, registry_pages):
        app.include_router(router)
    api_docs.install(app)
    for item in [("/runs/new", "New fine-tune"), ("/runs", "Runs"), ("/models", "Models"), ("/datasets", "Datasets"), ("/playground", "Playground"), ("/sweeps", "Sweeps"), ("/ab", "A/B tests"), ("/usage", "Usage"), ("/team", "Team"), ("/team/api-keys", "API keys")]:
        if item not in web.NAV_ITEMS:
            web.NAV_ITEMS.append(item)
    install_error_handlers(app)
    return app
