"""On call, on the config and store file the bridge runs with: dyzur oncall now, gaps and swap.
``swap`` writes its override (and its audit event, with your login) into the store; the running
bridge reads the overrides at each question, so it counts at once."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from bridge.cli.base import ConfigPath, actor, app, fail, json_option, load, open_store_of, table

if TYPE_CHECKING:
    from bridge.config import LoadedConfig
    from bridge.delivery.oncall.desk import OncallDesk
    from bridge.store import Store

oncall_app = typer.Typer(
    no_args_is_help=True,
    help="On call (dyżur): who is on duty, gaps of the 24/7 coverage, hand a shift over.",
)
app.add_typer(oncall_app, name="oncall")

AsJson = Annotated[
    bool, typer.Option("--json", help="print JSON", callback=json_option, is_eager=True)
]


def _time(value: str, option: str) -> datetime:
    """ISO 8601; without an offset, Europe/Warsaw (what a person in Poland means)."""
    from bridge.clock import WARSAW

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{option}: expected ISO 8601 such as 2026-12-24T20:00, got {value!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=WARSAW)


def _desk(loaded: LoadedConfig, store: Store) -> OncallDesk:
    from bridge.clock import Clock
    from bridge.config import OncallSettings
    from bridge.delivery.oncall.desk import OncallDesk

    settings = loaded.config.oncall or OncallSettings()
    return OncallDesk(settings, store, loaded.clients, loaded.assets, Clock())


def _minute(when: datetime | None) -> str:
    from bridge.delivery.oncall.rota import local_minute

    return "—" if when is None else local_minute(when)


@oncall_app.command("now")
def oncall_now(
    config: ConfigPath,
    client: Annotated[str | None, typer.Option(help="only this hospital")] = None,
    kind: Annotated[str | None, typer.Option(help="only this asset kind: amms, server, ...")] = (
        None
    ),
    at: Annotated[
        str | None, typer.Option(help="ISO 8601; without an offset Europe/Warsaw; default: now")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Who is on duty in every rota, per hospital and asset kind (nobody: —)."""
    from bridge.clock import Clock, local_iso
    from bridge.errors import Invalid

    loaded = load(config)
    moment = _time(at, "--at") if at is not None else Clock().now()
    store = open_store_of(loaded, config)
    try:
        try:
            rows = _desk(loaded, store).on_duty(moment, client, kind)
        except Invalid as exc:
            raise fail(f"--{exc}") from None
    finally:
        store.close()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "rota": r.rota,
                        "client": r.client,
                        "kind": r.kind,
                        "person": None if r.duty is None else r.duty.person.id,
                        "start": None if r.duty is None else local_iso(r.duty.start),
                        "end": None if r.duty is None else local_iso(r.duty.end),
                        "override": r.duty is not None and r.duty.override,
                    }
                    for r in rows
                ],
                ensure_ascii=False,
            )
        )
        return
    if not rows:
        typer.echo("no hospitals with assets in the config")
        return
    lines = [
        (
            r.rota,
            r.client,
            r.kind,
            "—"
            if r.duty is None
            else f"{r.duty.person.name} ({r.duty.person.id})"
            + (" [override]" if r.duty.override else ""),
            _minute(None if r.duty is None else r.duty.start),
            _minute(None if r.duty is None else r.duty.end),
        )
        for r in rows
    ]
    typer.echo(f"on duty at {_minute(moment)} (Europe/Warsaw):")
    typer.echo(table(("ROTA", "CLIENT", "KIND", "PERSON", "FROM", "TO"), lines))


