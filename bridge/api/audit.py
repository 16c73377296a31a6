"""The audit trail for people without a SIEM: GET /api/v1/audit.

Engineers and admins read every event; a hospital's token reads the events of its own hospital
(``client`` = its id), nothing of the others' nor the bridge's own (configuration loaded,
refusals of unknown tokens); agents none.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Reader, TrailDep, client_scope
from bridge.api.schemas import INT64_MAX, error_responses
from bridge.api.windows import PlannedTime
from bridge.clock import local_iso
from bridge.models import AuditEvent
from bridge.store import AuditFilter

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])


class AuditEventOut(BaseModel):
    """One audit event; ``at`` (when it happened) is ISO 8601 in Europe/Warsaw with its UTC
    offset. ``hash`` is its link in the chain (``dyzur audit verify``)."""

    id: int
    at: str
    actor: str
    action: str
    outcome: str
    client: str | None
    asset: str | None
    detail: dict[str, Any]
    hash: str

    @classmethod
    def of(cls, e: AuditEvent) -> AuditEventOut:
        return cls(
            id=e.id or 0,
            at=local_iso(e.at) or "",
            actor=e.actor,
            action=e.action,
            outcome=e.outcome,
            client=e.client,
            asset=e.asset,
            detail=e.detail,
            hash=e.hash or "",
        )


NEXT_PAGE = {
    "Link": {
        "description": "The next page's URL when more events follow: "
        '`</api/v1/audit?limit=100&after=1234>; rel="next"`',
        "schema": {"type": "string"},
    }
}


@router.get(
    "",
    response_model=list[AuditEventOut],
    responses={200: {"headers": NEXT_PAGE}, **error_responses(422)},
)
async def list_audit(
    request: Request,
    response: Response,
    principal: Reader,
    trail: TrailDep,
    client: str | None = Query(None, description="only this hospital's events"),
    action: str | None = Query(
        None, description="`ticket.opened`, or a prefix ending in `*`: `ticket.*`"
    ),
    actor: str | None = Query(None, description="a token's name, `dyzur`, `agent:NAME`"),
    asset: str | None = None,
    since: PlannedTime | None = Query(
        None,
        description="events that happened at or after it; ISO 8601, without an offset "
        "Europe/Warsaw",
    ),
    order: Literal["newest", "oldest"] = Query(
        "newest", description="in the order recorded: newest or oldest first"
    ),
    after: int | None = Query(
        None,
        ge=0,
        le=INT64_MAX,
        description="Cursor: the id of the last event of the previous page; the list continues "
        "right after it in its order. The `Link` header of a full page carries it.",
    ),
    limit: int = Query(100, ge=1, le=1000),
) -> list[AuditEventOut]:
    """Audit events in the order they were recorded, newest first (`order=oldest` to read
    forward, e.g. to poll with `after=` the last id seen). A client token sees its own
    hospital's events and may filter only by its own client. When more events follow, the
    `Link` header (rel="next") gives the next page's URL (`after=`)."""
    query = AuditFilter(
        client_scope(principal, client),
        action,
        actor,
        asset,
        since,
        after,
        newest_first=order == "newest",
        limit=limit + 1,
    )
    events = await run_in_threadpool(trail.matching, query)
    if len(events) > limit:
        events = events[:limit]
        url = request.url.include_query_params(after=events[-1].id)
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return [AuditEventOut.of(e) for e in events]
