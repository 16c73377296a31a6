"""People who log in to the pages: their passwords, their sessions, and the guard against
guessing.

A user is an entry of the config's ``users:`` (``dyzur user new`` makes it): a name, a role
(engineer, admin, client:<id>) and the password as an argon2id hash, never the password.

Logging in (``Logins.log_in``) makes a session: a random id that only the browser keeps (the
cookie); the store keeps its SHA-256 (``Sessions``), so a copy of the store opens no session.
The session's CSRF token is derived from the id (an HMAC keyed by it), so it is kept nowhere
either. A session ends at logout, after ``web.session_idle`` unused, after
``web.session_lifetime`` in all, and when the user's entry or password in the config changed.

Failed logins are counted in the store per user name and per source address, so every bridge
on the store sees them: after half of the failures that lock a name or a source out, its next
attempt must wait ``web.login_delay``, doubling with each further failure (at most 30 s: the
second of a name's five failures, the tenth of a source's twenty); ``web.user_failures`` of a name
(``web.source_failures`` of a source) within ``web.failure_window`` lock it out for
``web.lockout``, when even the right password is refused. An attempt is counted as a failure
before its password is checked, and taken back when it was right, so that attempts in
parallel count too. An unknown name is answered like a wrong password, after the same work (a
dummy hash of the same cost is checked), and is throttled and locked the same way.

Audited: ``user.login``, ``user.logout``, ``user.login_failed``, ``user.locked_out`` — with
the source address and the user's name; a name that is no user's is recorded only as a digest
(a password typed into the name field must not reach the trail). Attempts refused while
throttled or locked out are counted per source and minute like refused tokens
(``user.login_refused``). Never a password, a session id or a CSRF token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

from bridge.actions import Action
from bridge.auth import Principal, Role, parse_role
from bridge.clock import Clock, local_iso
from bridge.models import AuditEvent
from bridge.store.roles import AuditLog, Coordination, Sessions, WebSession

if TYPE_CHECKING:
    from bridge.config import UserConfig, WebSettings

log = logging.getLogger("dyzur.auth")

MIN_PASSWORD = 12
MAX_PASSWORD = 1024
# The longest wait between attempts that login_delay's doubling reaches.
MAX_DELAY = 30.0
# A session's last use is written at most this often (its idle expiry is as exact).
TOUCH_EVERY = 30.0
LOGIN_REQUEST = "POST /login"

_ARGON2ID = re.compile(r"^\$argon2id\$v=19\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$")
HOW_TO_HASH = (
    "make the entry with `dyzur user new --name NAME --role ROLE`, which reads the password "
    "from standard input and prints the entry with its hash"
)


# --- passwords -----------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (argon2-cffi's defaults: RFC 9106's low-memory
    profile, 64 MiB and 3 passes), as the config keeps it."""
    return PasswordHasher().hash(password)


def password_problem(password: str) -> str | None:
    """Why ``password`` may not be a user's (empty, too short, too long); None when it may."""
    if not password:
        return "the password is empty"
    if len(password) < MIN_PASSWORD:
        return f"the password is shorter than {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"the password is longer than {MAX_PASSWORD} characters"
    return None


def password_hash_problem(value: str) -> str | None:
    """Why ``value`` is not an argon2id hash, never quoting it (it may be a password written
    where its hash belongs); None when it is one."""
    if not value.startswith("$argon2"):
        return f"not an argon2id hash: never write a password in the config; {HOW_TO_HASH}"
    try:
        params = extract_parameters(value)
    except (InvalidHashError, ValueError):
        params = None
    if params is not None and params.type is not Type.ID:
        kind = params.type.name.lower()
        return f"an argon2{kind} hash; only argon2id is accepted: {HOW_TO_HASH}"
    whole = params is not None and params.salt_len >= 8 and params.hash_len >= 16
    if not whole or not _ARGON2ID.match(value):
        return f"not a valid argon2id hash (damaged or cut short?): {HOW_TO_HASH}"
    return None


def _verify(password_hash: str, password: str) -> bool:
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# --- users and sessions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    """A user as the config has them: ``role`` is engineer, admin or client (with ``client``)."""

    name: str
    role: Role
    client: str | None
    password_hash: str = field(repr=False)
    language: str | None = None

    @property
    def principal(self) -> Principal:
        return Principal(self.name, self.role, self.client)

    @property
    def credential(self) -> str:
        """A digest of the password hash: a session begun with another hash is over."""
        return hashlib.sha256(self.password_hash.encode()).hexdigest()[:32]

    @property
    def role_text(self) -> str:
        return f"client:{self.client}" if self.role is Role.CLIENT else self.role.value


