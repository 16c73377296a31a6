"""Named users and their sessions (issue 19, items 1 and 2), in process through the app with a
real SQLite store and the bridge's clock under the test's hand.

The pages that need a session are the pages helper's; here a probe router under /ui/ stands
for them: a GET with ``PageUser`` and POSTs with ``ActingUser`` (one with a form field of its
own, as a page's form has), so the interface is tested as the pages use it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from argon2 import PasswordHasher
from fastapi import APIRouter, Form
from fastapi.testclient import TestClient

from bridge.api import create_app
from bridge.clock import FixedClock
from bridge.config import ConfigError, LoadedConfig, parse_config
from bridge.store import Store
from bridge.store.sqlite import SQLiteStore
from bridge.web.session import ActingUser, PageUser, browser_language, local_next
from tests.conftest import config_data

# Cheap hashes for the tests (the config takes any argon2id parameters); `dyzur user new`
# makes them with argon2-cffi's defaults.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORDS = {
    "anna": "anna-has-a-long-password-1",
    "root": "root-has-a-long-password-2",
    "it-a": "szpital-a-staff-password-3",
}
HASHES = {name: FAST.hash(password) for name, password in PASSWORDS.items()}
USERS = [
    {"name": "anna", "role": "engineer", "password": HASHES["anna"]},
    {"name": "root", "role": "admin", "password": HASHES["root"], "language": "en"},
    {"name": "it-a", "role": "client:szpital-a", "password": HASHES["it-a"]},
]
PROBE = "/ui/_probe"

probe = APIRouter(prefix=PROBE)


@probe.get("")
async def look(user: PageUser) -> dict[str, object]:
    return {"name": user.name, "role": user.role.value, "client": user.client,
            "language": user.language, "csrf": user.csrf, "can_act": user.can_act}  # fmt: skip


@probe.post("")
async def act(user: ActingUser) -> dict[str, object]:
    return {"acted": user.principal.name}


@probe.post("/note")
async def note(user: ActingUser, text: Annotated[str, Form()]) -> dict[str, object]:
    return {"acted": user.name, "text": text}


def users_config(tmp_path: Path, **extra: object) -> LoadedConfig:
    data = config_data() | {"users": USERS} | extra
    return parse_config(data, "test.yaml", tmp_path)


@pytest.fixture
def loaded(tmp_path: Path) -> LoadedConfig:
    return users_config(tmp_path)


def client_for(bridge, base_url: str = "http://testserver") -> TestClient:
    app = create_app(bridge, run_ticker=False)
    app.include_router(probe)
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def api(bridge) -> Iterator[TestClient]:
    with client_for(bridge) as client:
        yield client


def log_in(
    client: TestClient, name: str, password: str | None = None, next_path: str = PROBE, **headers
):
    body = {"name": name, "password": PASSWORDS.get(name, "") if password is None else password}
    return client.post("/login", data=body | {"next": next_path}, headers=headers)


def logged_in(client: TestClient, name: str) -> str:
    """Log ``name`` in; the session's CSRF token."""
    r = log_in(client, name)
    assert r.status_code == 303, r.text
    return client.get(PROBE).json()["csrf"]


def events(store: Store, action: str) -> list:
    return [e for e in store.audit_events(after_id=0, limit=10_000) if e.action == action]


# --- logging in --------------------------------------------------------------------------


