"""Every path of bpmn/call_dispatch.bpmn, through the service layer (saved/restored between steps)."""
from __future__ import annotations

import pytest

from engine.errors import Conflict, ValidationFailed


def _dispatched(d, category="road_flooding", lead="water", assists=()):
    no = d.file("qingnian.grid", category=category)
    d.do(no, "xiagang.dispatcher", "dispatch", {"lead": lead, "assists": list(assists)})
    return no


def _close(d, no):
    d.do(no, "qingnian.grid", "pass")
    d.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": True})
    assert d.call(no).status == "closed"


# ---- community first handling ------------------------------------------------------------------

def test_minor_matter_is_handled_by_the_community_then_verified_and_closed(district):
    d = district
    no = d.file("qingnian.grid", category="exposed_garbage")
    call = d.call(no)
    assert (call.status, call.level, call.handling_level) == ("reported", "community", "community")
    d.do(no, "qingnian.staff", "handle", {"result": "已清运"})
    assert d.call(no).status == "verify"
    _close(d, no)


def test_community_calls_the_street_when_it_cannot_solve_it(district):
    d = district
    no = d.file("qingnian.grid", category="exposed_garbage")
    d.do(no, "qingnian.staff", "call_street", {"reason": "渣土量大"})
    call = d.call(no)
    assert (call.status, call.level) == ("triage", "street")
    assert d.open_tasks(no) == [("street_triage", "xiagang")]


def test_grid_worker_can_call_the_street_directly(district):
    no = district.file("qingnian.grid", category="exposed_garbage", direct_to_street=True)
    assert district.open_tasks(no) == [("street_triage", "xiagang")]


def test_community_handling_breach_moves_the_call_up_to_the_street(district):
    d = district
    no = d.file("qingnian.grid", category="dogs")
    assert d.deliver(no, "community_handle", "qingnian", "sla_warning") == 1
    assert d.open_tasks(no) == [("community_handle", "qingnian")]
    assert d.deliver(no, "community_handle", "qingnian", "sla_breach") == 1
    assert d.open_tasks(no) == [("street_triage", "xiagang")]
    assert d.call(no).level == "street"


# ---- street triage -------------------------------------------------------------------------------

def test_triage_void_ends_the_call_as_voided(district):
    no = district.file("qingnian.grid", category="other")
    district.do(no, "xiagang.dispatcher", "void", {"reason": "重复误报"})
    call = district.call(no)
    assert call.status == "voided" and call.closed_at is not None and district.items(no) == []


def test_triage_merge_into_an_earlier_open_call(district):
    d = district
    first = d.file("qingnian.grid", category="road_flooding")
    second = d.file("qingnian.grid", category="road_flooding")
    with pytest.raises(ValidationFailed, match="no such earlier call"):
        d.do(second, "xiagang.dispatcher", "merge", {"into": "HY-NOPE"})
    with pytest.raises(ValidationFailed):
        d.do(second, "xiagang.dispatcher", "merge", {"into": second})
    d.do(second, "xiagang.dispatcher", "merge", {"into": first})
    call = d.call(second)
    assert call.status == "merged" and call.merged_into_id == d.call(first).id
    d.do(first, "xiagang.dispatcher", "void", {"reason": "x"})
    third = d.file("qingnian.grid", category="road_flooding")
    with pytest.raises(ValidationFailed, match="voided"):
        d.do(third, "xiagang.dispatcher", "merge", {"into": first})


def test_merge_only_within_the_same_street(district):
    d = district
    other_street = d.file("luofeng.grid", category="road_flooding")
    mine = d.file("qingnian.grid", category="road_flooding")
    with pytest.raises(ValidationFailed, match="same street|not a call of this street"):
        d.do(mine, "xiagang.dispatcher", "merge", {"into": other_street})


def test_street_handles_it_itself_then_verification(district):
    d = district
    no = d.file("qingnian.grid", category="other")
    d.do(no, "xiagang.dispatcher", "handle")
    assert d.open_tasks(no) == [("street_handle", "xiagang")] and d.call(no).status == "in_progress"
    d.do(no, "xiagang.dispatcher", "done", {"result": "街道综合执法队已处理"})
    _close(d, no)


def test_street_escalates_to_the_district(district):
    d = district
    no = d.file("qingnian.grid", category="lift_install")
    d.do(no, "xiagang.dispatcher", "escalate", {"reason": "涉及多部门、街道无法解决"})
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]
    assert d.call(no).level == "district"


def test_dispatch_defaults_to_the_routing_tables_departments(district):
    d = district
    no = d.file("qingnian.grid", category="construction_noise")
    call = d.call(no)
    assert call.suggested_lead and call.suggested_assists
    d.do(no, "xiagang.dispatcher", "dispatch", {})
    expected = sorted([("sign", call.suggested_lead)] + [("sign", a) for a in call.suggested_assists])
    assert d.open_tasks(no) == expected


