"""The `dyzur` command."""

from __future__ import annotations

import itertools
import json
import logging
import sys
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated

import typer
import yaml

app = typer.Typer(no_args_is_help=True, add_completion=False, help="dyzur: monitoring to tickets.")
rules_app = typer.Typer(no_args_is_help=True, help="Rule files.")
token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens.")
sla_app = typer.Typer(no_args_is_help=True, help="Reaction deadlines.")
report_app = typer.Typer(no_args_is_help=True, help="Reports for clients.")
app.add_typer(rules_app, name="rules")
app.add_typer(token_app, name="token")
app.add_typer(sla_app, name="sla")
audit_app = typer.Typer(no_args_is_help=True, help="The audit trail.")
app.add_typer(report_app, name="report")
app.add_typer(audit_app, name="audit")
window_app = typer.Typer(
    no_args_is_help=True, help="Maintenance windows, through the bridge's API."
)
update_app = typer.Typer(
    no_args_is_help=True, help="Staged AMMS updates, through the bridge's API."
)
app.add_typer(window_app, name="window")
app.add_typer(update_app, name="update")

ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="dyzur.yaml")]

# Whether the command running was asked for JSON (--json, --format json): then its errors are
# JSON too. Set by those options' callbacks as its command line is read, reset for each command.
_json_errors: ContextVar[bool] = ContextVar("json_errors", default=False)


@app.callback()
def _each_command() -> None:
    _json_errors.set(False)


def _json_option(value: bool) -> bool:
    if value:
        _json_errors.set(True)
    return value


def _format_option(value: str) -> str:
    if value == "json":
        _json_errors.set(True)
    return value


def _fail(message: str, body: object = None, status: int | None = None) -> typer.Exit:
    """Exit 2 with ``message`` on stderr. A command asked for JSON (``--json``, ``--format
    json``) gets its error as JSON too: the API's error body (``detail``, ``errors`` naming each
    refused field, ``conflicts_with``) with the HTTP ``status`` (null: the bridge was not asked,
    or did not answer)."""
    if _json_errors.get():
        typer.echo(json.dumps(_error_body(message, body, status), ensure_ascii=False), err=True)
    else:
        typer.echo(message, err=True)
    return typer.Exit(2)


def _error_body(message: str, body: object = None, status: int | None = None) -> dict:
    error = {"detail": message, "errors": [], "conflicts_with": None}
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        error |= body  # the bridge's own ErrorBody
    return error | {"status": status}


def _json_in(args: list[str]) -> bool:
    pairs = itertools.pairwise(args)
    return "--json" in args or "--format=json" in args or ("--format", "json") in pairs


def main(argv: list[str] | None = None) -> None:
    """The `dyzur` command. With ``--json`` (or ``--format json``) even a usage error (an
    option missing or refused before the command runs) is JSON on stderr, exit 2."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not _json_in(args):
        app(args=args)
        return
    try:
        code = app(args=args, standalone_mode=False)
    except typer.Abort:
        sys.exit(1)
    except Exception as exc:
        # Click's usage errors (typer's own copy of Click in recent releases, so by their
        # shape): a missing argument, an unknown option, a refused value.
        if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", 0), int)):
            raise
        errors = []
        param = getattr(exc, "param", None)
        if param is not None:
            option = param.param_type_name == "option" and param.opts
            field = param.opts[0] if option else str(param.name).upper()
            errors.append({"field": field, "msg": exc.format_message(), "type": "usage"})
        body = {"detail": exc.format_message(), "errors": errors}
        sys.stderr.write(json.dumps(_error_body("", body), ensure_ascii=False) + "\n")
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _load(path: Path):
    from bridge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise _fail(str(exc)) from None


@app.command()
def run(
    config: ConfigPath,
    host: Annotated[str | None, typer.Option(help="overrides listen.host")] = None,
    port: Annotated[int | None, typer.Option(help="overrides listen.port")] = None,
    access_log: Annotated[bool, typer.Option(help="log every HTTP request")] = False,
) -> None:
    """Start the bridge."""
    import signal

    import uvicorn

    from bridge.api import create_app
    from bridge.service import Bridge
    from bridge.store import StoreError

    _log_in_utc()
    loaded = _load(config)
    try:
        bridge = Bridge(loaded)
    except StoreError as exc:
        raise _fail(f"{config}: store: {exc}") from None
    listen = loaded.config.listen
    logging.getLogger("dyzur").info(
        "dyzur bridge: %d clients, %d assets, %d rules, store %s",
        len(loaded.clients),
        len(loaded.assets),
        len(loaded.rules),
        loaded.config.store,
    )
    # uvicorn hands SIGTERM back once it has shut down gracefully: end by SystemExit instead
    # of the signal, so that the bridge is closed below (store checkpointed, queues flushed).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        tls = {}
        if listen.tls_cert and listen.tls_key:
            tls = {
                "ssl_certfile": str(loaded.base_dir / listen.tls_cert),
                "ssl_keyfile": str(loaded.base_dir / listen.tls_key),
            }
        uvicorn.run(
            create_app(bridge),
            host=host or listen.host,
            port=port or listen.port,
            access_log=access_log,
            log_level="info",
            log_config=None,  # uvicorn's lines go through the root logger: times in UTC
            **tls,
        )
    finally:
        bridge.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def utc_log_formatter() -> logging.Formatter:
    """Each line starts with its time in UTC, ISO 8601 marked Z (2026-11-23T09:00:00.123Z),
    whatever the host's time zone."""
    import time

    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    return formatter


