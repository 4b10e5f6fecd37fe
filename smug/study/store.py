"""The crash-safe study store: one SQLite file in WAL mode, cells keyed by (problem, backend, options, seed, limits).

Why SQLite in WAL mode: every result is one committed transaction, so a
SIGKILL at any point loses at most the cells in flight (a committed cell is on
disk, an uncommitted one never half-written); readers never block the writer,
so ``smug study status`` and ``report`` work while a study runs; it is in the
standard library and its file copies with ``cp``.  ``synchronous=NORMAL`` in WAL
mode survives any process crash (only a power loss can drop the last commits).

Other study kinds (the explanation-method study of ``smug evaluate``) keep
their rows in the ``records`` table: one JSON document per (kind, key), written
in one transaction; a failed row is replaced by the rerun's, a successful one
never is.

Two runs on one store never duplicate a cell: a run *claims* the cells it is
about to run (``claims`` table, in one ``BEGIN IMMEDIATE`` transaction), skips
cells claimed by a live run, and a finished cell is inserted with its unique
key (``INSERT OR IGNORE``).  A claim whose run died (its pid is gone on this
host, or it is older than the stale age) is taken over by the next run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = ["Store", "cell_key", "CELL_FIELDS", "STORE_NAME"]

#: The store's file name inside a study folder.
STORE_NAME = "study.sqlite"

#: Columns of a finished cell (the export's columns, in order).
CELL_FIELDS = (
    "key", "problem", "name", "family", "backend", "label", "options", "seed", "time_limit", "threads",
    "status", "objective", "exact_objective", "bound", "verified", "wall", "cpu", "peak_mb",
    "version", "host", "message", "attempts", "finished", "stats",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS problems (
    hash TEXT PRIMARY KEY, name TEXT, family TEXT, source TEXT,
    n_vars INTEGER, n_rows INTEGER, nnz INTEGER, meta TEXT);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, problem TEXT NOT NULL, name TEXT, family TEXT, backend TEXT NOT NULL,
    label TEXT NOT NULL, options TEXT NOT NULL, seed INTEGER NOT NULL, time_limit REAL, threads INTEGER,
    status TEXT NOT NULL, objective REAL, exact_objective TEXT, bound REAL, verified INTEGER,
    wall REAL, cpu REAL, peak_mb REAL, version TEXT, host TEXT, message TEXT, attempts INTEGER, finished REAL,
    stats TEXT);
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT, pid INTEGER, at REAL);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, data TEXT NOT NULL, failed INTEGER NOT NULL, finished REAL,
    PRIMARY KEY (kind, key));
"""


