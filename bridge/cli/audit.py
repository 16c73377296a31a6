"""The audit trail: dyzur audit verify checks the chain in the store file itself; dyzur audit
list reads it through the bridge's API like window and update, so a hospital's token reads its
own hospital's events only."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer

from bridge.cli.base import ConfigPath, audit_app, fail, format_option, load, open_store_of
from bridge.cli.client import DEFAULT_URL, AsJson, CaFile, Token, Url, call, show

AUDIT_COLUMNS = ("ID", "TIME", "ACTOR", "ACTION", "OUTCOME", "CLIENT", "ASSET", "DETAIL")
AUDIT_PAGE = 1000  # the API's largest page


@audit_app.command("verify")
def audit_verify(config: ConfigPath) -> None:
    """Check the audit chain; names the first event that was edited or deleted."""
    from bridge.audit import verify_store

    loaded = load(config)
    store = open_store_of(loaded, config)
    try:
        report = verify_store(store)
    finally:
        store.close()
    if not report.intact:
        typer.echo(
            f"BROKEN at audit event {report.broken_at}: {report.problem} "
            f"({report.events} events before it check out)",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"OK: {report.events} audit events, chain intact")


def _detail_text(detail: dict[str, Any]) -> str:
    """key=value pairs; a value that is not one plain word is written as JSON (quoted, with
    control characters escaped), so one event stays on one line."""

    def value(v: Any) -> str:
        if isinstance(v, str) and v and v.isprintable() and " " not in v and '"' not in v:
            return v
        return json.dumps(v, ensure_ascii=False)

    return " ".join(f"{k}={value(v)}" for k, v in detail.items())


def _audit_table(events: list[dict[str, Any]]) -> str:
    if not events:
        return "(no audit events)"
    rows = [
        (
            str(e["id"]),
            datetime.fromisoformat(e["at"]).isoformat(sep=" ", timespec="seconds"),
            e["actor"],
            e["action"],
            e["outcome"],
            e["client"] or "-",
            e["asset"] or "-",
            _detail_text(e["detail"]),
        )
        for e in events
    ]
    widths = [max(len(r[i]) for r in [AUDIT_COLUMNS, *rows]) for i in range(len(AUDIT_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [AUDIT_COLUMNS, *rows]
    )


@audit_app.command("list")
def audit_list(
    since: Annotated[
        str | None, typer.Option(help="ISO 8601; without an offset: Europe/Warsaw")
    ] = None,
    action: Annotated[
        str | None, typer.Option(help="ticket.opened, or a prefix ending in *: 'ticket.*'")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="a token's name, dyzur, agent:NAME")] = None,
    asset: Annotated[str | None, typer.Option(help="an asset id")] = None,
    client: Annotated[str | None, typer.Option(help="a hospital's id")] = None,
    order: Annotated[str, typer.Option(help="newest or oldest first")] = "newest",
    limit: Annotated[int, typer.Option(min=1, help="at most this many events")] = 50,
    format: Annotated[
        str, typer.Option("--format", help="table or json", callback=format_option)
    ] = "table",
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Audit events through the bridge's API (engineer, admin, or a hospital's token for its
    own), newest first; times in Europe/Warsaw."""
    if format not in ("table", "json"):
        raise fail(f"--format: expected table or json, got {format!r}")
    if order not in ("newest", "oldest"):
        raise fail(f"--order: expected newest or oldest, got {order!r}")
    filters = {"since": since, "action": action, "actor": actor, "asset": asset, "client": client}
    params = {k: v for k, v in filters.items() if v is not None} | {"order": order}
    events: list[dict[str, Any]] = []
    while len(events) < limit:
        page = min(limit - len(events), AUDIT_PAGE)
        after = {"after": events[-1]["id"]} if events else {}
        got = call(
            "GET", "/api/v1/audit", url, token, ca_file, params=params | after | {"limit": page}
        )
        events += got
        if len(got) < page:
            break
    show(events, as_json or format == "json", _audit_table)
