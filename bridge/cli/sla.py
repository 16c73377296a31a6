"""Reaction deadlines and the monthly report: dyzur sla due, dyzur report sla (the report reads
the store of the config directly)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from bridge.cli.base import (
    ConfigPath,
    fail,
    format_option,
    load,
    open_store_of,
    report_app,
    sla_app,
)


def _parse_opened(text: str) -> datetime:
    from bridge.clock import WARSAW

    try:
        opened = datetime.fromisoformat(text)
    except ValueError:
        raise fail(f"--opened: not an ISO 8601 time: {text!r}") from None
    # A time without an offset is what a person in Poland means: Europe/Warsaw.
    return opened if opened.tzinfo is not None else opened.replace(tzinfo=WARSAW)


@sla_app.command("due")
def sla_due(
    category: Annotated[str, typer.Option(help="awaria, usterka, administracja, konsultacja")],
    opened: Annotated[str, typer.Option(help="ISO 8601; without an offset: Europe/Warsaw")],
    contract: Annotated[str, typer.Option(help="standard or 24/7")] = "standard",
    config: Annotated[Path | None, typer.Option(help="take the contract from this config")] = None,
    client: Annotated[str | None, typer.Option(help="the client in --config")] = None,
) -> None:
    """Print when the first response is due, as ISO 8601 with its UTC offset."""
    from bridge.models import Category, Contract
    from bridge.tickets.sla import reaction_due

    try:
        cat = Category(category)
    except ValueError:
        known = ", ".join(c.value for c in Category)
        raise fail(f"--category: unknown category {category!r} (known: {known})") from None
    when = _parse_opened(opened)
    if config is not None or client is not None:
        if config is None or client is None:
            raise fail("--config and --client go together")
        loaded = load(config)
        if client not in loaded.clients:
            raise fail(f"--client: no client {client!r} in {config}")
        terms = loaded.clients[client].contract
    elif contract in ("standard", "24/7"):
        terms = Contract(hours="24/7" if contract == "24/7" else "standard")
    else:
        raise fail(f"--contract: expected standard or 24/7, got {contract!r}")
    due = reaction_due(terms, cat, when)
    if due is None:
        raise fail(f"{cat.value} has no reaction clock: its due time is the planned start")
    typer.echo(due.isoformat())


@report_app.command("sla")
def report_sla(
    config: ConfigPath,
    client: Annotated[str, typer.Option(help="client id")],
    month: Annotated[str, typer.Option(help="YYYY-MM, in Europe/Warsaw")],
    format: Annotated[
        str, typer.Option("--format", help="table, csv or json", callback=format_option)
    ] = "table",
) -> None:
    """Reaction times of a client's tickets in a month, per category, for the invoice."""
    from bridge.tickets.report import ReportError, render_report, sla_report

    if format not in ("table", "csv", "json"):
        raise fail(f"--format: expected table, csv or json, got {format!r}")
    loaded = load(config)
    if client not in loaded.clients:
        raise fail(f"--client: no client {client!r} in {config}")
    store = open_store_of(loaded, config)
    try:
        rows = sla_report(store, loaded.clients[client], month)
    except ReportError as exc:
        raise fail(str(exc)) from None
    finally:
        store.close()
    typer.echo(render_report(rows, format, loaded.clients[client], month), nl=False)
