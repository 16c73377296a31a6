"""POST /api/v1/samples: a batch of samples from an agent."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from bridge.api.deps import Agent, Engineer, IngestorDep
from bridge.api.schemas import (
    AgentStreamOut,
    IngestResponse,
    RejectedSample,
    SampleBatch,
    timestamps_out_of_range,
)
from bridge.sources.samples import BatchOrigin, Rejection, may_hold_forbidden_characters

router = APIRouter(prefix="/api/v1", tags=["samples"])


def _field(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


@router.post(
    "/samples",
    response_model=IngestResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            # Published in the components by the app factory, with the models it uses.
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SampleBatch"}}
            },
        }
    },
    responses={
        code: {
            "description": meaning,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
        for code, meaning in [
            (400, "malformed JSON"),
            (422, "a field is refused: `errors` names each"),
        ]
    },
)
async def push_samples(request: Request, principal: Agent, ingestor: IngestorDep) -> IngestResponse:
    """Evaluate a batch. Bad samples (NaN, unknown asset, ...) are rejected one by one with
    their reason; the rest of the batch is accepted."""
    body = await request.body()
    try:
        # Parsed by pydantic-core straight from bytes: the fast path for large batches.
        batch = SampleBatch.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise HTTPException(400, f"malformed JSON: {errors[0]['msg']}") from None
        raise HTTPException(
            422,
            [{"field": _field(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
        ) from None
    out_of_range = timestamps_out_of_range(batch.samples)
    if out_of_range:
        raise HTTPException(422, [e.model_dump() for e in out_of_range])
    origin = None
    if batch.agent is not None:
        origin = BatchOrigin(batch.agent.id, batch.agent.seq, batch.agent.dropped)
    result = await run_in_threadpool(
        ingestor.ingest,
        batch.samples,
        principal,
        origin,
        batch.events,
        labels_checked=not may_hold_forbidden_characters(body),
    )
    return IngestResponse(
        accepted=result.accepted,
        rejected=[_rejected(r) for r in result.rejected],
        rejected_events=[_rejected(r) for r in result.rejected_events],
        duplicate=result.duplicate,
        anomaly=result.anomaly,
    )


def _rejected(r: Rejection) -> RejectedSample:
    return RejectedSample(index=r.index, reason=r.reason, detail=r.detail)


@router.get("/agents", response_model=list[AgentStreamOut], tags=["agents"])
def list_agents(principal: Engineer, ingestor: IngestorDep) -> list[AgentStreamOut]:
    """Each agent's numbered batches: how many arrived, duplicates refused, batches it lost."""
    return [AgentStreamOut.of(a) for a in ingestor.agent_streams()]
