"""The HTTP client of the commands that go through a running bridge's API (window, update,
audit list): its tokens, roles and audit trail (the token's name as the actor) apply to them
as to any other caller. Their options, the call, and printing the answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from bridge.cli.base import fail, json_option

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
    bool, typer.Option("--json", help="print the API's JSON (errors too)", callback=json_option)
]
DEFAULT_URL = "http://127.0.0.1:8080"


def call(
    method: str,
    path: str,
    url: str,
    token: str | None,
    ca_file: Path | None,
    body: dict[str, Any] | None = None,
    params: dict[str, Any] | None = None,
) -> Any:
    """The API's JSON answer; an error status, a refused token or no answer -> exit 2."""
    import ssl

    import httpx

    if not token:
        raise fail("no token: give --token or set DYZUR_TOKEN")
    if not token.isascii() or not token.isprintable():
        raise fail("--token: not a token (printable ASCII only)")  # never echo it
    try:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file else True
        )
    except (OSError, ssl.SSLError) as exc:
        raise fail(f"--ca-file: {ca_file}: {exc}") from None
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
        raise fail(f"cannot reach the bridge at {url}: {exc}") from None
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        raise fail(f"{url}: HTTP {status}, not an answer of the bridge", status=status) from None
    if response.is_success:
        return data
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(data, dict) and data.get("errors"):
        detail = data["errors"]  # ErrorBody: each refused field, one a line
    if isinstance(detail, list):
        detail = "\n".join(f"{d.get('field', '?')}: {d.get('msg', d)}" for d in detail)
    if status == 401:
        raise fail(f"the bridge at {url} refused the token: {detail}", data, status)
    raise fail(str(detail), data, status)


def _iso(value: object) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def show(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """The API's JSON, or ``render(data)``'s lines of text."""
    text = json.dumps(data, indent=2, ensure_ascii=False) if as_json else render(data)
    typer.echo(text)
