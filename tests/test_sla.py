"""SLA clocks driven only by the virtual clock and the scheduler's sweep — no sleeps."""
from __future__ import annotations

from datetime import datetime, timedelta

from engine.audit import audit_trail
from engine.clock import SHANGHAI


def at(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_every_timed_work_item_gets_a_clock_and_a_deadline(district):
    d = district  # virtual time starts Mon 2026-10-12 09:00
    no = d.file("qingnian.grid", category="road_flooding")
    [triage] = d.items(no)
    assert triage.due_at == at(2026, 10, 12, 11)  # 2 working hours
    c = d.clock_of(no, "triage", "xiagang")
    assert (c.state, c.target_kind, c.target_amount, c.warn_at) == ("running", "working_hours", 2, at(2026, 10, 12, 10, 36))
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    assert d.clock_of(no, "triage", "xiagang").outcome == "met"
    assert d.items(no)[0].due_at == at(2026, 10, 12, 11)  # sign: 2 working hours


def test_scenario_2_by_advancing_the_clock_warning_breach_supervision_escalation(district):
    d = district
    no = d.file("qingnian.grid", category="road_flooding", description="道路积水", location="港前路")
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(no, "water.staff", "sign")
    c = d.clock_of(no, "resolve", "water")
    assert (c.warn_at, c.due_at, c.overdue_at) == (at(2026, 10, 16, 16, 36), at(2026, 10, 19, 18), at(2026, 10, 26, 18))
    assert d.advance_to(at(2026, 10, 16, 16, 35)) == 0
    assert d.advance_to(at(2026, 10, 16, 16, 36)) == 1
    assert d.sla_events(no) == [("warning", "resolve", "water")]
    assert d.advance_to(at(2026, 10, 19, 17, 59)) == 0
    assert d.advance_to(at(2026, 10, 19, 18, 0, 3)) == 1
    assert d.sla_events(no)[-1] == ("urge", "resolve", "water")
    assert d.open_tasks(no) == [("resolve", "water")], "a breach is a reminder: the department keeps it"
    assert d.sweep() == 0, "nothing fires twice"
    assert d.advance_to(at(2026, 10, 26, 18, 0, 1)) == 1
    assert d.sla_events(no)[-1] == ("supervise", "resolve", "water")
    call = d.call(no)
    assert call.level == "district" and d.open_tasks(no) == [("district_coordinate", "huangpu")]
    assert d.clock_of(no, "resolve", "water").outcome == "late"
    timeline = [e.action for e in d.view(no).timeline]
    assert ["event.sla_warning", "event.sla_breach", "event.sla_overdue"] == [a for a in timeline if a.startswith("event.")]
    d.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water", "assists": ["housing", "transport"]})
    assert d.open_tasks(no) == [("sign", "housing"), ("sign", "transport"), ("sign", "water")]
    # the department shows as overdue in the month's ranking, and not on the 红榜
    from workflows.metrics import monthly_ranking

    with d.session() as s:
        ranking = monthly_ranking(s, "2026-10", "department", now=d.clock.now(),
                                  calendar=d.services.sla.calendars.get(s))
    water = next(u for u in ranking.units if u.unit == "water")
    assert water.overdue == 1 and water.on_time_resolve == 0.0
    assert "water" not in [u.unit for u in ranking.red] and "water" in [u.unit for u in ranking.black]


def test_a_stopped_scheduler_catches_up_in_deadline_order_with_nothing_missed_or_doubled(district):
    d = district
    calls = []
    for _i in range(4):
        no = d.file("qingnian.grid", category="road_flooding")
        calls.append(no)
        d.clock.advance(timedelta(minutes=20))
    # nobody triages; the scheduler is down for a day
    d.clock.set(at(2026, 10, 13, 12))
    fired = d.sweep()
    assert fired == 8  # a warning and a breach for each of the four triages
    from sqlalchemy import select

    from engine.models import SlaEvent
    with d.session() as s:
        events = list(s.scalars(select(SlaEvent).order_by(SlaEvent.id)))
    assert sorted((e.subject, e.kind) for e in events) == [(no, k) for no in calls for k in ("urge", "warning")]
    assert [e.scheduled_for for e in events] == sorted(e.scheduled_for for e in events), "oldest first"
    w1, w2, u1 = events[0], events[1], events[2]
    assert (w1.subject, w1.kind, w2.subject, w2.kind, u1.subject, u1.kind) == (
        calls[0], "warning", calls[1], "warning", calls[0], "urge")
    assert d.sweep() == 0


def test_hang_pauses_the_clock_and_resuming_moves_the_deadline_by_the_paused_working_time(district):
    d = district
    no = d.file("qingnian.grid", category="lift_install")  # complex: 15 working days
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "housing"})
    d.do(no, "housing.staff", "sign")
    due = d.clock_of(no, "resolve", "housing").due_at
    d.clock.set(at(2026, 10, 13, 9))
    d.do(no, "housing.staff", "hang", {"reason": "待施工队进场"})
    c = d.clock_of(no, "resolve", "housing")
    assert c.state == "paused" and c.next_fire_at is None
    d.clock.set(at(2026, 10, 15, 9))  # two office days paused
    d.do(no, "housing.staff", "resume")
    c = d.clock_of(no, "resolve", "housing")
    assert c.state == "running" and c.paused_seconds == 14 * 3600
    # 15 working days from Mon 12 Oct end Mon 2 Nov 18:00; 14 office hours paused (Tue 13 and Wed 14 Oct)
    # move it two working days on, to Wed 4 Nov 18:00
    assert (due, c.due_at) == (at(2026, 11, 2, 18), at(2026, 11, 4, 18))
    [item] = d.items(no, "housing.staff")
    assert item.due_at == c.due_at and c.work_item_id == item.id  # the clock follows the new work item


