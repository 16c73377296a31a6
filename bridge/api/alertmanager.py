"""POST /api/v1/alertmanager: Alertmanager's webhook (payload version 4)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Agent, ReceiverDep
from bridge.api.schemas import (
    EARLIEST_EPOCH,
    LATEST_EPOCH,
    LabelName,
    LabelValue,
    RejectedSample,
    error_responses,
)

router = APIRouter(prefix="/api/v1", tags=["alertmanager"])


def _instant(when: datetime) -> datetime:
    # Alertmanager writes RFC 3339 with an offset; a time without one is taken as UTC.
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    try:
        inside = EARLIEST_EPOCH <= when.timestamp() <= LATEST_EPOCH
    except OverflowError:  # the offset takes it out of what a datetime holds
        inside = False
    if not inside:
        raise ValueError("must be from 0001-01-02 to 9999-12-31 (UTC)")
    return when


# When an alert started: a real moment (Alertmanager's "zero" endsAt is year 1, not used).
Instant = Annotated[datetime, AfterValidator(_instant)]


class AmAlert(BaseModel):
    """One alert of the notification. Alertmanager's own fields; unknown ones are ignored so a
    newer Alertmanager still gets through."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[LabelName, LabelValue] = Field(max_length=64)
    # Texts of any length (the body size limit bounds them); a ticket keeps their beginning.
    annotations: dict[LabelName, str] = Field(default_factory=dict, max_length=64)
    startsAt: Instant
    endsAt: datetime | None = None
    generatorURL: str | None = None
    fingerprint: str | None = Field(None, max_length=64, pattern=r"^[0-9a-zA-Z]+$")


class AmNotification(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str | None = None
    groupKey: str | None = None
    alerts: list[AmAlert] = Field(max_length=10_000)


class AmResponse(BaseModel):
    accepted: int
    rejected: list[RejectedSample]


@router.post(
    "/alertmanager",
    response_model=AmResponse,
    responses=error_responses(400, 422),
)
async def alertmanager_webhook(
    body: AmNotification, principal: Agent, receiver: ReceiverDep
) -> AmResponse:
    """Alerts from Alertmanager (webhook_config with http_config.authorization: an agent token).
    An alert without an inventory asset or a category is refused alone and named; the rest are
    taken. An alert is identified by its fingerprint within the hospital of its asset; a firing
    that started before the alert's recorded resolution (a late copy, a replay) is taken but
    reopens nothing. A 200 tells Alertmanager not to send the notification again."""
    result = await run_in_threadpool(receiver.receive, body.alerts, principal)
    return AmResponse(
        accepted=result.accepted,
        rejected=[
            RejectedSample(index=r.index, reason=r.reason, detail=r.detail) for r in result.rejected
        ],
    )
