"""The inventory as dyzur sees it: each asset with what it learnt (the deployed AMMS version)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from bridge.api.deps import get_bridge, require
from bridge.auth import Principal, Role
from bridge.models import AssetKind, Environment
from bridge.service import Bridge

router = APIRouter(prefix="/api/v1/assets", tags=["assets"])


class AssetOut(BaseModel):
    id: str
    client: str
    kind: AssetKind
    environment: Environment
    name: str | None
    depends_on: str | None
    amms_version: str | None


@router.get("", response_model=list[AssetOut])
def list_assets(
    principal: Principal = Depends(require(Role.ENGINEER, Role.CLIENT)),
    bridge: Bridge = Depends(get_bridge),
) -> list[AssetOut]:
    """Assets of the inventory (a client token: its own hospital's only)."""
    facts = bridge.store.asset_facts()
    return [
        AssetOut(
            id=a.id,
            client=a.client,
            kind=a.kind,
            environment=a.environment,
            name=a.name,
            depends_on=a.depends_on,
            amms_version=facts.get(a.id, {}).get("amms_version"),
        )
        for a in bridge.loaded.assets.values()
        if principal.can_see(a.client)
    ]
