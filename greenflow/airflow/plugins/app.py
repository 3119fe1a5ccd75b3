"""The FastAPI application Airflow mounts under ``/greenflow``: pages, JSON API, assets, all authenticated.

Airflow does not authenticate plugin applications, so the whole app depends on Airflow's auth manager
(``requires_access_view(AccessView.PLUGINS)``); FastAPI's own docs routes, which would bypass that, are
off, and the OpenAPI schema is served by an authenticated route instead. Every response carries a
Content-Security-Policy that lets only Airflow's own pages frame it and only this app's files run.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from greenflow.airflow.plugins import api, pages, report_routes
from greenflow.airflow.plugins.access import login_url, plugin_view
from greenflow.airflow.plugins.present import mask_text
from greenflow.errors import GreenflowError, InvalidInput

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class SecurityHeaders:
    """Adds the CSP and friends to every response; data responses are not cached (they depend on the user)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend(header for header in SECURITY_HEADERS if header[0] not in names)
                if b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _is_api(request: Request) -> bool:
    return request.url.path.removeprefix(str(request.scope.get("root_path") or "")).startswith("/api/")


def _error_page(request: Request, status: int, title: str, message: str, fix: str | None) -> Response:
    base = pages.base_path(request)
    login = login_url(str(request.url.path) + (f"?{request.url.query}" if request.url.query else ""))
    if login and login.startswith("/"):
        login = base.removesuffix(pages.MOUNT) + login
    context = {
        "base": base,
        "static": lambda name: f"{base}/static/{name}",
        "status": status,
        "title": title,
        "message": message,
        "fix": fix,
        "login": login if status == 401 else None,
    }
    return pages.templates.TemplateResponse(request, "error.html", context, status_code=status)


def _greenflow_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, GreenflowError)
    status = 400 if isinstance(error, InvalidInput) else 503
    message = mask_text(error.message) or ""
    if _is_api(request):
        return JSONResponse({"detail": message, "fix": error.fix}, status_code=status)
    title = "Bad request" if status == 400 else "The ledger cannot be read"
    return _error_page(request, status, title, message, error.fix)


def _database_error(request: Request, error: Exception) -> Response:
    first = (str(getattr(error, "orig", None) or error).strip().splitlines() or [type(error).__name__])[0]
    message = f"the ledger database did not answer: {mask_text(first)}"
    fix = "check that the ledger database is up and [greenflow] ledger_url is right"
    if _is_api(request):
        return JSONResponse({"detail": message, "fix": fix}, status_code=503)
    return _error_page(request, 503, "The ledger cannot be read", message, fix)


def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if _is_api(request):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    titles = {401: "Log in to see the Carbon Ledger", 403: "You may not see this", 404: "Not found"}
    message = {
        401: "Airflow does not know who you are (no valid session).",
        403: "Airflow's auth manager does not let you see this page or this DAG.",
    }.get(error.status_code, str(error.detail))
    return _error_page(request, error.status_code, titles.get(error.status_code, "Error"), message, None)


def create_app() -> FastAPI:
    """The plugin's application (Airflow mounts it under ``/greenflow``)."""
    app = FastAPI(
        title="greenflow Carbon Ledger",
        description="Read-only views of greenflow's provenance ledger: entries, budgets, totals and integrity.",
        dependencies=[Depends(plugin_view)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(GreenflowError, _greenflow_error)
    app.add_exception_handler(SQLAlchemyError, _database_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(report_routes.router)

    @app.get("/api/openapi.json", include_in_schema=False)
    def openapi() -> dict[str, Any]:
        """The API's OpenAPI schema (behind the same authentication as the API)."""
        return app.openapi()

    return app
