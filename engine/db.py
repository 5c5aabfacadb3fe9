"""Database plumbing: the declarative base, a UTC datetime type, engine/session factories."""
from __future__ import annotations

import fcntl
import logging
import os
import re
import select
import sqlite3
import threading
import time
import weakref
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Stores UTC (naive on SQLite, timestamptz on PostgreSQL); always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# A request's commit checkpoints the write-ahead log only if the background checkpointer has fallen
# this far behind (pages; SQLite's default is 1000, which made every ~40th commit wait for an fsync).
WAL_AUTOCHECKPOINT_PAGES = 10_000
WAL_CHECKPOINT_INTERVAL = 1.0  # seconds between the background checkpointer's runs
WRITER_GATE_TIMEOUT = 10.0  # seconds a write waits for another transaction's, as SQLite's busy timeout


def _sqlite_pragmas(dbapi_connection, _record):
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cur.close()


class WalCheckpointer:
    """Copies an SQLite database's write-ahead log back into the database from a background thread.

    With ``synchronous=NORMAL`` a commit only appends to the log; the fsync comes with
    the checkpoint, which SQLite otherwise runs inside whichever commit crosses the
    threshold: that request waits for the disk.  Here a daemon thread of the process
    runs a PASSIVE checkpoint (it never blocks readers or writers) every ``interval``
    seconds, or at once when :meth:`kick` asks.  It starts with the engine's first
    connection and stops when the engine is garbage-collected or :meth:`stop` is called.
    """

    def __init__(self, path: str, interval: float | None = None):
        self.path = path
        self.interval = WAL_CHECKPOINT_INTERVAL if interval is None else interval
        self.checkpoints = 0  # completed runs
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self, *_args) -> None:
        with self._start_lock:
            if self._thread is None and not self._stopped.is_set():
                self._thread = threading.Thread(target=self._run, name="huying-wal-checkpoint", daemon=True)
                self._thread.start()

    def kick(self, timeout: float = 10.0) -> bool:
        """Checkpoint now and wait for it (True when one completed within ``timeout``)."""
        self.start()
        with self._done:
            seen = self.checkpoints
            self._wake.set()
            return self._done.wait_for(lambda: self.checkpoints > seen, timeout)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        try:
            while not self._stopped.is_set():
                self._wake.wait(self.interval)
                self._wake.clear()
                if self._stopped.is_set():
                    break
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. the file was removed: try again later
                    log.debug("WAL checkpoint of %s failed: %s", self.path, exc)
                with self._done:
                    self.checkpoints += 1
                    self._done.notify_all()
        finally:
            conn.close()


_CHECKPOINTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> its WalCheckpointer


class WriterGate:
    """One writing transaction at a time on an SQLite file, over all processes and threads using it.

    SQLite lets one transaction write at a time; a second writer's statement gets
    SQLITE_BUSY and its busy handler sleeps 1, 2, 5, 10... ms between tries,
    whatever the first holds the lock for (about a millisecond for a step here).
    Two processes acting at once lost a tenth of their time so.  The gate is a
    lock file taken (``flock``) just before a transaction's first write and given
    back when it commits or rolls back, so the writers queue and the next one
    goes on within a fraction of a millisecond.  It waits at most
    ``timeout`` seconds, like SQLite's busy timeout, then fails as SQLite would.
    The gate is opened per process (a lock file inherited through ``fork`` would
    be shared, not exclusive).
    """

    def __init__(self, path: str, timeout: float | None = None):
        self.path = f"{path}-writer.lock"
        self.timeout = WRITER_GATE_TIMEOUT if timeout is None else timeout
        self._threads = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._pid = os.getpid()
        return self._fd

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout
        if not self._threads.acquire(timeout=self.timeout):
            raise sqlite3.OperationalError("database is locked (writer gate)")
        try:
            fd, pause = self._file(), 0.0001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise sqlite3.OperationalError("database is locked (writer gate)") from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.001)
        except BaseException:
            self._threads.release()
            raise

    def release(self) -> None:
        fcntl.flock(self._file(), fcntl.LOCK_UN)
        self._threads.release()


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class _GatedCursor(sqlite3.Cursor):
    def execute(self, sql, parameters=()):
        self.connection._enter_write(sql)
        return super().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters):
        self.connection._enter_write(sql)
        return super().executemany(sql, seq_of_parameters)


