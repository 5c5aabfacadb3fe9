"""Optimistic concurrency: two people acting at once never lose or double an update."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from engine.errors import Conflict, StaleInstance
from engine.models import AuditEvent, WorkItem
from workflows.calls import act_on_work_item
from workflows.context import ServiceContext
from workflows.org import get_user
from workflows.transactions import run_in_transaction


def _race(services, jobs):
    """Run ``jobs`` (callables taking a session) at the same moment, each in its own transaction.

    Each job has read everything it needs before the barrier, so both decide on
    the same version of the instance; only the writes race.
    """
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)

    def worker(i, job):
        session = services.session_factory()
        try:
            prepared = job(session)  # reads: user, work item, instance (all cached in the session)
            barrier.wait(timeout=10)
            results[i] = prepared()
            session.commit()
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            session.rollback()
            results[i] = exc
        finally:
            session.close()

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def _prepare(services, username, item_id, action, data):
    def job(session):
        ctx = ServiceContext(session, services.clock, get_user(session, username), sla=services.sla)
        item = session.get(WorkItem, item_id)
        assert item.instance.state  # load the instance now, before the race
        # the closure keeps them: a session holds clean objects only weakly, and without a reference the
        # action would read the row again, after the other thread's commit (a plain "already completed")
        return lambda: (item, act_on_work_item(ctx, item_id, action, data))[1]
    return job


@pytest.mark.parametrize("round_", range(3))
def test_two_dispatchers_completing_the_same_item_at_once_exactly_one_wins(district, services, round_):
    no = district.file("qingnian.grid", category="road_flooding")
    [item] = district.items(no)
    results = _race(services, [
        _prepare(services, "xiagang.dispatcher", item.id, "dispatch", {"lead": "water"}),
        _prepare(services, "xiagang.dispatcher", item.id, "dispatch", {"lead": "urban"}),
    ])
    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert len(wins) == 1 and len(losses) == 1, results
    # both decided on the same version: the loser's write found the version moved on
    assert isinstance(losses[0], StaleInstance), repr(losses[0])
    assert isinstance(losses[0], Conflict) and "someone else" in losses[0].message
    # nothing lost, nothing doubled: one dispatch, one sign item for the winner's department
    winner = wins[0].opened[0].owner_unit
    assert district.open_tasks(no) == [("sign", winner)]
    with services.session_factory() as s:
        dispatches = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.subject == no, AuditEvent.action == "street_triage.dispatch"))
        assert dispatches == 1


def test_two_departments_signing_at_once_both_succeed_with_a_retry(district, services):
    no = district.file("qingnian.grid", category="road_flooding")
    district.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water", "assists": ["transport"]})
    items = {wi.owner_unit: wi.id for wi in district.items(no)}
    barrier = threading.Barrier(2)
    errors = []

    def sign(dept):
        def action(session):
            ctx = ServiceContext(session, services.clock, get_user(session, f"{dept}.staff"), sla=services.sla)
            session.get(WorkItem, items[dept]).instance.state  # noqa: B018 - read before the race
            if not getattr(barrier, "passed_" + dept, False):
                setattr(barrier, "passed_" + dept, True)
                barrier.wait(timeout=10)
            return act_on_work_item(ctx, items[dept], "sign", {})
        try:
            run_in_transaction(services.session_factory, action)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=sign, args=(d,)) for d in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert district.open_tasks(no) == [("resolve", "transport"), ("resolve", "water")]
