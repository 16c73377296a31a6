"""Run commands on hosts over SSH: key authentication, verified host keys, one connection per host.

- Authentication by key only: an ed25519 or RSA key file (optionally with a passphrase) or the
  SSH agent. No passwords.
- Host keys are checked against dyzur's own known_hosts file (:class:`KnownHosts`). An unknown
  key raises :class:`UnknownHostKey`, a changed key :class:`HostKeyMismatch`; both refuse the
  connection. Keys are recorded only by an engineer (``dyzur ssh trust``).
- One connection per host (user, port, jump) is kept open and reused, and reopened when it
  dropped.
- A command that runs past its timeout is killed (a ``signal KILL`` request, then the channel is
  closed) and gives exit code 3 (UNKNOWN in the Nagios convention).
- At most ``max_parallel`` commands run at once across all hosts.
- Optional jump host: the target is reached through a ``direct-tcpip`` channel of the jump
  host's connection; the target's host key is still verified.
- Every command (and every command refused for want of a connection) is reported to
  ``on_command`` so the caller can turn it into an audit event.

No passphrase or key material appears in a log, a repr or an exception.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import paramiko
from paramiko.pkey import UnknownKeyType

from collectors.ssh.known_hosts import (
    DEFAULT_SSH_PORT,
    KnownHosts,
    fingerprint,
    host_key_name,
)

__all__ = [
    "UNKNOWN_EXIT",
    "CommandEvent",
    "CommandResult",
    "HostKeyMismatch",
    "RejectUnknownHostKey",
    "SshAuthFailed",
    "SshCredentials",
    "SshError",
    "SshKeyError",
    "SshRunner",
    "SshTarget",
    "SshUnreachable",
    "UnknownHostKey",
]

log = logging.getLogger(__name__)

UNKNOWN_EXIT = 3  # Nagios UNKNOWN
DEFAULT_OUTPUT_CAP = 64 * 1024
# After the exit status, how long to wait for the output's EOF (a command that left a child
# holding its pipes open would never send one).
EOF_GRACE = 2.0


# --- errors ---------------------------------------------------------------------------------


class SshError(Exception):
    """Base of every error of the SSH runner."""


class SshUnreachable(SshError):
    """The host could not be reached or the SSH session could not be set up."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: SSH unreachable: {reason}")
        self.host = host
        self.reason = reason


class SshAuthFailed(SshUnreachable):
    """The host refused our key (or the agent's keys)."""

    def __init__(self, host: str, user: str, reason: str) -> None:
        SshError.__init__(self, f"{host}: SSH authentication as {user!r} failed: {reason}")
        self.host = host
        self.user = user
        self.reason = reason


class SshKeyError(SshError):
    """The client key file cannot be used (missing, encrypted without passphrase, wrong
    passphrase, unsupported type). Names the file, never its content or the passphrase."""


class UnknownHostKey(SshError):
    """The host presented a key dyzur has no record of: refused until an engineer trusts it."""

    def __init__(
        self, host: str, port: int, fingerprint: str, known_hosts: Path | None = None
    ) -> None:
        where = f" --known-hosts {known_hosts}" if known_hosts is not None else ""
        super().__init__(
            f"{host_key_name(host, port)}: unknown SSH host key {fingerprint}; "
            f"verify it on the host and run: dyzur ssh trust {host}:{port}{where}"
        )
        self.host = host
        self.port = port
        self.fingerprint = fingerprint


class HostKeyMismatch(SshError):
    """The host presented a key other than the one recorded: possibly an attack, refused."""

    def __init__(self, host: str, port: int, expected_fp: str, got_fp: str) -> None:
        super().__init__(
            f"{host_key_name(host, port)}: SSH HOST KEY CHANGED: expected {expected_fp}, "
            f"got {got_fp}; connection refused"
        )
        self.host = host
        self.port = port
        self.expected_fp = expected_fp
        self.got_fp = got_fp


# --- configuration and results --------------------------------------------------------------


@dataclass(frozen=True)
class SshTarget:
    """Where to run: host, port, user (None: the runner's default) and an optional jump host."""

    host: str
    port: int = DEFAULT_SSH_PORT
    user: str | None = None
    jump: SshTarget | None = None

    def __str__(self) -> str:
        s = host_key_name(self.host, self.port)
        if self.user:
            s = f"{self.user}@{s}"
        return f"{s} via {self.jump}" if self.jump else s


@dataclass(frozen=True)
class SshCredentials:
    """A key file (ed25519 or RSA; ``passphrase`` if it is encrypted) and/or the SSH agent."""

    key_file: str | PathLike[str] | None = None
    passphrase: str | None = field(default=None, repr=False)
    use_agent: bool = False

    def __post_init__(self) -> None:
        if self.key_file is None and not self.use_agent:
            raise ValueError("SSH credentials need a key_file or use_agent=True")

    def __repr__(self) -> str:  # the passphrase is never shown, only whether there is one
        return (
            f"SshCredentials(key_file={str(self.key_file) if self.key_file else None!r}, "
            f"passphrase={'***' if self.passphrase else None}, use_agent={self.use_agent})"
        )


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str
    duration: float  # seconds
    timed_out: bool = False
    truncated: bool = False


@dataclass(frozen=True)
class CommandEvent:
    """What ``on_command`` receives for every command: the audit record."""

    host: str
    port: int
    user: str
    command: str
    exit_code: int | None  # None when the command never ran (no connection)
    duration: float
    timed_out: bool = False
    error: str | None = None


class RejectUnknownHostKey(paramiko.MissingHostKeyPolicy):
    """Refuse every host key not in dyzur's known_hosts file (never auto-add, never just warn)."""

    def __init__(self, host: str, port: int, known_hosts: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.known_hosts = known_hosts  # named in the hint, so it works as printed

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise UnknownHostKey(self.host, self.port, fingerprint(key), self.known_hosts)


# --- the runner -----------------------------------------------------------------------------


def _load_key(path: str | PathLike[str], passphrase: str | None) -> paramiko.PKey:
    p = Path(path)
    try:
        # cryptography wants the passphrase as bytes (paramiko hands it over unchanged, though
        # it annotates it as str)
        key = paramiko.PKey.from_path(
            p,
            passphrase.encode() if passphrase is not None else None,  # type: ignore[arg-type]
        )
    except FileNotFoundError:
        raise SshKeyError(f"SSH key file {p} does not exist") from None
    except PermissionError:
        raise SshKeyError(f"SSH key file {p} is not readable") from None
    except (TypeError, paramiko.PasswordRequiredException):
        # cryptography raises TypeError when a passphrase is missing (or given for a plain key)
        if passphrase is None:
            raise SshKeyError(f"SSH key file {p} is encrypted; no passphrase was given") from None
        raise SshKeyError(f"SSH key file {p} cannot be opened with the passphrase given") from None
    except UnknownKeyType:
        raise SshKeyError(f"SSH key file {p}: unsupported key type (use ed25519 or RSA)") from None
    except (ValueError, paramiko.SSHException):
        if passphrase is not None:
            raise SshKeyError(
                f"SSH key file {p} could not be decrypted (wrong passphrase?) or is not a key"
            ) from None
        raise SshKeyError(f"SSH key file {p} is not a valid private key") from None
    if key.get_name() not in ("ssh-ed25519", "ssh-rsa"):
        raise SshKeyError(f"SSH key file {p}: {key.get_name()} keys are not supported")
    return key


def _send_signal(chan: paramiko.Channel, name: str) -> None:
    """Ask the server to signal the command's process group (RFC 4254 6.9; OpenSSH >= 7.9).
    Paramiko has no public call for it. Best effort: closing the channel follows anyway."""
    m = paramiko.Message()
    m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    m.add_int(chan.remote_chanid)
    m.add_string("signal")
    m.add_boolean(False)
    m.add_string(name)
    # Private: paramiko has no public call for a channel request (nor a stub for this one).
    chan.get_transport()._send_user_message(m)  # type: ignore[attr-defined]


class SshRunner:
    """Runs commands over SSH. Thread-safe: call :meth:`run` from as many threads as you like;
    at most ``max_parallel`` commands are in flight at once."""

    def __init__(
        self,
        known_hosts: KnownHosts,
        credentials: SshCredentials,
        *,
        user: str | None = None,
        max_parallel: int = 8,
        connect_timeout: float = 10.0,
        keepalive: int = 30,
        output_cap: int = DEFAULT_OUTPUT_CAP,
        on_command: Callable[[CommandEvent], None] | None = None,
    ) -> None:
        if max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        self.known_hosts = known_hosts
        self.credentials = credentials
        self.user = user or _local_user()
        self.connect_timeout = connect_timeout
        self.keepalive = keepalive
        self.output_cap = output_cap
        self.on_command = on_command
        self._pkey = (
            _load_key(credentials.key_file, credentials.passphrase)
            if credentials.key_file is not None
            else None
        )
        self._slots = threading.BoundedSemaphore(max_parallel)
        self._lock = threading.Lock()
        self._host_locks: dict[SshTarget, threading.Lock] = {}
        self._clients: dict[SshTarget, paramiko.SSHClient] = {}
        self._socks: dict[SshTarget, socket.socket | paramiko.Channel] = {}
        self.connections_opened = 0  # how many SSH connections were set up, for stats and tests

    def __repr__(self) -> str:
        return f"SshRunner(user={self.user!r}, credentials={self.credentials!r})"

    # -- connections -----------------------------------------------------------------------

    def _target(self, target: SshTarget | str) -> SshTarget:
        return SshTarget(target) if isinstance(target, str) else target

    def _user(self, target: SshTarget) -> str:
        return target.user or self.user

    def connection(self, target: SshTarget | str) -> paramiko.Transport:
        """The open SSH connection to ``target``, set up (or reopened) if needed."""
        t = self._target(target)
        with self._lock:
            host_lock = self._host_locks.setdefault(t, threading.Lock())
        with host_lock:
            client = self._clients.get(t)
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return transport
            if client is not None:
                log.info("SSH connection to %s dropped; reconnecting", t)
                self._drop(t)
            client = self._connect(t)
            self._clients[t] = client
            transport = client.get_transport()
            assert transport is not None
            return transport

    def _open_socket(self, t: SshTarget) -> socket.socket | paramiko.Channel:
        if t.jump is not None:
            jump = self.connection(t.jump)
            try:
                return jump.open_channel(
                    "direct-tcpip",
                    (t.host, t.port),
                    ("127.0.0.1", 0),
                    timeout=self.connect_timeout,
                )
            except (paramiko.SSHException, OSError, EOFError) as e:
                raise SshUnreachable(
                    t.host, f"jump host {t.jump} could not open a channel to port {t.port}: {e}"
                ) from None
        try:
            sock = socket.create_connection((t.host, t.port), timeout=self.connect_timeout)
        except OSError as e:
            raise SshUnreachable(t.host, f"TCP connection to port {t.port} failed: {e}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _connect(self, t: SshTarget) -> paramiko.SSHClient:
        user = self._user(t)
        sock = self._open_socket(t)
        client = paramiko.SSHClient()
        known = self.known_hosts.lookup(t.host, t.port)
        name = host_key_name(t.host, t.port)
        for key in known:
            client.get_host_keys().add(name, key.get_name(), key)
        client.set_missing_host_key_policy(
            RejectUnknownHostKey(t.host, t.port, self.known_hosts.path)
        )
        try:
            client.connect(
                t.host,
                port=t.port,
                username=user,
                pkey=self._pkey,
                allow_agent=self.credentials.use_agent,
                look_for_keys=False,
                sock=sock,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
            )
        except BaseException as e:
            client.close()
            sock.close()
            raise self._translate(t, user, e, known) from None
        transport = client.get_transport()
        assert transport is not None
        if self.keepalive:
            transport.set_keepalive(self.keepalive)
        self._socks[t] = sock
        with self._lock:
            self.connections_opened += 1
        log.info("SSH connection to %s as %s opened", t, user)
        return client

    def _translate(
        self, t: SshTarget, user: str, e: BaseException, known: list[paramiko.PKey]
    ) -> BaseException:
        if isinstance(e, SshError):
            return e
        if isinstance(e, paramiko.BadHostKeyException):
            # paramiko compared against the recorded key of the server key's type (or the
            # first recorded key when the server no longer offers that type)
            expected = e.expected_key if e.expected_key is not None else known[0]
            return HostKeyMismatch(t.host, t.port, fingerprint(expected), fingerprint(e.key))
        if isinstance(e, paramiko.AuthenticationException):
            how = "key file" if self._pkey is not None else "SSH agent"
            if self._pkey is not None and self.credentials.use_agent:
                how = "key file and SSH agent"
            return SshAuthFailed(t.host, user, f"the server refused our {how} key(s)")
        if isinstance(e, paramiko.SSHException) and "No authentication methods" in str(e):
            return SshAuthFailed(t.host, user, "no key to offer (is the SSH agent empty?)")
        if isinstance(e, socket.timeout | TimeoutError):
            return SshUnreachable(t.host, "timed out while setting up the SSH session")
        if isinstance(e, paramiko.SSHException | OSError | EOFError):
            return SshUnreachable(t.host, f"SSH session setup failed: {type(e).__name__}: {e}")
        return e

    def _drop(self, t: SshTarget) -> None:
        client = self._clients.pop(t, None)
        sock = self._socks.pop(t, None)
        if client is not None:
            client.close()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        """Close every connection (targets first, then the jump hosts they went through)."""
        with self._lock:
            targets = sorted(self._clients, key=lambda t: t.jump is None)
        for t in targets:
            self._drop(t)

    def __enter__(self) -> SshRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands --------------------------------------------------------------------------

    def run(self, target: SshTarget | str, command: str, timeout: float = 60.0) -> CommandResult:
        """Run ``command`` on ``target``. Raises :class:`SshUnreachable` (or its subclass
        :class:`SshAuthFailed`), :class:`UnknownHostKey` or :class:`HostKeyMismatch` when there
        is no connection; a command that ran always gives a :class:`CommandResult`.

        ``on_command`` is called once per call, after the command ended or could not start
        (``exit_code`` None and ``error`` set); an exception it raises propagates to the caller,
        since a command that cannot be audited should not pass silently."""
        t = self._target(target)
        user = self._user(t)
        with self._slots:
            start = time.monotonic()
            try:
                result = self._run(t, command, timeout)
            except SshError as e:
                self._emit(
                    CommandEvent(
                        t.host, t.port, user, command, None, time.monotonic() - start, error=str(e)
                    )
                )
                raise
        self._emit(
            CommandEvent(
                t.host,
                t.port,
                user,
                command,
                result.exit_code,
                result.duration,
                timed_out=result.timed_out,
            )
        )
        return result

    def _emit(self, event: CommandEvent) -> None:
        if self.on_command is not None:
            self.on_command(event)

    def _open_session(self, t: SshTarget) -> paramiko.Channel:
        for attempt in (1, 2):
            transport = self.connection(t)
            try:
                return transport.open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError, EOFError) as e:
                if attempt == 2:
                    raise SshUnreachable(t.host, f"could not open a session: {e}") from None
                log.info("SSH connection to %s failed (%s); reconnecting", t, e)
                with self._lock:
                    host_lock = self._host_locks.setdefault(t, threading.Lock())
                with host_lock:
                    if self._clients.get(t) is not None and (
                        self._clients[t].get_transport() is transport
                    ):
                        self._drop(t)
        raise AssertionError("unreachable")  # pragma: no cover

    def _run(self, t: SshTarget, command: str, timeout: float) -> CommandResult:
        chan = self._open_session(t)
        start = time.monotonic()
        deadline = start + timeout
        out, err = bytearray(), bytearray()
        truncated = False
        cap = self.output_cap
        exited_at: float | None = None

        def take(buf: bytearray, data: bytes) -> None:
            nonlocal truncated
            room = cap - len(buf)
            if len(data) > room:
                truncated = True
            if room > 0:
                buf += data[:room]

        def drain() -> None:
            while chan.recv_ready():
                take(out, chan.recv(32768))
            while chan.recv_stderr_ready():
                take(err, chan.recv_stderr(32768))

        try:
            chan.exec_command(command)
            while True:
                busy = False
                if chan.recv_ready():
                    take(out, chan.recv(32768))
                    busy = True
                if chan.recv_stderr_ready():
                    take(err, chan.recv_stderr(32768))
                    busy = True
                if busy:
                    continue
                if chan.exit_status_ready() and exited_at is None:
                    exited_at = time.monotonic()
                if exited_at is not None and (
                    chan.eof_received or chan.closed or time.monotonic() - exited_at > EOF_GRACE
                ):
                    # sshd may send the exit status before the last output (its pipes drain
                    # after the child ended): the output is complete once EOF came, or after
                    # a grace (a background child of the command may hold the pipes open).
                    drain()
                    code = chan.recv_exit_status()
                    break
                if chan.closed or not chan.get_transport().is_active():
                    # The last output, the exit status and the close may all have arrived
                    # since the checks above (sshd sends the status before the close, so it
                    # is known by now if it was sent at all): keep them, not "no status".
                    drain()
                    code = chan.recv_exit_status() if chan.exit_status_ready() else -1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return self._timed_out(chan, t, command, timeout, out, err, start, truncated)
                chan.status_event.wait(min(remaining, 0.02))
        finally:
            chan.close()
        if code == -1:
            # The server closed the channel without an exit status (killed by a signal, or
            # the connection dropped): UNKNOWN.
            err += b"\n[dyzur] the command ended without an exit status"
            code = UNKNOWN_EXIT
        return CommandResult(
            exit_code=code,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration=time.monotonic() - start,
            truncated=truncated,
        )

    def _timed_out(
        self,
        chan: paramiko.Channel,
        t: SshTarget,
        command: str,
        timeout: float,
        out: bytearray,
        err: bytearray,
        start: float,
        truncated: bool,
    ) -> CommandResult:
        try:
            _send_signal(chan, "KILL")
        except Exception as e:  # best effort; closing the channel below is what counts
            log.debug("could not send KILL to the command on %s: %s", t, e)
        chan.close()
        text = f"UNKNOWN: command timed out after {timeout:g} s on {t.host} and was killed"
        stderr = err.decode("utf-8", errors="replace")
        stderr = f"{stderr.rstrip()}\n{text}" if stderr.strip() else text
        log.warning("SSH command on %s timed out after %g s", t, timeout)
        return CommandResult(
            exit_code=UNKNOWN_EXIT,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=stderr,
            duration=time.monotonic() - start,
            timed_out=True,
            truncated=truncated,
        )


def _local_user() -> str:
    import getpass

    return getpass.getuser()
