"""The `dyzur` command."""

from __future__ import annotations

import logging
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

ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="dyzur.yaml")]


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(2)


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
    import uvicorn

    from bridge.api import create_app
    from bridge.service import Bridge
    from bridge.store import StoreError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
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
            **tls,
        )
    finally:
        bridge.close()


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
    from bridge.sla import reaction_due

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
    format: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """Reaction times of a client's tickets in a month, per category, for the invoice."""
    from bridge.report import ReportError, render_report, sla_report
    from bridge.store import StoreError, open_store

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
