"""A real OpenSSH server for the SSH runner's tests, started as a plain child process
(``sshd -D -e``) on a free port of 127.0.0.1 with its own config, host key and authorized
keys in a temporary directory. The system's sshd service is never touched."""

from __future__ import annotations

import getpass
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, need_binary

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
    ``restart(host_key=...)`` brings it back on the same port (e.g. with another host key)."""

    def __init__(
        self, workdir: Path, port: int | None = None, host_key_type: str = "ed25519"
    ) -> None:
        self.binary = _sshd_binary()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.user = getpass.getuser()
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
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
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


def dedicated_user() -> str:
    """A non-root login for the SSH server's sessions, as dyzur has on an AMMS host: the
    current user when it is not root; under root, a system user made for it the first time
    (``useradd``; it stays, with a home of its own and no password). Its sessions can read
    and write only what is reachable for any user: keep its files outside root's tmp_path."""
    if os.geteuid() != 0:
        return getpass.getuser()
    try:
        pwd.getpwnam(DEDICATED_USER)
    except KeyError:
        subprocess.run(
            [
                need_binary("useradd"),
                *("--system", "--create-home", "--home-dir", f"/var/lib/{DEDICATED_USER}"),
                *("--shell", "/bin/sh", "--password", "*", DEDICATED_USER),
            ],
            capture_output=True,
        )  # two test runs at once: one of them finds it made
        pwd.getpwnam(DEDICATED_USER)
    return DEDICATED_USER
