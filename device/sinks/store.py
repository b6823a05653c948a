"""The store of outgoing messages: written before publishing, removed when the broker has them.

Every vitals and alarm message the MQTT sink publishes is first written here, with its
per-bed ``seq``, and leaves only when the broker has acknowledged it (a QoS 1 PUBACK). What is
left after a broker outage, a daemon crash or a power cut is sent again, oldest first (alarms
before vitals), by the next connection or the next run.

Why SQLite (the standard library's ``sqlite3``) in WAL mode: one file, atomic transactions
with checksummed journal frames, so a crash at any instant leaves either the message or
nothing, never half a line; random access to delete acknowledged messages in any order; and
nothing to install on a Pi. The JSON-lines outbox it replaces rewrote the whole file on every
acknowledgement, which is fine for a few alarms and not for a day of vitals.

Crash safety (``PRAGMA synchronous``), chosen per transaction:

- a transaction that holds an alarm event commits with ``FULL``: the write-ahead log is
  fsync'd before the commit returns, so the alarm survives a power cut from that moment on
  (and so does everything written before it, because the log is sequential);
- vitals and deletions commit with ``NORMAL``: in WAL mode that is durable against a crash or
  SIGKILL of the daemon (the log is in the kernel's page cache) and consistent after a power
  cut, which may lose the last seconds of vitals written since the last sync (at most until the
  next alarm, checkpoint or kernel writeback) or bring back a few acknowledged ones (sent
  again; subscribers remove duplicates by ``seq``). ``bench/store.py`` measures the cost
  of both (see docs/mqtt.md).

Bounds: vitals past ``vitals_max`` (one per second of signal: 24 h by default) are dropped
oldest first and counted; alarms are never dropped.

Seq: one counter per kind (``alarm``, ``vitals``), persisted in the same transaction as the
message, so it increases across restarts and a subscriber of one topic can find gaps and
remove duplicates. A store that cannot be read at all (lost, corrupt) starts its counters from
the wall clock in milliseconds, far above any count one message a second could reach.

Failure: a state folder that is read-only, full or failing makes the store keep new messages
in memory (logged once, ``failed`` names the reason, the daemon raises the ``store_failed``
technical alarm) and try the disk again every ``RETRY_S``; messages kept in memory are written
to the disk once it works again. Delivery never stops because the disk did.

Thread use: one thread at a time (the daemon's main loop); a lock makes stray use safe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("bedside.store")

#: message kinds, in the order a backlog is sent: alarm events before vitals
KINDS = ("alarm", "vitals")
#: one vitals message per second of signal: 24 h of them by default
SECONDS_PER_HOUR = 3600
#: a failed store tries the disk again this often
RETRY_S = 30.0
#: keys of messages held only in memory start here, above any SQLite rowid a store reaches
MEM_BASE = 1 << 53
#: the free pages of a drained store are given back to the file system past this many
VACUUM_FREE_PAGES = 256
#: and at most this often
VACUUM_EVERY_S = 60.0
SCHEMA = 1
#: acknowledged messages are deleted with the next message written, or after this long
DELETE_AFTER_S = 5.0
#: the database's page size: a message (about 500 bytes) fits one page, and each commit
#: writes whole pages to the write-ahead log, so small pages write less to an SD card
PAGE_BYTES = 1024
#: the write-ahead log is checkpointed into the database every this many pages
WAL_PAGES = 1024


@dataclass(frozen=True)
class Stored:
    """One message in the store. ``key`` orders messages by insertion (unique in a run)."""

    key: int
    kind: str
    seq: int
    payload: str  # JSON, as published live (a late vitals message gets "historical": true)
    created: float  # wall clock when stored (Unix s)


def dumps(obj: Any) -> str:
    """Compact JSON; a NaN or infinity (a value the core could not compute) becomes null."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def historical(payload: str) -> str:
    """The payload of a vitals message sent late: with ``"historical": true`` (Sparkplug's
    store-and-forward convention), so a live display does not show it as current."""
    body = json.loads(payload)
    body["historical"] = True
    return dumps(body)


