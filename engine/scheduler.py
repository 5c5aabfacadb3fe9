"""The scheduler: APScheduler only triggers sweeps; due work lives in indexed columns.

Sweeps claim due rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), handle each
in its own small transaction and are idempotent, so several scheduler
processes never fire the same thing twice and a restarted one catches up.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session

from .clock import Clock
from .definitions import SPEC_CACHE
from .models import ProcessInstance
from .runtime import ProcessRuntime
from .spiff import load_state

log = logging.getLogger(__name__)


def fire_due_timers(session_factory: Callable[[], Session], clock: Clock, batch: int = 100) -> int:
    """Run BPMN timer events that are due (``next_wakeup_at``); returns how many instances advanced."""
    fired = 0
    now = clock.now()
    with session_factory() as session:
        ids = list(session.scalars(select(ProcessInstance.id).where(
            ProcessInstance.status == "running", ProcessInstance.next_wakeup_at <= now)
            .order_by(ProcessInstance.next_wakeup_at).limit(batch)))
    for instance_id in ids:
        with session_factory() as session:
            q = select(ProcessInstance).where(ProcessInstance.id == instance_id, ProcessInstance.next_wakeup_at <= now)
            if session.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            instance = session.scalar(q)
            if instance is None:
                continue
            try:
                runtime = ProcessRuntime(session, clock)
                parsed = SPEC_CACHE.get(instance.definition)
                workflow = load_state(instance.state, parsed)
                workflow.refresh_timers()
                runtime._run(workflow)
                runtime._save(instance, workflow, parsed, open_items=runtime.open_items(instance),
                              closed_task=None, actor="scheduler", action=None)
                session.commit()
                fired += 1
            except Exception:  # noqa: BLE001 - one broken instance must not stop the sweep
                session.rollback()
                log.exception("timer sweep failed for instance %s", instance_id)
    return fired


def _guarded(job: Callable[[], object], name: str) -> Callable[[], None]:
    def run():
        try:
            job()
        except Exception:  # noqa: BLE001 - a failing sweep is logged and tried again next interval
            log.exception("scheduler job %s failed", name)
    return run


def build_scheduler(jobs: dict[str, Callable[[], object]], interval_seconds: float, *,
                    blocking: bool = False):
    """An APScheduler with one interval job per sweep (in-memory job store: never shared)."""
    scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone="Asia/Shanghai")
    for name, job in jobs.items():
        scheduler.add_job(_guarded(job, name), "interval", seconds=interval_seconds, id=name,
                          replace_existing=True, max_instances=1, coalesce=True)
    return scheduler
