"""Row ids taken before their rows are written.

A step writes its rows together at its end (:mod:`engine.writes`).  A new call and its process
instance are pointed at by the step's other rows (the call's number ``HY…{id}``, the work items,
the clocks), so their ids are wanted before the process runs.  Inserting the two rows first to
learn them would run the whole filing — the process, its routing table, the SLA plan — inside the
write transaction: on SQLite, which lets one transaction write at a time over all processes, that
held every other writer back for the three milliseconds of a filing.  So the ids are taken first:

* **PostgreSQL**: ``nextval`` of the tables' own sequences, the ones their INSERTs default to;
* **SQLite**: a sequence table, ``engine_id_sequence``, advanced by one statement in a short
  transaction of its own when the session has not written yet (so the long one that follows takes
  the write lock only for its batch), else inside the session's transaction.

Either way, like ``nextval``, an id once given is never given again: a filing that rolls back leaves
a gap in the numbers and nothing else.  On SQLite, every ORM INSERT of a class registered here takes
its id from the sequence too (:func:`use_reserved_ids`), so an id SQLite would pick by itself
(the highest + 1) can never be one already handed out and not yet written.  The sequence also
starts past the table's highest id, so rows inserted by other means (plain SQL) are stepped over.
"""
from __future__ import annotations

from sqlalchemy import Integer, String, Table, event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, Session, mapped_column

from .db import Base
from .writes import Batch


class IdSequence(Base):
    """SQLite only: the last id handed out per table (PostgreSQL has its own sequences)."""

    __tablename__ = "engine_id_sequence"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)  # the table's name
    last_id: Mapped[int] = mapped_column(Integer)


_SQL: dict[tuple, str] = {}  # (dialect, tables) -> the statement, built once


def _statement(dialect, tables: tuple[Table, ...]) -> str:
    key = (dialect.name, tuple(t.name for t in tables))
    sql = _SQL.get(key)
    if sql is None:
        fmt, quote = dialect.identifier_preparer.format_table, dialect.identifier_preparer.quote
        if dialect.name == "postgresql":
            sql = "SELECT " + ", ".join(
                f"nextval(pg_get_serial_sequence('{fmt(t)}', '{t.c.id.name}'))" for t in tables)
        else:
            seq = fmt(IdSequence.__table__)
            rows = ", ".join(f"('{t.name}', (SELECT coalesce(max({quote(t.c.id.name)}), 0) + 1 FROM {fmt(t)}))"
                             for t in tables)
            # the first use starts past the table's highest id; later ones step past it too
            sql = (f"INSERT INTO {seq} (name, last_id) VALUES {rows} "
                   f"ON CONFLICT (name) DO UPDATE SET last_id = max({seq}.last_id + 1, excluded.last_id) "
                   f"RETURNING name, last_id")
        _SQL[key] = sql
    return sql


def reserve_on(connection: Connection, *tables: Table) -> tuple[int, ...]:
    """One new id for each of ``tables`` (each table once), in one statement on ``connection``."""
    dialect = connection.dialect
    batch = Batch(connection)
    rows: list = []
    batch.add(_statement(dialect, tables), (), lambda cursor: rows.extend(cursor.fetchall()))
    if dialect.name == "postgresql":
        batch.run()
        return tuple(rows[0])
    dbapi = connection.connection.dbapi_connection
    standalone = not dbapi.in_transaction  # nothing written yet: a transaction of its own, over at once
    batch.run()
    if standalone:
        dbapi.commit()
    by_name = dict(rows)
    return tuple(by_name[t.name] for t in tables)


def reserve(session: Session, *classes) -> tuple[int, ...]:
    """One new id for each of the mapped ``classes`` (see the module's docstring)."""
    return reserve_on(session.connection(), *(cls.__table__ for cls in classes))


def use_reserved_ids(cls) -> None:
    """On SQLite, give every new ``cls`` row the ORM inserts (without an id) one from the sequence."""
    table = cls.__table__

    @event.listens_for(cls, "before_insert")
    def _take_id(_mapper, connection, target):
        if target.id is None and connection.dialect.name == "sqlite":
            target.id = reserve_on(connection, table)[0]
