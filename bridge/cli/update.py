"""dyzur update: staged AMMS updates through the bridge's API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bridge.cli.base import fail, update_app
from bridge.cli.client import DEFAULT_URL, AsJson, CaFile, Token, Url, call, show


def _gate(p: dict[str, Any]) -> str:
    text = p["gate"]
    text += f" until {p['soak_until']}" if p["gate"] == "soaking" and p["soak_until"] else ""
    by = f" by {p['gate_by']} at {p['gate_at']}" if p["gate_by"] else ""
    text += (" OVER THE SOAK JUDGEMENT" + by) if p.get("gate_override") else by
    return text + (f": {p['gate_reason']}" if p["gate_reason"] else "")


def _judgement(p: dict[str, Any]) -> list[str]:
    """What the last soak judgement found on the test assets, one finding a line."""
    if not p.get("judged_until"):
        return []
    test = next((s for s in p["stages"] if s["environment"] == "test"), None)
    since = test["finished_at"] if test else "?"
    head = f"  soak judgement {since} – {p['judged_until']}: "
    if not p["gate_findings"]:
        return [head + "no awaria or usterka alert or ticket of the test assets"]
    return [head + "found"] + [f"    {finding}" for finding in p["gate_findings"]]


def _plan(p: dict[str, Any]) -> str:
    lines = [
        f"{p['id']} {p['client']} -> {p['target_version']}: {p['status']}, ticket {p['ticket']}"
    ]
    if p.get("cancelled_at"):
        lines.append(
            f"  cancelled by {p['cancelled_by']} at {p['cancelled_at']}: {p['cancel_reason']}"
        )
    for s in p["stages"]:
        failure = f" ({s['failure']}; ticket {s['failure_ticket']})" if s["failure"] else ""
        if s["state"] == "cancelled":
            not_updated = [a for a in s["assets"] if a not in s["updated"]]
            failure = (
                f" (updated: {', '.join(s['updated']) or '-'}; "
                f"not updated: {', '.join(not_updated) or '-'})"
            )
        lines.append(
            f"  {s['environment']}: {s['start']} – {s['end']} on "
            f"{', '.join(s['assets'])} (window {s['window']}): {s['state']}{failure}"
        )
    lines.append(f"  gate: {_gate(p)}")
    lines += _judgement(p)
    for s in p.get("steps") or []:
        result = f"error: {s['error']}" if s["error"] else f"exit {s['exit_code']}"
        lines.append(f"  {s['asset']} {s['phase']}: {s['command']} -> {result}")
    return "\n".join(lines)


@update_app.command("plan")
def update_plan(
    file: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="the plan as YAML")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Plan an update from a YAML file: client, target_version, test_window {start, end},
    prod_window, runbook {pre_checks, update, post_checks}, soak, without_test_stage, selector."""
    from collectors.yamlfile import YamlError, load_yaml

    try:
        body = load_yaml(file)
    except YamlError as exc:
        raise fail(str(exc)) from None
    if not isinstance(body, dict):
        raise fail(f"{file}: expected a mapping (client, target_version, prod_window, ...)")
    p = call("POST", "/api/v1/updates", url, token, ca_file, body)
    show(p, as_json, lambda p: f"planned {_plan(p)}")


@update_app.command("status")
def update_status(
    id: Annotated[str | None, typer.Argument(help="a plan, e.g. AK-2026-0001")] = None,
    client: Annotated[str | None, typer.Option(help="only this client's")] = None,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Without ID: one line per plan. With ID: its stages, gate and every runbook step."""
    if id is not None:
        p = call("GET", f"/api/v1/updates/{id}", url, token, ca_file)
        show(p, as_json, _plan)
        return
    plans = call(
        "GET", "/api/v1/updates", url, token, ca_file, params={"client": client} if client else None
    )
    lines = [
        f"{p['id']} {p['client']} {p['target_version']}: {p['status']}, gate {p['gate']}"
        for p in plans
    ]
    show(plans, as_json, lambda _: "\n".join(lines) or "(no update plans)")


def _gate_command(
    action: str,
    id: str,
    reason: str,
    url: str,
    token: str | None,
    ca_file: Path | None,
    as_json: bool,
    override: bool = False,
) -> None:
    """approve and hold: the same body, the plan's gate printed (and, approving, what the soak
    judgement found)."""
    body: dict[str, Any] | None = {"reason": reason} if reason else None
    if override:
        body = {"reason": reason, "override": True}
    p = call("POST", f"/api/v1/updates/{id}/{action}", url, token, ca_file, body)
    shown = [f"{p['id']}: gate {_gate(p)}"] + (_judgement(p) if action == "approve" else [])
    show(p, as_json, lambda p: "\n".join(shown))


@update_app.command("approve")
def update_approve(
    id: Annotated[str, typer.Argument(help="e.g. AK-2026-0001")],
    reason: Annotated[str, typer.Option(help="recorded with the approval")] = "",
    override: Annotated[
        bool,
        typer.Option(
            "--override",
            help="approve although the soak judgement found alerts or tickets (needs --reason)",
        ),
    ] = False,
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Open the gate by hand: production may run in its window. Prints what the soak
    judgement found; over a judgement that found something only with --override --reason."""
    _gate_command("approve", id, reason, url, token, ca_file, as_json, override)


@update_app.command("hold")
def update_hold(
    id: Annotated[str, typer.Argument(help="e.g. AK-2026-0001")],
    reason: Annotated[str, typer.Option(help="recorded with the hold")] = "",
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Keep production from starting until an engineer approves."""
    _gate_command("hold", id, reason, url, token, ca_file, as_json)


@update_app.command("cancel")
def update_cancel(
    id: Annotated[str, typer.Argument(help="e.g. AK-2026-0001")],
    reason: Annotated[str, typer.Option(help="why (recorded on the plan's ticket)")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Call a plan off: no later step or stage runs; a stage running now stops after its
    current command; the windows of stages that did not run are cancelled."""
    p = call("POST", f"/api/v1/updates/{id}/cancel", url, token, ca_file, {"reason": reason})
    show(p, as_json, _plan)