def test_the_login_form_in_the_browsers_language_with_the_pages_headers(api):
    r = api.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9,pl;q=0.5"})
    assert r.status_code == 200
    assert 'lang="en"' in r.text and "Log in" in r.text
    assert 'name="password"' in r.text and 'type="password"' in r.text
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    r = api.get("/login", headers={"Accept-Language": "pl-PL,pl;q=0.9,en;q=0.8"})
    assert 'lang="pl"' in r.text and "Zaloguj się" in r.text
    assert "Zaloguj się" in api.get("/login").text  # no preference: Polish
    r = api.get("/login?lang=en", headers={"Accept-Language": "pl"})
    assert "Log in" in r.text


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("en-US,en;q=0.9", "en"),
        ("de-DE,de;q=0.9,en;q=0.8,pl;q=0.7", "en"),
        ("en;q=0.3,pl;q=0.8", "pl"),
        ("fr", "pl"),
        ("", "pl"),
        ("pl, en", "pl"),
        ("en;q=bogus, pl;q=0.1", "pl"),
    ],
)
def test_the_browsers_language(header, language):
    assert browser_language(header) == language


@pytest.mark.parametrize("base_url", ["http://testserver", "https://testserver"])
def test_login_sets_an_httponly_strict_cookie_secure_over_tls(bridge, store, base_url):
    with client_for(bridge, base_url) as client:
        r = log_in(client, "anna")
        assert r.status_code == 303
        assert r.headers["location"] == PROBE
        cookie = r.headers["set-cookie"]
        flags = [part.strip().lower() for part in cookie.split(";")]
        assert flags[0].startswith("dyzur_session=")
        assert {"httponly", "path=/", "samesite=strict"} <= set(flags)
        assert ("secure" in flags) == base_url.startswith("https")
        assert not any(f.startswith(("max-age", "expires", "domain")) for f in flags)
        assert "X-Frame-Options" in r.headers  # the page headers on /login's answers too
        me = client.get(PROBE).json()
        assert me == {"name": "anna", "role": "engineer", "client": None, "language": "pl",
                      "csrf": me["csrf"], "can_act": True}  # fmt: skip
    # The store keeps the SHA-256 of the session id, never the id.
    session_id = cookie.split(";")[0].split("=", 1)[1]
    assert store.web_session(hashlib.sha256(session_id.encode()).hexdigest()).user == "anna"
    with sqlite3.connect(store.path) as conn:
        rows = conn.execute("SELECT * FROM web_sessions").fetchall()
    assert len(rows) == 1 and session_id not in repr(rows) and me["csrf"] not in repr(rows)
    [login] = events(store, "user.login")
    assert login.actor == "anna" and login.detail["source"] == "testclient"


def test_the_users_language_and_a_hospitals_user(api):
    logged_in(api, "root")
    me = api.get(PROBE, headers={"Accept-Language": "pl"}).json()
    assert me["language"] == "en" and me["role"] == "admin"  # the config's choice
    assert api.get(PROBE + "?lang=pl").json()["language"] == "pl"  # chosen on the page
    api.cookies.clear()
    logged_in(api, "it-a")
    me = api.get(PROBE, headers={"Accept-Language": "en"}).json()
    assert me | {"csrf": ""} == {"name": "it-a", "role": "client", "client": "szpital-a",
                                 "language": "en", "csrf": "", "can_act": False}  # fmt: skip


def test_a_name_is_typed_in_any_case(api):
    assert log_in(api, " Anna ", PASSWORDS["anna"]).status_code == 303
    assert api.get(PROBE).json()["name"] == "anna"


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(api, store, monkeypatch):
    """No user enumeration: the same status and page, no cookie, and the same work done — a
    hash of the users' cost is checked for an unknown name too."""
    import bridge.users

    checked: list[str] = []
    verify = bridge.users._verify

    def spy(password_hash: str, password: str) -> bool:
        checked.append(password_hash)
        return verify(password_hash, password)

    monkeypatch.setattr(bridge.users, "_verify", spy)
    wrong = log_in(api, "anna", "not-annas-password-at-all")
    unknown = log_in(api, "nobody", "not-annas-password-at-all")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.text == unknown.text
    assert "Nieprawidłowa nazwa użytkownika lub hasło." in wrong.text
    assert "set-cookie" not in wrong.headers and "set-cookie" not in unknown.headers
    assert api.get(PROBE).status_code == 303
    assert len(checked) == 2 and checked[0] == HASHES["anna"]
    assert checked[1] != HASHES["anna"]
    assert checked[1].split("$")[:4] == HASHES["anna"].split("$")[:4]  # argon2id, same cost
    failed = events(store, "user.login_failed")
    assert [e.actor for e in failed] == ["anna", "unknown"]
    assert failed[0].detail["user"] == "anna" and failed[0].outcome == "failure"
    # A name that is no user's is recorded as a digest only: it may be a mistyped password.
    assert failed[1].detail["unknown_name"].startswith("sha256:")
    assert "nobody" not in json.dumps([e.detail for e in failed])
    assert all(e.detail["source"] == "testclient" for e in failed)