def _log_in_utc() -> None:
    """The bridge's log, dyzur's and uvicorn's lines alike (uvicorn runs without a logging
    config of its own, so its loggers reach this handler)."""
    handler = logging.StreamHandler()
    handler.setFormatter(utc_log_formatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])


@app.command("check-config")
def check_config(path: Path) -> None:
    """Validate a configuration file; names the field of every problem."""
    loaded = _load(path)
    typer.echo(
        f"{path}: OK ({len(loaded.clients)} clients, {len(loaded.assets)} assets, "
        f"{len(loaded.rules)} rules, {len(loaded.config.tokens)} tokens)"
    )


@rules_app.command("check")
def rules_check(files: list[Path]) -> None:
    """Validate rule files; names file and line of an error."""
    from rules.loader import RuleFileError, load_rule_files

    try:
        rules = load_rule_files([str(f) for f in files])
    except RuleFileError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"OK: {len(rules)} rules in {len(files)} file(s)")


def _parse_opened(text: str):
    from datetime import datetime

    from bridge.clock import WARSAW

    try:
        opened = datetime.fromisoformat(text)
    except ValueError:
        raise _fail(f"--opened: not an ISO 8601 time: {text!r}") from None
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
        raise _fail(f"--category: unknown category {category!r} (known: {known})") from None
    when = _parse_opened(opened)
    if config is not None or client is not None:
        if config is None or client is None:
            raise _fail("--config and --client go together")
        loaded = _load(config)
        if client not in loaded.clients:
            raise _fail(f"--client: no client {client!r} in {config}")
        terms = loaded.clients[client].contract
    elif contract in ("standard", "24/7"):
        terms = Contract(hours=contract)
    else:
        raise _fail(f"--contract: expected standard or 24/7, got {contract!r}")
    due = reaction_due(terms, cat, when)
    if due is None:
        raise _fail(f"{cat.value} has no reaction clock: its due time is the planned start")
    typer.echo(due.isoformat())


@report_app.command("sla")
def report_sla(
    config: ConfigPath,
    client: Annotated[str, typer.Option(help="client id")],
    month: Annotated[str, typer.Option(help="YYYY-MM, in Europe/Warsaw")],
    format: Annotated[
        str, typer.Option("--format", help="table, csv or json", callback=_format_option)
    ] = "table",
) -> None:
    """Reaction times of a client's tickets in a month, per category, for the invoice."""
    from bridge.store import StoreError, open_store
    from bridge.tickets.report import ReportError, render_report, sla_report

    if format not in ("table", "csv", "json"):
        raise _fail(f"--format: expected table, csv or json, got {format!r}")
    loaded = _load(config)
    if client not in loaded.clients:
        raise _fail(f"--client: no client {client!r} in {config}")
    try:
        store = open_store(loaded.config.store, loaded.base_dir)
    except StoreError as exc:
        raise _fail(f"{config}: store: {exc}") from None
    try:
        rows = sla_report(store, loaded.clients[client], month)
    except ReportError as exc:
        raise _fail(str(exc)) from None
    finally:
        store.close()
    typer.echo(render_report(rows, format, loaded.clients[client], month), nl=False)


