"""/healthz for load balancers and /metrics for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.api.deps import get_bridge, metrics_access
from bridge.service import Bridge

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz(bridge: Bridge = Depends(get_bridge)) -> JSONResponse:
    """200 when the store answers, 503 when it does not. No token needed; tells nothing secret."""
    try:
        bridge.store.ping()
    except Exception:
        return JSONResponse({"status": "store unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/metrics", response_class=Response, dependencies=[Depends(metrics_access)])
def metrics(bridge: Bridge = Depends(get_bridge)) -> Response:
    """Prometheus text format. Needs an engineer or admin token unless public_metrics is set."""
    return Response(generate_latest(bridge.metrics.registry), media_type=CONTENT_TYPE_LATEST)
