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
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Mapper, Session, make_transient_to_detached
from sqlalchemy.orm.attributes import NO_VALUE, instance_state
from sqlalchemy.orm.exc import StaleDataError


@dataclass
class _Plan:
    """How to write one mapped class."""

    mapper: Mapper
    columns: dict[str, object]  # attribute key -> Column (plain columns only)
    defaults: dict[str, object]  # attribute key -> scalar column default
    foreign: dict[str, tuple[str, str]]  # relationship key -> (foreign key attribute, related key attribute)
    version: str | None  # the version counter's attribute key
    insert: object


_PLANS: dict[type, _Plan] = {}
_UPDATES: dict[tuple, object] = {}  # (class, columns) -> UPDATE statement, built once


def register(cls, foreign: dict[str, tuple[str, str]] | None = None) -> None:
    """Let :func:`write_rows` write ``cls``; ``foreign`` maps its many-to-one relationships to
    (foreign key attribute, the related object's key attribute), e.g. ``{"work_item": ("work_item_id", "id")}``."""
    _PLANS[cls] = _plan(cls, foreign)


def insert_now(session: Session, objs: list) -> None:
    """INSERT these new objects of one registered class now (one statement), e.g. a row others point at."""
    _insert(session, _PLANS[type(objs[0])], objs)


def _plan(cls, foreign) -> _Plan:
    mapper = cls.__mapper__
    table = mapper.local_table
    columns = {prop.key: prop.columns[0] for prop in mapper.column_attrs if prop.columns[0].table is table}
    defaults = {key: col.default.arg for key, col in columns.items()
                if col.default is not None and col.default.is_scalar}
    version = None
    if mapper.version_id_col is not None:
        version = next(key for key, col in columns.items() if col is mapper.version_id_col)
    return _Plan(mapper, columns, defaults, dict(foreign or {}), version,
                 insert(table).returning(table.c.id, sort_by_parameter_order=True))


def write_rows(session: Session, order: Iterable[type], first: tuple[type, ...] = ()) -> None:
    """Write the pending new and changed objects of the registered classes: inserts class by class in
    ``order``, then updates, those of the ``first`` classes before any other.

    ``first`` fixes the order in which rows are locked: when every writer updates the (version
    checked) instance row before anything else, two transactions on one call queue on that row
    and the later one sees a stale version instead of deadlocking on the others.
    """
    new_by_class: dict[type, list] = {}
    for obj in session.new:
        if type(obj) in _PLANS:
            new_by_class.setdefault(type(obj), []).append(obj)
    dirty = sorted((obj for obj in session.dirty if type(obj) in _PLANS), key=lambda o: type(o) not in first)
    for cls in order:
        objs = new_by_class.get(cls)
        if objs:
            _insert(session, _PLANS[cls], objs)
    for obj in dirty:
        _update(session, _PLANS[type(obj)], obj)


def _resolve_foreign(plan: _Plan, obj, state) -> bool:
    """Copy the keys of related objects set through relationships; False if one is not written yet."""
    for rel, (fk, remote) in plan.foreign.items():
        related = state.dict.get(rel)
        if related is None:
            continue
        value = getattr(related, remote)
        if value is None:
            return False
        if state.dict.get(fk) != value:
            state.dict[fk] = value  # (the flush would copy it the same way)
            state.committed_state.setdefault(fk, None)
    return True


def _insert(session: Session, plan: _Plan, objs: list) -> None:
    ready, rows = [], []
    for obj in objs:
        state = instance_state(obj)
        if not _resolve_foreign(plan, obj, state):
            continue  # points at something the ORM has to insert first: left to the flush
        row = {}
        for key in plan.columns:
            if key == "id":
                continue
            value = state.dict.get(key)
            if value is None and key in plan.defaults:
                value = plan.defaults[key]
            row[key] = value
        ready.append(obj)
        rows.append(row)
    if not ready:
        return
    ids = session.connection().execute(plan.insert, rows).scalars().all()
    for obj, row, new_id in zip(ready, rows, ids, strict=True):
        session.expunge(obj)
        state = instance_state(obj)
        # every column gets its stored value, so nothing is left expired (a later read would query)
        state.dict.update(row)
        state.dict["id"] = new_id
        make_transient_to_detached(obj)
        session.add(obj)


def _update(session: Session, plan: _Plan, obj) -> None:
    state = instance_state(obj)
    changed = [key for key in state.committed_state if key not in plan.foreign]
    if any(key not in plan.columns for key in changed):
        return  # a change this writer does not know (a collection, an unmapped relationship): the flush
    if not _resolve_foreign(plan, obj, state):
        return
    # as the flush does, a column set to the value it already had is not written
    changed = [key for key, old in state.committed_state.items()
               if key in plan.columns and key != plan.version and (old is NO_VALUE or old != state.dict.get(key))]
    if not changed:
        state._commit_all(state.dict, session.identity_map)  # relationship-only noise, or nothing
        return
    table = plan.mapper.local_table
    values = {key: state.dict.get(key) for key in changed}
    params = {**values, "_id": state.dict["id"]}
    if plan.version is not None:
        seen = state.dict[plan.version]
        values[plan.version] = seen + 1
        params.update({plan.version: seen + 1, "_seen": seen})
    done = session.connection().execute(_update_statement(plan, tuple(values)), params)
    if done.rowcount != 1:
        raise StaleDataError(f"UPDATE of {table.name} {state.dict['id']} matched {done.rowcount} rows "
                             "(changed by someone else)")
    if plan.version is not None:
        state.dict[plan.version] = values[plan.version]
    # what the flush does after its UPDATE: the object is clean again
    state._commit_all(state.dict, session.identity_map)


def _update_statement(plan: _Plan, keys: tuple[str, ...]):
    statement = _UPDATES.get((plan.mapper.class_, keys))
    if statement is None:
        table = plan.mapper.local_table
        statement = update(table).where(table.c.id == bindparam("_id"))
        if plan.version is not None:
            statement = statement.where(plan.columns[plan.version] == bindparam("_seen"))
        statement = _UPDATES[(plan.mapper.class_, keys)] = statement.values({key: bindparam(key) for key in keys})
    return statement
