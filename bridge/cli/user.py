"""People who log in to the pages: dyzur user new."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from bridge.cli.base import app, fail, load

user_app = typer.Typer(no_args_is_help=True, help="People who log in to the pages.")
app.add_typer(user_app, name="user")

NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,99}$")


def read_password() -> str:
    """The password from standard input: asked twice on a terminal (not shown), else its
    first line. Never an argument: a command line is seen by every user of the host and kept
    in shell histories."""
    import getpass

    if sys.stdin.isatty():
        try:
            first = getpass.getpass("Password (at least 12 characters): ")
            again = getpass.getpass("The same password again: ")
        except (EOFError, KeyboardInterrupt):
            raise fail("no password given") from None
        if first != again:
            raise fail("the two passwords differ; nothing was made")
        return first
    line = sys.stdin.readline()
    return line.removesuffix("\n").removesuffix("\r")


@user_app.command("new")
def user_new(
    name: Annotated[str, typer.Option(help="the login name, lower case, e.g. anna.nowak")],
    role: Annotated[str, typer.Option(help="engineer, admin or client:<id>")],
    language: Annotated[
        str | None, typer.Option(help="pl or en: the pages' language (default: the browser's)")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="dyzur.yaml: check the name and client against it"),
    ] = None,
) -> None:
    """Make a user's entry: reads the password from standard input (asked twice on a
    terminal) and prints the entry for users: in dyzur.yaml, with the password's argon2id
    hash only.

        dyzur user new --name anna.nowak --role engineer >> users.yaml
    """
    from bridge.auth import Role, parse_role
    from bridge.users import hash_password, password_problem

    if not NAME.match(name):
        raise fail(
            f"--name: {name!r} is not a user name: lower-case letters, digits and . _ @ -, "
            "at most 100, starting with a letter or digit"
        )
    try:
        parsed, client = parse_role(role)
    except ValueError as exc:
        raise fail(f"--role: {exc}") from None
    if parsed is Role.AGENT:
        raise fail("--role: a user is a person: engineer, admin or client:<id> (agents use tokens)")
    if language not in (None, "pl", "en"):
        raise fail(f"--language: {language!r} is neither pl nor en")
    if config is not None:
        loaded = load(config)
        taken = {t.name.casefold() for t in loaded.config.tokens}
        taken |= {u.name for u in loaded.config.users}
        if name in taken:
            raise fail(f"--name: {config} already has a user or token named {name!r}")
        if client is not None and client not in loaded.clients:
            raise fail(f"--role: {config} has no client {client!r}")
    password = read_password()
    problem = password_problem(password)
    if problem:
        raise fail(f"{problem}; nothing was made")  # never the password itself
    entry: dict[str, str] = {"name": name, "role": role, "password": hash_password(password)}
    if language is not None:
        entry["language"] = language
    typer.echo("add to users: in dyzur.yaml (the password is kept only as its hash):", err=True)
    typer.echo(yaml.safe_dump([entry], sort_keys=False).rstrip())