def test_failures_slow_down_then_lock_out_and_a_right_password_is_refused_meanwhile(
    api, store, clock: FixedClock
):
    """5 failures of one name in 15 min lock it for 15 min (web: defaults): after the second
    failure the next attempt must wait 1 s, then 2 s, 4 s; a locked name is refused even with
    its password; the lock is in the store and audited; it ends by itself."""
    assert log_in(api, "anna", "wrong-password-number-1").status_code == 401
    assert log_in(api, "anna", "wrong-password-number-2").status_code == 401
    # Too soon after the second failure: refused without a look at the password.
    r = log_in(api, "anna")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "Spróbuj ponownie za 1 s." in r.text and "set-cookie" not in r.headers
    for n in (3, 4):
        clock.advance(5)
        assert log_in(api, "anna", f"wrong-password-number-{n}").status_code == 401
    clock.advance(8)
    assert log_in(api, "anna", "wrong-password-number-5").status_code == 401
    [locked] = events(store, "user.locked_out")
    assert locked.actor == "anna" and locked.detail["scope"] == "user"
    assert locked.detail["failures"] == 5
    assert len(events(store, "user.login_failed")) == 5  # the throttled attempt is not one
    for _ in range(3):
        clock.advance(60)
        r = log_in(api, "anna")  # the right password
        assert r.status_code == 429 and "set-cookie" not in r.headers
        assert "zablokowane do" in r.text
    assert int(r.headers["Retry-After"]) == 15 * 60 - 180
    # Another name from the same source is not locked by anna's failures.
    assert log_in(api, "root").status_code == 303
    api.cookies.clear()
    clock.advance(15 * 60 - 180)
    assert log_in(api, "anna").status_code == 303
    assert api.get(PROBE).json()["name"] == "anna"
    # The refused attempts are counted per source and minute, not one event each.
    api.app.state.bridge.refusals.flush(everything=True)
    refused = events(store, "user.login_refused")
    assert refused and sum(e.detail["count"] for e in refused) == 4


def test_a_source_with_many_failures_is_locked_out_for_every_name(
    bridge, store, clock: FixedClock, tmp_path
):
    with client_for(bridge) as client:
        for n in range(20):
            clock.advance(31)  # past the longest wait
            assert log_in(client, f"guess{n}", "a-password-guessed").status_code == 401
        [locked] = events(store, "user.locked_out")
        assert locked.detail["scope"] == "source" and locked.detail["source"] == "testclient"
        assert locked.actor == "unknown" and locked.client is None
        clock.advance(60)
        assert log_in(client, "anna").status_code == 429
    # A second bridge on the same store knows the lock.
    other = SQLiteStore(store.path)
    from bridge.service import Bridge

    second = Bridge(bridge.loaded, store=other, clock=clock)
    try:
        with client_for(second) as client:
            assert log_in(client, "anna").status_code == 429
            clock.advance(15 * 60)
            assert log_in(client, "anna").status_code == 303
    finally:
        second.close()


