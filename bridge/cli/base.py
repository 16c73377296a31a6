"""The `dyzur` command's frame: the app and its command groups, errors (as JSON when asked
for), and reading the bridge's config. The commands live in the modules beside this one."""

from __future__ import annotations

import getpass
import itertools
import json
import os
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from bridge.config import LoadedConfig
    from bridge.store import Store

app = typer.Typer(no_args_is_help=True, add_completion=False, help="dyzur: monitoring to tickets.")
rules_app = typer.Typer(no_args_is_help=True, help="Rule files.")
token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens.")
sla_app = typer.Typer(no_args_is_help=True, help="Reaction deadlines.")
report_app = typer.Typer(no_args_is_help=True, help="Reports for clients.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit trail.")
window_app = typer.Typer(
    no_args_is_help=True, help="Maintenance windows, through the bridge's API."
)
update_app = typer.Typer(
    no_args_is_help=True, help="Staged AMMS updates, through the bridge's API."
)
app.add_typer(rules_app, name="rules")
app.add_typer(token_app, name="token")
app.add_typer(sla_app, name="sla")
app.add_typer(report_app, name="report")
app.add_typer(audit_app, name="audit")
app.add_typer(window_app, name="window")
app.add_typer(update_app, name="update")

ConfigPath = Annotated[Path, typer.Option("--config", "-c", help="dyzur.yaml")]

# Whether the command running was asked for JSON (--json, --format json): then its errors are
# JSON too. Set by those options' callbacks as its command line is read, reset for each command.
_json_errors: ContextVar[bool] = ContextVar("json_errors", default=False)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"dyzur {version('dyzur')}")
        raise typer.Exit()


@app.callback()
def _each_command(
    _: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print dyzur's version and exit"
        ),
    ] = False,
) -> None:
    _json_errors.set(False)


def json_option(value: bool) -> bool:
    if value:
        _json_errors.set(True)
    return value


def format_option(value: str) -> str:
    if value == "json":
        _json_errors.set(True)
    return value


def fail(message: str, body: object = None, status: int | None = None) -> typer.Exit:
    """Exit 2 with ``message`` on stderr. A command asked for JSON (``--json``, ``--format
    json``) gets its error as JSON too: the API's error body (``detail``, ``errors`` naming each
    refused field, ``conflicts_with``) with the HTTP ``status`` (null: the bridge was not asked,
    or did not answer)."""
    if _json_errors.get():
        typer.echo(json.dumps(error_body(message, body, status), ensure_ascii=False), err=True)
    else:
        typer.echo(message, err=True)
    return typer.Exit(2)


def error_body(message: str, body: object = None, status: int | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"detail": message, "errors": [], "conflicts_with": None}
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
        sys.stderr.write(json.dumps(error_body("", body), ensure_ascii=False) + "\n")
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


def load(path: Path) -> LoadedConfig:
    """The bridge's config at ``path``; a problem exits 2 naming its field."""
    from bridge.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def open_store_of(loaded: LoadedConfig, config: Path) -> Store:
    """The store the config names (for the commands that read it directly); a store that
    cannot be opened exits 2 naming the config."""
    from bridge.store import StoreError, open_store

    try:
        return open_store(loaded.config.store, loaded.base_dir)
    except StoreError as exc:
        raise fail(f"{config}: store: {exc}") from None


def actor() -> str:
    """Who asked, as the audit trail names a person at the bridge's host: their login."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name for this uid (a container)
        return f"cli:uid-{os.getuid()}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows under a header, in columns as wide as their widest cell."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )
