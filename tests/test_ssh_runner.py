"""The SSH runner against a real OpenSSH server (tests/sshd.py): host keys verified, connection
reuse, timeouts, bounded concurrency, a jump host, TCP_NODELAY, key types, the agent.

The sessions log in as a dedicated non-root user with no shell rc (tests.sshd.dedicated_user),
as dyzur does on an AMMS host: root's rc may run slow things (pyenv init) before each command,
and OpenSSH does not deliver signals to root sessions. The server's files and whatever the
sessions write therefore live in a directory that user reaches (tests.sshd.shared_dir)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

paramiko = pytest.importorskip("paramiko")

from collectors.ssh.known_hosts import KnownHosts, fetch_host_key, fingerprint, record, trust  # noqa: E402
from collectors.ssh.runner import (  # noqa: E402
    UNKNOWN_EXIT,
    CommandEvent,
    HostKeyMismatch,
    SshAuthFailed,
    SshCredentials,
    SshKeyError,
    SshRunner,
    SshTarget,
    SshUnreachable,
    UnknownHostKey,
)
from tests.conftest import free_port, need_binary  # noqa: E402
from tests.sshd import (  # noqa: E402
    Sshd,
    dedicated_user,
    keygen,
    shared_dir,
    ssh_keygen_fingerprint,
)


@pytest.fixture(scope="module")
def login() -> str:
    """The sessions' login: not root."""
    name = dedicated_user()
    assert name != "root"
    return name


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    with shared_dir(tmp_path, "dyzur-ssh-runner-") as path:
        yield path


def server(shared: Path, name: str, login: str, **kw) -> Sshd:
    """An sshd admitting only ``login``, its files where that login reads them."""
    return Sshd(shared / name, user=login, **kw)


def writable(path: Path, login: str) -> Path:
    """A directory the sessions write to."""
    path.mkdir()
    if os.geteuid() == 0:
        shutil.chown(path, login, login)
    return path


@pytest.fixture
def sshd(shared: Path, login: str) -> Iterator[Sshd]:
    s = server(shared, "sshd", login)
    yield s
    s.stop()


@pytest.fixture
def client_key(tmp_path: Path, sshd: Sshd) -> Path:
    key = keygen(tmp_path / "id_ed25519", "ed25519")
    sshd.authorize(Path(f"{key}.pub"))
    sshd.start()
    return key


@pytest.fixture
def known(tmp_path: Path) -> KnownHosts:
    return KnownHosts(tmp_path / "dyzur_known_hosts")


def trusted(known: KnownHosts, server: Sshd) -> KnownHosts:
    key, _fp, _already = trust(known, "127.0.0.1", server.port)
    record(known, "127.0.0.1", server.port, key)
    return known


def target(server: Sshd, **kw) -> SshTarget:
    return SshTarget("127.0.0.1", server.port, server.user, **kw)


def runner(known: KnownHosts, key: Path, **kw) -> SshRunner:
    return SshRunner(known, SshCredentials(key_file=key), **kw)


# --- known_hosts ------------------------------------------------------------------------------


