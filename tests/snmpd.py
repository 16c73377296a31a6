"""A real net-snmp snmpd (Debian's `snmpd`) for tests: its own config, persistent directory and
log in a temporary directory, on a free 127.0.0.1 UDP port; stopped by its PID. Skips without
snmpd on a developer's machine, fails under CI=true (see need_binary)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import need_binary
from tests.processes import stop_process

COMMUNITY = "dyzur-test-ro"
#: (user, auth protocol as net-snmp names it, auth password, priv password), all authPriv.
USERS = (
    ("v3-sha256", "SHA-256", "auth-password-256", "priv-password-256"),
    ("v3-sha", "SHA", "auth-password-sha1", "priv-password-sha1"),
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Snmpd:
    """``start(engine_id=...)`` runs snmpd with an SNMP engine ID made from that text;
    ``stop`` ends it.
    The persistent directory (where snmpd keeps its boot counter) survives a restart unless
    ``forget()`` empties it."""

    def __init__(self, workdir: Path) -> None:
        self.binary = need_binary("snmpd")
        self.workdir = workdir
        self.port = free_udp_port()
        self.persist = workdir / "persist"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, engine_id: str = "dyzur-test-1") -> None:
        conf = self.workdir / "snmpd.conf"
        lines = [
            f"agentaddress udp:127.0.0.1:{self.port}",
            f"rocommunity {COMMUNITY} 127.0.0.1",
            f"engineID {engine_id}",  # net-snmp builds the engine ID from this text
        ]
        for user, auth, auth_password, priv_password in USERS:
            lines.append(f'createUser {user} {auth} "{auth_password}" AES "{priv_password}"')
            lines.append(f"rouser {user} priv")
        conf.write_text("\n".join(lines) + "\n")
        self.persist.mkdir(exist_ok=True)
        (self.workdir / "mibs").mkdir(exist_ok=True)
        env = {
            **os.environ,
            "SNMP_PERSISTENT_DIR": str(self.persist),
            "MIBDIRS": str(self.workdir / "mibs"),  # numeric OIDs: no MIB parsing at start
            "MIBS": "",
            # Only our snmpd.conf (not /etc/snmp's), and the persistent one, where snmpd keeps
            # its boot counter: -C would skip that one too.
            "SNMPCONFPATH": f"{self.workdir}:{self.persist}",
        }
        self.proc = subprocess.Popen(
            [self.binary, "-f", "-Lf", str(self.workdir / "snmpd.log"),
             "-p", str(self.workdir / "snmpd.pid")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until snmpd answers a v2c GET of sysUpTime on its port."""
        from collectors.snmp.wire import decode_response, encode_request

        request = encode_request(COMMUNITY.encode(), 0xA0, 1, 0, 0, ["1.3.6.1.2.1.1.3.0"])
        deadline = time.monotonic() + 15
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    break
                s.sendto(request, ("127.0.0.1", self.port))
                try:
                    decode_response(s.recv(65535))
                    return
                except OSError:
                    continue
        log = (self.workdir / "snmpd.log").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"snmpd did not start:\n{log}")

    def counter(self, oid: str) -> int:
        """A counter of snmpd's own (e.g. usmStatsUnknownEngineIDs), read over v2c."""
        from collectors.snmp.wire import decode_response, encode_request

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(
                encode_request(COMMUNITY.encode(), 0xA0, 7, 0, 0, [oid]), ("127.0.0.1", self.port)
            )
            _, response = decode_response(s.recv(65535))
        value = response.varbinds[0][1]
        assert isinstance(value, int), value
        return value

    def forget(self) -> None:
        """Empty the persistent directory (the boot counter starts again)."""
        shutil.rmtree(self.persist)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=10)
        self.proc = None
