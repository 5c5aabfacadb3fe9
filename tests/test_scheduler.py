"""Schedulers as separate processes: every event fires exactly once; the standalone scheduler runs."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from engine.models import AuditEvent, SlaEvent

BIN = Path(sys.executable).parent


def _env(db_url):
    env = {**os.environ, "HUYING_DATABASE_URL": db_url, "HUYING_CLOCK": "virtual"}
    env.pop("HUYING_TEST_DATABASE_URL", None)
    return env


def test_two_scheduler_processes_fire_every_breach_exactly_once(district, db_url):
    d = district
    calls = [d.file("qingnian.grid", category="road_flooding") for _ in range(60)]
    env = _env(db_url)
    huying = str(BIN / "huying")
    subprocess.run([huying, "clock", "set", "2026-10-12T12:00"], env=env, check=True, capture_output=True)
    procs = [subprocess.Popen([huying, "sweep", "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    import json
    fired = [json.loads(o[0])["fire_due_sla_clocks"] for o in outs]
    print("fired per scheduler:", fired)
    assert sum(fired) == 2 * len(calls)
    with d.session() as s:
        events = Counter((e.subject, e.kind) for e in s.scalars(select(SlaEvent)))
        breaches = Counter(a.subject for a in s.scalars(select(AuditEvent).where(AuditEvent.action == "event.sla_breach")))
    assert events == Counter({(no, kind): 1 for no in calls for kind in ("warning", "urge")})
    assert breaches == Counter({no: 1 for no in calls})


def test_the_standalone_scheduler_fires_what_becomes_due(district, db_url):
    d = district
    no = d.file("qingnian.grid", category="road_flooding")
    env = {**_env(db_url), "HUYING_SCHEDULER_INTERVAL_SECONDS": "0.2"}
    huying = str(BIN / "huying")
    sched = subprocess.Popen([huying, "scheduler"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        subprocess.run([huying, "clock", "set", "2026-10-12T11:00:05"], env=env, check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(d.sla_events(no)) < 2:
            time.sleep(0.1)  # waiting for another process, not for a timer: the clock was moved explicitly
        assert d.sla_events(no) == [("warning", "triage", "xiagang"), ("urge", "triage", "xiagang")]
    finally:
        sched.terminate()
        sched.wait(timeout=10)
        sched.stdout.close()


def test_a_deadline_before_the_next_regular_sweep_gets_a_sweep_of_its_own(district, services):
    """With the wall clock the scheduler books a one-off sweep at the exact deadline (late by ms, not seconds)."""
    from datetime import timedelta

    from web.scheduler import _book_next_deadline

    booked = []

    class FakeScheduler:
        def add_job(self, func, trigger, **kw):
            booked.append((trigger, kw["run_date"], kw["id"]))

        def get_job(self, job_id):
            return next((b for b in booked if b[2] == job_id), None)

    no = district.file("qingnian.grid", category="road_flooding")
    warn_at = district.clock_of(no, "triage", "xiagang").warn_at
    district.clock.set(warn_at - timedelta(seconds=10))
    _book_next_deadline(FakeScheduler(), lambda: None, services, interval=5)
    assert booked == []  # more than one interval away: the regular sweep will see it first
    district.clock.set(warn_at - timedelta(seconds=3))
    _book_next_deadline(FakeScheduler(), lambda: None, services, interval=5)
    _book_next_deadline(FakeScheduler(), lambda: None, services, interval=5)  # booked once only
    assert booked == [("date", warn_at, f"fire_sla_clock_at_deadline:{warn_at.isoformat()}")]


def test_a_deadline_reached_during_a_sweep_is_booked_at_once_a_held_one_half_a_second_later(district, services):
    """A clock that came due while the sweep ran gets its sweep at the deadline; one that was due before the
    sweep started and is still there is held by another transaction: retried after 0.5 s, never in a spin."""
    from datetime import timedelta

    from web.scheduler import _book_next_deadline

    booked = []

    class FakeScheduler:
        def add_job(self, func, trigger, **kw):
            booked.append(kw["run_date"])

        def get_job(self, job_id):
            return None

    no = district.file("qingnian.grid", category="road_flooding")
    warn_at = district.clock_of(no, "triage", "xiagang").warn_at
    district.clock.set(warn_at + timedelta(seconds=0.2))  # the sweep started just before the deadline
    _book_next_deadline(FakeScheduler(), lambda: None, services, interval=5, swept_at=warn_at - timedelta(seconds=0.1))
    _book_next_deadline(FakeScheduler(), lambda: None, services, interval=5, swept_at=warn_at + timedelta(seconds=0.1))
    assert booked == [warn_at, warn_at + timedelta(seconds=0.7)]
