"""Fixtures shared by the bridge tests: a config with one token per role, a fixed clock,
a real store per store kind, and a bridge with its API."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.auth import Principal, Role, hash_token
from bridge.clock import FixedClock
from bridge.config import LoadedConfig, parse_config
from bridge.store import Store
from bridge.store.sqlite import SQLiteStore

DATA = Path(__file__).parent / "data"
START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday, 10:00 in Warsaw

# Plain tokens the tests present; the config holds only their hashes.
TOKENS = {
    "admin": "t-admin-0123456789",
    "engineer": "t-engineer-0123456789",
    "agent": "t-agent-0123456789",
    "agent-a": "t-agent-a-0123456789",
    "client-a": "t-client-a-0123456789",
    "client-b": "t-client-b-0123456789",
}
AGENT = Principal("agent", Role.AGENT)


def config_data(store_url: str = "sqlite:///dyzur.db") -> dict:
    return {
        "store": store_url,
        "rule_files": ["builtin:hosts", str(DATA / "test_rules.yaml")],
        "reopen_period": "1h",
        "clients": [
            {"id": "szpital-a", "name": "Szpital A", "contract": {"language": "pl"}},
            {
                "id": "klinika-b",
                "name": "Klinika B",
                "contract": {"language": "en", "hours": "24/7"},
            },
        ],
        "assets": [
            {"id": "srv-a1", "client": "szpital-a"},
            {"id": "srv-a2", "client": "szpital-a"},
            {"id": "srv-b1", "client": "klinika-b"},
            {"id": "ups-b1", "client": "klinika-b", "kind": "ups", "reports": False},
        ],
        "tokens": [
            {"name": "admin", "sha256": hash_token(TOKENS["admin"]), "role": "admin"},
            {"name": "jan.kowalski", "sha256": hash_token(TOKENS["engineer"]), "role": "engineer"},
            {"name": "agent", "sha256": hash_token(TOKENS["agent"]), "role": "agent"},
            {
                "name": "agent-a",
                "sha256": hash_token(TOKENS["agent-a"]),
                "role": "agent",
                "client": "szpital-a",
            },
            {
                "name": "it-szpital-a",
                "sha256": hash_token(TOKENS["client-a"]),
                "role": "client:szpital-a",
            },
            {
                "name": "it-klinika-b",
                "sha256": hash_token(TOKENS["client-b"]),
                "role": "client:klinika-b",
            },
        ],
    }


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_binary(name: str) -> str:
    """The path of a binary a test needs: skip without it, except under CI where it must exist."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is required under CI but is not installed")
        pytest.skip(f"{name} not installed")
    return path


# --- stores: every store kind joins this list and so runs the contract suite ---------------


def _sqlite_store(tmp_path: Path) -> Store:
    return SQLiteStore(tmp_path / "store.db")


STORE_FACTORIES: dict[str, Callable[[Path], Store]] = {"sqlite": _sqlite_store}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = STORE_FACTORIES[request.param](tmp_path)
    s.migrate()
    yield s
    s.close()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(START)


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedConfig:
    return parse_config(config_data(), "test.yaml", tmp_path)


@pytest.fixture
def bridge(loaded: LoadedConfig, store: Store, clock: FixedClock):
    from bridge.service import Bridge

    b = Bridge(loaded, store=store, clock=clock)
    b.start(ticker=False)
    yield b
    b.close()


@pytest.fixture
def api(bridge):
    from fastapi.testclient import TestClient

    from bridge.api import create_app

    with TestClient(create_app(bridge, run_ticker=False)) as client:
        yield client


# The on-call tests' peers (tests/oncall_parts.py), imported when asked for: a module that
# needs others defines its own fixture of the same name.


@pytest.fixture
def smtp():
    """aiosmtpd receiving the e-mail pages (plain SMTP; ``smtp.mailbox.closed`` answers 451)."""
    from tests.oncall_parts import mail_server

    server = mail_server()
    yield server
    server.down()


@pytest.fixture
def gateway():
    """The HTTP server standing in for the SMS gateway."""
    from tests.oncall_parts import sms_gateway

    g = sms_gateway()
    yield g
    g.down()