@audit_app.command("verify")
def audit_verify(config: ConfigPath) -> None:
    """Check the audit chain; names the first event that was edited or deleted."""
    from bridge.audit import verify_store
    from bridge.store import StoreError, open_store

    loaded = _load(config)
    try:
        store = open_store(loaded.config.store, loaded.base_dir)
    except StoreError as exc:
        raise _fail(f"{config}: store: {exc}") from None
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


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Option(help="who uses it, e.g. agent-szpital-a")],
    role: Annotated[str, typer.Option(help="agent, engineer, admin or client:<id>")],
) -> None:
    """Make a token: prints it once, and the config entry that holds only its hash."""
    from bridge.auth import hash_token, new_token, parse_role

    try:
        parse_role(role)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    token = new_token()
    typer.echo(f"token (shown once, give it to its user): {token}")
    typer.echo("add to tokens: in dyzur.yaml:")
    entry = [{"name": name, "sha256": hash_token(token), "role": role}]
    typer.echo(yaml.safe_dump(entry, sort_keys=False).rstrip())


@app.command()
def init(
    path: Path,
    force: Annotated[bool, typer.Option(help="overwrite an existing file")] = False,
) -> None:
    """Write a starting configuration (the embedded example) with fresh tokens.

    The tokens themselves go to PATH.tokens (mode 600), beside the config, once.
    """
    from bridge.auth import hash_token, new_token
    from bridge.config import EXAMPLE_CONFIG

    if path.exists() and not force:
        raise _fail(f"{path} exists; use --force to overwrite it")
    tokens = {name: (role, new_token()) for name, role in _INIT_TOKENS}
    entries = [
        {"name": name, "sha256": hash_token(token), "role": role}
        for name, (role, token) in tokens.items()
    ]
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace(
        "tokens: []", yaml.safe_dump({"tokens": entries}, sort_keys=False).rstrip()
    )
    path.write_text(text, encoding="utf-8")
    secrets_path = path.with_name(path.name + ".tokens")
    secrets_path.touch(mode=0o600, exist_ok=True)
    secrets_path.chmod(0o600)
    secrets_path.write_text(
        "".join(f"{name}\t{role}\t{token}\n" for name, (role, token) in tokens.items()),
        encoding="utf-8",
    )
    typer.echo(f"wrote {path}; its tokens are in {secrets_path} (keep that file private)")


_INIT_TOKENS = (
    ("admin", "admin"),
    ("engineer", "engineer"),
    ("agent", "agent"),
    ("szpital-wojewodzki", "client:szpital-wojewodzki"),
)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def agent() -> None:
    """Run the agent on a hospital host: dyzur agent --config agent.yaml [--once] [--print]."""
    # Listed for --help only: bridge/entry.py runs `dyzur agent` before this CLI is loaded.
    raise _fail("run the agent as: dyzur agent --config agent.yaml")


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def ssh() -> None:
    """Record a host key: dyzur ssh trust HOST:PORT --config dyzur.yaml (or --known-hosts F)."""
    # Listed for --help only: bridge/entry.py runs `dyzur ssh` (agents/ssh_trust.py), which
    # an agent-only install has too, before this CLI is loaded.
    raise _fail("record a host key as: dyzur ssh trust HOST:PORT --config dyzur.yaml")


# --- window and update: thin clients of a running bridge's API, so its tokens, roles and
# audit trail (the token's name as the actor) apply as they do to any other caller.

Url = Annotated[str, typer.Option(envvar="DYZUR_URL", help="the bridge")]
Token = Annotated[
    str | None,
    typer.Option(
        envvar="DYZUR_TOKEN",
        help="a bearer token (required; engineer or admin to change things)",
        show_default=False,
    ),
]
CaFile = Annotated[
    Path | None,
    typer.Option(exists=True, dir_okay=False, help="verify the bridge's HTTPS with this CA"),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="print the API's JSON (errors too)", callback=_json_option)
]
DEFAULT_URL = "http://127.0.0.1:8080"


