"""The deployed AMMS version of each asset, as the ssh collector reports it.

The ssh collector measures the running version as the metric ``dyzur_amms_version_info`` with
a ``version`` label. The version is kept on the asset (update plans know what runs where, the
API's asset list shows it), and a change of version is an audit event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from bridge.actions import Action
from bridge.models import Asset, AuditEvent
from bridge.store.roles import AssetFacts, AuditLog
from collectors import Sample

VERSION_METRIC = "dyzur_amms_version_info"
FACT = "amms_version"


class AmmsVersions:
    def __init__(self, facts: AssetFacts, audit: AuditLog, assets: Mapping[str, Asset]) -> None:
        self.facts = facts
        self.audit = audit
        self.assets = assets

    def observe(self, samples: Iterable[Sample], now: datetime) -> None:
        """Record the versions among checked samples (of inventory assets), inside the caller's
        transaction: a version seen for the first time or changed is an ``asset.version_seen``
        audit event."""
        for s in samples:
            if s.metric != VERSION_METRIC:
                continue
            asset, version = s.labels["asset"], s.labels.get("version", "")
            if version and self.facts.set_asset_fact(asset, FACT, version, now):
                self.audit.append_audit(
                    AuditEvent(
                        now,
                        "dyzur",
                        Action.ASSET_VERSION_SEEN,
                        "success",
                        self.assets[asset].client,
                        asset,
                        {FACT: version},
                    )
                )

    def deployed(self) -> dict[str, str]:
        """The last version seen of each asset that reported one."""
        return {
            asset: facts[FACT] for asset, facts in self.facts.asset_facts().items() if FACT in facts
        }
