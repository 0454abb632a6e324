"""The cold paths as FastAPI applications: errors in the gateway's OpenAI shape (a database outage as 503 with
Retry-After), the generated /openapi.json and a /docs page whose assets ship with a PyPI package."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import DataError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from llm_gateway import __version__
from llm_gateway.errors import BadRequest, GatewayError, NotFound, ServiceUnavailable

log = logging.getLogger("llm_gateway.admin")
DATABASE_RETRY_AFTER_S = 5
DESCRIPTION = ("Keys, users, teams, usage and spend. Every call needs the master key (`Authorization: Bearer`, "
               "`x-api-key` or `api-key`), except /api/v1/me/* (a user's token) and /health, /ready, /metrics.")


def error_response(err: GatewayError) -> Response:
    return Response(err.body(), status_code=err.status, headers=err.headers or None, media_type="application/json")


def _validation_error(errors: list[dict[str, Any]]) -> GatewayError:
    """The first problem, named by its field: bad JSON is a 400, a value out of its range or shape a 422."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return BadRequest("the request body is not valid JSON", code="invalid_json")
    where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
    param = where[-1] if where else None
    if first.get("type") == "extra_forbidden":
        message = f"unknown field {param!r}"
    else:
        message = f"{'.'.join(where) or 'the request body'}: {first.get('msg', 'invalid')}"
    return GatewayError(message, status=422, type="invalid_request_error", code="invalid_value", param=param)


def _http_error(exc: HTTPException) -> GatewayError:
    if exc.status_code == 404:
        return NotFound("unknown path", code="unknown_url")
    if exc.status_code == 405:
        return GatewayError("method not allowed on this path", status=405, type="invalid_request_error",
                            code="method_not_allowed")
    return GatewayError(str(exc.detail), status=exc.status_code, type="invalid_request_error")


def install_errors(app: FastAPI) -> None:
    async def gateway_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GatewayError)
        return error_response(exc)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(_validation_error(list(exc.errors())))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(_http_error(exc))

    async def database_down(request: Request, exc: Exception) -> Response:
        # The exception's text can hold the database's host and user: the log gets its class only.
        log.warning("%s %s: the database is unreachable (%s)", request.method, request.url.path,
                    type(exc).__name__)
        return error_response(ServiceUnavailable(
            "the database is unreachable; try again shortly", code="database_unavailable",
            headers={"retry-after": str(DATABASE_RETRY_AFTER_S)}))

    async def conflict(request: Request, exc: Exception) -> Response:
        return error_response(GatewayError("the change conflicts with another one; try again", status=409,
                                           type="invalid_request_error", code="conflict"))

    async def bad_value(request: Request, exc: Exception) -> Response:
        return error_response(GatewayError("a value is out of the range the database holds", status=422,
                                           type="invalid_request_error", code="invalid_value"))

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("unhandled error while serving %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(GatewayError("internal gateway error"))

    app.add_exception_handler(GatewayError, gateway_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    for outage in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(outage, database_down)
    app.add_exception_handler(IntegrityError, conflict)
    app.add_exception_handler(DataError, bad_value)
    app.add_exception_handler(Exception, internal)


def _add_docs(app: FastAPI) -> None:
    """Swagger UI from the `swagger-ui-bundle-v2` package: nothing is fetched from outside at run time."""
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="llm-gateway admin API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def cold_app(routers: list[APIRouter], documented: bool = True) -> FastAPI:
    """One FastAPI application of `routers`; `documented`: serve /openapi.json and /docs."""
    # FastAPI's own telemetry off: the gateway's tracing owns spans, and its logs would carry request values.
    app = FastAPI(title="llm-gateway admin API", version=__version__, description=DESCRIPTION,
                  openapi_url="/openapi.json" if documented else None, docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                             "auto_configure": False})
    for router in routers:
        app.include_router(router)
    install_errors(app)
    if documented:
        _add_docs(app)
    return app
