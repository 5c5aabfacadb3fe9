"""Wiring the sweeps: BPMN timers and SLA clocks, delivered through the dispatch domain."""
from __future__ import annotations

from engine.scheduler import build_scheduler, fire_due_timers
from engine.sla import fire_due_clocks
from workflows.calls import make_sla_deliver

from .bootstrap import Services


def sweep_jobs(services: Services) -> dict:
    deliver = make_sla_deliver(services.clock, services.sla)
    return {
        "fire_due_sla_clocks": lambda: fire_due_clocks(services.session_factory, services.clock, deliver),
        "fire_due_timers": lambda: fire_due_timers(services.session_factory, services.clock),
    }


def sweep_once(services: Services) -> dict[str, int]:
    """Run every sweep once now (``huying sweep``, tests, simulations)."""
    return {name: job() for name, job in sweep_jobs(services).items()}


def start_scheduler(services: Services, *, blocking: bool = False):
    scheduler = build_scheduler(sweep_jobs(services), services.settings.scheduler_interval_seconds,
                                blocking=blocking)
    scheduler.start()
    return scheduler
