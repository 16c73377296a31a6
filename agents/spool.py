"""The agent's outbox: a bounded FIFO of batches in one SQLite file.

Every batch is written here before it is pushed, so a crash or SIGKILL loses nothing that was
measured; it is removed only after the bridge took it. Each spool has its own random id, and
its batch numbers (1, 2, 3, ...) let the bridge take each batch exactly once.
"""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

_INSERT = "INSERT INTO batches(samples, body) VALUES (?, ?)"


@dataclass(frozen=True, slots=True)
class SpooledBatch:
    seq: int
    samples: int
    body: bytes  # the JSON array of samples


class Spool:
    def __init__(self, path: Path | str, max_samples: int) -> None:
        self.path = Path(path)
        self.max_samples = max_samples
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        # FULL: a batch the agent has spooled survives a power cut of the host, not just a crash.
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS batches (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " samples INTEGER NOT NULL, body BLOB NOT NULL)"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('agent_id', ?)", (uuid.uuid4().hex,))
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('dropped', '0')")
        conn.execute("COMMIT")
        self.agent_id = self._meta("agent_id")
        self.dropped = int(self._meta("dropped"))
        row = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(samples), 0) FROM batches")
        self.batches, self.samples = row.fetchone()
        # The batch put last, while it is in the spool: when it is the only one, oldest()
        # needs no query (the usual cycle: put, push, remove).
        self._newest: SpooledBatch | None = None

    def _meta(self, key: str) -> str:
        return self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def put(self, body: bytes, samples: int) -> int:
        """Append a batch; when the spool is full, the oldest batches go and are counted."""
        with self._lock:
            conn = self._conn
            if not self.batches or self.samples + samples <= self.max_samples:
                # Room for it: one statement, its own transaction, synced once.
                seq = conn.execute(_INSERT, (samples, body)).lastrowid
                assert seq is not None  # sqlite3 sets it after every INSERT
                self.batches += 1
                self.samples += samples
                self._newest = SpooledBatch(seq, samples, body)
                return seq
            # Full: the oldest batches go, in the same transaction (counted only once it
            # committed, so a failed put leaves the counts as the file has them).
            batches, total, dropped = self.batches, self.samples, 0
            conn.execute("BEGIN IMMEDIATE")
            try:
                while batches and total + samples > self.max_samples:
                    seq, count = conn.execute(
                        "SELECT seq, samples FROM batches ORDER BY seq LIMIT 1"
                    ).fetchone()
                    conn.execute("DELETE FROM batches WHERE seq = ?", (seq,))
                    batches -= 1
                    total -= count
                    dropped += count
                conn.execute(
                    "UPDATE meta SET value = ? WHERE key = 'dropped'", (self.dropped + dropped,)
                )
                seq = conn.execute(_INSERT, (samples, body)).lastrowid
                assert seq is not None
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self.dropped += dropped
            self.batches = batches + 1
            self.samples = total + samples
            self._newest = SpooledBatch(seq, samples, body)
            return seq

    def oldest(self) -> SpooledBatch | None:
        with self._lock:
            if not self.batches:  # the pusher asks after every push: no query for that
                return None
            if self.batches == 1 and self._newest is not None:
                return self._newest
            row = self._conn.execute(
                "SELECT seq, samples, body FROM batches ORDER BY seq LIMIT 1"
            ).fetchone()
        return None if row is None else SpooledBatch(row[0], row[1], bytes(row[2]))

    def remove(self, batch: SpooledBatch) -> None:
        """The bridge took (or finally refused) ``batch``.

        Not synced to disk: a removal that a power cut takes back sends the batch again,
        and the bridge takes it once by its number. A crash of the agent alone loses nothing
        (the operating system writes the file), and the next put's sync covers it anyway.
        """
        with self._lock:
            conn = self._conn
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                removed = conn.execute("DELETE FROM batches WHERE seq = ?", (batch.seq,)).rowcount
            finally:
                conn.execute("PRAGMA synchronous=FULL")
            if removed:
                self.batches -= 1
                self.samples -= batch.samples
            if self._newest is not None and self._newest.seq == batch.seq:
                self._newest = None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
