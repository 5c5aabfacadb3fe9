"""The scheduler's sweeps: APScheduler only triggers them; due work lives in indexed columns.

Issue-by-issue this grows (SLA clocks come next); today it fires the BPMN timer
events of instances whose ``next_wakeup_at`` has passed.  A sweep claims due
rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), handles each in its own small
transaction and is idempotent, so two schedulers never fire the same thing twice.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session

from .clock import Clock
from .definitions import SPEC_CACHE
from .models import ProcessInstance
from .runtime import ProcessRuntime
from .spiff import dump_state, load_state

log = logging.getLogger(__name__)


def fire_due_timers(session_factory: Callable[[], Session], clock: Clock, batch: int = 100) -> int:
    """Run BPMN timers that are due; returns how many instances were advanced."""
    fired = 0
    now = clock.now()
    with session_factory() as session:
        q = (select(ProcessInstance.id).where(ProcessInstance.status == "running",
                                              ProcessInstance.next_wakeup_at <= now)
             .order_by(ProcessInstance.next_wakeup_at).limit(batch))
        ids = list(session.scalars(q))
    for instance_id in ids:
        with session_factory() as session:
            q = select(ProcessInstance).where(ProcessInstance.id == instance_id,
                                              ProcessInstance.next_wakeup_at <= now)
            if session.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            instance = session.scalar(q)
            if instance is None:
                continue
            try:
                parsed = SPEC_CACHE.get(instance.definition)
                workflow = load_state(instance.state, parsed)
                workflow.refresh_timers()
                runtime = ProcessRuntime(session, clock)
                runtime._run(workflow)
                runtime._save(instance, workflow, parsed, open_items=runtime.open_items(instance),
                              closed_task=None, actor="scheduler", action=None)
                instance.state = dump_state(workflow)
                session.commit()
                fired += 1
            except Exception:  # noqa: BLE001 - one broken instance must not stop the sweep
                session.rollback()
                log.exception("timer sweep failed for instance %s", instance_id)
    return fired


def start_scheduler(session_factory, clock: Clock, interval_seconds: float) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="Asia/Shanghai")
    scheduler.add_job(fire_due_timers, "interval", seconds=interval_seconds, args=[session_factory, clock],
                      id="fire_due_timers", replace_existing=True, max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
