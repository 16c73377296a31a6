"""Several bridges, on the config they share: dyzur cluster status shows the bridges alive,
who holds which lease (each hospital's shard, the ticker, each outbox consumer, each update
plan), the batches handed over and not yet taken per hospital, and the dead letters — read
from Redis (``coordination:``) as the bridges see it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bridge.cli.base import ConfigPath, app, fail, json_option, load, table

cluster_app = typer.Typer(
    no_args_is_help=True,
    help="Several bridges on one PostgreSQL store, coordinated through Redis.",
)
app.add_typer(cluster_app, name="cluster")

AsJson = Annotated[
    bool, typer.Option("--json", help="print JSON", callback=json_option, is_eager=True)
]


@cluster_app.command("status")
def cluster_status(config: ConfigPath, as_json: AsJson = False) -> None:
    """The bridges alive, the leases and who holds them, the hand-over streams' lag.

    Exits 1 when a hospital is held by no bridge (its alerts wait) or a batch is in the
    dead letters; 2 when Redis does not answer. --json prints {"bridges", "leases",
    "hospitals", "stream_lag", "dead_letters"}."""
    from bridge.store import StoreError
    from bridge.store.redis_coordination import RedisCoordination

    loaded = load(config)
    settings = loaded.config
    if settings.coordination is None:
        raise fail(f"{config}: coordination: not set; this bridge runs alone")

    def no_tokens(name: str) -> int:
        raise RuntimeError("dyzur cluster status takes no lease")

    coordination = RedisCoordination(
        settings.coordination, prefix=settings.cluster.prefix, tokens=no_tokens
    )
    try:
        bridges = coordination.members()
        leases = coordination.holders()
        lag = coordination.stream_lag()
        dead = coordination.dead_letters()
    except StoreError as exc:
        raise fail(f"{config}: coordination: {exc}") from None
    finally:
        coordination.close()
    hospitals = {c: leases.get(f"shard:{c}", ("", 0, 0.0))[0] for c in loaded.clients}
    if as_json:
        found = {
            "bridges": bridges,
            "leases": {
                name: {"owner": owner, "token": token, "seconds_left": round(left, 1)}
                for name, (owner, token, left) in sorted(leases.items())
            },
            "hospitals": {c: owner or None for c, owner in hospitals.items()},
            "stream_lag": lag,
            "dead_letters": dead,
        }
        typer.echo(json.dumps(found, ensure_ascii=False))
    else:
        typer.echo(f"bridges alive: {len(bridges)}")
        if bridges:
            alive = [(b, info.get("started", "—")) for b, info in sorted(bridges.items())]
            typer.echo(table(["BRIDGE (HOST:PID:NONCE)", "STARTED"], alive))
        typer.echo("")
        rows = [
            (c, owner or "NOBODY", str(lag.get(c, 0))) for c, owner in sorted(hospitals.items())
        ]
        typer.echo(table(["HOSPITAL", "HELD BY", "HANDED OVER, NOT TAKEN"], rows))
        typer.echo("")
        others = [
            (name, owner, str(token), f"{left:.1f}s")
            for name, (owner, token, left) in sorted(leases.items())
            if not name.startswith("shard:")
        ]
        if others:
            typer.echo(table(["LEASE", "HELD BY", "TOKEN", "LEFT"], others))
        else:
            typer.echo("no other lease held")
        typer.echo(f"dead letters: {dead}")
    if dead or not all(hospitals.values()):
        raise typer.Exit(1)
