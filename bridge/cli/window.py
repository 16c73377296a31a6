"""dyzur window: maintenance windows through the bridge's API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bridge.cli.base import window_app
from bridge.cli.client import DEFAULT_URL, AsJson, CaFile, Token, Url, call, show


def _window(w: dict[str, Any]) -> str:
    text = f"{w['start']} – {w['end']} on {', '.join(w['assets']) or '(no assets)'}"
    if w["rrule"]:
        # The occurrence running now or next, unless it is the first one shown above.
        later = w["next_start"] and w["next_start"] != w["start"]
        when = "now" if w["active"] else "next"
        occurrence = f", {when}: {w['next_start']} – {w['next_end']}" if later else ""
        text += f" (every: {w['rrule']}{occurrence})"
    text += f" ticket {w['ticket']}" if w["ticket"] else ""
    if w["cancelled_at"]:
        return text + f" cancelled by {w['cancelled_by']}"
    return text + (" ACTIVE" if w["active"] else " ENDED" if w["ended"] else "")


def _suppressed(a: dict[str, Any]) -> str:
    """One alert recorded against a window; its labels tell two of one rule on a host apart."""
    shown = {k: v for k, v in a["labels"].items() if (k, v) != ("asset", a["asset"])}
    labels = ",".join(f"{k}={v}" for k, v in shown.items())
    text = f"  {a['rule']} on {a['asset']}" + (f" {{{labels}}}" if labels else "")
    text += f" ({a['category']}): fired {a['fired_at']}"
    text += f", value {a['value']:g}" if a["value"] is not None else ""
    text += f", {a['state']}"
    text += f" {a['recovered_at']}" if a["recovered_at"] else ""
    return text + (f", ticket {a['ticket']}" if a["ticket"] else "")


@window_app.command("plan")
def window_plan(
    client: Annotated[str, typer.Option(help="client id")],
    start: Annotated[str, typer.Option(help="ISO 8601; without an offset: Europe/Warsaw")],
    end: Annotated[str, typer.Option(help="ISO 8601; without an offset: Europe/Warsaw")],
    reason: Annotated[str, typer.Option(help="why (shown to the hospital)")],
    asset: Annotated[list[str] | None, typer.Option(help="an asset; repeat for more")] = None,
    selector: Annotated[
        str | None, typer.Option(help="instead of --asset: environment=test")
    ] = None,
    rrule: Annotated[str | None, typer.Option(help="RFC 5545, e.g. FREQ=WEEKLY;BYDAY=TU")] = None,
    ticket: Annotated[str | None, typer.Option(help="a linked ticket number")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Plan a maintenance window: alerts of its assets open no tickets while it runs."""
    body = {
        "client": client,
        "start": start,
        "end": end,
        "reason": reason,
        "assets": asset or [],
        "selector": selector,
        "rrule": rrule,
        "ticket": ticket,
    }
    w = call("POST", "/api/v1/windows", url, token, ca_file, body)
    show(w, as_json, lambda w: f"planned {w['id']}: {_window(w)}")


@window_app.command("list")
def window_list(
    client: Annotated[str | None, typer.Option(help="only this client's")] = None,
    include_all: Annotated[bool, typer.Option("--all", help="with cancelled windows")] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Windows by start (a client token sees its own hospital's only)."""
    params = {"include_cancelled": include_all} | ({"client": client} if client else {})
    windows = call("GET", "/api/v1/windows", url, token, ca_file, params=params)
    lines = [f"{w['id']} {w['client']}: {_window(w)}" for w in windows]
    show(windows, as_json, lambda _: "\n".join(lines) or "(no windows)")


@window_app.command("show")
def window_show(
    id: Annotated[str, typer.Argument(help="e.g. OS-2026-0001")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """One window, its reason and the alerts recorded against it (with their labels)."""
    w = call("GET", f"/api/v1/windows/{id}", url, token, ca_file)
    lines = [f"{w['id']} {w['client']}: {_window(w)}", f"  reason: {w['reason']}"]
    lines += [_suppressed(a) for a in w["alerts"] or []] or ["  (no alerts recorded)"]
    show(w, as_json, lambda _: "\n".join(lines))


@window_app.command("cancel")
def window_cancel(
    id: Annotated[str, typer.Argument(help="e.g. OS-2026-0001")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a window; alerts still firing in it open their tickets at the next tick."""
    w = call("POST", f"/api/v1/windows/{id}/cancel", url, token, ca_file)
    show(w, as_json, lambda w: f"cancelled {w['id']}: {_window(w)}")