def test_a_right_password_clears_the_names_failures(api, clock: FixedClock, store):
    for n in range(4):
        clock.advance(31)
        assert log_in(api, "anna", f"wrong-password-{n}").status_code == 401
    clock.advance(31)
    assert log_in(api, "anna").status_code == 303
    api.cookies.clear()
    clock.advance(1)
    assert log_in(api, "anna", "wrong-password-again").status_code == 401  # 1 of 5, no wait
    assert log_in(api, "anna").status_code == 303
    assert events(store, "user.locked_out") == []


# --- after logging in -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "went"),
    [
        ("/ui/tickets/DZ-2026-000001?tab=timeline", "/ui/tickets/DZ-2026-000001?tab=timeline"),
        ("/ui/", "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/\\evil.example/", "/ui/"),
        ("/ui/\\\\evil.example", "/ui/"),
        ("/ui/../../api/v1/tickets", "/ui/"),
        ("/api/v1/tickets", "/ui/"),
        ("/ui/\r\nSet-Cookie: x=1", "/ui/"),
        ("javascript:alert(1)", "/ui/"),
        ("", "/ui/"),
    ],
)
def test_after_login_only_to_a_page_of_the_bridge(asked, went):
    assert local_next(asked) == went


def test_login_goes_to_next_only_when_it_is_a_page_of_the_bridge(api):
    for asked, went in [
        ("/ui/tickets/DZ-2026-000001?tab=timeline", "/ui/tickets/DZ-2026-000001?tab=timeline"),
        ("https://evil.example/ui/", "/ui/"),
        ("//evil.example/ui/", "/ui/"),
        ("/ui/\r\nSet-Cookie: x=1", "/ui/"),
    ]:
        r = log_in(api, "anna", next_path=asked)
        assert r.status_code == 303 and r.headers["location"] == went


