"""Helpdesk deliveries: GET /api/v1/deliveries?state=failed, the ticket changes the sinks
parked until ``dyzur sinks retry``. Engineers and admins see every sink's; a hospital's token
sees its own hospital's only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Reader, client_scope
from bridge.api.schemas import INT64_MAX, ParkedOut, error_responses
from bridge.delivery.sinks import FailedDeliveries

router = APIRouter(prefix="/api/v1/deliveries", tags=["deliveries"])


def get_deliveries(request: Request) -> FailedDeliveries:
    return request.app.state.bridge.deliveries


DeliveriesDep = Annotated[FailedDeliveries, Depends(get_deliveries)]


@router.get("", response_model=list[ParkedOut], responses=error_responses(422))
async def list_deliveries(
    principal: Reader,
    deliveries: DeliveriesDep,
    state: Literal["failed"] = Query(
        description="`failed`: the parked changes, refused by the helpdesk (`failed`) or "
        "held behind a refused change of the same ticket (`waiting`)",
    ),
    sink: str | None = Query(None, max_length=64, description="only this sink's"),
    client: str | None = Query(None, max_length=200, description="only this hospital's"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=INT64_MAX),
) -> list[ParkedOut]:
    """Ticket changes the helpdesk sinks parked, oldest change first: each with its sink,
    ticket, audit event id, action, state and reason. `dyzur sinks retry NAME` sends them
    again. A client token sees its own hospital's and may filter only by its own client."""
    scope = client_scope(principal, client)
    clients = None if scope is None else frozenset({scope})
    parked = await run_in_threadpool(deliveries.parked, sink, clients, limit, offset)
    return [ParkedOut.of(p) for p in parked]
