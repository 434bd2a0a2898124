"""The vote store of the subjective screening: one SQLite file, ``DATASET/screening.sqlite``.

Schema (version 1)::

    votes(id INTEGER PRIMARY KEY AUTOINCREMENT,
          rater TEXT NOT NULL,      -- the name the rater typed (normalised by normalise_rater)
          scene TEXT NOT NULL,      -- scene folder name
          candidate TEXT,           -- candidate name (generator, file stem); NULL = "none acceptable"
          time TEXT NOT NULL)       -- UTC, ISO 8601 with microseconds, informative only
    meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)   -- schema version, the id secret

Every vote is a new row, so the table is the full history; the vote that counts for a
(rater, scene) pair is the one with the highest ``id`` (not the latest ``time``: clocks step back).

Durability: the database is in WAL mode and every connection runs ``synchronous=FULL``, so a
commit that returned has been written and fsync'ed to the WAL; the web layer answers a vote only
after its commit, so an acknowledged vote survives a ``kill -9`` of the server (and a power cut,
as far as the disk honours fsync). Several server threads and several raters write at once: each
call opens its own short-lived connection and waits up to ``BUSY_TIMEOUT_MS`` for the write lock.

The database and its companions (``-wal``, ``-shm``, ``-journal``) must be regular files, not
symbolic links: SQLite follows links, so a ``screening.sqlite`` link planted in a downloaded
dataset would make the server write wherever it points. They are checked every time a
connection opens.

``winners`` is the contract with ``sice build-dataset --select votes``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import stat
import unicodedata
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DatasetError

DB_NAME = "screening.sqlite"
SCHEMA_VERSION = 1
# Writers queue on SQLite's single write lock; a vote is one tiny INSERT, so 10 s is generous.
BUSY_TIMEOUT_MS = 10_000
MAX_RATER_LENGTH = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater TEXT NOT NULL,
    scene TEXT NOT NULL,
    candidate TEXT,
    time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS votes_rater_scene ON votes (rater, scene, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Vote:
    """One stored vote. ``candidate`` is ``None`` for "none acceptable"."""

    id: int
    rater: str
    scene: str
    candidate: str | None
    time: str


def normalise_rater(name: str) -> str:
    """The canonical form of a typed rater name: NFC, whitespace runs collapsed to one space.

    Raises
    ------
    ValueError
        If the name is empty, longer than ``MAX_RATER_LENGTH`` characters, or holds control
        characters.
    """
    if not isinstance(name, str):
        raise ValueError(f"rater must be a string, got {type(name).__name__}")
    clean = " ".join(unicodedata.normalize("NFC", name).split())
    if not clean:
        raise ValueError("rater name is empty")
    if len(clean) > MAX_RATER_LENGTH:
        raise ValueError(f"rater name is longer than {MAX_RATER_LENGTH} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise ValueError(f"rater name {clean!r} contains control characters")
    return clean


#: Files SQLite opens beside the database (WAL mode uses the first two).
_COMPANIONS = ("-wal", "-shm", "-journal")


def check_database_path(db_path: Path) -> None:
    """Refuse a database path (or a companion file) that is a symbolic link or not a regular file.

    Missing files are fine (SQLite creates them). Python's sqlite3 cannot pass
    ``SQLITE_OPEN_NOFOLLOW``, so this is checked by hand before each connection.

    Raises
    ------
    DatasetError
        Naming the file and what it is.
    """
    for path in (db_path, *(db_path.with_name(db_path.name + suffix) for suffix in _COMPANIONS)):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DatasetError(f"{path}: cannot check the screening database: {exc.strerror or exc}") from None
        if stat.S_ISLNK(mode):
            raise DatasetError(f"{path}: is a symbolic link; refusing to open the screening database through it "
                               "(votes would be written wherever it points)")
        if not stat.S_ISREG(mode):
            raise DatasetError(f"{path}: is not a regular file; refusing to use it for the screening database")


def _connect(db_path: Path) -> sqlite3.Connection:
    check_database_path(db_path)
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    # synchronous is per connection (not stored in the file): set it on every one.
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return conn


class VoteStore:
    """The votes of one dataset, in the SQLite file ``db_path`` (created when missing).

    Parameters
    ----------
    db_path : path-like
        Usually ``DATASET/screening.sqlite``; its folder must exist.

    Raises
    ------
    DatasetError
        If the file cannot be opened or created, is a symbolic link or not a regular file, or is
        not a screening database.
    """

    def __init__(self, db_path: os.PathLike | str):
        self.path = Path(db_path)
        try:
            with self._connection() as conn:
                # WAL mode is stored in the file: setting it once makes it permanent.
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise DatasetError(f"{self.path}: cannot switch the database to WAL mode (got {mode})")
                conn.executescript(_SCHEMA)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('secret', ?)", (secrets.token_hex(16),))
                conn.execute("COMMIT")
                rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as exc:
            raise DatasetError(f"{self.path}: cannot open the screening database: {exc}") from exc
        if rows.get("schema_version") != str(SCHEMA_VERSION):
            raise DatasetError(f"{self.path}: screening database schema version {rows.get('schema_version')!r}, "
                               f"this sice reads version {SCHEMA_VERSION}")
        self._secret = bytes.fromhex(rows["secret"])

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = _connect(self.path)
        try:
            yield conn
        finally:
            conn.close()

    # -- blinding ---------------------------------------------------------------------------
    def opaque_id(self, scene: str, candidate: str) -> str:
        """A 16-hex-digit id for a candidate that reveals nothing about its name.

        A keyed hash (HMAC-SHA256 with a random secret kept in the database), so it is stable
        across server restarts but cannot be reversed or recomputed without the database; the
        scene is part of the message, so one generator has a different id in every scene.
        """
        msg = f"id\0{scene}\0{candidate}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:16]

    def display_order(self, rater: str, scene: str, candidates: list[str]) -> list[str]:
        """``candidates`` in a random order that is fixed for this (rater, scene) pair.

        The order sorts by a keyed hash of (rater, scene, name): the same every time the rater
        comes back, different between raters and scenes, so position biases average out.
        """
        def key(name: str) -> str:
            msg = f"order\0{rater}\0{scene}\0{name}".encode()
            return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

        return sorted(candidates, key=key)

    # -- votes ------------------------------------------------------------------------------
    def record(self, rater: str, scene: str, candidate: str | None) -> Vote:
        """Append a vote and return it once it is committed (durable, see the module notes).

        ``candidate=None`` records "none acceptable". The caller checks that scene and
        candidate exist; the store only normalises the rater name.
        """
        rater = normalise_rater(rater)
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        try:
            with self._connection() as conn:
                conn.execute("BEGIN IMMEDIATE")
                cur = conn.execute("INSERT INTO votes (rater, scene, candidate, time) VALUES (?, ?, ?, ?)",
                                   (rater, scene, candidate, now))
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise DatasetError(f"{self.path}: cannot record the vote: {exc}") from exc
        return Vote(cur.lastrowid, rater, scene, candidate, now)

    def latest_votes(self, rater: str | None = None) -> dict[tuple[str, str], str | None]:
        """The vote that counts for each (rater, scene): ``{(rater, scene): candidate | None}``.

        With ``rater``, only that rater's votes.
        """
        # SQLite returns the bare columns of the row holding max(id) in an aggregate query
        # (documented "bare columns in an aggregate query" behaviour).
        sql = "SELECT rater, scene, candidate, max(id) FROM votes {} GROUP BY rater, scene"
        if rater is None:
            rows = self._query(sql.format(""))
        else:
            rows = self._query(sql.format("WHERE rater = ?"), (normalise_rater(rater),))
        return {(r, s): c for r, s, c, _ in rows}

    def history(self) -> list[Vote]:
        """Every vote ever cast, oldest first."""
        return [Vote(*row) for row in self._query("SELECT id, rater, scene, candidate, time FROM votes ORDER BY id")]

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        try:
            with self._connection() as conn:
                return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise DatasetError(f"{self.path}: cannot read votes: {exc}") from exc


@dataclass(frozen=True)
class SceneCount:
    """The counted votes of one scene (each rater's latest vote only)."""

    votes: dict[str, int]   # candidate name -> number of raters who chose it
    none: int               # raters who chose "none acceptable"

    @property
    def raters(self) -> int:
        return sum(self.votes.values()) + self.none

    @property
    def winners(self) -> list[str]:
        """Candidates with the most votes, sorted by name; ``[]`` when "none acceptable" has
        strictly more votes than every candidate (the raters rejected the scene)."""
        top = max(self.votes.values(), default=0)
        if self.none > top or top == 0:
            return []
        return sorted(name for name, n in self.votes.items() if n == top)


def count_votes(latest: Mapping[tuple[str, str], str | None]) -> dict[str, SceneCount]:
    """Per-scene counts from ``{(rater, scene): candidate | None}`` (see ``latest_votes``)."""
    per_scene: dict[str, Counter] = {}
    for (_, scene), candidate in latest.items():
        per_scene.setdefault(scene, Counter())[candidate] += 1
    return {scene: SceneCount(votes={k: v for k, v in c.items() if k is not None}, none=c.get(None, 0))
            for scene, c in per_scene.items()}


def winners(db_path: os.PathLike | str) -> dict[str, list[str]]:
    """Each voted scene's winning candidates: ``{scene: [candidate names with the most votes]}``.

    Only each rater's latest vote per scene counts. Ties return every tied name (sorted), for
    the caller to break (``sice build-dataset --select votes`` breaks them by MEF-SSIM). A scene
    maps to ``[]`` when "none acceptable" got strictly more votes than any candidate. Scenes
    nobody voted on are absent.

    Parameters
    ----------
    db_path : path-like
        A screening database (``DATASET/screening.sqlite``).

    Raises
    ------
    DatasetError
        If ``db_path`` does not exist or is not a screening database.
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        raise DatasetError(f"{db_path}: no screening database (run `sice screen` first)")
    counts = count_votes(VoteStore(db_path).latest_votes())
    return {scene: c.winners for scene, c in counts.items()}
