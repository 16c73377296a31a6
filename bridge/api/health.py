"""/healthz for load balancers and /metrics for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from bridge.api.deps import PingDep, RegistryDep, metrics_access
from bridge.api.schemas import error_response, error_responses

router = APIRouter(tags=["operations"])


class HealthOut(BaseModel):
    status: str = "ok"


@router.get(
    "/healthz",
    response_model=HealthOut,
    responses=error_responses(503, e503="store unavailable"),
)
def healthz(ping: PingDep) -> HealthOut | JSONResponse:
    """200 when the store answers, 503 when it does not. No token needed; tells nothing secret."""
    try:
        ping()
    except Exception:
        return error_response(503, "store unavailable", headers={"Retry-After": "5"})
    return HealthOut()


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(metrics_access)],
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **error_responses(
            401, 403, 503, e401="no token, or not a valid one (unless public_metrics)"
        ),
    },
)
def metrics(registry: RegistryDep) -> Response:
    """Prometheus text format. Needs an engineer or admin token unless public_metrics is set."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
