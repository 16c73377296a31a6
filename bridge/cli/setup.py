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
    force: Annotated[bool, typer.Option(help="overwrite existing files")] = False,
) -> None:
    """Write a starting configuration (the embedded example) with fresh tokens, and a local
    agent's configuration pushing to this bridge.

    The tokens themselves go to PATH.tokens (mode 600), beside the config, once. The agent's
    configuration goes beside it too (dyzur.yaml: dyzur.agent.yaml, with its token alone in
    dyzur.agent.token, mode 600): dyzur agent --config dyzur.agent.yaml works at once.
    """
    from bridge.auth import hash_token, new_token
    from bridge.config import EXAMPLE_CONFIG
    from collectors.yamlfile import parse_yaml

    agent_path, agent_token_path = agent_files(path)
    for existing in (path, agent_path, agent_token_path):
        if existing.exists() and not force:
            raise fail(f"{existing} exists; use --force to overwrite it")
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
    _write_private(
        secrets_path,
        "".join(f"{name}\t{role}\t{token}\n" for name, (role, token) in tokens.items()),
    )
    example = parse_yaml(text, str(path))
    _write_private(agent_token_path, tokens["agent"][1] + "\n")
    agent_path.write_text(agent_config(example, agent_token_path.name), encoding="utf-8")
    dyzur = command_name()
    typer.echo(f"wrote {path}; its tokens are in {secrets_path} (keep that file private)")
    typer.echo(
        f"wrote {agent_path}, a local agent pushing this host's measurements as "
        f"{_agent_asset(example)}, with the agent token in {agent_token_path}"
    )
    typer.echo(f"start the bridge: {dyzur} run --config {path}")
    typer.echo(f"then, in another shell: {dyzur} agent --config {agent_path} --once")


def agent_files(config: Path) -> tuple[Path, Path]:
    """The local agent's configuration and token file beside ``config``: dyzur.local.yaml ->
    dyzur.local.agent.yaml and dyzur.local.agent.token."""
    stem = config.name.removesuffix(".yaml").removesuffix(".yml")
    return config.with_name(f"{stem}.agent.yaml"), config.with_name(f"{stem}.agent.token")


def _write_private(path: Path, text: str) -> None:
    """``text`` in ``path``, readable by its owner only from the start (mode 600)."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text, encoding="utf-8")


def _agent_asset(example: dict) -> str:
    """The asset a local agent reports as: the example's first server."""
    servers = [a["id"] for a in example.get("assets") or [] if a.get("kind") == "server"]
    return servers[0] if servers else example["assets"][0]["id"]


def agent_config(example: dict, token_file: str) -> str:
    """A local agent's agent.yaml: this host's measurements (the host collector), pushed to the
    bridge the example config listens on."""
    listen = example.get("listen") or {}
    host, port = listen.get("host", "127.0.0.1"), listen.get("port", 8080)
    asset = _agent_asset(example)
    return f"""\
# A local dyzur agent (written by dyzur init): it measures this host and pushes the samples
# to the bridge beside it as asset {asset}. Run it with
#   dyzur agent --config THIS_FILE --once --print   (what it would push)
#   dyzur agent --config THIS_FILE                  (every 30s, until Ctrl-C)
# deploy/agent.example.yaml describes every setting. Paths are relative to this file.
asset: {asset}

bridge:
  url: http://{host}:{port}
  token_file: {token_file}    # the agent token (mode 600)
  timeout: 10s

spool:
  path: var/agent-spool.db

metrics:
  listen: "off"               # the agent's own /metrics, e.g. 127.0.0.1:9465

collectors:
  - name: host
    kind: host
    interval: 30s
"""


def command_name() -> str:
    """How a person runs dyzur from here: ``dyzur`` when that is on the PATH, else the
    command beside this Python (``.venv/bin/dyzur`` in a checkout's virtualenv)."""
    import shutil
    import sys

    beside = Path(sys.executable).with_name("dyzur")
    if not beside.is_file():
        return "dyzur"
    on_path = shutil.which("dyzur")
    if on_path is not None and Path(on_path).resolve() == beside.resolve():
        return "dyzur"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


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
