"""Fixtures shared by the bridge tests: a config with one token per role, a fixed clock,
a real store per store kind, and a bridge with its API."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from bridge.auth import Principal, Role, hash_token
from bridge.clock import FixedClock
from bridge.config import LoadedConfig, parse_config
from bridge.store import Store
from bridge.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

    from tests.redmine import Redmine

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
        # Tests of other subjects open thousands of tickets in a minute: the storm budget (its
        # own tests turn it on) would collect them into a storm ticket.
        "incidents": {"storm": {"enabled": False}},
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


def _postgres_store(tmp_path: Path) -> Store:
    from bridge.store.postgres import PostgresStore
    from tests.postgres import database_url

    return PostgresStore(database_url(tmp_path))


# The contract suites (tests/store/) run against each; the other tests' ``store`` is SQLite's.
STORE_FACTORIES: dict[str, Callable[[Path], Store]] = {
    "sqlite": _sqlite_store,
    "postgresql": _postgres_store,
}


@pytest.fixture(scope="session", autouse=True)
def _drop_test_databases() -> Iterator[None]:
    yield
    from tests.postgres import drop_databases

    drop_databases()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = _sqlite_store(tmp_path)
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


# --- a real browser: Debian's Chromium driven by Playwright --------------------------------
#
# One Chromium for the whole session (``browser``). A test opens its pages with ``open_page``
# (or takes one from ``browser_page``), each in a browser context of its own (own cookies: two
# users in one test are two pages). A page records every request it makes and every error it
# reports; when the test fails, each of its pages leaves a screenshot and that record in
# test-artifacts/ at the repository's root.

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
# Playwright's sync API runs its asyncio loop in a greenlet of the calling thread and leaves
# that loop marked as running on the thread between its calls, where asyncio.run() then
# refuses to start. The loop is marked only while a test that uses the browser runs.
_PLAYWRIGHT_LOOP: list[asyncio.AbstractEventLoop] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """Keep each phase's report on the test: the page fixtures' teardown sees a failure."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _origin(url: str) -> str | None:
    """scheme://host:port of an http(s) URL (or of a blob: URL's creator); None for the
    URLs that reach no network (data:, about:)."""
    if url.startswith("blob:"):
        url = url[len("blob:") :]
    parts = urlsplit(url)
    if parts.scheme in ("data", "about"):
        return None
    port = parts.port or {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass
class BrowserPage:
    """A page in its own browser context, and what it did since it was opened."""

    page: Page
    context: BrowserContext
    # Every URL the page asked for, in order: documents, scripts, styles, images, fonts,
    # fetch/XHR, workers' requests, WebSockets (a load the page's CSP refused is not made,
    # and shows in ``errors``).
    requests: list[str] = field(default_factory=list)
    # Console errors (a refused load, a CSP violation, a failed resource) and uncaught errors.
    errors: list[str] = field(default_factory=list)

    def elsewhere(self, origin: str) -> list[str]:
        """The requests that left ``origin`` (e.g. a RunningBridge's ``url``)."""
        own = _origin(origin)
        return [u for u in self.requests if _origin(u) not in (None, own)]


def _keep_artifacts(node: pytest.Item, n: int, seen: BrowserPage) -> None:
    """The page's screenshot and record as test-artifacts/<test>[-n].png and .txt."""
    ARTIFACTS.mkdir(exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", node.nodeid) + (f"-{n}" if n else "")
    record = [f"url: {seen.page.url}", "requests:", *seen.requests, "errors:", *seen.errors]
    width = (seen.page.viewport_size or {"width": 1366})["width"]
    try:
        # The whole page down to 4,000 px: a long page (Redoc's is 35,000) only at its top.
        seen.page.screenshot(
            path=ARTIFACTS / f"{name}.png",
            full_page=True,
            clip={"x": 0, "y": 0, "width": width, "height": 4000},
        )
    except Exception as e:  # a crashed page: its record still helps
        record.append(f"no screenshot: {e}")
    (ARTIFACTS / f"{name}.txt").write_text("\n".join(record) + "\n")


@pytest.fixture(scope="session")
def redmine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redmine]:
    """Debian's Redmine for the whole session (tests/redmine.py): one, however many test files
    use it."""
    from tests.redmine import Redmine

    server = Redmine(tmp_path_factory.mktemp("redmine"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium for the whole session, driven by Playwright (its own browser download
    is not used). Skipped without chromium, except under CI."""
    executable = need_binary("chromium")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        # No sandbox: Chromium's needs user namespaces and refuses to run as root.
        chromium = playwright.chromium.launch(executable_path=executable, chromium_sandbox=False)
    except BaseException:
        playwright.stop()
        raise
    _PLAYWRIGHT_LOOP.append(asyncio.get_running_loop())
    yield chromium
    asyncio._set_running_loop(_PLAYWRIGHT_LOOP[0])
    try:
        chromium.close()
    finally:
        playwright.stop()
        _PLAYWRIGHT_LOOP.clear()


@pytest.fixture(autouse=True)
def _playwright_loop_only_for_browser_tests(request: pytest.FixtureRequest) -> None:
    """Playwright's loop marked running for a test that uses the browser, and not for the
    others (their asyncio.run() works after a browser test)."""
    if _PLAYWRIGHT_LOOP:
        uses = "browser" in request.fixturenames
        asyncio._set_running_loop(_PLAYWRIGHT_LOOP[0] if uses else None)


@pytest.fixture
def open_page(
    browser: Browser, request: pytest.FixtureRequest
) -> Iterator[Callable[..., BrowserPage]]:
    """``open_page(**context_options) -> BrowserPage``: a page in a new browser context
    (Playwright's new_context options; viewport 1366x768 unless given, e.g.
    ``viewport={"width": 390, "height": 844}``, ``locale="pl-PL"``). Closed after the test;
    when the test failed, each one's screenshot and record are kept in test-artifacts/."""
    opened: list[BrowserPage] = []

    def open_(**options: object) -> BrowserPage:
        options.setdefault("viewport", {"width": 1366, "height": 768})
        context = browser.new_context(**options)
        seen = BrowserPage(context.new_page(), context)
        context.on("request", lambda r: seen.requests.append(r.url))
        seen.page.on("websocket", lambda ws: seen.requests.append(ws.url))
        seen.page.on(
            "console",
            lambda m: seen.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )
        seen.page.on("pageerror", lambda e: seen.errors.append(f"uncaught: {e}"))
        opened.append(seen)
        return seen

    yield open_
    reports = request.node.stash.get(_REPORTS, {})
    failed = any(r.failed for r in reports.values())
    for n, seen in enumerate(opened):
        try:
            if failed:
                _keep_artifacts(request.node, n, seen)
        finally:
            seen.context.close()


@pytest.fixture
def browser_page(open_page: Callable[..., BrowserPage]) -> BrowserPage:
    """One page (1366x768) in its own browser context; see ``open_page``."""
    return open_page()
