"""Helpdesk sinks, on the config and store file the bridge runs with: dyzur sinks list, test
and retry. ``retry`` only writes its request into the store (an audit event the sink meets in
its own stream), so it works while the bridge runs, from another process."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from bridge.cli.base import ConfigPath, actor, app, fail, load, open_store_of, table

if TYPE_CHECKING:
    from bridge.config import LoadedConfig
    from bridge.delivery.sinks import TicketSink
    from bridge.store import Store
    from bridge.store.roles import ParkedChange

sinks_app = typer.Typer(
    no_args_is_help=True, help="Helpdesk sinks: list, send a test message, retry parked changes."
)
app.add_typer(sinks_app, name="sinks")

SinkName = Annotated[str, typer.Argument(help="the sink's name in the config")]


def _sink(loaded: LoadedConfig, store: Store, name: str, config: ConfigPath) -> TicketSink:
    """The sink ``name`` as the bridge builds it from the config; exit 2 if there is none."""
    from bridge.config import sink_consumers

    names = [s.name for s in loaded.config.sinks]
    if name not in names:
        known = ", ".join(names) or "none"
        raise fail(f"no sink {name!r} in {config} (its sinks: {known})")
    built = sink_consumers(loaded.config, loaded.base_dir, store, loaded.clients, loaded.assets)
    return next(s for s in built if s.sink == name)


@sinks_app.command("list")
def sinks_list(config: ConfigPath) -> None:
    """Each sink with the events waiting after its cursor and its parked changes."""
    from bridge.delivery.sinks import without_userinfo

    loaded = load(config)
    store = open_store_of(loaded, config)
    try:
        parked = store.parked_counts()
        rows = []
        for s in loaded.config.sinks:
            clients = None if s.clients is None else frozenset(s.clients)
            cursor = store.cursor(f"sink:{s.name}")
            backlog = store.audit_backlog(cursor.last_id, clients)
            hospitals = ",".join(s.clients) if s.clients is not None else "*"
            where = without_userinfo(s.url)
            rows.append(
                (s.name, s.kind, where, hospitals, str(backlog), str(parked.get(s.name, 0)))
            )
    finally:
        store.close()
    if not rows:
        typer.echo(f"no sinks in {config}")
        return
    typer.echo(table(("NAME", "KIND", "WHERE", "CLIENTS", "BACKLOG", "PARKED"), rows))


@sinks_app.command("test")
def sinks_test(name: SinkName, config: ConfigPath) -> None:
    """Send the sink a test message; print what the helpdesk answered.

    Exit 0 when it took it, 1 (with the reason) when it did not."""
    loaded = load(config)
    store = open_store_of(loaded, config)
    try:
        sink = _sink(loaded, store, name, config)
        try:
            answer = sink.probe()
        except NotImplementedError as exc:
            typer.echo(f"sink {name}: {exc}", err=True)
            raise typer.Exit(1) from None
        except Exception as exc:  # Retry, Permanent: the reason names no secret
            typer.echo(f"sink {name} ({sink.kind}): test message not taken: {exc}", err=True)
            raise typer.Exit(1) from None
        finally:
            sink.close()
    finally:
        store.close()
    typer.echo(f"sink {name} ({sink.kind}): test message taken: {answer}")


@sinks_app.command("retry")
def sinks_retry(
    name: SinkName,
    config: ConfigPath,
    ticket: Annotated[
        str | None, typer.Option(help="only this ticket's parked changes, e.g. DZ-2026-000123")
    ] = None,
) -> None:
    """Send a sink's parked changes again, in order per ticket (after a fix).

    The running bridge (or the next one started) sends them; a change refused again stays
    parked with the new reason. The request is audited (sink.retry_requested) with your login."""
    from bridge.clock import Clock
    from bridge.delivery.sinks import request_retry

    loaded = load(config)
    store = open_store_of(loaded, config)
    try:
        _sink(loaded, store, name, config)  # a sink of the config, by name
        queued = request_retry(store, name, actor(), Clock().now(), ticket)
    finally:
        store.close()
    of = f" of {ticket}" if ticket else ""
    if not queued:
        typer.echo(f"sink {name}: no parked changes{of}; nothing to send again")
        return
    typer.echo(
        f"sink {name}: {len(queued)} parked change(s){of} queued to be sent again, "
        "in order per ticket:"
    )
    typer.echo(_queued_table(queued))
    typer.echo(
        "The bridge sends them at its next round; `dyzur sinks list` shows what stays parked."
    )


def _queued_table(queued: list[ParkedChange]) -> str:
    rows = [(p.ticket, str(p.event_id), p.action, p.state, p.reason) for p in queued]
    return table(("TICKET", "EVENT", "ACTION", "STATE", "REASON"), rows)
