"""dyzur tickets: the ticket queue and an engineer's verbs (acknowledge, resolve, write a note),
through the running bridge's API: its tokens, roles and audit trail apply (the actor is the
token's name), and a hospital's token sees only its own hospital's tickets."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import typer

from bridge.cli.base import app, fail, format_option
from bridge.cli.client import DEFAULT_URL, AsJson, CaFile, Token, Url, call, show

tickets_app = typer.Typer(
    no_args_is_help=True, help="Tickets: the queue, acknowledge, resolve, notes (the API)."
)
app.add_typer(tickets_app, name="tickets")

PAGE = 1000  # the API's largest page
FORMATS = ("table", "json", "csv")
CSV_COLUMNS = (
    "number",
    "client",
    "asset",
    "category",
    "status",
    "sla_state",
    "reaction_due",
    "responded_at",
    "responded_by",
    "opened_at",
    "resolved_at",
    "title",
)
Number = Annotated[str, typer.Argument(help="e.g. DZ-2026-000123")]


def _path(number: str) -> str:
    """A ticket number as one segment of a URL path."""
    return quote(number, safe="")


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _waiting(t: dict[str, Any]) -> bool:
    """An open ticket whose reaction clock runs: nobody has responded yet."""
    return t["status"] == "open" and t["responded_at"] is None and t["reaction_due"] is not None


def queue_order(t: dict[str, Any]) -> tuple[int, float, str]:
    """Open tickets waiting for a response first, by reaction deadline (so the overdue ones
    lead); then the others (responded, resolved, without a deadline), newest deadline last."""
    due = _when(t["reaction_due"])
    return (0 if _waiting(t) else 1, due.timestamp() if due else float("inf"), t["number"])


def _span(seconds: float) -> str:
    minutes = int(abs(seconds)) // 60
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    return f"{days}d {hours}h" if days else f"{hours}h {minutes:02d}m"


def time_left(t: dict[str, Any], now: datetime) -> str:
    """``overdue 2h 05m``, ``3h 10m`` left, ``responded``, or ``-`` (no clock, resolved)."""
    due = _when(t["reaction_due"])
    if t["status"] != "open" or due is None:
        return "-"
    if t["responded_at"] is not None:
        return "responded"
    left = (due - now).total_seconds()
    return f"overdue {_span(left)}" if left < 0 else _span(left)


def _local(text: str | None) -> str:
    """An API time (Warsaw, with its offset) as a person reads it: 2026-11-30 10:00+01:00."""
    when = _when(text)
    if when is None:
        return "-"
    offset = when.strftime("%z")
    return when.strftime("%Y-%m-%d %H:%M") + f"{offset[:3]}:{offset[3:]}"


def _style(t: dict[str, Any], now: datetime) -> str:
    """Red when the deadline passed without a response, amber when at risk."""
    if not _waiting(t):
        return ""
    due = _when(t["reaction_due"])
    if t["sla_state"] == "breached" or (due is not None and due <= now):
        return "red"
    return "yellow" if t["sla_state"] == "at_risk" else ""


def _table(tickets: list[dict[str, Any]]) -> str:
    """A rich table: one ticket a row, in queue order; colours only on a terminal."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if not tickets:
        return "(no tickets)"
    now = datetime.now(UTC)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, highlight=False)
    for column in ("NUMBER", "LEFT", "DUE", "CATEGORY", "CLIENT", "ASSET", "STATUS"):
        table.add_column(column, no_wrap=True)
    table.add_column("TITLE", overflow="fold")
    for t in tickets:
        row = [t["number"], time_left(t, now), _local(t["reaction_due"]), t["category"]]
        row += [t["client"], t["asset"] or "-", t["status"], t["title"]]
        table.add_row(*row, style=_style(t, now))
    console = Console(width=None if _terminal() else 200, highlight=False)
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines()).strip("\n")


def _terminal() -> bool:
    import sys

    return sys.stdout.isatty()