def test_known_hosts_file_format_and_mode(tmp_path: Path, sshd: Sshd) -> None:
    sshd.start()
    kh = KnownHosts(tmp_path / "kh")
    key = fetch_host_key("127.0.0.1", sshd.port, timeout=10)
    kh.add("127.0.0.1", sshd.port, key)
    kh.add("example.org", 22, key)
    text = (tmp_path / "kh").read_text()
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 " in text
    assert "\nexample.org ssh-ed25519 " in text
    assert stat.S_IMODE((tmp_path / "kh").stat().st_mode) == 0o600
    assert kh.lookup("127.0.0.1", sshd.port) == [key]
    assert kh.lookup("example.org", 22) == [key]
    assert kh.lookup("127.0.0.1", 22) == []
    # OpenSSH itself finds the entry
    found = subprocess.run(
        [need_binary("ssh-keygen"), "-F", f"[127.0.0.1]:{sshd.port}", "-f", str(tmp_path / "kh")],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0 and key.get_base64() in found.stdout
    # Re-recording replaces the host's key rather than adding a second one
    other = paramiko.Ed25519Key.from_private_key_file(str(keygen(tmp_path / "other")))
    kh.add("127.0.0.1", sshd.port, other)
    assert kh.lookup("127.0.0.1", sshd.port) == [other]
    assert kh.lookup("example.org", 22) == [key]


def test_known_hosts_reads_hashed_openssh_entries(tmp_path: Path, sshd: Sshd) -> None:
    sshd.start()
    key = fetch_host_key("127.0.0.1", sshd.port)
    hashed = paramiko.HostKeys.hash_host(f"[127.0.0.1]:{sshd.port}")
    (tmp_path / "kh").write_text(f"# comment\n{hashed} {key.get_name()} {key.get_base64()}\n")
    assert KnownHosts(tmp_path / "kh").lookup("127.0.0.1", sshd.port) == [key]


def test_trust_reports_fingerprint_and_whether_known(known: KnownHosts, sshd: Sshd) -> None:
    sshd.start()
    key, fp, already = trust(known, "127.0.0.1", sshd.port)
    assert fp == ssh_keygen_fingerprint(sshd.host_key_pub)
    assert fp == fingerprint(key) == key.fingerprint
    assert not already
    record(known, "127.0.0.1", sshd.port, key)
    assert trust(known, "127.0.0.1", sshd.port)[2] is True


# --- host keys --------------------------------------------------------------------------------


def test_unknown_host_key_is_refused_with_its_fingerprint(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    events: list[CommandEvent] = []
    with (
        runner(known, client_key, on_command=events.append) as r,
        pytest.raises(UnknownHostKey) as exc,
    ):
        r.run(target(sshd), "echo hi", timeout=10)
    assert exc.value.fingerprint == ssh_keygen_fingerprint(sshd.host_key_pub)
    assert exc.value.port == sshd.port
    assert exc.value.fingerprint in str(exc.value)
    assert known.lookup("127.0.0.1", sshd.port) == []  # nothing recorded behind our back
    assert sshd.accepted_logins() == 0
    assert (
        len(events) == 1
        and events[0].exit_code is None
        and "unknown SSH host key" in events[0].error
    )


def test_the_unknown_key_hint_works_as_printed(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    """The hint names the known_hosts file the refusing process reads, so an engineer who
    pastes it (and confirms the fingerprint) records the key where it is looked for."""
    import re
    import sys

    with runner(known, client_key) as r, pytest.raises(UnknownHostKey) as exc:
        r.run(target(sshd), "echo hi", timeout=10)
    [command] = re.findall(r"run: (dyzur ssh trust .*)$", str(exc.value))
    assert command == f"dyzur ssh trust 127.0.0.1:{sshd.port} --known-hosts {known.path}"
    args = [sys.executable, "-m", "bridge", *command.split()[1:], "--yes"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    with runner(known, client_key) as r:
        assert r.run(target(sshd), "echo hi", timeout=10).stdout.strip() == "hi"


def test_trusted_host_runs_command(known: KnownHosts, sshd: Sshd, client_key: Path) -> None:
    trusted(known, sshd)
    events: list[CommandEvent] = []
    with runner(known, client_key, on_command=events.append) as r:
        res = r.run(target(sshd), "echo out; echo err >&2; printf 'zażółć\\n'; exit 2", timeout=10)
    assert res.exit_code == 2
    assert res.stdout == "out\nzażółć\n"
    assert res.stderr == "err\n"
    assert not res.timed_out
    assert events == [
        CommandEvent("127.0.0.1", sshd.port, sshd.user, events[0].command, 2, events[0].duration)
    ]
    assert events[0].command.startswith("echo out")


def test_changed_host_key_is_refused(known: KnownHosts, sshd: Sshd, client_key: Path) -> None:
    trusted(known, sshd)
    old_fp = ssh_keygen_fingerprint(sshd.host_key_pub)
    sshd.restart(new_host_key_type="ed25519")
    new_fp = ssh_keygen_fingerprint(sshd.host_key_pub)
    assert old_fp != new_fp
    with runner(known, client_key) as r, pytest.raises(HostKeyMismatch) as exc:
        r.run(target(sshd), "echo hi", timeout=10)
    assert (exc.value.expected_fp, exc.value.got_fp) == (old_fp, new_fp)
    assert sshd.accepted_logins() == 0


def test_changed_host_key_of_another_type_is_refused(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    trusted(known, sshd)
    old_fp = ssh_keygen_fingerprint(sshd.host_key_pub)
    sshd.restart(new_host_key_type="rsa")
    with runner(known, client_key) as r, pytest.raises(HostKeyMismatch) as exc:
        r.run(target(sshd), "echo hi", timeout=10)
    assert exc.value.expected_fp == old_fp
    assert exc.value.got_fp == ssh_keygen_fingerprint(sshd.host_key_pub)


# --- connections ------------------------------------------------------------------------------


def test_connection_is_reused_and_reopened_after_a_drop(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    trusted(known, sshd)
    with runner(known, client_key) as r:
        t = target(sshd)
        assert r.run(t, "echo 1", timeout=10).stdout == "1\n"
        first = r.connection(t)
        assert r.run(t, "echo 2", timeout=10).stdout == "2\n"
        assert r.connection(t) is first
        assert r.connections_opened == 1
        assert sshd.accepted_logins() == 1
        # the connection drops: the next command reconnects
        first.close()
        assert r.run(t, "echo 3", timeout=10).stdout == "3\n"
        assert r.connection(t) is not first
        assert r.connections_opened == 2
        assert sshd.accepted_logins() == 2


def test_tcp_nodelay_is_set(known: KnownHosts, sshd: Sshd, client_key: Path) -> None:
    trusted(known, sshd)
    with runner(known, client_key) as r:
        sock = r.connection(target(sshd)).sock
        assert isinstance(sock, socket.socket)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_unreachable_port(known: KnownHosts, tmp_path: Path) -> None:
    key = keygen(tmp_path / "k")
    with runner(known, key) as r, pytest.raises(SshUnreachable) as exc:
        r.run(SshTarget("127.0.0.1", free_port()), "true", timeout=5)
    assert exc.value.host == "127.0.0.1"
    assert "refused" in exc.value.reason.lower()


# --- commands ---------------------------------------------------------------------------------


def test_command_timeout_kills_and_gives_unknown(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    trusted(known, sshd)
    events: list[CommandEvent] = []
    with runner(known, client_key, on_command=events.append) as r:
        t = target(sshd)
        res = r.run(t, "echo started; exec sleep 31", timeout=0.5)
        assert res.exit_code == UNKNOWN_EXIT
        assert res.timed_out
        assert res.stdout == "started\n"
        assert "timed out" in res.stderr and "killed" in res.stderr
        assert events[-1].timed_out and events[-1].exit_code == UNKNOWN_EXIT
        # the connection survives the timeout
        assert r.run(t, "echo alive", timeout=10).stdout == "alive\n"
        assert r.connections_opened == 1
        if sshd.user == "root":
            # OpenSSH runs root sessions without privilege separation and then refuses to
            # deliver signals: the KILL request must have arrived, but the process lives on
            # until it writes to its closed output. (dyzur should log in as a plain user.)
            assert "session_signal_req" in sshd.log()
        else:
            for _ in range(1000):
                if "sleep 31" not in r.run(t, "ps -eo args", timeout=10).stdout:
                    break
            else:
                pytest.fail("the timed-out command is still running")


def test_output_is_capped_and_decoded_with_replacement(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    trusted(known, sshd)
    with runner(known, client_key, output_cap=1000) as r:
        res = r.run(
            target(sshd), "head -c 5000 /dev/zero | tr '\\0' x; printf '\\377' >&2", timeout=10
        )
    assert res.exit_code == 0
    assert res.stdout == "x" * 1000
    assert res.truncated
    assert res.stderr == "\ufffd"


def test_output_beyond_the_channel_window_does_not_stall(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    """Several MiB on both streams: the runner keeps draining past the cap, so the command ends."""
    trusted(known, sshd)
    with runner(known, client_key) as r:
        res = r.run(
            target(sshd),
            "head -c 4000000 /dev/zero; head -c 4000000 /dev/zero >&2; echo done >&2; exit 1",
            timeout=60,
        )
    assert res.exit_code == 1
    assert not res.timed_out
    assert res.truncated
    assert len(res.stdout) == len(res.stderr) == 64 * 1024


def test_concurrency_is_bounded(
    known: KnownHosts, sshd: Sshd, client_key: Path, shared: Path, login: str
) -> None:
    """Each command registers itself in a directory on the server while it runs and records how
    many were registered; the runner's own in-flight counter is checked through on_command."""
    trusted(known, sshd)
    flight = writable(shared / "flight", login)
    counts = writable(shared / "out", login) / "counts"
    limit = 2
    lock = threading.Lock()
    in_flight = 0
    peak = 0

    class CountingSlots:
        def __init__(self, inner: threading.BoundedSemaphore) -> None:
            self.inner = inner

        def __enter__(self) -> None:
            nonlocal in_flight, peak
            self.inner.acquire()
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)

        def __exit__(self, *exc: object) -> None:
            nonlocal in_flight
            with lock:
                in_flight -= 1
            self.inner.release()

    with runner(known, client_key, max_parallel=limit) as r:
        r._slots = CountingSlots(r._slots)  # type: ignore[assignment]
        cmd = f"touch {flight}/$$; ls {flight} | wc -l >> {counts}; sleep 0.3; rm {flight}/$$"
        results: list[int] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(r.run(target(sshd), cmd, timeout=30).exit_code)
            )
            for _ in range(8)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert results == [0] * 8
    seen = [int(x) for x in counts.read_text().split()]
    assert len(seen) == 8
    assert max(seen) <= limit
    assert peak <= limit
    assert peak >= 1


def test_concurrency_across_hosts(
    known: KnownHosts, tmp_path: Path, shared: Path, login: str
) -> None:
    """Three hosts (three sshd), limit 1: commands never overlap anywhere."""
    key = keygen(tmp_path / "id")
    flight = writable(shared / "flight", login)
    counts = writable(shared / "out", login) / "counts"
    servers = [server(shared, f"s{i}", login) for i in range(3)]
    try:
        for s in servers:
            s.authorize(Path(f"{key}.pub"))
            s.start()
            trusted(known, s)
        cmd = f"touch {flight}/$$; ls {flight} | wc -l >> {counts}; sleep 0.2; rm {flight}/$$"
        with runner(known, key, max_parallel=1) as r:
            threads = [
                threading.Thread(target=r.run, args=(target(s), cmd, 30))
                for s in servers
                for _ in range(2)
            ]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert r.connections_opened == 3
        seen = [int(x) for x in counts.read_text().split()]
        assert seen == [1] * 6
    finally:
        for s in servers:
            s.stop()


# --- jump host --------------------------------------------------------------------------------


def test_jump_host(known: KnownHosts, tmp_path: Path, shared: Path, login: str) -> None:
    key = keygen(tmp_path / "id")
    jump = server(shared, "jump", login)
    dest = server(shared, "dest", login)
    try:
        for s in (jump, dest):
            s.authorize(Path(f"{key}.pub"))
            s.start()
        trusted(known, jump)
        via = target(dest, jump=target(jump))
        with runner(known, key) as r:
            # the target's own host key is verified even through the jump host
            with pytest.raises(UnknownHostKey) as exc:
                r.run(via, "echo hi", timeout=10)
            assert exc.value.fingerprint == ssh_keygen_fingerprint(dest.host_key_pub)
            trusted(known, dest)
            res = r.run(via, "echo through", timeout=10)
            assert (res.exit_code, res.stdout) == (0, "through\n")
            assert isinstance(r.connection(via).sock, paramiko.Channel)
            assert r.run(via, "echo again", timeout=10).stdout == "again\n"
            assert jump.accepted_logins() == 1
            assert dest.accepted_logins() == 1
            # the jump host's connection drops: both connections are reopened
            r.connection(via.jump).close()
            assert r.run(via, "echo back", timeout=10).stdout == "back\n"
        assert jump.accepted_logins() == 2
        assert dest.accepted_logins() == 2
        # the destination saw the connection coming from the jump host's forwarding
        assert "Accepted publickey" in dest.log()
    finally:
        jump.stop()
        dest.stop()


# --- client keys ------------------------------------------------------------------------------


def test_rsa_client_key(known: KnownHosts, sshd: Sshd, tmp_path: Path) -> None:
    key = keygen(tmp_path / "id_rsa", "rsa")
    sshd.authorize(Path(f"{key}.pub"))
    sshd.start()
    trusted(known, sshd)
    with runner(known, key) as r:
        assert r.run(target(sshd), "echo rsa", timeout=10).stdout == "rsa\n"


def test_rsa_host_key(known: KnownHosts, tmp_path: Path, shared: Path, login: str) -> None:
    key = keygen(tmp_path / "id")
    rsa_host = server(shared, "rsa-host", login, host_key_type="rsa")
    try:
        rsa_host.authorize(Path(f"{key}.pub"))
        rsa_host.start()
        _k, fp, _ = trust(known, "127.0.0.1", rsa_host.port)
        assert fp == ssh_keygen_fingerprint(rsa_host.host_key_pub)
        trusted(known, rsa_host)
        with runner(known, key) as r:
            assert r.run(target(rsa_host), "echo ok", timeout=10).stdout == "ok\n"
    finally:
        rsa_host.stop()


def test_encrypted_key_with_passphrase(known: KnownHosts, sshd: Sshd, tmp_path: Path) -> None:
    secret = "correct horse battery staple"
    key = keygen(tmp_path / "id_enc", "ed25519", passphrase=secret)
    sshd.authorize(Path(f"{key}.pub"))
    sshd.start()
    trusted(known, sshd)
    creds = SshCredentials(key_file=key, passphrase=secret)
    assert secret not in repr(creds)
    with SshRunner(known, creds) as r:
        assert secret not in repr(r)
        assert r.run(target(sshd), "echo enc", timeout=10).stdout == "enc\n"
    with pytest.raises(SshKeyError) as exc:
        SshRunner(known, SshCredentials(key_file=key))
    assert "passphrase" in str(exc.value)
    with pytest.raises(SshKeyError) as exc:
        SshRunner(known, SshCredentials(key_file=key, passphrase="wrong-" + secret))
    assert secret not in str(exc.value)
    assert exc.value.__cause__ is None


def test_wrong_client_key_is_a_clear_error_without_key_material(
    known: KnownHosts,
    sshd: Sshd,
    client_key: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    trusted(known, sshd)
    wrong = keygen(tmp_path / "id_wrong", "ed25519")
    caplog.set_level("DEBUG")
    events: list[CommandEvent] = []
    with runner(known, wrong, on_command=events.append) as r, pytest.raises(SshAuthFailed) as exc:
        r.run(target(sshd), "echo hi", timeout=10)
    message = str(exc.value)
    assert sshd.user in message and "refused" in message
    assert isinstance(exc.value, SshUnreachable)
    private = wrong.read_text()
    public_b64 = Path(f"{wrong}.pub").read_text().split()[1]
    body = "".join(private.splitlines()[1:-1])
    for text in (message, caplog.text, repr(exc.value), events[0].error or ""):
        assert body[:40] not in text
        assert public_b64 not in text
        assert "PRIVATE KEY" not in text


def test_a_key_of_an_unsupported_type_is_named_so(known: KnownHosts, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import dsa

    key = tmp_path / "id_dsa"
    key.write_bytes(
        dsa.generate_private_key(2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SshKeyError, match=r"id_dsa: unsupported key type \(use ed25519 or RSA\)"):
        SshRunner(known, SshCredentials(key_file=key))


def test_credentials_need_a_key_or_the_agent() -> None:
    with pytest.raises(ValueError):
        SshCredentials()


def test_ssh_agent(
    known: KnownHosts, sshd: Sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real ssh-agent started for the test (skipped without ssh-agent/ssh-add)."""
    agent_bin = need_binary("ssh-agent")
    add_bin = need_binary("ssh-add")
    key = keygen(tmp_path / "id_agent")
    sshd.authorize(Path(f"{key}.pub"))
    sshd.start()
    trusted(known, sshd)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        [agent_bin, "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(500):
            if sock.exists():
                break
            threading.Event().wait(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run([add_bin, str(key)], check=True, env=env, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with SshRunner(known, SshCredentials(use_agent=True)) as r:
            assert r.run(target(sshd), "echo agent", timeout=10).stdout == "agent\n"
        # an empty agent: a clear authentication error
        subprocess.run([add_bin, "-D"], check=True, env=env, capture_output=True)
        with SshRunner(known, SshCredentials(use_agent=True)) as r, pytest.raises(SshAuthFailed):
            r.run(target(sshd), "echo agent", timeout=10)
    finally:
        agent.terminate()
        agent.wait()


def test_output_after_the_exit_status_is_kept(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    """sshd sends the exit status when the shell ends, before output still in its pipes (here
    a child writes after the shell exited): the result waits for the output's end (EOF)."""
    trusted(known, sshd)
    with runner(known, client_key) as r:
        res = r.run(target(sshd), "(sleep 0.5; printf late >&2) & exit 0", timeout=10)
    assert res.exit_code == 0
    assert res.stderr == "late"


def test_a_child_holding_the_output_open_does_not_hold_the_result(
    known: KnownHosts, sshd: Sshd, client_key: Path
) -> None:
    """A command that leaves a daemon on its pipes ends with its exit status (after a short
    grace for the output), not at the step's timeout."""
    trusted(known, sshd)
    with runner(known, client_key) as r:
        res = r.run(target(sshd), "(sleep 20; echo never) & echo started; exit 0", timeout=15)
    assert res.exit_code == 0
    assert res.stdout == "started\n"
