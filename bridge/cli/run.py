"""dyzur run: the bridge, serving its API, logging in UTC."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from bridge.cli.base import ConfigPath, app, load, open_store_of


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
    cert, key = listen.tls_cert, listen.tls_key
    tls = (loaded.base_dir / cert, loaded.base_dir / key) if cert and key else (None, None)
    try:
        serve(bridge, host or listen.host, port or listen.port, access_log, *tls)
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