def users_of(entries: Iterable[UserConfig]) -> dict[str, User]:
    """The config's ``users:`` by name (validated by the config's checks)."""
    users = {}
    for entry in entries:
        role, client = parse_role(entry.role)
        users[entry.name] = User(entry.name, role, client, entry.password, entry.language)
    return users


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(session_id: str) -> str:
    """The CSRF token of a session: derived from its id, so it is stored nowhere, and telling
    nothing of the id."""
    return hmac.new(session_id.encode(), b"dyzur csrf token", hashlib.sha256).hexdigest()


def name_digest(name: str) -> str:
    """How a name that is no user's is recorded: ``sha256:`` and 16 hex digits."""
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()[:16]


def normal_name(name: str) -> str:
    """A name as typed at the login form, as the config writes names (lower case)."""
    return name.strip().casefold()


@dataclass(frozen=True, slots=True)
class Session:
    """A session in use: its user, and its CSRF token."""

    user: User
    csrf: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """A login that succeeded: the new session's id, for the cookie (and only for it)."""

    session_id: str = field(repr=False)
    user: User
    csrf: str = field(repr=False)


class Refusal(StrEnum):
    WRONG = "wrong"  # unknown name or wrong password: one answer for both
    THROTTLED = "throttled"  # the next attempt must wait a little
    LOCKED = "locked"  # too many failures: locked out until ``until``


class LoginRefused(Exception):
    """A login refused: ``until`` when the next attempt may come (throttled, locked)."""

    def __init__(self, refusal: Refusal, until: datetime | None = None) -> None:
        super().__init__(refusal.value)
        self.refusal = refusal
        self.until = until


class LoginStore(Sessions, AuditLog, Coordination, Protocol):
    """The store roles logins need: sessions and failed logins, the audit log, transactions."""