@oncall_app.command("gaps")
def oncall_gaps(
    config: ConfigPath,
    days: Annotated[int, typer.Option(min=1, max=400, help="how far ahead")] = 30,
    as_json: AsJson = False,
) -> None:
    """Periods of the next DAYS in which a 24/7 hospital has nobody on duty in the primary
    rota for a kind of its assets (Europe/Warsaw times)."""
    from bridge.clock import Clock, local_iso

    loaded = load(config)
    now = Clock().now()
    gaps = _gaps(loaded, now, days)
    if as_json:
        found = [
            {"client": g.client, "kind": g.kind, "from": local_iso(g.start), "to": local_iso(g.end)}
            for g in gaps
        ]
        typer.echo(json.dumps(found, ensure_ascii=False))
        return
    if not gaps:
        typer.echo(f"no gaps in the next {days} days: every 24/7 hospital has somebody on duty")
        return
    rows = [(g.client, g.kind, _minute(g.start), _minute(g.end)) for g in gaps]
    typer.echo(f"nobody on duty in rota primary in the next {days} days (Europe/Warsaw):")
    typer.echo(table(("CLIENT", "KIND", "FROM", "TO"), rows))


def _gaps(loaded: LoadedConfig, now: datetime, days: int) -> list:
    """The gaps of the primary rota's 24/7 coverage from ``now`` on (overrides change who is
    on duty, never whether, so the store is not read)."""
    from bridge.delivery.oncall.rota import Rota, coverage_gaps

    if loaded.config.oncall is None:
        return []
    rota = Rota(loaded.config.oncall)
    clients, assets = loaded.clients.values(), loaded.assets.values()
    return coverage_gaps(rota, clients, assets, now, now + timedelta(days=days))


def gap_warnings(loaded: LoadedConfig, now: datetime, days: int = 30) -> list[str]:
    """check-config's warnings: each gap of the next ``days``, as one line."""
    return [
        f"warning: oncall: nobody on duty in rota primary for {g.client} ({g.kind}) from "
        f"{_minute(g.start)} to {_minute(g.end)}"
        for g in _gaps(loaded, now, days)
    ]


@oncall_app.command("swap")
def oncall_swap(
    config: ConfigPath,
    shift_person: Annotated[str, typer.Option(help="whose shift it is (a person id)")],
    to: Annotated[str, typer.Option(help="who takes it over (a person id)")],
    start: Annotated[str, typer.Option("--from", help="ISO 8601; without an offset Warsaw")],
    until: Annotated[str, typer.Option(help="ISO 8601; without an offset Warsaw")],
    reason: Annotated[str, typer.Option(help="why (kept in the audit trail)")],
    client: Annotated[str | None, typer.Option(help="only this hospital's duty")] = None,
    rota: Annotated[str, typer.Option(help="the rota of the shift")] = "primary",
) -> None:
    """Hand a period of a person's shifts to another person (an override, audited as
    oncall.override with your login and the reason)."""
    from bridge.delivery.oncall.desk import SwapRequest
    from bridge.errors import Invalid

    loaded = load(config)
    request = SwapRequest(
        shift_person=shift_person,
        person=to,
        start=_time(start, "--from"),
        end=_time(until, "--until"),
        reason=reason,
        client=client,
        rota=rota,
    )
    store = open_store_of(loaded, config)
    try:
        try:
            override = _desk(loaded, store).swap(request, actor())
        except Invalid as exc:
            raise fail(_option(str(exc))) from None
    finally:
        store.close()
    of = f" for {client}" if client else ""
    who = (
        f"{to} is on duty again (earlier swaps of the period undone)"
        if to == shift_person
        else f"{to} is on duty instead of {shift_person}"
    )
    typer.echo(
        f"override {override.id}: {who} in rota {rota}{of} "
        f"from {_minute(override.start)} to {_minute(override.end)} (by {override.created_by}: "
        f"{reason})"
    )


# The desk names the API's fields; the command's options are these.
_OPTIONS = {
    "shift_person": "--shift-person",
    "person": "--to",
    "start": "--from",
    "end": "--until",
    "reason": "--reason",
    "client": "--client",
    "rota": "--rota",
}


def _option(message: str) -> str:
    field, sep, rest = message.partition(": ")
    return f"{_OPTIONS[field]}: {rest}" if sep and field in _OPTIONS else message
