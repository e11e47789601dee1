"""The embedded detection cache: best faces stored with ``return_detection``, retrievable by id.

SQLite in ``state-dir`` (stdlib, no server): WAL journal with synchronous=FULL, so a stored detection survives a crash
or power cut as soon as the response that returned its id has been sent. Bounded by ``cache.max-entries`` (oldest go
first) and ``cache.ttl`` (expired entries are deleted at start, by every store and by the server once a minute, so an
idle box does not keep face crops past their time). One connection per thread, as sqlite3 objects must not cross
threads. A cache that cannot be read or written (a full disk) is ``StorageUnavailable`` (503) for the request that
needed it, never a 500.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import StartupError, StorageUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS detections (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    bbox_left INTEGER NOT NULL, bbox_top INTEGER NOT NULL, bbox_right INTEGER NOT NULL, bbox_bottom INTEGER NOT NULL,
    quality REAL NOT NULL,
    liveness REAL NOT NULL,
    frame_no INTEGER NOT NULL,
    frame_ts REAL NOT NULL,
    normalized_png BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS detections_created ON detections(created);
"""
DB_NAME = "detections.sqlite3"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredDetection:
    id: str
    created: float
    bbox: tuple[int, int, int, int]
    quality: float
    liveness: float
    frame_no: int
    frame_ts: float
    normalized_png: bytes

    @classmethod
    def new(cls, *, bbox, quality: float, liveness: float, frame_no: int, frame_ts: float,
            normalized_png: bytes) -> "StoredDetection":
        # 128 random bits, URL-safe: ids are capabilities, so they must not be guessable.
        return cls(secrets.token_hex(16), time.time(), tuple(int(v) for v in bbox), float(quality), float(liveness),
                   int(frame_no), float(frame_ts), normalized_png)


class DetectionCache:
    def __init__(self, state_dir: Path, max_entries: int, ttl_seconds: float):
        self.path = Path(state_dir) / DB_NAME
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._write_lock:
                conn = self._conn()
                conn.executescript(SCHEMA)
                conn.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StartupError(f"state-dir {self.path.parent}: cannot open the detection cache {self.path}: {exc}") \
                from None
        self.purge_expired()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            # A deleted or expired face crop is overwritten, not left readable in a free page of the file.
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
        return conn

    def put(self, det: StoredDetection) -> str:
        try:
            with self._write_lock:
                conn = self._conn()
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(
                        "INSERT INTO detections VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (det.id, det.created, *det.bbox, det.quality, det.liveness, det.frame_no, det.frame_ts,
                         det.normalized_png),
                    )
                    self._evict(conn, det.created)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:  # SQLite rolls back by itself on a full disk; a second ROLLBACK would
                        conn.execute("ROLLBACK")  # fail and hide the real error
                    raise
        except sqlite3.Error as exc:
            # The client hears what failed; the file's path is for the operator, in the log.
            log.error("detection cache %s: cannot store: %s", self.path, exc)
            raise StorageUnavailable(f"the detection cache cannot store the face: {exc}",
                                     param="return_detection") from None
        return det.id

    def _evict(self, conn: sqlite3.Connection, now: float) -> None:
        self._delete_expired(conn, now)
        conn.execute(
            "DELETE FROM detections WHERE id IN (SELECT id FROM detections ORDER BY created DESC LIMIT -1 OFFSET ?)",
            (self.max_entries,),
        )

    def purge_expired(self) -> int:
        """Delete the entries older than ``cache.ttl``; returns how many went (0 when the cache cannot be written:
        the next store or purge tries again)."""
        try:
            with self._write_lock:
                conn = self._conn()
                deleted = self._delete_expired(conn, time.time())
                if deleted:
                    # The rows are gone, but their face crops stay in the write-ahead log until a checkpoint: fold
                    # it in now (secure_delete zeroes the freed pages) rather than at the next restart.
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return deleted
        except sqlite3.Error:
            return 0

    def _delete_expired(self, conn: sqlite3.Connection, now: float) -> int:
        return max(conn.execute("DELETE FROM detections WHERE created < ?", (now - self.ttl,)).rowcount, 0)

    def get(self, detection_id: str) -> StoredDetection | None:
        try:
            row = self._conn().execute(
                "SELECT * FROM detections WHERE id = ? AND created >= ?", (detection_id, time.time() - self.ttl)
            ).fetchone()
        except sqlite3.Error as exc:
            log.error("detection cache %s: cannot read: %s", self.path, exc)
            raise StorageUnavailable(f"the detection cache cannot be read: {exc}") from None
        if row is None:
            return None
        return StoredDetection(row[0], row[1], (row[2], row[3], row[4], row[5]), row[6], row[7], row[8], row[9],
                               bytes(row[10]))

    def count(self) -> int | None:
        """Entries a client can still read (not expired); None when the cache cannot be read (/health says so)."""
        try:
            return int(self._conn().execute("SELECT COUNT(*) FROM detections WHERE created >= ?",
                                            (time.time() - self.ttl,)).fetchone()[0])
        except sqlite3.Error:
            return None

    def checkpoint(self) -> None:
        """Fold the WAL into the database file (on shutdown; committed rows are durable either way)."""
        with self._write_lock:
            conn = sqlite3.connect(self.path, timeout=10.0)
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                conn.close()
