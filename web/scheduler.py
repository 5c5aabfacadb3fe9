"""Wiring the sweeps: BPMN timers and SLA clocks, delivered through the dispatch domain; webhooks.

Besides the regular interval sweep, the SLA sweep looks at the earliest pending
deadline after every run and, with the wall clock, books a one-off run for that
exact moment when it falls before the next regular sweep: a breach then fires
within milliseconds of its deadline instead of up to one interval late.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select

from engine.models import SlaClock
from engine.scheduler import build_scheduler, fire_due_timers
from engine.sla import fire_due_clocks
from workflows.calls import make_sla_deliver
from workflows.webhooks import deliver_due

from .bootstrap import Services

log = logging.getLogger(__name__)


DEADLINE_JOB = "fire_sla_clock_at_deadline"


def next_sla_deadline(services: Services):
    with services.session_factory() as session:
        return session.scalar(select(func.min(SlaClock.next_fire_at)))


def sweep_jobs(services: Services) -> dict:
    deliver = make_sla_deliver(services.clock, services.sla)
    return {
        "fire_due_sla_clocks": lambda: fire_due_clocks(services.session_factory, services.clock, deliver),
        "fire_due_timers": lambda: fire_due_timers(services.session_factory, services.clock),
        # last, so that what the sweeps above announced goes out in the same sweep_once
        "deliver_webhooks": lambda: deliver_due(services.session_factory, services.clock),
    }


def sweep_once(services: Services) -> dict[str, int]:
    """Run every sweep once now (``huying sweep``, tests, simulations)."""
    return {name: job() for name, job in sweep_jobs(services).items()}


def start_scheduler(services: Services, *, blocking: bool = False):
    jobs = sweep_jobs(services)
    interval = services.settings.scheduler_interval_seconds
    precise = not getattr(services.clock, "virtual", False)
    sla_job = jobs["fire_due_sla_clocks"]
    holder: dict = {}

    def fire_sla_clocks():
        started = services.clock.now()
        fired = sla_job()
        if precise and "scheduler" in holder:
            _book_next_deadline(holder["scheduler"], fire_sla_clocks, services, interval, started)
        return fired

    jobs["fire_due_sla_clocks"] = fire_sla_clocks
    scheduler = build_scheduler(jobs, interval, blocking=blocking)
    holder["scheduler"] = scheduler
    scheduler.start()
    return scheduler


def _book_next_deadline(scheduler, job, services: Services, interval: float, swept_at=None) -> None:
    """Book a one-off sweep at the next deadline if it comes before the next regular sweep.

    ``swept_at``: when the sweep that just ran started; a deadline that was due by then and is
    still there could not be claimed (another transaction holds it), so it waits at least 0.5 s.
    """
    try:
        due = next_sla_deadline(services)
    except Exception:  # noqa: BLE001 - the regular sweep still runs
        log.exception("could not read the next SLA deadline")
        return
    if due is None:
        return
    now = services.clock.now()
    if due - now < timedelta(seconds=interval):
        # a fresh id per booking: the booking is made from inside a running sweep, and a job
        # cannot start while another run of the same job id is still going (max_instances=1)
        job_id = f"{DEADLINE_JOB}:{due.isoformat()}"
        if scheduler.get_job(job_id) is None:
            # a clock that was already due when the sweep started, and is still due, is held by another
            # transaction: not sooner than 0.5 s, or it would be re-booked "now" after every sweep, spinning
            held = swept_at is None or due <= swept_at
            run_at = max(due, now + timedelta(seconds=0.5)) if held else due
            scheduler.add_job(job, "date", run_date=run_at, id=job_id,
                              misfire_grace_time=60,
                              max_instances=2)
