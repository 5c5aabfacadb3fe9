"""A new call's and instance's ids are taken before the filing runs (engine.ids): the filing's rows go out
together at its end, a number once given is never given again, and rows inserted any other way never
take an id already handed out."""
from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select, text

import engine.db
from engine.errors import ProcessError
from engine.ids import reserve
from engine.models import ProcessInstance, WorkItem
from engine.runtime import ProcessRuntime
from workflows.calls import file_call
from workflows.models import Call

from .helpers import District

CALL = {"category": "lift_install", "direct_to_street": True, "description": "加装电梯", "location": "东园二街1号"}


def _id_of(number: str) -> int:
    return int(number[-6:])


@contextmanager
def process_runs(fn):
    """Run ``fn(workflow)`` in place of the runtime's engine steps (ProcessRuntime._run, a staticmethod)."""
    original = ProcessRuntime.__dict__["_run"]
    ProcessRuntime._run = staticmethod(fn)
    try:
        yield
    finally:
        ProcessRuntime._run = original


def test_a_filing_writes_nothing_before_its_process_has_run(services, district: District):
    """The only write before the process runs is the id reservation; the call, its instance, work item, clock
    and audit rows all follow it, with no read in between (one batch: one round trip on PostgreSQL)."""
    seen: list[str] = []
    ran: list[int] = []
    event.listen(services.engine, "before_cursor_execute", lambda *args: seen.append(args[2].lstrip()[:60]))
    run = ProcessRuntime._run

    def spy(workflow):
        ran.append(len(seen))
        return run(workflow)

    with district.session() as s:
        ctx = district.ctx(s, "qingnian.grid")
        seen.clear()
        with process_runs(spy):
            call = file_call(ctx, dict(CALL))
        s.commit()
    writes = [i for i, sql in enumerate(seen) if sql.upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    reservation = [i for i, sql in enumerate(seen) if "engine_id_sequence" in sql or "nextval" in sql]
    assert len(reservation) == 1 and ran and reservation[0] < ran[0]
    later = [i for i in writes if i not in reservation]
    assert later and min(later) >= ran[0]  # nothing else written before the process ran
    assert later == list(range(min(later), max(later) + 1)), "\n".join(seen)  # together, no read in between
    tables = " ".join(seen[i] for i in later)
    for table in ("engine_process_instance", "engine_work_item", "engine_sla_clock", "call", "engine_audit_event"):
        assert f"INTO {table}" in tables or f'INTO "{table}"' in tables, table
    assert call.number.startswith("HY") and _id_of(call.number) == call.id
    assert district.call(call.number).instance_id == call.instance_id


@pytest.mark.parametrize("backend", ["sqlite"])
def test_another_writer_is_not_held_up_while_a_filing_runs_its_process(services, district: District, monkeypatch):
    """SQLite lets one transaction write at a time: a filing must not hold that lock while its process runs."""
    monkeypatch.setattr(engine.db, "WRITER_GATE_TIMEOUT", 0.5)
    other = engine.db.make_engine(str(services.engine.url))  # another process, in effect: its own gate handle
    wrote = []
    run = ProcessRuntime._run

    def meanwhile(workflow):
        with other.begin() as conn:  # fails with "database is locked" if the filing held the lock
            conn.execute(text("UPDATE app_user SET display_name = display_name WHERE username = 'admin'"))
        wrote.append(True)
        return run(workflow)

    try:
        with process_runs(meanwhile):
            number = district.file(**CALL)
    finally:
        other.dispose()
    assert wrote == [True]
    assert district.call(number).status == "triage"


def test_a_filing_that_fails_keeps_nothing_and_its_number_is_not_given_again(services, district: District):
    first = district.file(**CALL)

    def broken(workflow):
        raise ProcessError("the routing table is broken")

    with district.session() as s:
        ctx = district.ctx(s, "qingnian.grid")
        with process_runs(broken), pytest.raises(ProcessError):
            file_call(ctx, dict(CALL))
        s.rollback()
    with district.session() as s:  # nothing half-written
        assert s.scalar(select(func.count()).select_from(Call)) == 1
        assert s.scalar(select(func.count()).select_from(ProcessInstance)) == 1
        assert s.scalar(select(func.count()).select_from(WorkItem)) == 1
    second = district.file(**CALL)
    assert _id_of(second) == _id_of(first) + 2  # the failed filing's number stays unused, like a sequence's
    assert district.call(second).status == "triage"


def test_calls_inserted_through_the_orm_never_take_an_id_already_handed_out(services, district: District):
    """A child ticket (or any call the ORM inserts) gets its id from the same sequence as a filing, so a
    filing that took its id and has not written yet never collides with it."""
    first = district.file(**CALL)
    with district.session() as s:
        taken, = reserve(s, Call)  # a filing elsewhere has taken this id and not yet written its row
        s.commit()
    with district.session() as s:
        parent = s.scalar(select(Call).where(Call.number == first))
        child = Call(number=f"{first}-1", category_code=parent.category_code, description="子工单",
                     location=parent.location, urgency="normal", photos=[], reporter_id=parent.reporter_id,
                     community_code=parent.community_code, street_code=parent.street_code, status="dispatched",
                     level="district", parent_id=parent.id, department_code="power",
                     created_at=parent.created_at, updated_at=parent.created_at)
        s.add(child)
        s.commit()
        assert child.id not in (parent.id, taken)
    second = district.file(**CALL)
    assert _id_of(second) not in (_id_of(first), taken, child.id)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_sqlite_sequence_steps_over_rows_written_by_plain_sql(services, district: District):
    first = district.file(**CALL)
    with district.session() as s:
        s.execute(text("INSERT INTO call (id, number, category_code, description, location, urgency, photos, "
                       "reporter_id, community_code, street_code, status, level, handling_level, "
                       "suggested_assists, sla_class, problem_ticket, reopen_count, rework_count, created_at, "
                       "updated_at) SELECT 500, 'IMPORTED-500', category_code, description, location, urgency, "
                       "photos, reporter_id, community_code, street_code, status, level, handling_level, "
                       "suggested_assists, sla_class, problem_ticket, reopen_count, rework_count, created_at, "
                       "updated_at FROM call WHERE number = :n"), {"n": first})
        s.commit()
    assert _id_of(district.file(**CALL)) == 501
