"""Writing a step's rows with plain statements instead of the ORM's unit of work.

A step changes the same few rows every time: it closes work items, opens new
ones, stops and starts SLA clocks and updates its call.  The ORM's flush
works that out generically (history, dependency sort, one statement per row)
at several times the cost of the statements themselves; a profile put it at a
quarter of an action.  :func:`write_rows` writes those objects directly:

* new rows: one ``INSERT ... RETURNING id`` per table (multi-row), in foreign
  key order (work items before the clocks that point at them);
* changed rows: one ``UPDATE ... WHERE id = :id`` each with the changed
  columns, and for a versioned mapper (``version_id_col``) the version check
  and bump the ORM would do: no row matched raises ``StaleDataError`` as a
  flush does.

The objects end as the flush would leave them: persistent, clean, with their
ids.  Anything else pending (other classes, relationship changes it does not
know) is left to the ORM flush that follows.

The statements go to the driver directly (:class:`Batch`): SQLAlchemy
renders the table and column names, and each column type's own bind
processor converts the values, but the per-statement work of a Core
``execute`` (a third of an ``UPDATE``'s cost here) is skipped, and on
PostgreSQL a step's statements travel in one psycopg pipeline: one round
trip, not one per row.  The engine's ``before_cursor_execute`` and
``after_cursor_execute`` listeners still see every statement, and driver
errors come out as SQLAlchemy's exceptions (``IntegrityError``...), as from
``execute``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import NamedTuple

from sqlalchemy import Column, Table
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.orm.attributes import NO_VALUE, instance_state
from sqlalchemy.orm.exc import StaleDataError

from .db import pq_idle


@dataclass
class _Plan:
    """How to write one mapped class."""

    mapper: Mapper
    columns: dict[str, Column]  # attribute key -> Column (plain columns only)
    defaults: dict[str, object]  # attribute key -> scalar column default
    foreign: dict[str, tuple[str, str]]  # relationship key -> (foreign key attribute, related key attribute)
    version: str | None  # the version counter's attribute key
    key: tuple[str, ...]  # attributes that tell the new rows of one INSERT apart (their RETURNING is unordered)
    lookup: str | None = None  # a unique attribute that finds a row inserted earlier in the same batch
    reserved_ids: bool = False  # new rows come with their id (engine.ids); one without is left to the flush


_PLANS: dict[type, _Plan] = {}


def register(cls, foreign: dict[str, tuple[str, str]] | None = None, key: tuple[str, ...] = (),
             lookup: str | None = None, reserved_ids: bool = False) -> None:
    """Let :func:`write_rows` write ``cls``.

    ``foreign`` maps its many-to-one relationships to (foreign key attribute, the related object's key
    attribute), e.g. ``{"work_item": ("work_item_id", "id")}``.  ``key``: attributes whose values differ
    between any two rows inserted together (a unique column, or what makes one logically unique), so one
    multi-row ``INSERT ... RETURNING`` can hand each object its id; without it (or when two new rows share
    a key) each new row is its own ``INSERT``.  ``lookup``: a unique attribute (set before the insert)
    by which a row pointing at a new ``cls`` row of the same batch finds its id in SQL,
    ``(SELECT id FROM ... WHERE lookup = ...)``, instead of waiting for the ``RETURNING`` of the
    first statement: the batch then stays one round trip.  ``reserved_ids``: the class takes its ids
    from :mod:`engine.ids` before its rows are written; a new object without one is left to the ORM flush
    (whose hook gives it one).
    """
    mapper = cls.__mapper__
    table = mapper.local_table
    columns = {prop.key: prop.columns[0] for prop in mapper.column_attrs if prop.columns[0].table is table}
    defaults = {k: col.default.arg for k, col in columns.items() if col.default is not None and col.default.is_scalar}
    version = None
    if mapper.version_id_col is not None:
        version = next(k for k, col in columns.items() if col is mapper.version_id_col)
    _PLANS[cls] = _Plan(mapper, columns, defaults, dict(foreign or {}), version, tuple(key), lookup, reserved_ids)


# ---- statements to the driver ----------------------------------------------------------------------------

@dataclass
class _Sql:
    """One statement's text for one dialect, and how to turn values into its parameters."""

    text: str
    processors: list  # per placeholder: the column type's bind processor, or None


