"""A real OpenSSH server for the SSH runner's tests, started as a plain child process
(``sshd -D -e``) on a free port of 127.0.0.1 with its own config, host key and authorized
keys in a temporary directory. The system's sshd service is never touched."""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import free_port, need_binary
from tests.processes import stop_process

SSHD = "/usr/sbin/sshd"
# The login of tests that act on a host as dyzur does (update runbooks), when run as root.
DEDICATED_USER = "dyzur-runbook"


def keygen(path: Path, kind: str = "ed25519", passphrase: str = "") -> Path:
    """A fresh key pair at ``path`` / ``path.pub`` (ssh-keygen); returns ``path``."""
    args = [
        need_binary("ssh-keygen"),
        "-q",
        "-t",
        kind,
        "-N",
        passphrase,
        "-C",
        "dyzur-test",
        "-f",
        str(path),
    ]
    if kind == "rsa":
        args[4:4] = ["-b", "2048"]
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    subprocess.run(args, check=True, capture_output=True)
    return path


def ssh_keygen_fingerprint(pub: Path) -> str:
    """``ssh-keygen -lf``'s SHA256 fingerprint of a public key file."""
    out = subprocess.run(
        [need_binary("ssh-keygen"), "-lf", str(pub)], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[1]


def _sshd_binary() -> str:
    return SSHD if os.path.exists(SSHD) else need_binary("sshd")


class Sshd:
    """One sshd. ``start()`` waits until the port accepts; ``stop()`` ends it by its PID.
    ``restart(host_key=...)`` brings it back on the same port (e.g. with another host key).

    ``user``: the login the sessions use; when given, the only one sshd admits (a test meant
    for the dedicated user cannot pass as root), and ``workdir`` must be reachable by it, since
    sshd reads the authorized keys as that user (see ``shared_dir``)."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        host_key_type: str = "ed25519",
        user: str | None = None,
    ) -> None:
        self.binary = _sshd_binary()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.only_user = user
        self.user = user or getpass.getuser()
        self.host_key = keygen(self.dir / "ssh_host_key", host_key_type)
        self.authorized_keys = self.dir / "authorized_keys"
        self.authorized_keys.touch()
        self.log_path = self.dir / "sshd.log"
        self.pid_file = self.dir / "sshd.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host_key_pub(self) -> Path:
        return Path(f"{self.host_key}.pub")

    def authorize(self, pub: Path) -> None:
        with self.authorized_keys.open("a") as f:
            f.write(pub.read_text())

    def _config(self) -> Path:
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key.resolve()}",
            f"AuthorizedKeysFile {self.authorized_keys.resolve()}",
            f"PidFile {self.pid_file.resolve()}",
            "StrictModes no",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding yes",
            "LogLevel INFO",
            "MaxSessions 50",
            "MaxStartups 50",
        ]
        if self.only_user:
            lines.append(f"AllowUsers {self.only_user}")
        path = self.dir / "sshd_config"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Sshd:
        try:  # sshd insists on its privilege separation directory
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        except PermissionError:
            if os.environ.get("CI"):
                raise
            pytest.skip("sshd needs /run/sshd, which this user cannot create")
        config = self._config()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-D", "-e", "-f", str(config.resolve())],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        for _ in range(500):
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(4).startswith(b"SSH-"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"sshd did not start accepting on port {self.port}: {self.log()}")

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc, timeout=10)
        self.proc = None

    def restart(self, new_host_key_type: str | None = None) -> Sshd:
        """Stop, optionally generate a new host key, and start again on the same port."""
        self.stop()
        if new_host_key_type:
            self.host_key = keygen(self.dir / "ssh_host_key", new_host_key_type)
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def accepted_logins(self) -> int:
        """How many SSH connections authenticated (one 'Accepted publickey' line each)."""
        return self.log().count("Accepted publickey")


def system_user(name: str, shell: str, rc: str | None = None) -> str:
    """A system user for SSH sessions, made the first time (``useradd``; it stays, with a home
    of its own under /var/lib and no password). ``rc``: the contents of its ~/.bashrc, written
    every time (bash reads it for every command sshd runs, before the command). Needs root."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            [
                need_binary("useradd"),
                *("--system", "--create-home", "--home-dir", f"/var/lib/{name}"),
                *("--shell", shell, "--password", "*", name),
            ],
            capture_output=True,
        )  # two runs at once: one of them finds it made
    entry = pwd.getpwnam(name)
    if rc is not None:
        bashrc = Path(entry.pw_dir) / ".bashrc"
        bashrc.write_text(rc)
        os.chown(bashrc, entry.pw_uid, entry.pw_gid)
    return name


def dedicated_user() -> str:
    """A non-root login for the SSH server's sessions, as dyzur has on an AMMS host: the
    current user when it is not root; under root, a system user made for it the first time
    (its shell /bin/sh, which reads no rc file for a command, unlike root's bash, whose rc may
    run slow things such as ``pyenv init``). Its sessions can read and write only what is
    reachable for any user: keep its files outside root's tmp_path (``shared_dir``)."""
    if os.geteuid() != 0:
        return getpass.getuser()
    return system_user(DEDICATED_USER, "/bin/sh")


@contextmanager
def shared_dir(tmp_path: Path, prefix: str = "dyzur-ssh-") -> Iterator[Path]:
    """A directory the dedicated user's sessions reach: ``tmp_path`` when not root (the login
    is the current user); under root a fresh world-readable one, since root's tmp_path is
    closed to other users. Hand it over to the login with ``shutil.chown`` where it writes."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        root.chmod(0o755)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)