def test_a_dispute_does_not_stop_the_clock(district):
    d = district
    no = d.file("qingnian.grid", category="street_vending")
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "urban"})
    d.do(no, "urban.staff", "sign")
    before = d.clock_of(no, "resolve", "urban")
    d.do(no, "urban.staff", "dispute", {"reason": "权属不清"})
    after = d.clock_of(no, "resolve", "urban")
    assert (after.state, after.due_at, after.next_fire_at) == ("running", before.due_at, before.next_fire_at)


def test_an_approved_extension_moves_the_deadline_a_refused_one_does_not(district):
    d = district
    no = d.file("qingnian.grid", category="road_flooding")
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(no, "water.staff", "sign")
    due = d.clock_of(no, "resolve", "water").due_at
    d.do(no, "water.staff", "request_extension", {"days": 3, "reason": "管网改造"})
    d.do(no, "xiagang.dispatcher", "refuse", {"reason": "不同意"})
    assert d.clock_of(no, "resolve", "water").due_at == due
    d.do(no, "water.staff", "request_extension", {"days": 3, "reason": "管网改造"})
    d.do(no, "xiagang.dispatcher", "approve")
    c = d.clock_of(no, "resolve", "water")
    assert c.due_at == at(2026, 10, 22, 18) and due == at(2026, 10, 19, 18) and c.extension_days == 3
    assert d.items(no, "water.staff")[0].due_at == c.due_at


def test_urgent_calls_run_on_the_wall_clock(district):
    d = district
    no = d.file("qingnian.grid", category="gas_leak")
    c = d.clock_of(no, "triage", "xiagang")
    assert (c.target_kind, c.due_at) == ("wall_hours", at(2026, 10, 12, 9, 30))


def test_community_handling_breach_goes_to_the_street_by_the_clock(district):
    d = district
    no = d.file("qingnian.grid", category="dogs")
    assert d.clock_of(no, "community_handle", "qingnian").due_at == at(2026, 10, 13, 18)
    d.advance_to(at(2026, 10, 13, 18, 0, 1))
    assert d.open_tasks(no) == [("street_triage", "xiagang")]
    assert d.clock_of(no, "community_handle", "qingnian").outcome == "late"
    assert d.clock_of(no, "triage", "xiagang").state == "running"


def test_a_calendar_override_recomputes_open_deadlines(district, services):
    from engine.sla import set_override

    d = district
    no = d.file("qingnian.grid", category="road_flooding")
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(no, "water.staff", "sign")
    assert d.clock_of(no, "resolve", "water").due_at == at(2026, 10, 19, 18)
    from datetime import date
    with d.session() as s:
        set_override(s, date(2026, 10, 14), False, actor="admin", at=d.clock.now(), note="台风停工")
        assert services.sla.recompute_open(s) >= 1
        s.commit()
    assert d.clock_of(no, "resolve", "water").due_at == at(2026, 10, 20, 18)
    assert d.items(no, "water.staff")[0].due_at == at(2026, 10, 20, 18)


