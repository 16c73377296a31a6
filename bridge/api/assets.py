"""The inventory as dyzur sees it: each asset with what it learnt (the deployed AMMS version)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from bridge.api.deps import AssetsDep, Reader, VersionsDep
from bridge.models import AssetKind, Environment

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
def list_assets(principal: Reader, assets: AssetsDep, versions: VersionsDep) -> list[AssetOut]:
    """Assets of the inventory (a client token: its own hospital's only)."""
    deployed = versions.deployed()
    return [
        AssetOut(
            id=a.id,
            client=a.client,
            kind=a.kind,
            environment=a.environment,
            name=a.name,
            depends_on=a.depends_on,
            amms_version=deployed.get(a.id),
        )
        for a in assets.values()
        if principal.can_see(a.client)
    ]