def test_a_page_without_a_session_sends_to_the_login_form_and_back(api):
    r = api.get(PROBE + "?client=szpital-a")
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query) == {"next": [PROBE + "?client=szpital-a"]}
    assert "X-Frame-Options" in r.headers
    # The form carries it on; logging in goes there.
    form = api.get(r.headers["location"]).text
    assert f'value="{PROBE}?client=szpital-a"' in form
    assert log_in(api, "anna", next_path=PROBE + "?client=szpital-a").headers["location"] == (
        PROBE + "?client=szpital-a"
    )
    # The pages' script is told where to go instead of being sent the form.
    api.cookies.clear()
    r = api.get(PROBE, headers={"HX-Request": "true"})
    assert r.status_code == 401 and r.headers["HX-Redirect"].startswith("/login?next=")
    # A link followed from another site comes without the SameSite=Strict cookie: the page
    # asks for itself again, from this site, which brings it.
    r = api.get(PROBE, headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 200 and '<meta http-equiv="refresh" content="0">' in r.text


def test_a_logged_in_browser_skips_the_form(api):
    logged_in(api, "anna")
    r = api.get("/login?next=/ui/maintenance")
    assert r.status_code == 303 and r.headers["location"] == "/ui/maintenance"


def test_a_page_post_needs_the_sessions_csrf_token(api, store):
    csrf = logged_in(api, "anna")
    r = api.post(PROBE)
    assert r.status_code == 403 and "CSRF" in r.text
    assert "X-Frame-Options" in r.headers
    assert api.post(PROBE, headers={"X-CSRF-Token": "0" * 64}).status_code == 403
    assert api.post(PROBE, data={"csrf": csrf[:-1]}).status_code == 403
    assert api.post(PROBE, headers={"X-CSRF-Token": csrf}).json() == {"acted": "anna"}
    assert api.post(PROBE, data={"csrf": csrf}).json() == {"acted": "anna"}
    # A page's own form: its field and the token in one body.
    r = api.post(PROBE + "/note", data={"csrf": csrf, "text": "zrobione"})
    assert r.json() == {"acted": "anna", "text": "zrobione"}
    assert api.post(PROBE + "/note", data={"text": "bez tokenu"}).status_code == 403
    # Another session's token is not this one's.
    other = client_for(api.app.state.bridge)  # not started: the bridge is api's
    other_csrf = logged_in(other, "root")
    assert other_csrf != csrf
    assert api.post(PROBE, data={"csrf": other_csrf}).status_code == 403
    # Right token, from a page of another site.
    r = api.post(PROBE, data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    # Without a session at all.
    api.cookies.clear()
    assert api.post(PROBE, data={"csrf": csrf}).status_code == 403
    # Counted per source, actor and minute: anna's five, and two of nobody's.
    api.app.state.bridge.refusals.flush(everything=True)
    refused = {(e.actor, e.detail["reason"], e.detail["count"])
               for e in events(store, "user.request_refused")}  # fmt: skip
    assert refused == {("anna", "csrf", 5), ("unknown", "foreign_origin", 2)}


def test_a_hospitals_user_cannot_act(api, store):
    csrf = logged_in(api, "it-a")
    assert api.get(PROBE).status_code == 200
    r = api.post(PROBE, data={"csrf": csrf})
    assert r.status_code == 403
    assert "Twoja rola pozwala przeglądać" in r.text
    api.app.state.bridge.refusals.flush(everything=True)
    [refused] = events(store, "role.refused")
    assert refused.actor == "it-a" and refused.client == "szpital-a"
    assert refused.detail["role"] == "client:szpital-a"


def test_logout_ends_the_session_in_the_store(api, store):
    csrf = logged_in(api, "anna")
    cookie = api.cookies.get("dyzur_session")
    # Without the token (a link or a form of another site): refused, still logged in.
    assert api.post("/logout").status_code == 403
    assert api.get(PROBE).status_code == 200
    r = api.post("/logout", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"].startswith("/login?logged_out=1")
    assert 'dyzur_session=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    assert "Wylogowano." in api.get(r.headers["location"]).text
    # The old cookie, kept by someone, no longer works.
    api.cookies.set("dyzur_session", cookie)
    assert api.get(PROBE).status_code == 303
    assert api.post(PROBE, data={"csrf": csrf}).status_code == 403
    [logout] = events(store, "user.logout")
    assert logout.actor == "anna"
    assert api.post("/logout").status_code == 303  # without a session: nothing to end


def test_a_new_session_at_each_login_ends_the_one_the_browser_had(api):
    """No fixation: the id is never one the browser brought, and a login ends the old one."""
    logged_in(api, "anna")
    before = api.cookies.get("dyzur_session")
    r = log_in(api, "anna")
    after = r.cookies.get("dyzur_session")
    assert after and after != before
    api.cookies.clear()
    api.cookies.set("dyzur_session", before)
    assert api.get(PROBE).status_code == 303
    # An id the browser makes up is no session.
    api.cookies.set("dyzur_session", "made-up-by-an-attacker")
    assert api.get(PROBE).status_code == 303


def test_idle_and_old_sessions_are_refused(api, store, clock: FixedClock):
    """30 min unused end a session; used every 20 min it lasts, but not past 12 h."""
    logged_in(api, "anna")
    for _ in range(3):
        clock.advance(20 * 60)
        assert api.get(PROBE).status_code == 200
    clock.advance(31 * 60)
    assert api.get(PROBE).status_code == 303  # idle
    assert store.end_sessions(seen_before=clock.now(), created_before=clock.now()) == 0  # gone
    logged_in(api, "anna")
    for _ in range(12 * 3 - 1):
        clock.advance(20 * 60)
        assert api.get(PROBE).status_code == 200
    clock.advance(20 * 60)  # 12 h since the login
    assert api.get(PROBE).status_code == 303


def test_shorter_sessions_by_the_web_settings(bridge, store, clock, tmp_path):
    from bridge.service import Bridge

    loaded = users_config(tmp_path, web={"session_idle": "5m", "session_lifetime": "1h"})
    short = Bridge(loaded, store=SQLiteStore(store.path), clock=clock)
    try:
        with client_for(short) as client:
            logged_in(client, "anna")
            clock.advance(6 * 60)
            assert client.get(PROBE).status_code == 303
    finally:
        short.close()


def test_the_session_survives_a_restart_and_a_changed_password_ends_it(
    bridge, store, clock, tmp_path
):
    from bridge.service import Bridge

    with client_for(bridge) as client:
        csrf = logged_in(client, "anna")
        cookie = client.cookies.get("dyzur_session")
    bridge.stop()
    again = Bridge(bridge.loaded, store=SQLiteStore(store.path), clock=clock)
    try:
        with client_for(again) as client:
            client.cookies.set("dyzur_session", cookie)
            assert client.get(PROBE).json()["csrf"] == csrf
            assert client.post(PROBE, data={"csrf": csrf}).json() == {"acted": "anna"}
    finally:
        again.close()
    users = [u | {"password": FAST.hash("anna-has-a-new-password")} if u["name"] == "anna" else u
             for u in USERS]  # fmt: skip
    changed = Bridge(
        users_config(tmp_path, users=users), store=SQLiteStore(store.path), clock=clock
    )
    try:
        with client_for(changed) as client:
            client.cookies.set("dyzur_session", cookie)
            assert client.get(PROBE).status_code == 303
    finally:
        changed.close()


def test_no_password_session_id_or_token_in_logs_or_audit(api, store, clock, caplog):
    caplog.set_level(logging.DEBUG)
    csrf = logged_in(api, "anna")
    cookie = api.cookies.get("dyzur_session")
    api.post("/logout", data={"csrf": csrf})
    clock.advance(60)
    log_in(api, "anna", "annas-wrong-password-x")
    clock.advance(60)
    # A password typed into the name field, and a name with a password.
    log_in(api, PASSWORDS["root"], PASSWORDS["root"])
    clock.advance(60)
    log_in(api, "root", PASSWORDS["anna"])
    api.app.state.bridge.refusals.flush(everything=True)
    trail = json.dumps(
        [[e.actor, e.action, e.detail] for e in store.audit_events(after_id=0, limit=10_000)],
        ensure_ascii=False,
    )
    secrets = [*PASSWORDS.values(), "annas-wrong-password-x", cookie, csrf]
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in trail
    assert "user.login_failed" in trail and "login failed for anna" in caplog.text


# --- the config and the command that makes its entries --------------------------------------


def config_problems(tmp_path: Path, users: list[dict]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(config_data() | {"users": users}, "dyzur.yaml", tmp_path)
    return str(exc.value)


def test_a_plain_password_in_the_config_is_refused_and_not_repeated(tmp_path):
    text = config_problems(
        tmp_path, [{"name": "anna", "role": "engineer", "password": "Tajne123!"}]
    )
    assert "dyzur.yaml: users.0.password: not an argon2id hash" in text
    assert "dyzur user new --name NAME --role ROLE" in text
    assert "Tajne123!" not in text


def test_users_are_checked_against_the_rest_of_the_config(tmp_path):
    argon2i = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=__import__(
        "argon2").Type.I).hash("whatever-password")  # fmt: skip
    text = config_problems(
        tmp_path,
        [
            {"name": "anna", "role": "engineer", "password": HASHES["anna"]},
            {"name": "anna", "role": "admin", "password": HASHES["root"]},
            {"name": "jan.kowalski", "role": "engineer", "password": HASHES["anna"]},
            {"name": "b", "role": "client:nowhere", "password": HASHES["anna"]},
            {"name": "c", "role": "agent", "password": HASHES["anna"]},
            {"name": "d", "role": "engineer", "password": argon2i},
            {"name": "e", "role": "engineer", "password": HASHES["anna"][:-40]},
        ],
    )
    assert "users.1.name: duplicate user name 'anna'" in text
    assert "users.2.name: 'jan.kowalski' is also a token's name" in text
    assert "users.3.role: unknown client 'nowhere'" in text
    assert "users.4.role: a user is a person" in text
    assert "users.5.password: an argon2i hash; only argon2id is accepted" in text
    assert "users.6.password: not a valid argon2id hash" in text
    text = config_problems(
        tmp_path,
        [
            {"name": "Wielka", "role": "engineer", "password": HASHES["anna"]},
            {"name": "f", "role": "engineer", "password": HASHES["anna"], "language": "de"},
        ],
    )
    assert "users.0.name: String should match pattern" in text
    assert "users.1.language: Input should be 'pl' or 'en'" in text


def test_the_web_settings_have_sane_ranges(tmp_path):
    with pytest.raises(ConfigError) as exc:
        parse_config(config_data() | {"web": {"session_idle": "1s", "user_failures": 1}}, "d",
                     tmp_path)  # fmt: skip
    assert "web.session_idle: " in str(exc.value) and "web.user_failures: " in str(exc.value)


def test_user_new_reads_the_password_from_standard_input(tmp_path):
    import subprocess
    import sys

    password = "a-long-enough-password"
    r = subprocess.run(
        [sys.executable, "-m", "bridge", "user", "new", "--name", "anna.nowak",
         "--role", "client:szpital-a", "--language", "en"],
        input=password + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [entry] = yaml.safe_load(r.stdout)
    assert entry["name"] == "anna.nowak" and entry["role"] == "client:szpital-a"
    assert entry["language"] == "en"
    assert entry["password"].startswith("$argon2id$")
    assert PasswordHasher().verify(entry["password"], password)
    assert password not in r.stdout + r.stderr
    # The entry is what the config takes.
    loaded = parse_config(config_data() | {"users": [entry]}, "dyzur.yaml", tmp_path)
    assert [u.name for u in loaded.config.users] == ["anna.nowak"]


def test_user_new_refuses_a_short_password_and_what_the_config_would(tmp_path):
    from typer.testing import CliRunner

    from bridge.cli import app

    def run(*args: str, password: str = "a-long-enough-password"):
        return CliRunner().invoke(app, ["user", "new", *args], input=password + "\n")

    for short, why in (("", "the password is empty"), ("elevenchars", "shorter than 12")):
        r = run("--name", "anna", "--role", "engineer", password=short)
        assert r.exit_code == 2 and why in r.output and "argon2" not in r.output
        assert not short or short not in r.output
    r = run("--name", "anna", "--role", "agent")
    assert r.exit_code == 2 and "agents use tokens" in r.output
    r = run("--name", "Anna Nowak", "--role", "engineer")
    assert r.exit_code == 2 and "is not a user name" in r.output
    # Checked against a config: a token's name, an unknown client.
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(config_data()))
    r = run("--name", "jan.kowalski", "--role", "engineer", "-c", str(config))
    assert r.exit_code == 2 and "already has a user or token named" in r.output
    r = run("--name", "x", "--role", "client:nowhere", "-c", str(config))
    assert r.exit_code == 2 and "has no client 'nowhere'" in r.output
    # Never an argument.
    r = run("--name", "x", "--role", "engineer", "--password", "a-long-enough-password")
    assert r.exit_code == 2 and "No such option" in r.output


def test_user_new_asks_twice_on_a_terminal(monkeypatch):
    """On a terminal the password is asked twice, not shown (getpass); two different ones
    make nothing."""
    import getpass
    import io

    import typer

    from bridge.cli.user import read_password

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers: list[str] = []
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": answers.pop(0))
    monkeypatch.setattr("sys.stdin", Terminal("never read\n"))
    answers[:] = ["a-long-enough-password", "a-long-enough-password"]
    assert read_password() == "a-long-enough-password"
    answers[:] = ["a-long-enough-password", "a-long-enough-passwort"]
    with pytest.raises(typer.Exit):
        read_password()
