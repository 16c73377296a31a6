"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bridge.api import alertmanager, assets, health, samples, tickets, updates, windows
from bridge.api.limits import BodySizeLimit
from bridge.service import Bridge
from bridge.store import StoreError


def create_app(bridge: Bridge, *, run_ticker: bool = True) -> FastAPI:
    """Build the API around a running bridge. ``run_ticker`` starts the time-driven rules."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_ticker:
            bridge.start_ticker()
        yield

    app = FastAPI(
        title="dyzur",
        summary="Monitoring-to-ticket bridge for hospital IT",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.bridge = bridge
    app.add_middleware(BodySizeLimit, max_bytes=bridge.config.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field plainly: "query.limit: Input should be less than or equal to 1000".
        detail = [
            {"field": ".".join(str(p) for p in e["loc"]), "msg": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> JSONResponse:
        # The store is busy or gone: nothing was taken, the caller may retry (agents do).
        return JSONResponse(
            {"detail": "the ticket store is unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    app.include_router(samples.router)
    app.include_router(alertmanager.router)
    app.include_router(tickets.router)
    app.include_router(assets.router)
    app.include_router(windows.router)
    app.include_router(updates.router)
    app.include_router(health.router)
    return app