def test_deadlines_beyond_the_holiday_data_are_flagged_and_audited(district):
    d = district
    d.clock.set(at(2026, 12, 28, 9))
    no = d.file("qingnian.grid", category="lift_install")
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "housing"})
    d.do(no, "housing.staff", "sign")
    c = d.clock_of(no, "resolve", "housing")
    assert c.assumed_calendar and c.due_at.year == 2027
    assert "calendar.assumed" in [e.action for e in d.view(no).timeline]


def test_a_failing_clock_is_an_incident_retried_later_and_does_not_block_others(district, services, monkeypatch):
    from sqlalchemy import select

    import workflows.calls as calls
    from engine.models import Incident

    d = district
    bad = d.file("qingnian.grid", category="road_flooding")
    good = d.file("qingnian.grid", category="road_flooding")
    real = calls.deliver_process_event

    def flaky(ctx, item_id, event, payload=None):
        if ctx.session.get(calls.WorkItem, item_id).instance_id == d.call(bad).instance_id:
            raise RuntimeError("broken expression in the diagram")
        return real(ctx, item_id, event, payload)

    monkeypatch.setattr(calls, "deliver_process_event", flaky)
    d.advance_to(at(2026, 10, 12, 11, 1))
    assert d.sla_events(good) == [("warning", "triage", "xiagang"), ("urge", "triage", "xiagang")]
    assert d.sla_events(bad) == []
    c = d.clock_of(bad, "triage", "xiagang")
    assert c.attempts == 1 and "broken expression" in c.last_error and c.next_fire_at > d.clock.now()
    with d.session() as s:
        [incident] = s.scalars(select(Incident)).all()
        assert incident.subject == bad and "RuntimeError" in incident.error
    monkeypatch.setattr(calls, "deliver_process_event", real)
    assert d.sweep() == 0, "not before the retry time"
    d.clock.advance(timedelta(minutes=1))
    assert d.sweep() == 2
    assert d.sla_events(bad) == [("warning", "triage", "xiagang"), ("urge", "triage", "xiagang")]


