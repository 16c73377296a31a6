"""Setting a bridge up: dyzur init, check-config, rules check, token new."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from bridge.cli.base import app, fail, load, rules_app, token_app


@app.command("check-config")
def check_config(path: Path) -> None:
    """Validate a configuration file; names the field of every problem.

    Warns (exit 0) of gaps in the next 30 days of a 24/7 hospital's on-call coverage."""
    from bridge.cli.oncall import gap_warnings
    from bridge.clock import Clock

    loaded = load(path)
    typer.echo(
        f"{path}: OK ({len(loaded.clients)} clients, {len(loaded.assets)} assets, "
        f"{len(loaded.rules)} rules, {len(loaded.config.tokens)} tokens)"
    )
    # A gap in a 24/7 hospital's coverage is a fact about the coming weeks, not a bad setting:
    # reported, and the config still loads (the bridge pages nobody for that period).
    for warning in gap_warnings(loaded, Clock().now()):
        typer.echo(f"{path}: {warning}", err=True)


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
        raise fail(f"{path} exists; use --force to overwrite it")
    tokens = {name: (role, new_token()) for name, role in INIT_TOKENS}
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


INIT_TOKENS = (
    ("admin", "admin"),
    ("engineer", "engineer"),
    ("agent", "agent"),
    ("szpital-wojewodzki", "client:szpital-wojewodzki"),
)


@rules_app.command("check")
def rules_check(files: list[Path]) -> None:
    """Validate rule files; names file and line of an error."""
    from rules.loader import RuleFileError, load_rule_files

    try:
        rules = load_rule_files([str(f) for f in files])
    except RuleFileError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"OK: {len(rules)} rules in {len(files)} file(s)")


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
        raise fail(str(exc)) from None
    token = new_token()
    typer.echo(f"token (shown once, give it to its user): {token}")
    typer.echo("add to tokens: in dyzur.yaml:")
    entry = [{"name": name, "sha256": hash_token(token), "role": role}]
    typer.echo(yaml.safe_dump(entry, sort_keys=False).rstrip())
