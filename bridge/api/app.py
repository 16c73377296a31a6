"""The FastAPI application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bridge.api import (
    alertmanager,
    assets,
    audit,
    deliveries,
    health,
    incidents,
    oncall,
    samples,
    tickets,
    updates,
    windows,
)
from bridge.api.deps import refuse
from bridge.api.limits import BodySizeLimit
from bridge.api.schemas import FieldError, SampleBatch, error_response, error_responses
from bridge.errors import Conflict, DomainError, Forbidden, Invalid, NotFound
from bridge.service import Bridge
from bridge.store import StoreError
from bridge.web import add_pages

log = logging.getLogger("dyzur.api")

# Every operation: a body over max_body_bytes is refused before it is read.
EVERY_OPERATION = error_responses(413)
# Every operation behind a token: no or a wrong token, a role or hospital it may not act for,
# and a store that does not answer.
WITH_A_TOKEN = error_responses(401, 403, 413, 503)
# Listed at most in ErrorBody.detail; `errors` carries them all.
DETAIL_ERRORS = 3
# Each kind of domain error's status, the first that matches.
DOMAIN_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (Conflict, 409),
    (NotFound, 404),
    (Forbidden, 403),
    (Invalid, 422),
)


def field_errors(errors: Sequence[Any]) -> list[FieldError]:
    """pydantic's errors (or ready {field, msg, type} dicts) as the fields they name:
    "query.limit", "body.start", "samples.3.value"."""
    fields = []
    for e in errors:
        if isinstance(e, dict) and "loc" in e:
            name = ".".join(str(p) for p in e["loc"])
            fields.append(FieldError(field=name, msg=str(e["msg"]), type=str(e["type"])))
        elif isinstance(e, dict):
            fields.append(FieldError.model_validate(e))
        else:
            fields.append(FieldError(field="", msg=str(e), type="value_error"))
    return fields


def summary(fields: list[FieldError]) -> str:
    text = "; ".join(f"{f.field}: {f.msg}" if f.field else f.msg for f in fields[:DETAIL_ERRORS])
    if len(fields) > DETAIL_ERRORS:
        text += f"; and {len(fields) - DETAIL_ERRORS} more"
    return text or "invalid request"


def create_app(bridge: Bridge, *, run_ticker: bool = True) -> FastAPI:
    """Build the API around a bridge; serving it starts the bridge (``run_ticker``: with its
    time-driven work) and stops it at the end."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bridge.start(ticker=run_ticker)
        try:
            yield
        finally:
            bridge.stop()

    app = FastAPI(
        title="dyzur",
        summary="Monitoring-to-ticket bridge for hospital IT",
        description="Every 4xx and 5xx answer has the same body, `ErrorBody`: `detail` for a "
        "person, `errors` naming each refused field.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs and /redoc are the pages' (bridge/web/docs.py), with their scripts served by
        # the bridge itself; FastAPI's own load them from a CDN. /openapi.json stays.
        docs_url=None,
        redoc_url=None,
    )
    app.state.bridge = bridge
    app.add_middleware(BodySizeLimit, max_bytes=bridge.config.max_body_bytes)

    # One error body for every answer that is not a success (ErrorBody).
    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, list):  # a router's own schema errors
            fields = field_errors(exc.detail)
            return error_response(exc.status_code, summary(fields), fields, headers=exc.headers)
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(DomainError)
    async def refused(request: Request, exc: DomainError) -> JSONResponse:
        # What a service refused: not found, a conflict, forbidden, invalid.
        status = next((code for kind, code in DOMAIN_STATUS if isinstance(exc, kind)), 500)
        if isinstance(exc, Forbidden):
            # Credentials that may not do this: audited (role.refused, ...) per source.
            refuse(request, exc.refusal, exc.actor, exc.client, **exc.detail)
        conflicts_with = exc.conflicts_with if isinstance(exc, Conflict) else None
        return error_response(status, str(exc), conflicts_with=conflicts_with)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if errors and all(e["type"] == "json_invalid" for e in errors):
            return error_response(400, f"malformed JSON: {errors[0]['msg']}")
        # Name the field plainly: "query.limit: Input should be less than or equal to 1000".
        fields = field_errors(errors)
        return error_response(422, summary(fields), fields)

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        # The store is busy or gone: nothing was taken, the caller may retry (agents do).
        return error_response(
            503, "the ticket store is unavailable, retry later", headers={"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A defect: logged with its traceback by the server; the caller gets the same shape.
        return error_response(500, "internal error of the bridge; it is logged")

    routers = (
        samples,
        alertmanager,
        tickets,
        incidents,
        assets,
        windows,
        updates,
        audit,
        deliveries,
        oncall,
    )
    for router in routers:
        app.include_router(router.router, responses=WITH_A_TOKEN)
    app.include_router(health.router, responses=EVERY_OPERATION)
    # The server-rendered pages (the link in an on-call page), outside the API's schema.
    add_pages(app)

    # POST /api/v1/samples reads its body itself (the fast path for large batches) and
    # refers to SampleBatch: publish it and the models it uses in the components.
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = generate()  # kept as app.openapi_schema
        body = SampleBatch.model_json_schema(ref_template="#/components/schemas/{model}")
        components = spec.setdefault("components", {}).setdefault("schemas", {})
        components.update(body.pop("$defs", {}))
        components["SampleBatch"] = body
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    return app
