"""The five scenarios of domain.md §6, end to end through the service layer.

Every step is its own transaction and restores the workflow from the database (tests/helpers.py), so the
workflow is saved and restored between steps.
"""
from __future__ import annotations

from datetime import timedelta

import engine.runtime


def test_every_step_restores_the_workflow_from_the_database(district, monkeypatch):
    restored = []
    load_state = engine.runtime.load_state
    monkeypatch.setattr(engine.runtime, "load_state", lambda *a: restored.append(1) or load_state(*a))
    d = district
    no = d.file("qingnian.grid", category="road_flooding")
    steps = [("xiagang.dispatcher", "dispatch", {"lead": "water"}), ("water.staff", "sign", None),
             ("water.staff", "done", {"result": "已疏通"}), ("qingnian.grid", "pass", None),
             ("xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": True})]
    for n, (user, action, data) in enumerate(steps, start=1):
        d.do(no, user, action, data)
        assert len(restored) == n, action
    assert d.call(no).status == "closed"


def test_scenario_1_lift_and_cables_dispatched_to_three_departments_and_closed(district):
    d = district
    no = d.file("qingnian.grid", category="lift_install", direct_to_street=True, photos=["cables.jpg"],
                description="东园二街1号、2号加装电梯被电缆阻碍", location="夏港街东园二街1号")
    assert d.call(no).status == "triage" and d.call(no).level == "street"
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "power", "assists": ["telecom", "police"]})
    assert d.open_tasks(no) == [("sign", "police"), ("sign", "power"), ("sign", "telecom")]
    assert d.call(no).status == "dispatched"
    for dept in ("power", "telecom", "police"):
        d.do(no, f"{dept}.staff", "sign")
    assert d.call(no).status == "in_progress"
    d.clock.advance(timedelta(days=1))
    d.do(no, "power.staff", "contact", {"note": "现场会 site meeting"})
    assert d.call(no).first_contact_at is not None
    d.clock.advance(timedelta(days=3))
    d.do(no, "telecom.staff", "done", {"result": "通信线缆已迁移"})
    d.do(no, "police.staff", "done", {"result": "监控线路已迁移"})
    assert d.call(no).status == "in_progress"  # the lead is still working
    d.do(no, "power.staff", "done", {"result": "电缆已全部迁移，费用按工作量分担"})
    call = d.call(no)
    assert call.status == "verify" and call.result.startswith("电缆已全部迁移")
    d.do(no, "qingnian.grid", "pass")
    assert d.call(no).status == "feedback"
    d.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": True})
    call = d.call(no)
    assert call.status == "closed" and call.closed_at is not None and call.satisfaction == "satisfied"
    actions = [e.action for e in d.view(no).timeline]
    assert actions[:3] == ["process_started", "call.filed", "street_triage.dispatch"]
    assert actions.count("sign.sign") == 3 and actions.count("resolve.done") == 3
    assert actions[-2:] == ["verify.pass", "feedback.rate"]


def test_scenario_2_overdue_flooding_is_supervised_and_escalated_to_the_district(district):
    d = district
    no = d.file("qingnian.grid", category="road_flooding", description="道路积水", location="港前路")
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    d.do(no, "water.staff", "sign")
    # 80 %: warning, nothing moves
    assert d.deliver(no, "resolve", "water", "sla_warning") == 1
    assert d.open_tasks(no) == [("resolve", "water")]
    # deadline: breach (催办), the department keeps the work
    assert d.deliver(no, "resolve", "water", "sla_breach") == 1
    assert d.open_tasks(no) == [("resolve", "water")]
    assert d.deliver(no, "resolve", "water", "sla_breach") == 1, "a reminder can be sent again (non-interrupting)"
    # 5 working days later: 督办, the case goes up to the district
    assert d.deliver(no, "resolve", "water", "sla_overdue") == 1
    call = d.call(no)
    assert call.level == "district" and call.status == "district"
    [coord] = d.items(no, "huangpu.dispatcher")
    assert coord.task_name == "district_coordinate" and coord.context["supervised_department"] == "water"
    d.act(coord.id, "huangpu.dispatcher", "coordinate", {"lead": "water", "assists": ["housing", "transport"]})
    assert d.open_tasks(no) == [("sign", "housing"), ("sign", "transport"), ("sign", "water")]
    view = d.view(no)
    assert sorted(c.department_code for c in view.children) == ["housing", "transport", "water"]
    events = [e.action for e in view.timeline]
    assert events.count("event.sla_warning") == 1 and events.count("event.sla_breach") == 2
    assert "event.sla_overdue" in events and "district_coordinate.coordinate" in events
    # at the district a further overdue is recorded but the department keeps the work
    for dept in ("water", "housing", "transport"):
        d.do(no, f"{dept}.staff", "sign")
    assert d.deliver(no, "resolve", "water", "sla_overdue") == 1
    assert ("resolve", "water") in d.open_tasks(no) and d.call(no).level == "district"


