"""A real rsyslogd, started by a test on free ports of 127.0.0.1 and stopped by PID.

It receives syslog over TCP, UDP and (when given a certificate) TLS, parses RFC 5424
structured data with mmpstrucdata, and writes one JSON object per message to a file.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.conftest import free_port, need_binary
from tests.processes import stop_process

CONFIG = """
global(workDirectory="{work}"{tls_global})
module(load="imtcp"{tls_module})
module(load="imudp")
module(load="mmpstrucdata")
template(name="dyzur_json" type="list") {{
  constant(value="{{\\"msgid\\":\\"") property(name="msgid" format="json")
  constant(value="\\",\\"hostname\\":\\"") property(name="hostname" format="json")
  constant(value="\\",\\"appname\\":\\"") property(name="app-name" format="json")
  constant(value="\\",\\"pri\\":\\"") property(name="pri" format="json")
  constant(value="\\",\\"msg\\":\\"") property(name="msg" format="json")
  constant(value="\\",\\"tree\\":") property(name="$!")
  constant(value="}}\\n")
}}
# Direct queue and synchronous writes: what rsyslog took is on disk before it stops.
ruleset(name="siem" queue.type="direct") {{
  set $!received = "1";
  action(type="mmpstrucdata")
  action(type="omfile" file="{out}" template="dyzur_json" flushOnTXEnd="on"
         asyncWriting="off")
}}
input(type="imtcp" port="{tcp}" ruleset="siem"{tls_input})
input(type="imudp" port="{udp}" ruleset="siem")
"""


class Rsyslog:
    def __init__(
        self,
        directory: Path,
        tls: tuple[Path, Path, Path] | None = None,
        require_client_cert: bool = False,
    ) -> None:
        """``tls``: (CA, server certificate chain, server key) makes the TCP input TLS-only;
        ``require_client_cert`` accepts only clients with a certificate from that CA."""
        self.binary = need_binary("rsyslogd")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.out = directory / "received.jsonl"
        self.tcp_port, self.udp_port = free_port(), free_port()
        tls_global = tls_module = tls_input = ""
        if tls is not None:
            ca, cert, key = tls
            tls_global = (
                f' defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"'
                f' defaultNetstreamDriverKeyFile="{key}"'
            )
            auth = "x509/certvalid" if require_client_cert else "anon"
            tls_input = (
                f' streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="{auth}"'
            )
        self.config = directory / "rsyslog.conf"
        self.config.write_text(
            CONFIG.format(
                work=directory,
                out=self.out,
                tcp=self.tcp_port,
                udp=self.udp_port,
                tls_global=tls_global,
                tls_module=tls_module,
                tls_input=tls_input,
            )
        )
        self.pidfile = directory / "rsyslogd.pid"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = (self.directory / "rsyslogd.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.config), "-i", str(self.pidfile)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        import socket

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rsyslogd exited: {(self.directory / 'rsyslogd.log').read_text()}"
                )
            try:
                socket.create_connection(("127.0.0.1", self.tcp_port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("rsyslogd did not listen")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=15)
        self.proc = None

    def records(self) -> list[dict]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line]

    def sd(self, record: dict, element: str = "dyzur@32473") -> dict:
        return record["tree"].get("rfc5424-sd", {}).get(element, {})