def _call(
    method: str,
    path: str,
    url: str,
    token: str | None,
    ca_file: Path | None,
    body: dict | None = None,
    params: dict | None = None,
):
    """The API's JSON answer; an error status, a refused token or no answer -> exit 2."""
    import json
    import ssl

    import httpx

    if not token:
        raise _fail("no token: give --token or set DYZUR_TOKEN")
    if not token.isascii() or not token.isprintable():
        raise _fail("--token: not a token (printable ASCII only)")  # never echo it
    try:
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
    except (OSError, ssl.SSLError) as exc:
        raise _fail(f"--ca-file: {ca_file}: {exc}") from None
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    # YAML times arrive as datetimes: ISO 8601 as written (without an offset: Warsaw).
    content = None if body is None else json.dumps(body, default=_iso)
    try:
        response = httpx.request(
            method,
            url.rstrip("/") + path,
            params=params,
            content=content,
            headers=headers,
            verify=verify,
            timeout=30,
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise _fail(f"cannot reach the bridge at {url}: {exc}") from None
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        raise _fail(f"{url}: HTTP {status}, not an answer of the bridge", status=status) from None
    if response.is_success:
        return data
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(data, dict) and data.get("errors"):
        detail = data["errors"]  # ErrorBody: each refused field, one a line
    if isinstance(detail, list):
        detail = "\n".join(f"{d.get('field', '?')}: {d.get('msg', d)}" for d in detail)
    if status == 401:
        raise _fail(f"the bridge at {url} refused the token: {detail}", data, status)
    raise _fail(str(detail), data, status)


def _iso(value) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _show(data, as_json: bool, render) -> None:
    """The API's JSON, or ``render(data)``'s lines of text."""
    import json

    text = json.dumps(data, indent=2, ensure_ascii=False) if as_json else render(data)
    typer.echo(text)


def _window(w: dict) -> str:
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


def _suppressed(a: dict) -> str:
    """One alert recorded against a window; its labels tell two of one rule on a host apart."""
    shown = {k: v for k, v in a["labels"].items() if (k, v) != ("asset", a["asset"])}
    labels = ",".join(f"{k}={v}" for k, v in shown.items())
    text = f"  {a['rule']} on {a['asset']}" + (f" {{{labels}}}" if labels else "")
    text += f" ({a['category']}): fired {a['fired_at']}"
    text += f", value {a['value']:g}" if a["value"] is not None else ""
    text += f", {a['state']}"
    text += f" {a['recovered_at']}" if a["recovered_at"] else ""
    return text + (f", ticket {a['ticket']}" if a["ticket"] else "")


def _gate(p: dict) -> str:
    text = p["gate"]
    text += f" until {p['soak_until']}" if p["gate"] == "soaking" and p["soak_until"] else ""
    by = f" by {p['gate_by']} at {p['gate_at']}" if p["gate_by"] else ""
    text += (" OVER THE SOAK JUDGEMENT" + by) if p.get("gate_override") else by
    return text + (f": {p['gate_reason']}" if p["gate_reason"] else "")


def _judgement(p: dict) -> list[str]:
    """What the last soak judgement found on the test assets, one finding a line."""
    if not p.get("judged_until"):
        return []
    test = next((s for s in p["stages"] if s["environment"] == "test"), None)
    since = test["finished_at"] if test else "?"
    head = f"  soak judgement {since} – {p['judged_until']}: "
    if not p["gate_findings"]:
        return [head + "no awaria or usterka alert or ticket of the test assets"]
    return [head + "found"] + [f"    {finding}" for finding in p["gate_findings"]]


def _plan(p: dict) -> str:
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
    w = _call("POST", "/api/v1/windows", url, token, ca_file, body)
    _show(w, as_json, lambda w: f"planned {w['id']}: {_window(w)}")


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
    windows = _call("GET", "/api/v1/windows", url, token, ca_file, params=params)
    lines = [f"{w['id']} {w['client']}: {_window(w)}" for w in windows]
    _show(windows, as_json, lambda _: "\n".join(lines) or "(no windows)")


@window_app.command("show")
def window_show(
    id: Annotated[str, typer.Argument(help="e.g. OS-2026-0001")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """One window, its reason and the alerts recorded against it (with their labels)."""
    w = _call("GET", f"/api/v1/windows/{id}", url, token, ca_file)
    lines = [f"{w['id']} {w['client']}: {_window(w)}", f"  reason: {w['reason']}"]
    lines += [_suppressed(a) for a in w["alerts"] or []] or ["  (no alerts recorded)"]
    _show(w, as_json, lambda _: "\n".join(lines))


@window_app.command("cancel")
def window_cancel(
    id: Annotated[str, typer.Argument(help="e.g. OS-2026-0001")],
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a window; alerts still firing in it open their tickets at the next tick."""
    w = _call("POST", f"/api/v1/windows/{id}/cancel", url, token, ca_file)
    _show(w, as_json, lambda w: f"cancelled {w['id']}: {_window(w)}")


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
    try:
        body = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"{mark.line + 1}:" if mark else ""
        raise _fail(f"{file}:{line} {exc.problem or exc.context}") from None
    except RecursionError:
        raise _fail(f"{file}: invalid YAML: nested too deeply") from None
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise _fail(f"{file}: {exc}") from None
    if not isinstance(body, dict):
        raise _fail(f"{file}: expected a mapping (client, target_version, prod_window, ...)")
    p = _call("POST", "/api/v1/updates", url, token, ca_file, body)
    _show(p, as_json, lambda p: f"planned {_plan(p)}")


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
        p = _call("GET", f"/api/v1/updates/{id}", url, token, ca_file)
        _show(p, as_json, _plan)
        return
    plans = _call(
        "GET", "/api/v1/updates", url, token, ca_file, params={"client": client} if client else None
    )
    lines = [
        f"{p['id']} {p['client']} {p['target_version']}: {p['status']}, gate {p['gate']}"
        for p in plans
    ]
    _show(plans, as_json, lambda _: "\n".join(lines) or "(no update plans)")


def _gate_command(
    action: str, id: str, reason: str, url, token, ca_file, as_json, override: bool = False
) -> None:
    body: dict | None = {"reason": reason} if reason else None
    if override:
        body = {"reason": reason, "override": True}
    p = _call("POST", f"/api/v1/updates/{id}/{action}", url, token, ca_file, body)
    shown = [f"{p['id']}: gate {_gate(p)}"] + (_judgement(p) if action == "approve" else [])
    _show(p, as_json, lambda p: "\n".join(shown))


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
    p = _call("POST", f"/api/v1/updates/{id}/cancel", url, token, ca_file, {"reason": reason})
    _show(p, as_json, _plan)


# --- audit list: the audit trail for engineers without a SIEM, through the API like window and
# update, so a hospital's token reads its own hospital's events only (audit verify, by contrast,
# checks the chain in the store file itself).

AUDIT_COLUMNS = ("ID", "TIME", "ACTOR", "ACTION", "OUTCOME", "CLIENT", "ASSET", "DETAIL")
AUDIT_PAGE = 1000  # the API's largest page


def _detail_text(detail: dict) -> str:
    """key=value pairs; a value that is not one plain word is written as JSON (quoted, with
    control characters escaped), so one event stays on one line."""

    def value(v) -> str:
        if isinstance(v, str) and v and v.isprintable() and " " not in v and '"' not in v:
            return v
        return json.dumps(v, ensure_ascii=False)

    return " ".join(f"{k}={value(v)}" for k, v in detail.items())


def _audit_table(events: list[dict]) -> str:
    from datetime import datetime

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
        str, typer.Option("--format", help="table or json", callback=_format_option)
    ] = "table",
    url: Url = DEFAULT_URL,
    token: Token = None,
    ca_file: CaFile = None,
    as_json: AsJson = False,
) -> None:
    """Audit events through the bridge's API (engineer, admin, or a hospital's token for its
    own), newest first; times in Europe/Warsaw."""
    if format not in ("table", "json"):
        raise _fail(f"--format: expected table or json, got {format!r}")
    if order not in ("newest", "oldest"):
        raise _fail(f"--order: expected newest or oldest, got {order!r}")
    filters = {"since": since, "action": action, "actor": actor, "asset": asset, "client": client}
    params = {k: v for k, v in filters.items() if v is not None} | {"order": order}
    events: list[dict] = []
    while len(events) < limit:
        page = min(limit - len(events), AUDIT_PAGE)
        after = {"after": events[-1]["id"]} if events else {}
        got = _call(
            "GET", "/api/v1/audit", url, token, ca_file, params=params | after | {"limit": page}
        )
        events += got
        if len(got) < page:
            break
    _show(events, as_json or format == "json", _audit_table)