class Logins:
    def __init__(
        self,
        store: LoginStore,
        users: Iterable[UserConfig],
        settings: WebSettings,
        clock: Clock,
        *,
        notify: Callable[[], None],
        refused: Callable[..., None],
    ) -> None:
        """``notify``: wakes the outbox after an audit event; ``refused``: the bridge's
        refusal audit, aggregated per source and minute (``Bridge.refused``)."""
        self.store = store
        self.users = users_of(users)
        self.settings = settings
        self.clock = clock
        self._notify = notify
        self._refused = refused
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()

    # --- logging in and out --------------------------------------------------------------

    def log_in(
        self, name: str, password: str, source: str, previous: str | None = None
    ) -> LoggedIn:
        """A new session for the user ``name`` whose password is ``password``, asked from
        ``source`` (an address); ``previous``: the session id the browser still had, ended.
        LoginRefused otherwise (an unknown name is WRONG like a wrong password)."""
        wanted = normal_name(name)[:200]
        user = self.users.get(wanted)
        keys = (f"user:{hashlib.sha256(wanted.encode()).hexdigest()[:32]}", f"source:{source}")
        claims = self._claim(keys, source, user, wanted)
        # Outside any transaction: the hash's work is CPU time, 50-100 ms.
        right = _verify(user.password_hash if user else self._dummy_hash(), password[:4096])
        if user is None or not right:
            self._failed(keys, source, user, wanted)
            raise LoginRefused(Refusal.WRONG)
        session_id = secrets.token_urlsafe(32)
        now = self.clock.now()
        s = self.settings
        with self.store.transaction():
            for claim in claims:
                self.store.remove_login_failure(claim)
            self.store.clear_login_failures(keys[0])
            if previous:
                self.store.end_session(session_hash(previous))
            id_hash = session_hash(session_id)
            self.store.add_session(
                WebSession(id_hash, user.name, user.credential, source, now, now)
            )
            # Housekeeping, while the write lock is held anyway.
            self.store.end_sessions(
                seen_before=now - timedelta(seconds=s.session_idle),
                created_before=now - timedelta(seconds=s.session_lifetime),
            )
            self.store.forget_logins(now - timedelta(seconds=s.failure_window))
            self._audit(Action.USER_LOGIN, user, source=source, session=id_hash[:12])
        self._notify()
        log.info("user %s logged in from %s", user.name, source)
        return LoggedIn(session_id, user, csrf_token(session_id))

    def log_out(self, session_id: str, source: str) -> User | None:
        """End the session (its user, None if there was none to end)."""
        id_hash = session_hash(session_id)
        with self.store.transaction():
            found = self.store.web_session(id_hash)
            if found is None or not self.store.end_session(id_hash):
                return None
            user = self.users.get(found.user)
            self._audit(
                Action.USER_LOGOUT,
                user,
                actor=found.user,
                source=source,
                session=id_hash[:12],
            )
        self._notify()
        log.info("user %s logged out from %s", found.user, source)
        return user

    def resume(self, session_id: str) -> Session | None:
        """The session of a cookie's value, if it is one and has not expired (a use is
        recorded); None otherwise — an expired one, or one whose user's entry or password
        changed, is ended."""
        if not session_id or len(session_id) > 200:
            return None
        id_hash = session_hash(session_id)
        found = self.store.web_session(id_hash)
        if found is None:
            return None
        now = self.clock.now()
        s = self.settings
        user = self.users.get(found.user)
        idle = now - found.seen_at >= timedelta(seconds=s.session_idle)
        old = now - found.created_at >= timedelta(seconds=s.session_lifetime)
        if (
            user is None
            or not hmac.compare_digest(found.credential, user.credential)
            or idle
            or old
        ):
            self.store.end_session(id_hash)
            return None
        if now - found.seen_at >= timedelta(seconds=TOUCH_EVERY):
            self.store.touch_session(id_hash, now)
        return Session(user, csrf_token(session_id))

    # --- the guard -------------------------------------------------------------------------

    def delay(self, failures: int, limit: int) -> float:
        """How long the next attempt of a key waits after ``failures`` failures in the window,
        of the ``limit`` that lock it out: nothing before half of them (the second of a name's
        five, the tenth of a source's twenty, so that a hospital's staff behind one address do
        not wait for each other's typos), then ``login_delay``, doubling with each failure."""
        start = max(2, limit // 2)
        if failures < start or self.settings.login_delay <= 0:
            return 0.0
        return float(min(self.settings.login_delay * 2 ** (failures - start), MAX_DELAY))

    def _claim(
        self, keys: tuple[str, str], source: str, user: User | None, wanted: str
    ) -> list[int]:
        """Count the attempt as a failure of each key ahead (ids to take back on success), or
        LoginRefused while a key is locked or must wait."""
        now = self.clock.now()
        s = self.settings
        since = now - timedelta(seconds=s.failure_window)
        refusal: LoginRefused | None = None
        with self.store.transaction():
            for key, limit in zip(keys, (s.user_failures, s.source_failures), strict=True):
                until = self.store.login_locked_until(key)
                if until is not None and until > now:
                    refusal = LoginRefused(Refusal.LOCKED, until)
                    break
                failures = self.store.login_failures(key, since)
                if failures:
                    ready = failures[-1] + timedelta(seconds=self.delay(len(failures), limit))
                    if ready > now:
                        refusal = LoginRefused(Refusal.THROTTLED, ready)
                        break
            else:
                return [self.store.add_login_failure(key, now) for key in keys]
        self._refused(
            Action.USER_LOGIN_REFUSED,
            source,
            LOGIN_REQUEST,
            user.name if user else "unknown",
            user.client if user else None,
            reason=refusal.refusal.value,
        )
        raise refusal

    def _failed(self, keys: tuple[str, str], source: str, user: User | None, wanted: str) -> None:
        """A wrong password (or unknown name): the failures counted, a key locked out when it
        reached its limit; audited."""
        now = self.clock.now()
        s = self.settings
        since = now - timedelta(seconds=s.failure_window)
        who = {"user": user.name} if user else {"unknown_name": name_digest(wanted)}
        limits = ((keys[0], s.user_failures, "user"), (keys[1], s.source_failures, "source"))
        locked: list[tuple[str, datetime, int]] = []
        with self.store.transaction():
            counts = []
            for key, limit, scope in limits:
                count = len(self.store.login_failures(key, since))
                counts.append(count)
                if count >= limit:
                    until = now + timedelta(seconds=s.lockout)
                    self.store.lock_login(key, until)
                    self.store.clear_login_failures(key)
                    locked.append((scope, until, count))
            self._audit(
                Action.USER_LOGIN_FAILED,
                user,
                outcome="failure",
                source=source,
                **who,
                failures=counts[0],
                source_failures=counts[1],
            )
            for scope, until, count in locked:
                self._audit(
                    Action.USER_LOCKED_OUT,
                    user,
                    outcome="failure",
                    scope=scope,
                    source=source,
                    **who,
                    failures=count,
                    until=local_iso(until),
                )
        self._notify()
        name = user.name if user else "an unknown user"
        log.warning("login failed for %s from %s", name, source)
        for scope, until, count in locked:
            what = f"user {name}" if scope == "user" else f"source {source}"
            log.warning("%s locked out until %s after %d failed logins", what, until, count)

    def _dummy_hash(self) -> str:
        """A hash to check an unknown name's password against, of the same cost as the users'
        (made once, with the first user's parameters)."""
        with self._dummy_lock:
            if self._dummy is None:
                first = next(iter(self.users.values()), None)
                hasher = PasswordHasher()
                if first is not None:
                    with contextlib.suppress(InvalidHashError, ValueError):
                        hasher = PasswordHasher.from_parameters(
                            extract_parameters(first.password_hash)
                        )
                self._dummy = hasher.hash(secrets.token_urlsafe(16))
            return self._dummy

    def _audit(
        self,
        action: Action,
        user: User | None,
        /,
        *,
        actor: str | None = None,
        outcome: str = "success",
        **detail: object,
    ) -> None:
        self.store.append_audit(
            AuditEvent(
                self.clock.now(),
                actor or (user.name if user else "unknown"),
                action,
                outcome,
                user.client if user else None,
                detail=detail,
            )
        )