def test_triage_breach_is_a_reminder_and_overdue_goes_to_the_district(district):
    d = district
    no = d.file("qingnian.grid", category="road_flooding")
    assert d.deliver(no, "street_triage", "xiagang", "sla_warning") == 1
    assert d.deliver(no, "street_triage", "xiagang", "sla_breach") == 1
    assert d.open_tasks(no) == [("street_triage", "xiagang")]
    assert d.deliver(no, "street_triage", "xiagang", "sla_overdue") == 1
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]


def test_street_handling_overdue_goes_to_the_district(district):
    d = district
    no = d.file("qingnian.grid", category="other")
    d.do(no, "xiagang.dispatcher", "handle")
    assert d.deliver(no, "street_handle", "xiagang", "sla_breach") == 1
    assert d.deliver(no, "street_handle", "xiagang", "sla_overdue") == 1
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]


# ---- departments ---------------------------------------------------------------------------------

def test_sign_warning_and_breach_leave_the_department_on_it(district):
    d = district
    no = _dispatched(d)
    assert d.deliver(no, "sign", "water", "sla_warning") == 1
    assert d.deliver(no, "sign", "water", "sla_breach") == 1
    assert d.open_tasks(no) == [("sign", "water")]


def test_dispute_at_sign_confirmed_keeps_the_department(district):
    d = district
    no = _dispatched(d, "street_vending", "urban")
    d.do(no, "urban.staff", "dispute", {"reason": "权属不清"})
    assert d.open_tasks(no) == [("rule_dispute", "xiagang"), ("sign", "urban")]
    d.do(no, "xiagang.dispatcher", "confirm", {"note": "城管牵头"})
    assert d.open_tasks(no) == [("sign", "urban")]
    d.do(no, "urban.staff", "sign")
    assert d.open_tasks(no) == [("resolve", "urban")]


def test_reassign_moves_only_that_department_and_counts_on_the_dispatcher(district):
    d = district
    no = _dispatched(d, "street_vending", "urban", ["market"])
    d.do(no, "urban.staff", "sign")
    d.do(no, "urban.staff", "dispute", {"reason": "应由市场监管牵头"})
    d.do(no, "xiagang.dispatcher", "reassign", {"department": "police"})
    assert d.open_tasks(no) == [("sign", "market"), ("sign", "police")]
    [item] = d.items(no, "police.staff")
    assert item.context["slot"] == {"department": "police", "role": "lead"}
    for dept in ("police", "market"):
        d.do(no, f"{dept}.staff", "sign")
        d.do(no, f"{dept}.staff", "done", {"result": "ok"})
    assert d.call(no).status == "verify"


def test_reassign_to_the_same_or_unknown_department_is_refused(district):
    d = district
    no = _dispatched(d, "street_vending", "urban")
    d.do(no, "urban.staff", "dispute", {"reason": "x"})
    with pytest.raises(ValidationFailed):
        d.do(no, "xiagang.dispatcher", "reassign", {"department": "urban"})
    with pytest.raises(ValidationFailed):
        d.do(no, "xiagang.dispatcher", "reassign", {"department": "nowhere"})


def test_reassign_after_the_department_reported_done_is_a_conflict(district):
    d = district
    no = _dispatched(d, "street_vending", "urban")
    d.do(no, "urban.staff", "sign")
    d.do(no, "urban.staff", "dispute", {"reason": "x"})
    d.do(no, "urban.staff", "done", {"result": "已处理"})
    assert d.call(no).status == "in_progress", "the ruling is still open"
    with pytest.raises(Conflict, match="already reported"):
        d.do(no, "xiagang.dispatcher", "reassign", {"department": "police"})
    d.do(no, "xiagang.dispatcher", "confirm")
    assert d.call(no).status == "verify"


def test_hang_pauses_on_hold_then_resume(district):
    d = district
    no = _dispatched(d, "lift_install", "housing")
    d.do(no, "housing.staff", "sign")
    d.do(no, "housing.staff", "hang", {"reason": "需立项施工"})
    assert d.open_tasks(no) == [("on_hold", "housing")] and d.call(no).status == "on_hold"
    d.do(no, "housing.staff", "resume")
    assert d.open_tasks(no) == [("resolve", "housing")]


def test_reassign_while_on_hold(district):
    d = district
    no = _dispatched(d, "lift_install", "housing")
    d.do(no, "housing.staff", "sign")
    d.do(no, "housing.staff", "dispute", {"reason": "x"})
    d.do(no, "housing.staff", "hang", {"reason": "y"}, task="resolve")
    d.do(no, "xiagang.dispatcher", "reassign", {"department": "planning"})
    assert d.open_tasks(no) == [("sign", "planning")]