def test_scenario_3_dispute_keeps_the_clock_running_and_street_rules_urban_leads(district):
    d = district
    no = d.file("qingnian.grid", category="street_vending", description="广场占道经营", location="青年广场")
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "urban"})
    d.do(no, "urban.staff", "sign")
    resolve = d.item(no, "urban.staff")
    d.do(no, "urban.staff", "dispute", {"reason": "权属不清 广场属物业管理"})
    # the department's work item stays open: the clock is not stopped, no reject exists
    still = d.item(no, "urban.staff")
    assert still.id == resolve.id and still.created_at == resolve.created_at
    assert still.context["dispute"]["reason"].startswith("权属不清")
    ruling = d.item(no, "xiagang.dispatcher")
    assert ruling.task_name == "rule_dispute" and ruling.context["dispute"]["department"] == "urban"
    assert d.call(no).status == "in_progress"
    d.act(ruling.id, "xiagang.dispatcher", "confirm", {"assists": ["property_mgmt"], "note": "城管牵头，物业协办"})
    assert d.open_tasks(no) == [("assist_work", "property_mgmt"), ("resolve", "urban")]
    d.do(no, "property_mgmt.staff", "done", {"result": "物业配合清理"})
    d.do(no, "urban.staff", "done", {"result": "占道经营已清理"})
    assert d.call(no).status == "verify"


def test_scenario_4_joint_district_case_parent_closes_only_when_every_child_has(district):
    d = district
    no = d.file("qingnian.grid", category="joint_pollution", description="作坊污水直排河涌，河岸违建棚屋",
                location="南岗河")
    call = d.call(no)
    assert call.level == "district" and call.status == "district"
    d.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water", "assists": ["eco", "urban", "market"]})
    view = d.view(no)
    children = {c.department_code: c.number for c in view.children}
    assert sorted(children) == ["eco", "market", "urban", "water"]
    assert all(c.status == "dispatched" and c.number.startswith(no + "-") for c in view.children)
    for dept in children:
        d.do(no, f"{dept}.staff", "sign")
    for dept in ("eco", "urban", "market"):
        d.do(no, f"{dept}.staff", "done", {"result": f"{dept} 已处置"})
    statuses = {c.department_code: c.status for c in d.view(no).children}
    assert statuses == {"eco": "closed", "urban": "closed", "market": "closed", "water": "in_progress"}
    assert d.call(no).status == "in_progress", "the parent waits for the last child"
    assert d.items(no, "qingnian.grid") == []
    d.do(no, "water.staff", "done", {"result": "截污完成，水质达标"})
    assert all(c.status == "closed" for c in d.view(no).children)
    assert d.call(no).status == "verify"
    d.do(no, "qingnian.grid", "pass")
    d.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "basically_satisfied", "resolved": True})
    assert d.call(no).status == "closed"
    # a child can be read on its own by the department it belongs to
    child = d.view(children["eco"], "eco.staff")
    assert child.call.parent_id is not None and child.call.status == "closed"


def _resolve_once(d, no, dept="eco"):
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": dept})
    d.do(no, f"{dept}.staff", "sign")
    d.do(no, f"{dept}.staff", "done", {"result": "已整改"})
    d.do(no, "qingnian.grid", "pass")


def test_scenario_5_third_reopen_escalates_to_the_district_as_a_problem_ticket(district):
    d = district
    no = d.file("qingnian.grid", category="restaurant_fumes", description="餐饮油烟扰民", location="夏港大道")
    for reopen in (1, 2):
        _resolve_once(d, no)
        d.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "unsatisfied", "resolved": False})
        call = d.call(no)
        assert call.reopen_count == reopen and call.status == "triage" and call.level == "street"
        assert not call.problem_ticket
    _resolve_once(d, no)
    d.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "unsatisfied", "resolved": False})
    call = d.call(no)
    assert call.reopen_count == 3 and call.problem_ticket and call.level == "district"
    [coord] = d.items(no, "huangpu.dispatcher")
    assert coord.task_name == "district_coordinate" and coord.context["problem_ticket"] is True
