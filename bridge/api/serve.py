"""Serving the API over HTTP(S) with uvicorn (``dyzur run``)."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from bridge.api.app import create_app
from bridge.service import Bridge


def serve(
    bridge: Bridge,
    host: str,
    port: int,
    access_log: bool = False,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; HTTPS with a certificate chain and its key (PEM). The
    app starts the bridge and stops it at the end; closing it is the caller's."""
    with_tls = tls_cert is not None and tls_key is not None
    uvicorn.run(
        create_app(bridge),
        host=host,
        port=port,
        access_log=access_log,
        log_level="info",
        log_config=None,  # uvicorn's lines go through the root logger: times in UTC
        ssl_certfile=str(tls_cert) if with_tls else None,
        ssl_keyfile=str(tls_key) if with_tls else None,
    )