def test_the_admin_clock_api_moves_virtual_time_and_sweeps(district, services):
    from engine.clock import StoredVirtualClock
    from web.app import create_app
    from web.bootstrap import Services

    d = district
    no = d.file("qingnian.grid", category="road_flooding")
    stored = StoredVirtualClock(services.session_factory)
    stored.set(d.clock.now())
    app = create_app(services=Services(services.settings, services.engine, services.session_factory, stored,
                                       services.sla))
    client = app.test_client()

    def auth(user):
        r = client.post("/api/v1/auth/tokens", json={"username": user, "password": "huying-demo"})
        return {"Authorization": f"Bearer {r.get_json()['token']}"}

    assert client.post("/api/v1/admin/clock", json={"advance": "2h"}).status_code == 401
    assert client.post("/api/v1/admin/clock", json={"advance": "2h"},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/api/v1/admin/clock", json={"advance": "2h"}, headers=auth("huangpu.supervisor")).status_code == 403
    bad = client.post("/api/v1/admin/clock", json={"advance": "soon"}, headers=auth("admin"))
    assert bad.status_code == 422 and "advance" in bad.get_json()["errors"]
    assert client.post("/api/v1/admin/clock", json={}, headers=auth("admin")).status_code == 422
    r = client.post("/api/v1/admin/clock", json={"advance": "2h"}, headers=auth("admin"))
    assert r.status_code == 200 and r.get_json()["now"] == "2026-10-12T11:00:00+08:00"
    assert r.get_json()["fired"]["fire_due_sla_clocks"] == 2
    assert d.sla_events(no) == [("warning", "triage", "xiagang"), ("urge", "triage", "xiagang")]
    wall = create_app(services=services.__class__(services.settings, services.engine, services.session_factory,
                                                  __import__("engine.clock", fromlist=["WallClock"]).WallClock(),
                                                  services.sla))
    wall_client = wall.test_client()
    token = wall_client.post("/api/v1/auth/tokens", json={"username": "admin", "password": "huying-demo"})
    assert wall_client.post("/api/v1/admin/clock", json={"advance": "1h"},
                            headers={"Authorization": f"Bearer {token.get_json()['token']}"}).status_code == 409


def test_a_new_sla_policy_version_changes_new_clocks_not_running_ones(district, services):
    import copy
    import json

    from config.settings import PROJECT_ROOT
    from engine.sla import deploy_policy

    d = district
    before = d.file("qingnian.grid", category="road_flooding")
    d.do(before, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(before, "water.staff", "sign")
    policy = json.loads((PROJECT_ROOT / "config/sla_policy.json").read_text(encoding="utf-8"))
    changed = copy.deepcopy(policy)
    changed["rules"].append({"match": {"stage": "resolve", "category": "road_flooding"},
                             "target": {"working_days": 3}, "note": "道路积水 3 工作日"})
    with d.session() as s:
        assert deploy_policy(s, changed, at=d.clock.now(), actor="admin").version == 2
        s.commit()
    after = d.file("qingnian.grid", category="road_flooding")
    d.do(after, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(after, "water.staff", "sign")
    assert d.clock_of(before, "resolve", "water").due_at == at(2026, 10, 19, 18)
    new = d.clock_of(after, "resolve", "water")
    assert (new.due_at, new.policy_version) == (at(2026, 10, 15, 18), 2)


def test_a_bad_policy_is_refused_naming_the_problem(services):
    import pytest

    from engine.errors import ValidationFailed
    from engine.sla import validate_policy

    for bad in ({"rules": []}, {"rules": [{"match": {"category": "x"}, "target": {"working_days": 1}}]},
                {"rules": [{"match": {"stage": "sign"}, "target": {"working_days": 1, "wall_hours": 2}}]},
                {"rules": [{"match": {"stage": "sign", "colour": "red"}, "target": {"wall_hours": 2}}]}):
        with pytest.raises(ValidationFailed):
            validate_policy(bad)


def test_clocks_of_one_call_breached_together_fire_once_each_in_one_sweep(district):
    """The sweep reads a batch's work items ahead in one query; three departments' sign clocks of one
    call fire in one batch, each delivered once, each into the state the previous one left."""
    d = district
    no = d.file("qingnian.grid", category="lift_install", direct_to_street=True)
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "power", "assists": ["telecom", "police"]})
    signs = {c.unit for c in d.clocks(no) if c.stage == "sign" and c.state == "running"}
    assert signs == {"power", "telecom", "police"}
    assert d.advance_to(at(2026, 10, 14, 17)) == 6  # a warning and a breach each, nothing else
    events = [e for e in d.sla_events(no) if e[1] == "sign"]
    assert sorted(events) == sorted((kind, "sign", unit) for unit in signs for kind in ("warning", "urge"))
    with d.session() as s:
        delivered = [a.action for a in audit_trail(s, no) if a.action.startswith("event.sla_")]
    assert sorted(delivered) == ["event.sla_breach"] * 3 + ["event.sla_warning"] * 3
    assert d.sweep() == 0
    # the process took every delivery: each department can still sign, and does
    for unit in signs:
        d.do(no, f"{unit}.staff", "sign", {})
    assert {wi.task_name for wi in d.items(no)} == {"resolve"}


def test_the_sweeps_read_ahead_is_used_once_and_never_after_a_step_on_the_same_call(district, services):
    from sqlalchemy import event

    from workflows.calls import load_for_action, preload_for_actions

    d = district
    no = d.file("qingnian.grid", category="lift_install", direct_to_street=True)
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "power", "assists": ["telecom"]})
    first, second = d.items(no)
    other = d.items(d.file("qingnian.grid", category="road_flooding"))[0]
    queries = []
    event.listen(services.engine, "before_cursor_execute", lambda *args: queries.append(args[2]))
    with d.session() as s:
        preload_for_actions(s, [first.id, second.id, other.id])
        assert len(queries) == 1
        item, call, open_items = load_for_action(s, first.id)  # read ahead: no query
        assert (item.id, call.number, sorted(wi.id for wi in open_items)) == (first.id, no, [first.id, second.id])
        assert load_for_action(s, other.id)[0].id == other.id and len(queries) == 1
        # a step on the first item may have changed the call's items: the second one is read afresh
        assert load_for_action(s, second.id)[0].id == second.id and len(queries) == 2
        assert load_for_action(s, first.id)[0].id == first.id and len(queries) == 3  # used once only
