"""A store file that is empty, damaged or not dyzur's is refused at start, and left untouched.

Each case runs the real `dyzur run` (and the CLI commands that open the store) against a file
made the way a hospital would meet it: truncated to 0 bytes, overwritten, a real store with
pages of garbage in the middle. Only a missing file becomes a new store.
"""

from __future__ import annotations

import hashlib
import random
import signal
import sqlite3
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from bridge.store import StoreError, open_store
from bridge.store.sqlite import MIGRATIONS
from tests.conftest import auth, config_data, free_port
from tests.processes import Process, RunningBridge, wait_for
from tests.test_cli import dyzur

PAGE = 4096  # SQLite's default page size, the one dyzur's stores have


def write_config(directory: Path) -> Path:
    path = directory / "dyzur.yaml"
    path.write_text(yaml.safe_dump(config_data("sqlite:///var/dyzur.db")))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def store_file(config_file: Path) -> Path:
    return config_file.parent / "var" / "dyzur.db"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def side_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def disks(asset: str, count: int, value: float = 0.95) -> dict:
    """Samples of ``count`` full disks of ``asset``: one ticket each."""
    return {
        "samples": [
            {
                "metric": "dz_test_disk_used_ratio",
                "labels": {"asset": asset, "mountpoint": f"/data{i:03d}"},
                "value": value,
            }
            for i in range(count)
        ]
    }


def make_real_store(config_file: Path) -> list[str]:
    """Start the bridge on a missing store, open tickets through its API, stop it cleanly.

    Returns the ticket numbers: the missing file became a new store and took them."""
    assert not store_file(config_file).exists()
    bridge = RunningBridge(config_file, free_port())
    try:
        with httpx.Client(base_url=bridge.url, timeout=30) as http:
            for asset in ("srv-a1", "srv-a2", "srv-b1"):
                r = http.post("/api/v1/samples", json=disks(asset, 60), headers=auth("agent"))
                assert r.status_code == 200 and r.json()["accepted"] == 60, r.text
            r = http.get("/api/v1/tickets", params={"limit": 500}, headers=auth("engineer"))
            numbers = [t["number"] for t in r.json()]
    finally:
        code = bridge.stop()
    assert code == 0, bridge.output()  # SIGTERM: a graceful stop that closes the store
    assert side_files(store_file(config_file)) == []  # checkpointed: no WAL left behind
    assert len(numbers) == 180
    return numbers


@pytest.fixture(scope="module")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a real store with 180 tickets, made by the bridge and stopped cleanly."""
    config_file = write_config(tmp_path_factory.mktemp("real"))
    make_real_store(config_file)
    return store_file(config_file).read_bytes()


def run_until_exit_or_up(config_file: Path) -> tuple[int | None, str]:
    """Start `dyzur run`; return its exit code and output once it exits, or (None, output) if
    it came up and answered /healthz instead (it is stopped then)."""
    port = free_port()
    process = Process(
        ["-m", "bridge", "run", "--config", str(config_file), "--port", str(port)],
        config_file.with_name(f"bridge-{port}.log"),
    )

    def exited_or_up() -> bool:
        if process.proc.poll() is not None:
            return True
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_for(exited_or_up, what="the bridge to exit or answer")
    finally:
        started = process.proc.poll() is None
        process.stop()
    return (None if started else process.proc.returncode), process.output()


def emptied(path: Path) -> None:
    path.write_bytes(b"")


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(13).randbytes(64 * PAGE))


def garbage_pages(path: Path) -> None:
    """Overwrite four whole pages in the middle of the file with random bytes."""
    data = bytearray(path.read_bytes())
    pages = len(data) // PAGE
    assert pages >= 20, f"the store has only {pages} pages"
    first = pages // 2
    data[first * PAGE : (first + 4) * PAGE] = random.Random(10).randbytes(4 * PAGE)
    path.write_bytes(bytes(data))


def foreign_database(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        conn.execute("INSERT INTO invoices VALUES (1, 100.0)")
    conn.close()


def dropped_tables(path: Path) -> None:
    """A real store whose ticket tables were dropped (by hand, or a bad restore)."""
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE timeline")
        conn.execute("DROP TABLE tickets")
    conn.close()


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "0-byte file": (emptied, "is empty (0 bytes), not a dyzur store"),
    "random bytes": (random_bytes, "is not an SQLite database"),
    "garbage pages in the middle": (garbage_pages, "is damaged"),
    "another program's database": (foreign_database, "is an SQLite database but not a dyzur"),
    "tables dropped": (dropped_tables, "is damaged: tables tickets, timeline of its schema"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_or_emptied_store_is_refused_and_left_untouched(config_file, real_store, case):
    damage, problem = DAMAGE[case]
    path = store_file(config_file)
    path.parent.mkdir()
    path.write_bytes(real_store)
    damage(path)
    before = digest(path)

    code, output = run_until_exit_or_up(config_file)
    assert code is not None, f"the bridge started on a store with {case}:\n{output}"
    assert code == 2, output
    assert f"store: {path} {problem}" in output, output
    assert "restore the store from a backup" in output
    assert "Traceback" not in output

    # The CLI commands that open the store refuse it the same way.
    for args in (
        ("audit", "verify", "--config", config_file),
        ("report", "sla", "--config", config_file, "--client", "szpital-a", "--month", "2026-11"),
    ):
        r = dyzur(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"{path} {problem}" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert r.stdout == ""

    # Untouched: the same bytes, and no -wal or -shm created beside it.
    assert digest(path) == before
    assert side_files(path) == []


def test_a_missing_store_starts_new_and_a_killed_bridge_s_store_starts_again(config_file):
    """The check takes what a running or killed bridge leaves (a WAL with committed
    transactions): no false refusal, and nothing acknowledged is lost."""
    numbers = make_real_store(config_file)  # the missing file became a new store
    assert numbers[-1].endswith("-000001")
    bridge = RunningBridge(config_file, free_port())
    with httpx.Client(base_url=bridge.url, timeout=30) as http:
        r = http.post("/api/v1/samples", json=disks("srv-a1", 70), headers=auth("agent"))
        assert r.status_code == 200
    bridge.stop(signal.SIGKILL)
    path = store_file(config_file)
    assert (path.parent / "dyzur.db-wal").stat().st_size > 0  # the last tickets are in it

    # While another bridge is running on the file, a second one starts beside it too.
    first = RunningBridge(config_file, free_port())
    second = RunningBridge(config_file, free_port())
    try:
        with httpx.Client(base_url=second.url, timeout=30) as http:
            r = http.get("/api/v1/tickets", params={"limit": 500}, headers=auth("engineer"))
            assert len(r.json()) == 190
    finally:
        assert second.stop() == 0 and first.stop() == 0


def test_a_database_without_tables_is_taken_as_new(tmp_path):
    """What a first start killed before its first migration leaves: a header, no tables."""
    path = tmp_path / "dyzur.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    assert path.stat().st_size > 0
    store = open_store(f"sqlite:///{path}")
    assert store.schema_version() == len(MIGRATIONS)
    store.close()


def test_a_directory_in_place_of_the_store_is_refused(tmp_path):
    (tmp_path / "dyzur.db").mkdir()
    with pytest.raises(StoreError, match="is not a regular file"):
        open_store("sqlite:///dyzur.db", tmp_path)