class Store:
    """Pending messages of one bed, in SQLite at ``path`` (None: memory only)."""

    def __init__(
        self,
        path: Path | None,
        vitals_max: int = 24 * SECONDS_PER_HOUR,
        clock: Callable[[], float] = time.time,
        retry_s: float = RETRY_S,
    ) -> None:
        if vitals_max < 1:
            raise ValueError("vitals_max must be at least 1")
        self.path = path
        self.vitals_max = vitals_max
        self._clock = clock
        self._retry_s = retry_s
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._sync = ""  # the connection's current PRAGMA synchronous
        #: keys not yet handed to the network, oldest first, per kind
        self._unsent: dict[str, deque[int]] = {k: deque() for k in KINDS}
        #: handed to the network, waiting for the broker's acknowledgement
        self._inflight: dict[int, Stored] = {}
        #: messages not on disk (the store failed), by key
        self._mem: dict[int, Stored] = {}
        self._next_mem = MEM_BASE
        #: acknowledged messages whose deletion from the disk failed (retried)
        self._undeleted: set[int] = set()
        #: acknowledged messages on disk whose deletion waits for the next write (one commit
        #: per message instead of two) or for ``DELETE_AFTER_S``
        self._acked: list[int] = []
        self._acked_at = 0.0
        self._seq: dict[str, int] = dict.fromkeys(KINDS, 0)
        #: the latest wall-clock ``ts`` of a message stored (persisted): see ``wall_floor``
        self._wall = 0.0
        self.failed = ""  # why the disk cannot be used now ("" when it can)
        self._retry_at = 0.0
        self._vacuum_at = 0.0
        self.counters = {
            "stored": 0,
            "vitals_dropped": 0,  # past the bound, oldest first
            "write_errors": 0,
            "recovered": 0,  # times the disk worked again after failing
            "loaded": 0,  # messages found from a previous run
        }
        if path is None:
            self.failed = ""  # memory only by choice: not a failure
        else:
            self._open(path)

    # -- opening ---------------------------------------------------------------------------
    def _open(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except (sqlite3.Error, OSError) as e:
            self._fail(f"cannot open the store {path} ({_reason(e)})")
            self._read_only(path)
            return
        try:
            self._init_schema(db)
            self._load(db)
        except sqlite3.DatabaseError as e:
            db.close()
            if _is_corrupt(e):
                self._set_aside(path, e)
                self._open(path)
                return
            self._fail(f"cannot use the store {path} ({_reason(e)})")
            self._read_only(path)
            return
        self._db = db

    def _init_schema(self, db: sqlite3.Connection) -> None:
        # auto_vacuum must be chosen before the first table exists; INCREMENTAL lets a store
        # that held a day of vitals give the space back once they are sent
        db.execute(f"PRAGMA page_size = {PAGE_BYTES}")
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL journaling (got {mode})")
        # checkpoint the write-ahead log every WAL_PAGES pages (instead of 1000), and trim it
        # back to that size after a checkpoint: about 1 MiB of log on disk, at most
        db.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        db.execute(f"PRAGMA journal_size_limit = {WAL_PAGES * PAGE_BYTES}")
        self._set_sync(db, "NORMAL")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, kind TEXT NOT NULL,"
                " seq INTEGER NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value REAL NOT NULL)"
            )
            db.execute("INSERT OR IGNORE INTO counters VALUES ('schema', ?)", (SCHEMA,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _load(self, db: sqlite3.Connection) -> None:
        for name, value in db.execute("SELECT name, value FROM counters"):
            if name.startswith("seq:") and name[4:] in self._seq:
                self._seq[name[4:]] = max(self._seq[name[4:]], int(value))
            elif name == "wall":
                self._wall = max(self._wall, float(value))
        n = 0
        for key, kind in db.execute("SELECT id, kind FROM messages ORDER BY id"):
            if kind in self._unsent:
                self._unsent[kind].append(int(key))
                n += 1
        self.counters["loaded"] = n
        if n:
            log.info(
                "store %s: %d message(s) from before (%d alarm(s)) waiting for the broker",
                self.path,
                n,
                len(self._unsent["alarm"]),
            )

    def _read_only(self, path: Path) -> None:
        """The store cannot be written: read what a previous run left (counters, pending
        messages) into memory, so seq still increases and nothing pending is forgotten.

        ``mode=ro`` reads it as it is; where that fails (a WAL database in a folder that went
        read-only, so its shared-memory file cannot be made) ``immutable=1`` still reads the
        database file, but not what its write-ahead log may still hold: when that log is not
        empty the counters may be behind, and seq continues from the clock instead."""
        if not path.exists():
            return  # never written: counters from zero are right
        for query in ("mode=ro", "immutable=1"):
            try:
                ro = sqlite3.connect(f"file:{path}?{query}", uri=True, check_same_thread=False)
            except sqlite3.Error:
                continue
            try:
                counters = ro.execute("SELECT name, value FROM counters").fetchall()
                rows = ro.execute(
                    "SELECT id, kind, seq, payload, created FROM messages ORDER BY id"
                ).fetchall()
            except sqlite3.Error:
                continue
            finally:
                ro.close()
            for name, value in counters:
                if name.startswith("seq:") and name[4:] in self._seq:
                    self._seq[name[4:]] = max(self._seq[name[4:]], int(value))
                elif name == "wall":
                    self._wall = max(self._wall, float(value))
            for key, kind, seq, payload, created in rows:
                if kind in self._unsent:
                    self._remember(Stored(self._mem_key(), kind, int(seq), payload, created))
                    self._undeleted.add(int(key))  # the disk copy goes once the disk works
                    self.counters["loaded"] += 1
            wal = Path(f"{path}-wal")
            if query == "mode=ro" or not wal.exists() or wal.stat().st_size == 0:
                return  # nothing in a log that could have been missed: the counters hold
            break
        self._seq_from_clock()

    def _seq_from_clock(self) -> None:
        start = int(self._clock() * 1000)
        for kind in KINDS:
            self._seq[kind] = max(self._seq[kind], start)
        log.warning(
            "store %s unreadable: seq continues from the wall clock in milliseconds (%d)",
            self.path,
            start,
        )

    def _set_aside(self, path: Path, e: Exception) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self._clock()))
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        log.error("store %s is damaged (%s): moved to %s, starting a new one", path, e, aside)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                Path(str(path) + suffix).rename(Path(str(aside) + suffix))
        self._seq_from_clock()

    # -- writing ---------------------------------------------------------------------------
    def add(self, kind: str, body: dict[str, Any], ts: float | None = None) -> Stored:
        """Give ``body`` its ``seq``, store it (before it may be published) and return it.
        ``ts``: its wall-clock time, remembered for ``wall_floor``."""
        if kind not in self._unsent:
            raise ValueError(f"unknown message kind {kind!r}")
        with self._lock:
            seq = self._seq[kind] + 1
            payload = dumps({**body, "seq": seq})
            created = self._clock()
            wall = max(self._wall, ts if ts is not None else 0.0)
            stored: Stored | None = None
            if self._db is not None:
                dropped = self._over_bound(kind)
                try:
                    stored = self._insert(kind, seq, payload, created, wall, dropped)
                except (sqlite3.Error, OSError) as e:
                    self._fail(
                        f"cannot write the store {self.path} ({_reason(e)})"
                    )  # now in memory
                else:
                    self._drop(dropped)
            if stored is None:
                self._drop(self._over_bound(kind))
                stored = Stored(self._mem_key(), kind, seq, payload, created)
                self._mem[stored.key] = stored
            self._seq[kind] = seq
            self._wall = wall
            self._unsent[kind].append(stored.key)
            self.counters["stored"] += 1
            return stored

    def _drop(self, keys: list[int]) -> None:
        """Unsent vitals dropped past the bound (already deleted from the disk if there)."""
        for key in keys:
            self._unsent["vitals"].remove(key)
            self._mem.pop(key, None)
        self.counters["vitals_dropped"] += len(keys)

    def _over_bound(self, kind: str) -> list[int]:
        """The oldest unsent vitals to drop so that, with one more, the bound holds."""
        if kind != "vitals":
            return []
        pending = len(self._unsent["vitals"]) + sum(
            1 for m in self._inflight.values() if m.kind == "vitals"
        )
        excess = pending + 1 - self.vitals_max
        queue = self._unsent["vitals"]
        return [queue[i] for i in range(min(max(0, excess), len(queue)))]

    def _insert(
        self,
        kind: str,
        seq: int,
        payload: str,
        created: float,
        wall: float,
        dropped: list[int],
    ) -> Stored:
        assert self._db is not None
        db = self._db
        self._set_sync(db, "FULL" if kind == "alarm" else "NORMAL")
        with _transaction(db):
            cur = db.execute(
                "INSERT INTO messages (kind, seq, payload, created) VALUES (?, ?, ?, ?)",
                (kind, seq, payload, created),
            )
            db.execute(
                "INSERT OR REPLACE INTO counters VALUES (?, ?), ('wall', ?)",
                (f"seq:{kind}", seq, wall),
            )
            disk = [k for k in dropped if k < MEM_BASE] + self._acked
            if disk:
                db.executemany("DELETE FROM messages WHERE id = ?", [(k,) for k in disk])
        self._acked.clear()
        key = cur.lastrowid
        assert key is not None
        return Stored(int(key), kind, seq, payload, created)

    def _set_sync(self, db: sqlite3.Connection, level: str) -> None:
        if self._sync != level:
            db.execute(f"PRAGMA synchronous = {level}")
            self._sync = level

    # -- handing out and taking back -------------------------------------------------------
    def take(self, n: int) -> list[Stored]:
        """Up to ``n`` of the oldest unsent messages (alarms first), now in flight."""
        out: list[Stored] = []
        with self._lock:
            for kind in KINDS:
                queue = self._unsent[kind]
                while queue and len(out) < n:
                    key = queue.popleft()
                    msg = self._get(key, kind)
                    if msg is None:
                        continue
                    self._inflight[key] = msg
                    out.append(msg)
        return out

    def take_key(self, key: int) -> Stored | None:
        """Take one message by key (the newest vitals, to be sent live), now in flight."""
        with self._lock:
            for kind in KINDS:
                queue = self._unsent[kind]
                if queue and queue[-1] == key:
                    queue.pop()
                    msg = self._get(key, kind)
                    if msg is not None:
                        self._inflight[key] = msg
                    return msg
            return None

    def _get(self, key: int, kind: str) -> Stored | None:
        if key >= MEM_BASE:
            return self._mem.get(key)
        if self._db is None:
            return None
        try:
            row = self._db.execute(
                "SELECT seq, payload, created FROM messages WHERE id = ?", (key,)
            ).fetchone()
        except sqlite3.Error as e:
            self._fail(f"cannot read the store {self.path} ({_reason(e)})")
            return None
        if row is None:
            return None
        return Stored(key, kind, int(row[0]), str(row[1]), float(row[2]))

    def untake(self, keys: Iterable[int]) -> None:
        """Messages handed out that the network did not accept: unsent again, in order."""
        with self._lock:
            back = sorted((k for k in keys if k in self._inflight), reverse=True)
            for key in back:
                msg = self._inflight.pop(key)
                self._unsent[msg.kind].appendleft(key)

    def done(self, keys: Iterable[int]) -> list[Stored]:
        """The broker acknowledged these: they leave the store. Returns them."""
        with self._lock:
            gone = [self._inflight.pop(k) for k in keys if k in self._inflight]
            disk = [m.key for m in gone if m.key < MEM_BASE]
            for m in gone:
                self._mem.pop(m.key, None)
            if disk:
                if not self._acked:
                    self._acked_at = time.monotonic()
                self._acked.extend(disk)
            return gone

    def _flush_acked(self) -> None:
        if self._acked:
            keys, self._acked = self._acked, []
            self._delete(keys)

    def _delete(self, keys: list[int]) -> None:
        if self._db is None:
            self._undeleted.update(keys)
            return
        try:
            self._set_sync(self._db, "NORMAL")
            with _transaction(self._db):
                self._db.executemany("DELETE FROM messages WHERE id = ?", [(k,) for k in keys])
        except (sqlite3.Error, OSError) as e:
            self._undeleted.update(keys)
            self._fail(f"cannot write the store {self.path} ({_reason(e)})")

    # -- housekeeping ----------------------------------------------------------------------
    def maintain(self) -> None:
        """Retry a failed disk, delete what could not be deleted, give space back."""
        with self._lock:
            now = time.monotonic()
            if self._acked and (now - self._acked_at >= DELETE_AFTER_S or self._db is None):
                self._flush_acked()
            if self.path is not None and (self.failed or self._undeleted):
                if now >= self._retry_at:
                    self._retry_at = now + self._retry_s
                    self._recover()
                return
            if self._db is not None and now >= self._vacuum_at and not self.depth:
                self._vacuum_at = now + VACUUM_EVERY_S
                try:
                    free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
                    if free > VACUUM_FREE_PAGES:
                        self._db.execute("PRAGMA incremental_vacuum")
                        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error as e:
                    log.debug("store vacuum: %s", e)

    def _recover(self) -> None:
        """Try the disk again; on success, write what memory holds and forget the failure."""
        assert self.path is not None
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(
                    str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
                )
            except (sqlite3.Error, OSError) as e:
                log.debug("store still unusable: %s", e)
                return
            try:
                self._sync = ""
                self._init_schema(db)
            except (sqlite3.Error, OSError) as e:
                log.debug("store still unusable: %s", e)
                db.close()
                return
            self._db = db
        db = self._db
        moving = sorted(
            (m for m in self._mem.values() if m.key not in self._inflight), key=lambda m: m.key
        )
        renamed: dict[int, int] = {}
        try:
            self._set_sync(db, "FULL")
            with _transaction(db):
                for m in moving:
                    cur = db.execute(
                        "INSERT INTO messages (kind, seq, payload, created) VALUES (?, ?, ?, ?)",
                        (m.kind, m.seq, m.payload, m.created),
                    )
                    assert cur.lastrowid is not None
                    renamed[m.key] = int(cur.lastrowid)
                for kind, seq in self._seq.items():
                    db.execute(
                        "INSERT OR REPLACE INTO counters VALUES (?, ?)", (f"seq:{kind}", seq)
                    )
                db.execute("INSERT OR REPLACE INTO counters VALUES ('wall', ?)", (self._wall,))
                if self._undeleted:
                    db.executemany(
                        "DELETE FROM messages WHERE id = ?", [(k,) for k in self._undeleted]
                    )
        except (sqlite3.Error, OSError) as e:
            log.debug("store still unusable: %s", e)
            return
        self._undeleted.clear()
        for old in renamed:
            del self._mem[old]
        for kind in KINDS:
            self._unsent[kind] = deque(renamed.get(k, k) for k in self._unsent[kind])
        if self.failed:
            log.warning(
                "store %s writable again: %d message(s) kept in memory written to it",
                self.path,
                len(renamed),
            )
            self.counters["recovered"] += 1
        self.failed = ""

    def _fail(self, reason: str) -> None:
        self.counters["write_errors"] += 1
        if not self.failed:
            log.error(
                "%s; unsent messages are kept in memory (lost if the daemon stops), the disk is "
                "tried again every %.0f s; fix: make the state folder ([state] dir) writable, "
                "or free space on its disk",
                reason,
                self._retry_s,
            )
            self._retry_at = time.monotonic() + self._retry_s
        self.failed = reason
        if self._db is not None:
            # the connection may hold a half-done transaction; a fresh one is opened on retry,
            # and unsent messages on disk are read into memory now so that delivery goes on
            self._evacuate()

    def _evacuate(self) -> None:
        assert self._db is not None
        db, self._db = self._db, None
        try:
            for kind in KINDS:
                queue = self._unsent[kind]
                disk = [k for k in queue if k < MEM_BASE]
                rows: dict[int, Stored] = {}
                for chunk in _chunks(disk, 500):
                    marks = ",".join("?" * len(chunk))
                    for key, seq, payload, created in db.execute(
                        f"SELECT id, seq, payload, created FROM messages WHERE id IN ({marks})",
                        chunk,
                    ):
                        rows[int(key)] = Stored(self._mem_key(), kind, seq, payload, created)
                # messages on disk stay there (deleted later, or sent again by the next run);
                # memory copies under new keys keep delivery going now
                self._undeleted.update(rows)
                for s in rows.values():
                    self._mem[s.key] = s
                self._unsent[kind] = deque(
                    rows[k].key if k in rows else k for k in queue if k >= MEM_BASE or k in rows
                )
        except sqlite3.Error as e:
            log.error(
                "store %s unreadable (%s): unsent messages on disk wait for the next run",
                self.path,
                _reason(e),
            )
            for kind in KINDS:
                self._unsent[kind] = deque(k for k in self._unsent[kind] if k >= MEM_BASE)
        finally:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def _remember(self, msg: Stored) -> None:
        self._mem[msg.key] = msg
        self._unsent[msg.kind].append(msg.key)

    def _mem_key(self) -> int:
        self._next_mem += 1
        return self._next_mem

    # -- what the status shows -------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Messages not yet acknowledged by the broker (unsent and in flight)."""
        with self._lock:
            return sum(len(q) for q in self._unsent.values()) + len(self._inflight)

    def depth_of(self, kind: str) -> int:
        with self._lock:
            return len(self._unsent[kind]) + sum(
                1 for m in self._inflight.values() if m.kind == kind
            )

    def unsent(self, kind: str) -> int:
        with self._lock:
            return len(self._unsent[kind])

    @property
    def inflight(self) -> int:
        with self._lock:
            return len(self._inflight)

    def oldest_age_s(self) -> float:
        """Age of the oldest message not yet acknowledged (0 when none). Wall-clock based, so
        it is clamped at 0 when the clock was set back."""
        with self._lock:
            keys = [q[0] for q in self._unsent.values() if q] + list(self._inflight)
            if not keys:
                return 0.0
            oldest = min(keys)
            created: float | None = None
            if oldest in self._inflight:
                created = self._inflight[oldest].created
            elif oldest in self._mem:
                created = self._mem[oldest].created
            elif self._db is not None:
                try:
                    row = self._db.execute(
                        "SELECT created FROM messages WHERE id = ?", (oldest,)
                    ).fetchone()
                    created = None if row is None else float(row[0])
                except sqlite3.Error:
                    created = None
            if created is None:
                return 0.0
            return max(0.0, self._clock() - created)

    def last_seq(self, kind: str) -> int:
        with self._lock:
            return self._seq[kind]

    @property
    def wall_floor(self) -> float:
        """The latest ``ts`` (Unix s) of a message stored, by this run or a previous one: a live
        start whose wall clock is behind it (the clock was set back) can keep its alarm ids
        above those already issued."""
        with self._lock:
            return self._wall

    def file_bytes(self) -> int:
        """Size on disk of the store (database and its write-ahead log)."""
        if self.path is None:
            return 0
        total = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):
                total += Path(str(self.path) + suffix).stat().st_size
        return total

    def close(self) -> None:
        with self._lock:
            self._flush_acked()
            if self._db is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
                self._db = None


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e) or type(e).__name__


def _is_corrupt(e: sqlite3.DatabaseError) -> bool:
    text = str(e).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


def import_jsonl_outbox(store: Store, path: Path) -> int:
    """Alarm messages left by the JSON-lines outbox of earlier versions: stored (with a seq)
    and the file renamed ``*.imported``; returns how many. Lines cut short are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    except OSError as e:
        log.warning("%s: cannot read the old outbox (%s); its alarms are not sent", path, e)
        return 0
    n = 0
    for line in text.splitlines():
        try:
            body = json.loads(json.loads(line)["payload"])
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(body, dict):
            store.add("alarm", body)
            n += 1
    try:
        path.rename(path.with_name(path.name + ".imported"))
    except OSError as e:
        log.warning("%s: imported %d alarm(s) but cannot rename the file (%s)", path, n, e)
    if n:
        log.info("%s: %d alarm message(s) from the old outbox moved to the store", path, n)
    return n