@pytest.mark.parametrize("ruling", ["approve", "refuse"])
def test_extension_request_is_ruled_by_the_street_while_work_goes_on(district, ruling):
    d = district
    no = _dispatched(d)
    d.do(no, "water.staff", "sign")
    d.do(no, "water.staff", "request_extension", {"days": 5, "reason": "需排水管改造"})
    assert d.open_tasks(no) == [("resolve", "water"), ("rule_extension", "xiagang")]
    [rule] = d.items(no, "xiagang.dispatcher")
    assert rule.context["extension"] == {"days": 5, "reason": "需排水管改造", "department": "water"}
    [resolve] = d.items(no, "water.staff")
    assert resolve.assignee == "water.staff" and resolve.claimed_at == d.clock.now()
    d.act(rule.id, "xiagang.dispatcher", ruling, {"reason": "理由不足"} if ruling == "refuse" else {})
    assert d.open_tasks(no) == [("resolve", "water")]
    timeline = [e.action for e in d.view(no).timeline]
    assert f"rule_extension.{ruling}" in timeline


def test_resolve_breach_is_a_reminder_only(district):
    d = district
    no = _dispatched(d)
    d.do(no, "water.staff", "sign")
    assert d.deliver(no, "resolve", "water", "sla_breach") == 1
    assert d.open_tasks(no) == [("resolve", "water")]


# ---- verification and feedback -------------------------------------------------------------------

def test_verify_fail_sends_departments_back_to_work_without_signing_again(district):
    d = district
    no = _dispatched(d, assists=["transport"])
    for dept in ("water", "transport"):
        d.do(no, f"{dept}.staff", "sign")
        d.do(no, f"{dept}.staff", "done", {"result": "ok"})
    assert d.deliver(no, "verify", "qingnian", "sla_warning") == 1
    assert d.deliver(no, "verify", "qingnian", "sla_breach") == 1
    d.do(no, "qingnian.grid", "fail", {"reason": "仍有积水"})
    assert d.open_tasks(no) == [("resolve", "transport"), ("resolve", "water")]
    assert d.call(no).rework_count == 1


def test_verify_fail_sends_community_work_back_to_the_community(district):
    d = district
    no = d.file("qingnian.grid", category="pests")
    d.do(no, "qingnian.staff", "handle", {"result": "已消杀"})
    d.do(no, "qingnian.grid", "fail", {"reason": "仍有蚊虫"})
    assert d.open_tasks(no) == [("community_handle", "qingnian")]


def test_verify_fail_sends_street_work_back_to_the_street(district):
    d = district
    no = d.file("qingnian.grid", category="other")
    d.do(no, "xiagang.dispatcher", "handle")
    d.do(no, "xiagang.dispatcher", "done", {"result": "x"})
    d.do(no, "qingnian.grid", "fail", {"reason": "y"})
    assert d.open_tasks(no) == [("street_handle", "xiagang")]


def test_verify_fail_on_a_district_case_reopens_the_children(district):
    d = district
    no = d.file("qingnian.grid", category="joint_pollution")
    d.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water", "assists": ["eco"]})
    for dept in ("water", "eco"):
        d.do(no, f"{dept}.staff", "sign")
        d.do(no, f"{dept}.staff", "done", {"result": "ok"})
    assert {c.status for c in d.view(no).children} == {"closed"}
    d.do(no, "qingnian.grid", "fail", {"reason": "仍有污水"})
    assert d.open_tasks(no) == [("resolve", "eco"), ("resolve", "water")]
    assert {c.status for c in d.view(no).children} == {"closed"}, "closed children stay closed (their history)"


def test_feedback_breach_and_district_coordination_breach_are_reminders(district):
    d = district
    no = d.file("qingnian.grid", category="joint_pollution")
    assert d.deliver(no, "district_coordinate", "huangpu", "sla_warning") == 1
    assert d.deliver(no, "district_coordinate", "huangpu", "sla_breach") == 1
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]
    d.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water"})
    d.do(no, "water.staff", "sign")
    d.do(no, "water.staff", "done", {"result": "ok"})
    d.do(no, "qingnian.grid", "pass")
    assert d.deliver(no, "feedback", "xiagang", "sla_breach") == 1
    assert d.open_tasks(no) == [("feedback", "xiagang")]


def test_unsatisfied_feedback_reopens_for_triage(district):
    d = district
    no = _dispatched(d)
    d.do(no, "water.staff", "sign")
    d.do(no, "water.staff", "done", {"result": "ok"})
    d.do(no, "qingnian.grid", "pass")
    d.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "basically_satisfied", "resolved": False})
    call = d.call(no)
    assert call.status == "triage" and call.reopen_count == 1


def test_urgent_categories_get_the_urgent_sla_class(district):
    no = district.file("qingnian.grid", category="gas_leak")
    call = district.call(no)
    assert call.sla_class == "urgent" and call.handling_level == "street"
    assert district.open_tasks(no) == [("street_triage", "xiagang")]


def test_overdue_escalation_cancels_pending_rulings_of_that_department(district):
    d = district
    no = _dispatched(d)
    d.do(no, "water.staff", "sign")
    d.do(no, "water.staff", "request_extension", {"days": 2, "reason": "x"})
    d.do(no, "water.staff", "request_extension", {"days": 3, "reason": "y"})
    assert d.open_tasks(no) == [("resolve", "water"), ("rule_extension", "xiagang"), ("rule_extension", "xiagang")]
    assert d.deliver(no, "resolve", "water", "sla_overdue") == 1
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]
