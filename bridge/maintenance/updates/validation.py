"""What an update plan request must be before it takes a number: pure checks over the request,
the configured clients and assets and the soak, each refusal an ``UpdateError`` naming the
field. The windows' own conflicts are the planning's to judge (``Maintenance.refuse``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from bridge.clock import local_iso
from bridge.errors import Invalid
from bridge.maintenance.windows import selected
from bridge.models import Asset, Client, Environment, RunbookStep
from collectors.durations import format_duration

VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


class UpdateError(Invalid):
    """A plan that cannot be made; the message names the field."""


@dataclass(frozen=True)
class StageWindow:
    start: datetime
    end: datetime


@dataclass(frozen=True)
class UpdateRequest:
    client: str
    target_version: str
    runbook: list[RunbookStep]
    prod_window: StageWindow
    test_window: StageWindow | None = None
    soak: float | None = None  # default: updates.soak of the config
    without_test_stage: bool = False
    # Which of the client's assets the update touches, split by environment.
    selector: Mapping[str, str] | None = None


@dataclass(frozen=True)
class StagePlan:
    """One stage of a valid request: where, when and on which assets."""

    environment: Environment
    window: StageWindow
    assets: list[str]


@dataclass(frozen=True)
class ValidPlan:
    """A request that passed every check: its client, its stages (test first) and its soak."""

    client: Client
    stages: list[StagePlan]
    soak: float

    @property
    def prod_assets(self) -> list[str]:
        return self.stages[-1].assets


def validate(
    request: UpdateRequest,
    clients: Mapping[str, Client],
    assets: Mapping[str, Asset],
    soak: float,
    can_run: bool,
) -> ValidPlan:
    """Everything a plan request is checked for; ``soak`` is the configured default and
    ``can_run`` whether the bridge has ssh settings to run runbooks with."""
    r = request
    client = clients.get(r.client)
    if client is None:
        raise UpdateError(f"client: unknown client {r.client!r}")
    if not VERSION_PATTERN.match(r.target_version):
        raise UpdateError("target_version: letters, digits and . _ + - (up to 64)")
    if not any(step.phase == "update" for step in r.runbook):
        raise UpdateError("runbook.update: at least one update command")
    if not can_run:
        raise UpdateError("ssh: the bridge has no ssh settings to run runbooks with")
    selector = dict(r.selector) if r.selector is not None else {"kind": "amms"}
    chosen = selected(assets, r.client, selector)
    what = ", ".join(f"{k}={v}" for k, v in selector.items())
    test_assets = [a.id for a in chosen if a.environment == "test"]
    prod_assets = [a.id for a in chosen if a.environment == "prod"]
    if not prod_assets:
        raise UpdateError(f"selector: {what} matches no production asset of {r.client}")
    soak = soak if r.soak is None else r.soak
    if r.without_test_stage:
        if r.test_window is not None:
            raise UpdateError("test_window: not with without_test_stage")
    else:
        if not test_assets:
            raise UpdateError(
                f"test_window: {r.client} has no test asset matching {what}; plan production "
                "alone only with without_test_stage: true"
            )
        if r.test_window is None:
            raise UpdateError("test_window: the test stage needs a window")
        _refuse_unreachable_production(r.test_window, r.prod_window, soak)
    for asset_id in test_assets + prod_assets:
        if assets[asset_id].ssh is None:
            raise UpdateError(f"assets: {asset_id} has no ssh address in the configuration")
    stages = [StagePlan("prod", r.prod_window, prod_assets)]
    if r.test_window is not None:
        stages.insert(0, StagePlan("test", r.test_window, test_assets))
    return ValidPlan(client, stages, soak)


def _refuse_unreachable_production(test: StageWindow, prod: StageWindow, soak: float) -> None:
    """A plan whose production can never start: its window begins before the test window
    ends, or the soak outlasts the time between them."""
    if prod.start < test.end:
        raise UpdateError(
            f"prod_window.start: {local_iso(prod.start)} is before the test window's end "
            f"({local_iso(test.end)}); production starts after the test window"
        )
    gap = (prod.start - test.end).total_seconds()
    if soak > gap:
        raise UpdateError(
            f"soak: {format_duration(soak)} is longer than the {format_duration(gap)} from "
            f"test_window.end ({local_iso(test.end)}) to prod_window.start "
            f"({local_iso(prod.start)}); a test stage that ends late would leave production "
            "no time: shorten the soak or move the windows apart"
        )
