"""Real dyzur processes started by tests, on free ports, stopped by PID."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def wait_for(check, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
    """Send ``sig`` to a process still running, wait ``timeout`` seconds for it, then SIGKILL;
    its return code."""
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=ROOT
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        return stop_process(self.proc, sig, timeout)


class RunningBridge(Process):
    def __init__(self, config: Path, port: int, ca: Path | None = None) -> None:
        """``ca``: the bridge serves HTTPS with a certificate from this CA."""
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        super().__init__(
            ["-m", "bridge", "run", "--config", str(config), "--port", str(port)],
            config.with_name(f"bridge-{port}.log"),
        )

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"bridge exited:\n{self.output()}")
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify)
                return response.status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(up, what="the bridge to answer /healthz")
        except AssertionError:
            self.stop()
            raise


class RunningAgent(Process):
    def __init__(self, config: Path, metrics_port: int) -> None:
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        super().__init__(["-m", "agents", "--config", str(config)], config.with_name("agent.log"))

    def metric(self, name: str) -> float | None:
        """A value from the agent's own /metrics, or None while it is not answering."""
        try:
            text = httpx.get(self.metrics_url, timeout=2).text
        except httpx.TransportError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None


def tls_bridge_config(tmp_path: Path) -> Path:
    """A bridge config serving HTTPS with a certificate from a fresh test CA (``ca.pem``)."""
    import trustme
    import yaml

    from tests.conftest import config_data

    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server.cert_chain_pems[0].write_to_path(tmp_path / "bridge-cert.pem")
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(tmp_path / "bridge-cert.pem", append=True)
    server.private_key_pem.write_to_path(tmp_path / "bridge-key.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    data = config_data("sqlite:///var/dyzur.db")
    data["listen"] = {"tls_cert": "bridge-cert.pem", "tls_key": "bridge-key.pem"}
    config = tmp_path / "dyzur.yaml"
    config.write_text(yaml.safe_dump(data))
    return config