def cell_key(problem_hash: str, backend: str, options_json: str, seed: int, time_limit: float, threads: int) -> str:
    """The unique key of a cell: what makes two runs of it the same experiment."""
    raw = json.dumps([problem_hash, backend, options_json, int(seed), float(time_limit), int(threads)])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _retry_locked(step: Any, *, patience: float = 60.0) -> Any:
    """Run ``step``, retrying for up to ``patience`` s while another process holds the database lock."""
    deadline = time.monotonic() + patience
    delay = 0.01
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class Store:
    """A study's store (``<folder>/study.sqlite``); open with ``Store(folder)``, use as a context manager."""

    def __init__(self, folder: str | Path, *, create: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / STORE_NAME
        if not create and not self.path.exists():
            raise ConfigError(f"{str(self.folder)!r} holds no study (no {STORE_NAME}); run `smug study run` first")
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError(f"{str(self.folder)!r} is a file, not a study folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        _retry_locked(lambda: self._set_wal())
        self.db.execute("PRAGMA synchronous=NORMAL")
        _retry_locked(lambda: self.db.executescript(_SCHEMA))
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(cells)")}
        if "stats" not in cols:  # a store of an earlier version: add the column, keep its cells
            self.db.execute("ALTER TABLE cells ADD COLUMN stats TEXT")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"

    def _set_wal(self) -> None:
        # switching the journal mode takes an exclusive lock that SQLite's busy timeout does not
        # wait for; a second run opening the store at the same moment retries (see _retry_locked)
        if self.db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.db.execute("PRAGMA journal_mode=WAL")

    # ------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Release this run's claims and close the database."""
        try:
            self.db.execute("DELETE FROM claims WHERE owner = ?", (self.owner,))
        finally:
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------ metadata
    def set_meta(self, key: str, value: Any) -> None:
        """Record ``value`` (JSON) under ``key`` (the spec, its digest)."""
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        """The value recorded under ``key``."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def add_problems(self, rows: Iterable[dict[str, Any]]) -> None:
        """Record problem metadata (``hash``, ``name``, ``family``, ``source``, sizes, ``meta``)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO problems VALUES (:hash, :name, :family, :source, :n_vars, :n_rows, :nnz, :meta)",
            list(rows),
        )

    # ------------------------------------------------------------ cells
    def done_keys(self) -> set[str]:
        """Keys of the finished cells."""
        return {r[0] for r in self.db.execute("SELECT key FROM cells")}

    def claim(self, keys: Sequence[str], stale_after: float) -> tuple[list[str], dict[str, str]]:
        """Claim the unfinished ``keys`` for this run; returns (claimed, {key: owner} of live others' claims).

        One ``BEGIN IMMEDIATE`` transaction: two runs claiming at once are
        serialised, so each cell goes to exactly one of them.
        """
        host, now = socket.gethostname(), time.time()
        mine: list[str] = []
        others: dict[str, str] = {}
        self.db.execute("BEGIN IMMEDIATE")
        try:
            done = self.done_keys()
            held = {
                k: (o, h, p, a) for k, o, h, p, a in self.db.execute("SELECT key, owner, host, pid, at FROM claims")
            }
            for k in keys:
                if k in done:
                    continue
                c = held.get(k)
                if c is not None and c[0] != self.owner:
                    owner, chost, cpid, at = c
                    dead = (chost == host and not _alive(int(cpid))) or now - float(at) > stale_after
                    if not dead:
                        others[k] = owner
                        continue
                mine.append(k)
            self.db.executemany(
                "INSERT OR REPLACE INTO claims VALUES (?, ?, ?, ?, ?)",
                [(k, self.owner, host, os.getpid(), now) for k in mine],
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return mine, others

    def refresh_claims(self) -> None:
        """Mark this run's claims as fresh (a long run calls this as results come in)."""
        self.db.execute("UPDATE claims SET at = ? WHERE owner = ?", (time.time(), self.owner))

    def record(self, cell: dict[str, Any]) -> bool:
        """Insert one finished cell (one transaction) and drop its claim; ``False`` if it was already there."""
        row = {f: cell.get(f) for f in CELL_FIELDS}
        row["finished"] = row["finished"] or time.time()
        if isinstance(row["verified"], bool):
            row["verified"] = int(row["verified"])
        cols = ", ".join(CELL_FIELDS)
        marks = ", ".join(f":{f}" for f in CELL_FIELDS)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            cur = self.db.execute(f"INSERT OR IGNORE INTO cells ({cols}) VALUES ({marks})", row)
            self.db.execute("DELETE FROM claims WHERE key = ?", (row["key"],))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return cur.rowcount == 1

    def cells(self) -> list[dict[str, Any]]:
        """Every finished cell as a dict (:data:`CELL_FIELDS`)."""
        cur = self.db.execute(f"SELECT {', '.join(CELL_FIELDS)} FROM cells ORDER BY name, label, seed")
        out = []
        for r in cur:
            d = dict(zip(CELL_FIELDS, r))
            d["verified"] = None if d["verified"] is None else bool(d["verified"])
            out.append(d)
        return out

    def claims(self) -> list[dict[str, Any]]:
        """The open claims (cells some run has started and not finished)."""
        cur = self.db.execute("SELECT key, owner, host, pid, at FROM claims")
        return [dict(zip(("key", "owner", "host", "pid", "at"), r)) for r in cur]

    def problems(self) -> dict[str, dict[str, Any]]:
        """Problem metadata by hash."""
        cols = ("hash", "name", "family", "source", "n_vars", "n_rows", "nnz", "meta")
        return {r[0]: dict(zip(cols, r)) for r in self.db.execute(f"SELECT {', '.join(cols)} FROM problems")}

    # ------------------------------------------------------------ records (other study kinds)
    def put_record(self, kind: str, key: str, data: dict[str, Any], *, failed: bool = False) -> bool:
        """Store one row of study ``kind`` under ``key`` (one transaction); ``False`` if a successful one was there.

        A successful row is never replaced; any row replaces a failed one, so a
        rerun's retry wins.
        """
        doc = json.dumps(data, allow_nan=False)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            old = self.db.execute("SELECT failed FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            if old is not None and not old[0]:
                self.db.execute("ROLLBACK")
                return False
            self.db.execute(
                "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?, ?)", (kind, key, doc, int(failed), time.time())
            )
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return True

    def records(self, kind: str, *, failed: bool | None = None) -> list[dict[str, Any]]:
        """The rows of study ``kind`` in the order they were finished (``failed``: only failed / only successful)."""
        q = "SELECT data FROM records WHERE kind = ?"
        args: tuple[Any, ...] = (kind,)
        if failed is not None:
            q += " AND failed = ?"
            args += (int(failed),)
        return [json.loads(r[0]) for r in self.db.execute(q + " ORDER BY finished, rowid", args)]

    def record_keys(self, kind: str, *, failed: bool = False) -> set[str]:
        """The keys of the rows of ``kind`` (successful ones, or with ``failed=True`` the failed ones)."""
        cur = self.db.execute("SELECT key FROM records WHERE kind = ? AND failed = ?", (kind, int(failed)))
        return {r[0] for r in cur}

    def drop_records(self, kind: str) -> None:
        """Forget every row of ``kind`` (a study run with ``resume=False``)."""
        self.db.execute("DELETE FROM records WHERE kind = ?", (kind,))

    # ------------------------------------------------------------ export
    def export(self, path: str | Path) -> Path:
        """Write the finished cells to ``path``: ``.csv``, or ``.parquet`` (needs ``pyarrow``)."""
        p = Path(path)
        rows = self.cells()
        if p.suffix == ".csv":
            with p.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(CELL_FIELDS))
                w.writeheader()
                w.writerows(rows)
        elif p.suffix == ".parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise ConfigError("Parquet export needs pyarrow: pip install pyarrow (or export to .csv)") from None
            pq.write_table(pa.Table.from_pylist(rows), p)
        else:
            raise ConfigError(f"export to .csv or .parquet, got {p.name!r}")
        return p
