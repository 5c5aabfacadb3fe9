"""A step's rows written with plain statements (engine.writes): the same rows the ORM would write,
objects left as a flush leaves them, and the version checks still stop a lost update."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from engine.errors import StaleInstance
from engine.models import SlaClock, WorkItem
from workflows.calls import act_on_work_item

from .helpers import District


def _statements(services):
    seen = []
    event.listen(services.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_an_action_writes_its_rows_and_leaves_the_objects_loaded(services, district: District):
    number = district.file(direct_to_street=True, category="lift_install")
    triage = district.item(number, "xiagang.dispatcher")
    seen = _statements(services)
    with district.session() as s:
        out = act_on_work_item(district.ctx(s, "xiagang.dispatcher"), triage.id, "dispatch",
                               {"lead": "power", "assists": ["telecom"]})
        opened = out.opened
        assert all(wi.id is not None for wi in opened)
        s.commit()
        seen.clear()
        # everything about the new items, their instance and their clocks is in memory: no query
        rows = [(wi.id, wi.task_name, wi.owner_unit, wi.state, wi.due_at, wi.closed_at, wi.assignee, wi.instance_id,
                 wi.properties.get("sla_stage")) for wi in opened]
        assert seen == []
        assert out.item.state == "completed" and out.item.closed_by == "xiagang.dispatcher"
    assert sorted(r[2] for r in rows) == ["power", "telecom"]
    with district.session() as s:  # and the database holds exactly that
        for wi_id, task, owner, state, due_at, closed_at, assignee, instance_id, stage in rows:
            stored = s.get(WorkItem, wi_id)
            assert (stored.task_name, stored.owner_unit, stored.state, stored.due_at, stored.closed_at,
                    stored.assignee, stored.instance_id) == (task, owner, state, due_at, closed_at, assignee,
                                                             instance_id)
            clock = s.scalar(select(SlaClock).where(SlaClock.work_item_id == wi_id))
            assert clock is not None and clock.stage == stage and clock.due_at == due_at
            assert clock.state == "running" and clock.lock_version == 1
        stored = s.get(WorkItem, triage.id)
        assert (stored.state, stored.closed_by, stored.action, stored.assignee) == (
            "completed", "xiagang.dispatcher", "dispatch", "xiagang.dispatcher")
        triage_clock = s.scalar(select(SlaClock).where(SlaClock.work_item_id == triage.id))
        assert triage_clock.state == "stopped" and triage_clock.outcome == "met" and triage_clock.lock_version == 2


def test_a_clock_changed_meanwhile_makes_the_step_a_conflict(services, district: District):
    number = district.file(direct_to_street=True, category="lift_install")
    triage = district.item(number, "xiagang.dispatcher")
    with district.session() as s:
        ctx = district.ctx(s, "xiagang.dispatcher")
        clock = s.scalar(select(SlaClock).where(SlaClock.work_item_id == triage.id))
        assert clock.lock_version == 1
        with district.session() as other:  # e.g. the scheduler fires its warning in between
            theirs = other.get(SlaClock, clock.id)
            theirs.attempts += 1
            other.commit()
        with pytest.raises(StaleInstance):
            act_on_work_item(ctx, triage.id, "dispatch", {"lead": "power", "assists": []})
        s.rollback()
    # nothing of the step was kept
    assert [wi.task_name for wi in district.items(number)] == ["street_triage"]


def test_a_steps_rows_go_out_in_one_batch_even_those_pointing_at_new_rows(services, district: District, monkeypatch):
    """New clocks point at work items inserted by the same step: they find them in SQL (by task id) instead of
    waiting for the items' ids, so the step's writes stay one batch (one round trip on PostgreSQL)."""
    from engine import writes

    number = district.file(direct_to_street=True, category="lift_install")
    triage = district.item(number, "xiagang.dispatcher")
    runs = []
    run = writes.Batch.run
    monkeypatch.setattr(writes.Batch, "run", lambda self: (runs.append(len(self.pending)), run(self))[1])
    with district.session() as s:
        out = act_on_work_item(district.ctx(s, "xiagang.dispatcher"), triage.id, "dispatch",
                               {"lead": "power", "assists": ["telecom", "police"]})
        clocks = {c.work_item_id: c for c in s.identity_map.values() if isinstance(c, SlaClock)}
        opened = {wi.id: wi for wi in out.opened}
        s.commit()
    assert [n for n in runs if n] == [max(runs)] and max(runs) >= 5, runs  # one batch with every statement
    assert len(opened) == 3 and set(opened) <= set(clocks)  # each new clock holds its new item's id
    with district.session() as s:
        for wi_id in opened:
            assert s.scalar(select(SlaClock.stage).where(SlaClock.work_item_id == wi_id)) == "sign"
