"""dyzur run: the bridge, serving its API, logging in UTC."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bridge.cli.base import ConfigPath, app, load, open_store_of

if TYPE_CHECKING:
    from bridge.config import LoadedConfig


@app.command()
def run(
    config: ConfigPath,
    host: Annotated[str | None, typer.Option(help="overrides listen.host")] = None,
    port: Annotated[int | None, typer.Option(help="overrides listen.port")] = None,
    access_log: Annotated[bool, typer.Option(help="log every HTTP request")] = False,
) -> None:
    """Start the bridge."""
    import signal

    from bridge.api.serve import serve
    from bridge.service import Bridge

    _log_in_utc()
    loaded = load(config)
    bridge = Bridge(loaded, open_store_of(loaded, config))
    listen = loaded.config.listen
    cert, key = listen.tls_cert, listen.tls_key
    for line in banner(loaded, config, host or listen.host, port or listen.port, bool(cert)):
        logging.getLogger("dyzur").info("%s", line)
    # uvicorn hands SIGTERM back once it has shut down gracefully: end by SystemExit instead
    # of the signal, so that the bridge is closed below (store checkpointed, queues flushed).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    tls = (loaded.base_dir / cert, loaded.base_dir / key) if cert and key else (None, None)
    try:
        serve(bridge, host or listen.host, port or listen.port, access_log, *tls)
    finally:
        bridge.close()


def banner(loaded: LoadedConfig, config: Path, host: str, port: int, tls: bool) -> list[str]:
    """What a person starting the bridge needs to know, a line each: where it listens, the
    store as the file it really is, where the tokens are, the pages and the API docs, how to
    log in."""
    from importlib.metadata import version

    from bridge.cli.setup import command_name
    from bridge.store import sqlite_path
    from bridge.store.base import without_password

    scheme = "https" if tls else "http"
    # A browser cannot open "every interface": the pages are reached on this host's loopback.
    bound = host or "0.0.0.0"  # noqa: S104 (naming it, not binding it)
    everywhere = bound in ("0.0.0.0", "::")  # noqa: S104
    shown = ("::1" if bound == "::" else "127.0.0.1") if everywhere else bound
    url = f"{scheme}://{f'[{shown}]' if ':' in shown else shown}:{port}"
    where = f"{f'[{bound}]' if ':' in bound else bound}:{port} (every interface)"
    listening = f"{scheme}://{where}" if everywhere else url
    store = without_password(loaded.config.store)
    if store.startswith("sqlite:///"):
        store = f"{sqlite_path(store, loaded.base_dir).resolve()} (SQLite)"
    config_file = (loaded.path or config).resolve()
    tokens = config_file.with_name(config_file.name + ".tokens")
    lines = [
        f"dyzur bridge: version {version('dyzur')}, {len(loaded.clients)} clients, "
        f"{len(loaded.assets)} assets, {len(loaded.rules)} rules, config {config_file}",
        f"listening on {listening}",
        f"store: {store}",
        *(
            [
                f"coordination: {without_password(loaded.config.coordination)} (prefix "
                f"{loaded.config.cluster.prefix}): the hospitals are shared with the other "
                "bridges there (dyzur cluster status)"
            ]
            if loaded.config.coordination
            else []
        ),
        f"tokens: {tokens} (the plain tokens; the config holds their hashes)"
        if tokens.is_file()
        else f"tokens: {len(loaded.config.tokens)} in the config, as hashes (no {tokens.name})",
        f"pages: {url}/ui/ - API docs: {url}/docs",
    ]
    users = loaded.config.users
    if users:
        names = ", ".join(u.name for u in users[:5]) + (", ..." if len(users) > 5 else "")
        lines.append(f"log in at {url}/login as a user of the config ({len(users)}: {names})")
    else:
        lines.append(
            f"log in: no users yet; make one with `{command_name()} user new --name NAME "
            "--role engineer` (it reads the password from standard input), add the entry it "
            f"prints under users: in {config_file}, restart, then log in at {url}/login"
        )
    return lines


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