def _csv(tickets: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in tickets:
        writer.writerow(["" if t[c] is None else t[c] for c in CSV_COLUMNS])
    return out.getvalue().rstrip("\n")


@tickets_app.command("list")
def tickets_list(
    client: Annotated[str | None, typer.Option(help="only this hospital's")] = None,
    status: Annotated[str, typer.Option(help="open, resolved or all (the queue: open)")] = "open",
    category: Annotated[
        str | None, typer.Option(help="awaria, usterka, aktualizacja, utrzymanie")
    ] = None,
    asset: Annotated[str | None, typer.Option(help="only this asset's")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, the most urgent")] = 100,
    format: Annotated[
        str, typer.Option("--format", help="table, json or csv", callback=format_option)
    ] = "table",
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """The ticket queue, by reaction deadline: the overdue first, then the ones waiting for a
    response, then the rest (a hospital's token: its own hospital's only). Times in
    Europe/Warsaw; LEFT is the wall-clock time to the deadline."""
    if format not in FORMATS:
        raise fail(f"--format: expected table, json or csv, got {format!r}")
    if status not in ("open", "resolved", "all"):
        raise fail(f"--status: expected open, resolved or all, got {status!r}")
    filters = {"client": client, "category": category, "asset": asset}
    filters["status"] = None if status == "all" else status
    params = {k: v for k, v in filters.items() if v is not None}
    # The API lists newest first: read every matching ticket, then put the most urgent first.
    tickets: list[dict[str, Any]] = []
    while True:
        after = {"before": tickets[-1]["number"]} if tickets else {}
        page = call(
            "GET", "/api/v1/tickets", url, token, ca_file, params=params | after | {"limit": PAGE}
        )
        tickets += page
        if len(page) < PAGE:
            break
    tickets = sorted(tickets, key=queue_order)[:limit]
    if format == "csv" and not as_json:
        typer.echo(_csv(tickets))
        return
    show(tickets, as_json or format == "json", _table)


def _show(t: dict[str, Any]) -> str:
    """A ticket's fields, its timeline and where it was delivered, as text."""
    lines = [f"{t['number']}  {t['category']}  {t['status']}  {t['client']} / {t['asset'] or '-'}"]
    lines.append(f"  title:        {t['title']}")
    lines.append(f"  rule:         {t['rule']}")
    if t["labels"]:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(t["labels"].items()))
        lines.append(f"  labels:       {labels}")
    value = "-" if t["last_value"] is None else f"{t['last_value']:g}"
    lines.append(f"  last value:   {value} (fired {t['fire_count']} time(s))")
    lines.append(f"  opened:       {t['opened_at']}")
    due = t["reaction_due"] or "- (no reaction clock)"
    lines.append(f"  reaction due: {due} ({t['sla_state']})")
    if t["responded_at"]:
        lines.append(f"  responded:    {t['responded_at']} by {t['responded_by']}")
    if t["resolved_at"]:
        lines.append(f"  resolved:     {t['resolved_at']}")
    if t.get("incident"):
        lines.append(f"  incident:     part of {t['incident']}")
    if t["description"]:
        lines.append("  description:")
        lines += [f"    {line}" for line in t["description"].splitlines()]
    lines.append("timeline:")
    for e in t.get("timeline") or []:
        lines.append(f"  {e['at']}  {e['actor']}  {e['kind']}: {e['message']}")
    for d in t.get("deliveries") or []:
        reason = f" ({d['reason']})" if d["reason"] else ""
        lines.append(f"delivered to {d['sink']} as {d['remote_id'] or '-'}: {d['state']}{reason}")
    return "\n".join(lines)


@tickets_app.command("show")
def tickets_show(
    number: Number,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """One ticket: its fields, labels and values, its timeline, where it was delivered."""
    t = call("GET", f"/api/v1/tickets/{_path(number)}", url, token, ca_file)
    show(t, as_json, _show)


@tickets_app.command("ack")
def tickets_ack(
    number: Number,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Acknowledge a ticket: the first response stops its reaction clock (engineer or admin;
    the first one counts, repeating it changes nothing)."""
    t = call("POST", f"/api/v1/tickets/{_path(number)}/ack", url, token, ca_file)
    within = {True: ", within the deadline", False: ", after the deadline"}
    late = within.get(t["responded_within_deadline"], "")
    text = f"{t['number']}: first response by {t['responded_by']} at {t['responded_at']}{late}"
    show(t, as_json, lambda _: text)


@tickets_app.command("resolve")
def tickets_resolve(
    number: Number,
    note: Annotated[
        str | None, typer.Option(help="a note written on the timeline first (one line)")
    ] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Close a ticket by hand (engineer or admin), optionally with a note; a resolved ticket
    stays as it is (the note is still written)."""
    body = None if note is None else {"note": note}
    t = call("POST", f"/api/v1/tickets/{_path(number)}/resolve", url, token, ca_file, body)
    text = f"{t['number']}: resolved at {t['resolved_at']}"
    text += "" if note is None else " (note written)"
    show(t, as_json, lambda _: text)


@tickets_app.command("note")
def tickets_note(
    number: Number,
    text: Annotated[str, typer.Argument(help="the note: one line, at most 2000 characters")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Write a note on a ticket's timeline (engineer or admin; audited as ticket.note)."""
    t = call("POST", f"/api/v1/tickets/{_path(number)}/notes", url, token, ca_file, {"text": text})
    notes = [e for e in t["timeline"] or [] if e["kind"] == "note"]
    by = f" by {notes[-1]['actor']}" if notes else ""
    show(t, as_json, lambda _: f"{t['number']}: note written{by}")
