"""Debian's real Prometheus and Alertmanager for the tests, started as child processes on free
ports of 127.0.0.1 with their own config and data directories, stopped by their PID."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from tests.conftest import free_port, need_binary
from tests.processes import stop_process, wait_for


class Peer:
    """A non-Python peer process; ``start`` waits until its /-/ready answers."""

    def __init__(self, name: str, args: list[str], workdir: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = workdir / f"{name}.log"
        self.name = name
        self.proc = subprocess.Popen(
            args, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, cwd=workdir
        )

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.output()}")
            try:
                return httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, timeout=60, what=f"{name} to be ready")
        except AssertionError:
            self.stop()
            raise

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


class Alertmanager(Peer):
    """prometheus-alertmanager with one receiver: dyzur's webhook, authenticated by a token."""

    def __init__(self, workdir: Path, webhook_url: str, token: str) -> None:
        binary = need_binary("prometheus-alertmanager")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "alertmanager.yml"
        config.write_text(yaml.safe_dump(alertmanager_config(webhook_url, token, fast=True)))
        port = free_port()
        super().__init__(
            "alertmanager",
            [
                binary,
                f"--config.file={config}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            workdir,
            port,
        )

    def post_alerts(self, *alerts: dict) -> None:
        r = httpx.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=5)
        assert r.status_code == 200, f"alertmanager refused the alerts: {r.text}"


def alertmanager_config(webhook_url: str, token: str, fast: bool = False) -> dict:
    """The receiver config pointing at dyzur (deploy/ ships the same with real timings)."""
    timing = (
        {"group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"}
        if fast
        else {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}
    )
    return {
        "route": {"receiver": "dyzur", "group_by": ["alertname", "instance", "asset"], **timing},
        "receivers": [
            {
                "name": "dyzur",
                "webhook_configs": [
                    {
                        "url": webhook_url,
                        "send_resolved": True,
                        "http_config": {"authorization": {"type": "Bearer", "credentials": token}},
                    }
                ],
            }
        ],
    }


class Prometheus(Peer):
    def __init__(self, workdir: Path, config: dict, rules: dict | None = None) -> None:
        binary = need_binary("prometheus")
        workdir.mkdir(parents=True, exist_ok=True)
        if rules is not None:
            (workdir / "rules.yml").write_text(yaml.safe_dump(rules))
            config = {**config, "rule_files": [str(workdir / "rules.yml")]}
        path = workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        port = free_port()
        super().__init__(
            "prometheus",
            [
                binary,
                f"--config.file={path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            workdir,
            port,
        )

    def query(self, expr: str) -> list[dict]:
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]["result"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