class GatedConnection(sqlite3.Connection):
    """An SQLite connection that passes its :class:`WriterGate` before its first write of a transaction.

    (Python's ``sqlite3`` opens the transaction itself just before the first
    INSERT/UPDATE/DELETE/REPLACE, so that is where the gate is taken.)
    """

    gate: WriterGate | None = None
    holding = False

    def cursor(self, factory=_GatedCursor):
        return super().cursor(factory)

    def execute(self, sql, parameters=()):
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql, seq_of_parameters):
        return self.cursor().executemany(sql, seq_of_parameters)

    def _enter_write(self, sql: str) -> None:
        if self.gate is not None and not self.holding and not self.in_transaction \
                and sql.lstrip()[:7].upper().startswith(_WRITES):
            self.gate.acquire()
            self.holding = True

    def _leave(self) -> None:
        if self.holding:
            self.holding = False
            self.gate.release()

    def commit(self):
        try:
            super().commit()
        finally:
            if not self.in_transaction:
                self._leave()

    def rollback(self):
        try:
            super().rollback()
        finally:
            self._leave()

    def close(self):
        try:
            super().close()
        finally:
            self._leave()


def wal_checkpointer(engine: Engine) -> WalCheckpointer | None:
    return _CHECKPOINTERS.get(engine)


def make_engine(url: str, **kwargs) -> Engine:
    """Create an SQLAlchemy engine; SQLite gets WAL, foreign keys, a busy timeout and, for a file
    database, a background checkpointer (:func:`wal_checkpointer`)."""
    if url.startswith("sqlite"):
        path = make_url(url).database
        on_file = bool(path) and path != ":memory:" and not path.startswith("file:")
        connect_args = {"timeout": 10, "check_same_thread": False}
        if on_file:
            connect_args["factory"] = GatedConnection
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        if on_file:
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
            gate = WriterGate(str(Path(path).resolve()))

            @event.listens_for(engine, "connect")
            def _use_gate(dbapi_connection, _record):
                dbapi_connection.gate = gate

            checkpointer = WalCheckpointer(path)
            _CHECKPOINTERS[engine] = checkpointer
            event.listen(engine, "connect", checkpointer.start)
            weakref.finalize(engine, checkpointer.stop)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    deferred = make_url(url).get_backend_name() == "postgresql" and "isolation_level" not in kwargs
    if deferred:
        kwargs["isolation_level"] = "AUTOCOMMIT"
    engine = create_engine(url, **kwargs)
    if deferred:
        event.listen(engine, "before_cursor_execute", _begin_before_writes)
    if not kwargs.get("pool_pre_ping"):
        event.listen(engine, "checkout", _discard_if_closed_by_server)
    return engine


# ---- PostgreSQL: BEGIN only when a transaction needs one -----------------------------------------------
# psycopg opens every transaction with a BEGIN of its own, one round trip before the first statement
# (a tenth of a request's time here), even for a request that only reads.  Under READ COMMITTED,
# PostgreSQL's default, each statement sees the data committed when it starts, inside a transaction or
# not; a transaction adds only that its writes and locks stand or fall together.  So connections run in
# autocommit mode, and the transaction is opened just before the first statement that needs one: anything
# but a plain SELECT (writes, DDL, SAVEPOINT, SET LOCAL...) or a SELECT that locks rows (FOR UPDATE /
# FOR SHARE).  A request that only reads never opens one (its COMMIT is then no round trip either), and
# :class:`engine.writes.Batch` sends the BEGIN in the same pipeline as the step's writes.  From the BEGIN
# to the COMMIT or ROLLBACK that SQLAlchemy sends as usual, everything runs in the one transaction.
# A SELECT that changes data through a function it calls would run on its own: this code has none.
_LOCKING = re.compile(r"\bFOR\s+(?:NO\s+KEY\s+)?(?:UPDATE|SHARE|KEY\s+SHARE)\b")
_PQ_IDLE = 0  # libpq PQTRANS_IDLE: no transaction open


@lru_cache(maxsize=4096)
def needs_transaction(statement: str) -> bool:
    """Whether ``statement`` must run inside a transaction (not a plain, non-locking SELECT)."""
    head = statement.lstrip(" \t\r\n(").upper()
    return not head.startswith("SELECT") or _LOCKING.search(head) is not None


def pq_idle(dbapi_connection) -> bool:
    """Whether no transaction is open on this psycopg connection."""
    return dbapi_connection.pgconn.transaction_status == _PQ_IDLE


def _begin_before_writes(_conn, cursor, statement, _parameters, _context, _executemany) -> None:
    driver = cursor.connection
    if pq_idle(driver) and needs_transaction(statement):
        driver.execute(b"BEGIN")


