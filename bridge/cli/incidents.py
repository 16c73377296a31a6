"""Incidents, on the config and store file the bridge runs with: dyzur incidents list shows the
open incidents (a root cause's, a storm's, a group's ticket with the alerts recorded against
it) and the alerts held for their root cause, as GET /api/v1/incidents and /incidents/held
do. Splitting an alert out goes through the running bridge: POST
/api/v1/tickets/{number}/split."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bridge.cli.base import ConfigPath, app, fail, json_option, load, open_store_of, table

if TYPE_CHECKING:
    from bridge.models import IncidentAlert
    from bridge.tickets.incident_desk import HeldView, IncidentView

incidents_app = typer.Typer(
    no_args_is_help=True,
    help="Incidents: one ticket for one problem (root cause, alert storm, grouped alerts).",
)
app.add_typer(incidents_app, name="incidents")

AsJson = Annotated[
    bool, typer.Option("--json", help="print JSON", callback=json_option, is_eager=True)
]


@incidents_app.command("list")
def incidents_list(
    config: ConfigPath,
    client: Annotated[str | None, typer.Option(help="only this hospital")] = None,
    as_json: AsJson = False,
) -> None:
    """Open incidents and the alerts held for their root cause, by hospital, oldest first.

    --json prints {"incidents": [...], "held": [...]}: the items of GET /api/v1/incidents and
    GET /api/v1/incidents/held."""
    from bridge.clock import local_time
    from bridge.tickets.incident_desk import IncidentDesk

    loaded = load(config)
    if client is not None and client not in loaded.clients:
        raise fail(f"--client: no client {client!r} in {config}")
    store = open_store_of(loaded, config)
    try:
        desk = IncidentDesk(store, store, loaded.assets, loaded.config.incidents)
        incidents = desk.open_incidents(client)
        held = desk.held(client)
    finally:
        store.close()
    if as_json:
        found = {"incidents": [_incident(v) for v in incidents], "held": [_held(h) for h in held]}
        typer.echo(json.dumps(found, ensure_ascii=False))
        return
    if not incidents:
        typer.echo("no open incidents")
    else:
        rows = [
            (
                v.ticket.number,
                v.ticket.client,
                v.kind.value,
                v.root or "—",
                v.ticket.category.value,
                str(v.firing),
                str(v.recovered),
                str(v.released),
                ",".join(v.explains) or "—",
                v.ticket.title,
            )
            for v in incidents
        ]
        header = "TICKET CLIENT KIND ROOT CATEGORY FIRING RECOVERED RELEASED EXPLAINS TITLE"
        typer.echo("open incidents (FIRING, RECOVERED, RELEASED: the alerts attached):")
        typer.echo(table(header.split(), rows))
    if not held:
        typer.echo("no alerts held for a root cause")
        return
    lines = [
        (
            h.alert.client,
            h.alert.asset,
            h.alert.rule,
            h.alert.category.value,
            local_time(h.alert.fired_at),
            local_time(h.alert.until),
            ",".join(h.waiting_for),
        )
        for h in held
    ]
    typer.echo("alerts held for their root cause (Europe/Warsaw):")
    typer.echo(
        table(("CLIENT", "ASSET", "RULE", "CATEGORY", "FIRED", "HELD UNTIL", "WAITING FOR"), lines)
    )


def _incident(v: IncidentView) -> dict[str, Any]:
    from bridge.clock import local_iso

    t = v.ticket
    return {
        "ticket": {
            "number": t.number,
            "client": t.client,
            "asset": t.asset,
            "rule": t.rule,
            "category": t.category.value,
            "title": t.title,
            "status": t.status.value,
            "reaction_due": local_iso(t.reaction_due),
            "opened_at": local_iso(t.opened_at),
        },
        "kind": v.kind.value,
        "root": v.root,
        "attached": [_alert(m) for m in v.attached],
        "explains": v.explains,
        "counts": {"firing": v.firing, "recovered": v.recovered, "released": v.released},
    }


def _alert(m: IncidentAlert) -> dict[str, Any]:
    from bridge.clock import local_iso

    return {
        "fingerprint": m.fingerprint,
        "asset": m.asset,
        "rule": m.rule,
        "category": m.category.value,
        "title": m.title,
        "state": m.state.value,
        "reason": m.reason.value,
        "fired_at": local_iso(m.fired_at),
        "recovered_at": local_iso(m.recovered_at),
        "own_ticket": m.own_ticket,
    }


def _held(h: HeldView) -> dict[str, Any]:
    from bridge.clock import local_iso

    m = h.alert
    return {
        "fingerprint": m.fingerprint,
        "client": m.client,
        "asset": m.asset,
        "rule": m.rule,
        "category": m.category.value,
        "title": m.title,
        "fired_at": local_iso(m.fired_at),
        "held_until": local_iso(m.until),
        "waiting_for": h.waiting_for,
    }