_SQL: dict[tuple, _Sql] = {}  # (dialect name, kind, table, columns, rows) -> statement, built once


def _processor(column: Column, dialect):
    return column.type.dialect_impl(dialect).bind_processor(dialect)


def _placeholder(dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


# A column's value may be a lookup of a row inserted earlier in the batch: (table, lookup column) stands for
# "(SELECT id FROM table WHERE lookup column = value)"; None for a plain value.
def _value_sql(dialect, lookup) -> str:
    mark = _placeholder(dialect)
    if lookup is None:
        return mark
    table, column = lookup
    quote = dialect.identifier_preparer.quote
    return (f"(SELECT {quote(table.c.id.name)} FROM {dialect.identifier_preparer.format_table(table)} "
            f"WHERE {quote(column.name)} = {mark})")


def _value_processor(column: Column, lookup, dialect):
    return _processor(column if lookup is None else lookup[1], dialect)


def _insert_sql(dialect, table, columns: tuple[Column, ...], rows: int, returning: tuple[Column, ...],
                lookups: tuple = ()) -> _Sql:
    lookups = lookups or (None,) * len(columns)
    cache_key = (dialect.name, "insert", table.name, tuple(c.name for c in columns), rows,
                 tuple(c.name for c in returning), tuple(lk and (lk[0].name, lk[1].name) for lk in lookups))
    sql = _SQL.get(cache_key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        one = "(" + ", ".join(_value_sql(dialect, lk) for lk in lookups) + ")"
        text = (f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
                f"({', '.join(quote(c.name) for c in columns)}) VALUES {', '.join([one] * rows)}")
        if returning:
            text += " RETURNING " + ", ".join(quote(c.name) for c in returning)
        sql = _SQL[cache_key] = _Sql(text, [_value_processor(c, lk, dialect)
                                            for c, lk in zip(columns, lookups, strict=True)] * rows)
    return sql


def _update_sql(dialect, table, columns: tuple[Column, ...], where: tuple[Column, ...],
                lookups: tuple = ()) -> _Sql:
    lookups = lookups or (None,) * len(columns)
    cache_key = (dialect.name, "update", table.name, tuple(c.name for c in columns), tuple(c.name for c in where),
                 tuple(lk and (lk[0].name, lk[1].name) for lk in lookups))
    sql = _SQL.get(cache_key)
    if sql is None:
        quote, mark = dialect.identifier_preparer.quote, _placeholder(dialect)
        pairs = list(zip(columns, lookups, strict=True))
        text = (f"UPDATE {dialect.identifier_preparer.format_table(table)} "
                f"SET {', '.join(f'{quote(c.name)} = {_value_sql(dialect, lk)}' for c, lk in pairs)} "
                f"WHERE {' AND '.join(f'{quote(c.name)} = {mark}' for c in where)}")
        sql = _SQL[cache_key] = _Sql(text, [*(_value_processor(c, lk, dialect) for c, lk in pairs),
                                            *(_processor(c, dialect) for c in where)])
    return sql


def _params(sql: _Sql, values: list) -> tuple:
    return tuple(value if proc is None or value is None else proc(value)
                 for proc, value in zip(sql.processors, values, strict=True))


@dataclass
class Batch:
    """Statements of one transaction sent together, each with what to do with its cursor afterwards.

    On PostgreSQL (psycopg) :meth:`run` sends them in one pipeline, one round trip for all; elsewhere
    they run one after the other.  Either way they run in the order they were added, each on its own
    cursor, and the callbacks run in that order once all have.
    """

    connection: Connection
    pending: list[tuple[str, object, bool, Callable | None]] = field(default_factory=list)
    inserting: set[int] = field(default_factory=set)  # id() of the objects whose INSERT is in this batch

    @classmethod
    def of(cls, session: Session) -> Batch:
        return cls(session.connection())

    @property
    def dialect(self):
        return self.connection.dialect

    def add(self, sql: _Sql | str, params, done: Callable | None = None, *, many: bool = False) -> None:
        self.pending.append((sql.text if isinstance(sql, _Sql) else sql, params, many, done))

    def run(self) -> None:
        pending, self.pending = self.pending, []
        if not pending:
            return
        conn = self.connection
        driver = conn.connection.driver_connection
        # psycopg 3: a pipeline, also for one statement when it opens the transaction (engine.db sends the
        # BEGIN just before the first write: in the pipeline, it costs no round trip of its own)
        pipelined = hasattr(driver, "pipeline") and (len(pending) > 1 or pq_idle(driver))
        listeners = conn.dispatch
        cursors = []
        statement, params = pending[0][0], pending[0][1]
        try:
            with driver.pipeline() if pipelined else nullcontext():
                for statement, params, many, done in pending:
                    cursor = driver.cursor()
                    for fn in listeners.before_cursor_execute:
                        statement, params = fn(conn, cursor, statement, params, None, many) or (statement, params)
                    if many:
                        cursor.executemany(statement, params)
                    else:
                        cursor.execute(statement, params)
                    if not pipelined:  # (SQLite: a RETURNING statement's rows are read before the next one)
                        self._finish(cursor, statement, params, many, done)
                    cursors.append(cursor)
            if pipelined:  # the pipeline has synced: every result is in
                for cursor, (statement, params, many, done) in zip(cursors, pending, strict=True):
                    self._finish(cursor, statement, params, many, done)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(statement, params, exc, conn.dialect.loaded_dbapi.Error,
                                      dialect=conn.dialect) from exc
        finally:
            for cursor in cursors:
                cursor.close()

    def _finish(self, cursor, statement, params, many, done) -> None:
        for fn in self.connection.dispatch.after_cursor_execute:
            fn(self.connection, cursor, statement, params, None, many)
        if done is not None:
            done(cursor)


def insert_plain_rows(batch: Batch, table, rows: list[dict]) -> None:
    """Queue plain rows (dicts of column name -> value, no id wanted back) for ``table``: one statement."""
    names = list(dict.fromkeys(name for row in rows for name in row))  # (rows may leave a column out)
    columns = tuple(table.c[name] for name in names)
    sql = _insert_sql(batch.dialect, table, columns, 1, ())
    params = [_params(sql, [row.get(name) for name in names]) for row in rows]
    if len(params) == 1:
        batch.add(sql, params[0])
    else:
        batch.add(sql, params, many=True)


# ---- the ORM objects ------------------------------------------------------------------------------------

def write_rows(session: Session, order: Iterable[type], first: tuple[type, ...] = (),
               then: Callable[[Batch], None] | None = None) -> None:
    """Write the pending new and changed objects of the registered classes: the changes of the ``first``
    classes, then the inserts class by class in ``order`` (then those of the other registered classes),
    then the other changes.

    ``first`` fixes the order in which rows are locked: when every writer updates the (version
    checked) instance row before anything else, two transactions on one call queue on that row
    and the later one sees a stale version instead of deadlocking on the others.  The statements go
    out together, except that rows pointing at a row inserted here wait for its id.  ``then(batch)``
    may add statements of its own to the last batch.
    """
    new_by_class: dict[type, list] = {}
    for obj in session.new:
        if type(obj) in _PLANS:
            new_by_class.setdefault(type(obj), []).append(obj)
    dirty = [obj for obj in session.dirty if type(obj) in _PLANS]
    batch = Batch.of(session)
    for obj in dirty:
        if type(obj) in first:
            _update(session, batch, _PLANS[type(obj)], obj)
    for cls in (*order, *(c for c in new_by_class if c not in order)):
        objs = new_by_class.get(cls)
        if objs:
            plan = _PLANS[cls]
            if batch.pending and _waiting(plan, objs, batch):
                batch.run()  # they point at rows of this batch: their ids first
            _insert(session, batch, plan, objs)
    later = [obj for obj in dirty if type(obj) not in first]
    if batch.pending and any(_waiting(_PLANS[type(obj)], [obj], batch) for obj in later):
        batch.run()
    for obj in later:
        _update(session, batch, _PLANS[type(obj)], obj)
    if then is not None:
        then(batch)
    batch.run()


def _waiting(plan: _Plan, objs: list, batch: Batch) -> bool:
    """Whether any of these objects points at an object that has no id yet, other than one whose INSERT is in
    ``batch`` and that can be found by its lookup attribute."""
    for obj in objs:
        state = instance_state(obj)
        for rel, (_fk, remote) in plan.foreign.items():
            related = state.dict.get(rel)
            if related is not None and getattr(related, remote) is None and _lookup(related, batch) is None:
                return True
    return False


class _Found(NamedTuple):
    """A foreign key found in SQL: ``related`` is a row inserted earlier in the batch, looked up by ``column``."""

    related: object
    table: Table
    column: Column
    value: object


def _lookup(related, batch: Batch) -> _Found | None:
    """How to find ``related``, a new row of this batch, in SQL (by its lookup attribute); else None."""
    if id(related) not in batch.inserting:
        return None
    plan = _PLANS.get(type(related))
    if plan is None or plan.lookup is None:
        return None
    value = instance_state(related).dict.get(plan.lookup)
    if value is None:
        return None
    return _Found(related, plan.mapper.local_table, plan.columns[plan.lookup], value)


def _resolve_foreign(plan: _Plan, obj, state, batch: Batch) -> dict[str, _Found] | None:
    """Copy the keys of related objects set through relationships.

    Returns the foreign keys to find in SQL (foreign key attribute -> :class:`_Found`) for related rows
    inserted earlier in ``batch``, or None if one is not written yet.
    """
    found = {}
    for rel, (fk, remote) in plan.foreign.items():
        related = state.dict.get(rel)
        if related is None:
            continue
        value = getattr(related, remote)
        if value is None:
            lookup = _lookup(related, batch)
            if lookup is None:
                return None
            found[fk] = lookup
            continue
        if state.dict.get(fk) != value:
            state.dict[fk] = value  # (the flush would copy it the same way)
            state.committed_state.setdefault(fk, None)
    return found


def _copy_found_ids(state, found: dict[str, _Found]) -> None:
    """After the statement: foreign keys found in SQL take the ids their rows got (inserted earlier in the batch)."""
    for fk, lookup in found.items():
        state.dict[fk] = lookup.related.id


def _insert(session: Session, batch: Batch, plan: _Plan, objs: list) -> None:
    ready, rows, found = [], [], []
    for obj in objs:
        state = instance_state(obj)
        if plan.reserved_ids and state.dict.get("id") is None:
            continue  # its id comes from engine.ids: the flush's hook takes one
        lookups = _resolve_foreign(plan, obj, state, batch)
        if lookups is None:
            continue  # points at something the ORM has to insert first: left to the flush
        row = {}
        for key in plan.columns:
            if key == "id" and not plan.reserved_ids:
                continue
            value = state.dict.get(key)
            if value is None and key in plan.defaults:
                value = plan.defaults[key]
            row[key] = value
        ready.append(obj)
        rows.append(row)
        found.append(lookups)
    if not ready:
        return
    table = plan.mapper.local_table
    keys = [k for k in plan.columns if k != "id" or plan.reserved_ids]
    columns = tuple(plan.columns[k] for k in keys)
    # rows that find a foreign key in SQL differ in their statement: one INSERT per kind of row
    kinds: dict[tuple, list] = {}
    for obj, row, lookups in zip(ready, rows, found, strict=True):
        kinds.setdefault(tuple(sorted(lookups)), []).append((obj, row, lookups))
    for kind, entries in kinds.items():
        first = entries[0][2]
        lookups = tuple((first[k].table, first[k].column) if k in first else None for k in keys) if kind else ()
        together = len(entries) == 1 or (plan.key and len({tuple(r[k] for k in plan.key) for _o, r, _l in entries})
                                          == len(entries))
        groups = [entries] if together else [[entry] for entry in entries]
        key_columns = tuple(plan.columns[k] for k in plan.key) if len(groups[0]) > 1 else ()
        for group in groups:
            sql = _insert_sql(batch.dialect, table, columns, len(group), (table.c.id, *key_columns), lookups)
            params = _params(sql, [found_[k].value if k in found_ else row[k]
                                   for _obj, row, found_ in group for k in keys])
            batch.add(sql, params, _inserted(session, plan, group))
            batch.inserting.update(id(obj) for obj, _row, _found in group)


def _inserted(session: Session, plan: _Plan, group: list):
    def done(cursor) -> None:
        returned = cursor.fetchall()
        if len(group) == 1:
            ids = [returned[0][0]]
        else:  # the rows come back in no promised order: match them by their key
            by_key = {tuple(r[1:]): r[0] for r in returned}
            ids = [by_key[tuple(row[k] for k in plan.key)] for _obj, row, _found in group]
        states = set()
        for (obj, row, found), new_id in zip(group, ids, strict=True):
            state = instance_state(obj)
            # every column gets its stored value, so nothing is left expired (a later read would query)
            state.dict.update(row)
            _copy_found_ids(state, found)
            state.dict["id"] = new_id
            states.add(state)
        # what the flush does after its INSERTs: pending -> persistent, in the identity map, clean, and
        # known to the transaction (a rollback makes them transient again)
        session._register_persistent(states)
    return done


def _update(session: Session, batch: Batch, plan: _Plan, obj) -> None:
    state = instance_state(obj)
    changed = [key for key in state.committed_state if key not in plan.foreign]
    if any(key not in plan.columns for key in changed):
        return  # a change this writer does not know (a collection, an unmapped relationship): the flush
    found = _resolve_foreign(plan, obj, state, batch)
    if found is None:
        return
    # as the flush does, a column set to the value it already had is not written
    changed = [key for key, old in state.committed_state.items()
               if key in plan.columns and key != plan.version and key not in found
               and (old is NO_VALUE or old != state.dict.get(key))]
    changed += list(found)  # foreign keys of rows inserted earlier in this batch: found in SQL
    if not changed:
        state._commit_all(state.dict, session.identity_map)  # relationship-only noise, or nothing
        return
    table = plan.mapper.local_table
    values = [found[key].value if key in found else state.dict.get(key) for key in changed]
    columns = [plan.columns[key] for key in changed]
    lookups = tuple((found[key].table, found[key].column) if key in found else None for key in changed) if found else ()
    where, where_values = [plan.columns["id"]], [state.dict["id"]]
    if plan.version is not None:
        seen = state.dict[plan.version]
        columns.append(plan.columns[plan.version])
        values.append(seen + 1)
        where.append(plan.columns[plan.version])
        where_values.append(seen)
        if lookups:
            lookups += (None,)
    sql = _update_sql(batch.dialect, table, tuple(columns), tuple(where), lookups)
    row_id = state.dict["id"]

    def done(cursor) -> None:
        if cursor.rowcount != 1:
            raise StaleDataError(f"UPDATE of {table.name} {row_id} matched {cursor.rowcount} rows "
                                 "(changed by someone else)")
        if plan.version is not None:
            state.dict[plan.version] = values[-1]
        _copy_found_ids(state, found)
        # what the flush does after its UPDATE: the object is clean again
        state._commit_all(state.dict, session.identity_map)

    batch.add(sql, _params(sql, values + where_values), done)