def _discard_if_closed_by_server(dbapi_connection, _record, _proxy) -> None:
    """On checkout, throw away a pooled connection the server has closed, without a round trip.

    When PostgreSQL ends a session (restart, ``pg_terminate_backend``, an idle
    timeout) it sends a FATAL notice and closes the socket, so an idle
    connection that has anything to read is dead.  Checking that costs a
    ``select()`` on the socket, where ``pool_pre_ping`` costs a ``SELECT 1``
    round trip on every checkout (0.3-1 ms here, a tenth of an action).  The
    pool then connects afresh (it retries a checkout that raises this).
    A connection that silently vanished (a network cut without a reset) is
    not detected by either before its first statement fails.
    """
    if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
        raise DisconnectionError("the connection is closed")
    try:
        readable, _w, _x = select.select([dbapi_connection.fileno()], [], [], 0)
    except (OSError, ValueError) as exc:  # no socket any more
        raise DisconnectionError(str(exc)) from exc
    if readable:
        raise DisconnectionError("the server closed the connection")


def make_session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


def utcnow() -> datetime:
    return datetime.now(UTC)


class DriverSelect:
    """A fixed SELECT run on the session's connection by the driver's own cursor.

    ``Session.execute`` of even a plain column select costs ~0.1 ms of SQLAlchemy's own work
    before and after the statement (three times what SQLite needs to run it), and
    ``exec_driver_sql`` rebuilds its result's column metadata on every call (~0.25 ms for 70
    columns).  A statement run on every request can skip both: it is compiled once per
    dialect; each column's type still converts its values (e.g. :class:`UTCDateTime`, JSON,
    booleans on SQLite), the engine's cursor listeners still see the statement, and a driver
    error comes out as SQLAlchemy's exception, as from ``execute``.
    """

    def __init__(self, statement):
        self.statement = statement
        self._compiled: dict[str, tuple] = {}
        self._processors: dict[str, list] = {}

    def _for(self, dialect):
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            c = self.statement.compile(dialect=dialect)
            compiled = self._compiled[dialect.name] = (str(c), c.positiontup, dict(c.params))
        return compiled

    def _rows(self, session, params: dict, one: bool) -> list[tuple]:
        connection = session.connection()
        dialect = connection.dialect
        statement, positions, defaults = self._for(dialect)
        values = {**defaults, **params}
        args = tuple(values[name] for name in positions) if positions is not None else values
        listeners = connection.dispatch
        cursor = connection.connection.driver_connection.cursor()
        try:
            for fn in listeners.before_cursor_execute:
                statement, args = fn(connection, cursor, statement, args, None, False) or (statement, args)
            cursor.execute(statement, args)
            found = cursor.fetchmany(1) if one else cursor.fetchall()
            for fn in listeners.after_cursor_execute:
                fn(connection, cursor, statement, args, None, False)
            processors = self._processors.get(dialect.name)
            if processors is None:  # (some need the driver's type code of the column, e.g. PostgreSQL's floats)
                processors = self._processors[dialect.name] = [
                    col.type.dialect_impl(dialect).result_processor(dialect, desc[1])
                    for col, desc in zip(self.statement.selected_columns, cursor.description, strict=True)]
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(statement, args, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
        finally:
            cursor.close()
        return [tuple(value if proc is None or value is None else proc(value)
                      for proc, value in zip(processors, row, strict=True)) for row in found]

    def first(self, session, **params) -> tuple | None:
        """The first row (its values converted by the column types), or None."""
        rows = self._rows(session, params, one=True)
        return rows[0] if rows else None

    def all(self, session, **params) -> list[tuple]:
        """Every row (values converted by the column types)."""
        return self._rows(session, params, one=False)


def loaded_columns(cls) -> tuple[str, ...]:
    """The attribute keys of ``cls``'s columns that a query loads (not the deferred ones), in mapper order."""
    return tuple(prop.key for prop in cls.__mapper__.column_attrs if not prop.deferred)


def held(session, cls, row_id):
    """The session's object of ``cls`` row ``row_id`` if it has one (then it is the current one here), else None."""
    return session.identity_map.get(cls.__mapper__.identity_key_from_primary_key((row_id,)))


def attach(session, cls, values: dict, **related):
    """The row of these committed column values as a persistent, clean object of ``session``, without SQL.

    What a query would give, for a row read by other means (a :class:`DriverSelect`, a cache):
    columns left out of ``values`` load when first used, as deferred columns do; ``related`` sets
    many-to-one relationships as loaded (to objects already in the session).  If the session
    already holds the row's object, that one is returned untouched, as a query would: it is the
    current one in this transaction.
    """
    existing = held(session, cls, values["id"])
    if existing is not None:
        return existing
    obj = cls.__mapper__.class_manager.new_instance()
    state = instance_state(obj)
    state.dict.update(values)
    if related:
        state.dict.update(related)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj
