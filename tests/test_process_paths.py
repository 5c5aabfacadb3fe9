"""Every path of bpmn/call_dispatch.bpmn, through the service layer (saved/restored between steps).

The module records which sequence flows and boundary events its tests take; its last test fails if the
diagram has one that none of them took (a new path in the diagram needs a test here).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree
from SpiffWorkflow.util.task import TaskState

from engine.errors import Conflict, ValidationFailed
from engine.runtime import ProcessRuntime

DIAGRAM = Path(__file__).resolve().parents[1] / "bpmn" / "call_dispatch.bpmn"
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
_TAKEN: set[tuple[str, str]] = set()  # (source element, target element) of the flows taken
_FIRED: set[str] = set()  # boundary events that fired
_RAN: set[str] = set()  # node ids of this module's tests that ran
_REACHED = TaskState.COMPLETED | TaskState.READY | TaskState.STARTED


def _record(workflow) -> None:
    for wf in (workflow, *workflow.subprocesses.values()):
        for task in wf.tasks.values():
            element = task.task_spec.bpmn_id
            if not element or not task.has_state(_REACHED):
                continue
            source = task.parent  # the element it came from: the nearest ancestor that is a BPMN element
            while source is not None and not source.task_spec.bpmn_id:
                source = source.parent
            if source is not None:
                _TAKEN.add((source.task_spec.bpmn_id, element))
            if type(task.task_spec).__name__ == "BoundaryEvent" and task.has_state(TaskState.COMPLETED):
                _FIRED.add(element)


@pytest.fixture(autouse=True)
def _record_paths(request, monkeypatch):
    save = ProcessRuntime._save

    def recording(self, instance, workflow, *args, **kwargs):
        _record(workflow)
        return save(self, instance, workflow, *args, **kwargs)

    monkeypatch.setattr(ProcessRuntime, "_save", recording)
    yield
    _RAN.add(request.node.nodeid)


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
    assert d.deliver(no, "street_handle", "xiagang", "sla_warning") == 1
    assert d.deliver(no, "street_handle", "xiagang", "sla_breach") == 1
    assert d.open_tasks(no) == [("street_handle", "xiagang")]
    assert d.deliver(no, "street_handle", "xiagang", "sla_overdue") == 1
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]


# ---- departments ---------------------------------------------------------------------------------

def test_sign_warning_and_breach_leave_the_department_on_it(district):
    d = district
    no = _dispatched(d)
    assert d.deliver(no, "sign", "water", "sla_warning") == 1
    assert d.deliver(no, "sign", "water", "sla_breach") == 1
    assert d.open_tasks(no) == [("sign", "water")]


def test_sign_still_missing_5_working_days_after_the_breach_goes_to_the_district(district):
    """督办: a department that never signs does not hold the call at the street for ever."""
    d = district
    no = _dispatched(d, assists=["transport"])
    d.do(no, "transport.staff", "sign")
    assert d.deliver(no, "sign", "water", "sla_overdue") == 1
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]
    [coord] = d.items(no, "huangpu.dispatcher")
    assert coord.context["supervised_department"] == "water"
    assert d.call(no).level == "district"


def test_sign_overdue_at_the_district_is_recorded_and_the_department_must_still_sign(district):
    d = district
    no = d.file("qingnian.grid", category="joint_pollution")
    d.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water"})
    assert d.deliver(no, "sign", "water", "sla_overdue") == 1
    assert d.open_tasks(no) == [("sign", "water")] and d.call(no).level == "district"
    assert "event.sla_overdue" in [e.action for e in d.view(no).timeline]
    d.do(no, "water.staff", "sign")
    assert d.open_tasks(no) == [("resolve", "water")]


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


def test_dispute_before_signing_reassigned_moves_the_sign_to_the_new_department(district):
    d = district
    no = _dispatched(d, "street_vending", "urban")
    d.do(no, "urban.staff", "dispute", {"reason": "摊点在小区红线内"})
    d.do(no, "xiagang.dispatcher", "reassign", {"department": "market"})
    assert d.open_tasks(no) == [("sign", "market")]
    assert d.call(no).status == "dispatched"
    d.do(no, "market.staff", "sign")
    assert d.open_tasks(no) == [("resolve", "market")]


def test_dispute_confirmed_with_added_assistants_gives_them_their_own_work(district):
    d = district
    no = _dispatched(d, "street_vending", "urban")
    d.do(no, "urban.staff", "sign")
    d.do(no, "urban.staff", "dispute", {"reason": "需物业配合"})
    d.do(no, "xiagang.dispatcher", "confirm", {"note": "城管牵头", "assists": ["market"]})
    assert d.open_tasks(no) == [("assist_work", "market"), ("resolve", "urban")]
    d.do(no, "market.staff", "done", {"result": "已约谈物业"})
    d.do(no, "urban.staff", "done", {"result": "已清理"})
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


def test_one_extension_request_at_a_time_per_department(district):
    """Two pending requests could both be approved and their days add up: the second waits for the first ruling."""
    d = district
    no = _dispatched(d)
    d.do(no, "water.staff", "sign")
    d.do(no, "water.staff", "request_extension", {"days": 2, "reason": "需排水管改造"})
    with pytest.raises(Conflict, match="already waiting"):
        d.do(no, "water.staff", "request_extension", {"days": 3, "reason": "再延"}, task="resolve")
    assert d.open_tasks(no) == [("resolve", "water"), ("rule_extension", "xiagang")]
    d.do(no, "xiagang.dispatcher", "refuse", {"reason": "理由不足"})
    d.do(no, "water.staff", "request_extension", {"days": 3, "reason": "补充说明"})
    assert d.open_tasks(no) == [("resolve", "water"), ("rule_extension", "xiagang")]


def test_resolve_warning_and_breach_are_reminders_only(district):
    d = district
    no = _dispatched(d)
    d.do(no, "water.staff", "sign")
    assert d.deliver(no, "resolve", "water", "sla_warning") == 1
    assert d.deliver(no, "resolve", "water", "sla_breach") == 1
    assert d.open_tasks(no) == [("resolve", "water")]


def test_resolve_overdue_at_the_district_keeps_the_department_on_it(district):
    d = district
    no = d.file("qingnian.grid", category="joint_pollution")
    d.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water"})
    d.do(no, "water.staff", "sign")
    assert d.deliver(no, "resolve", "water", "sla_overdue") == 1
    assert d.open_tasks(no) == [("resolve", "water")] and d.call(no).level == "district"


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
    assert d.deliver(no, "feedback", "xiagang", "sla_warning") == 1
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


def test_third_reopen_becomes_a_problem_ticket_at_the_district(district):
    d = district
    no = d.file("qingnian.grid", category="restaurant_fumes")
    for reopen in (1, 2, 3):
        d.do(no, "xiagang.dispatcher", "dispatch", {"lead": "eco"})
        d.do(no, "eco.staff", "sign")
        d.do(no, "eco.staff", "done", {"result": "已整改"})
        d.do(no, "qingnian.grid", "pass")
        d.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "unsatisfied", "resolved": False})
        call = d.call(no)
        assert call.reopen_count == reopen
    assert call.problem_ticket and call.level == "district"
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]


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
    d.do(no, "water.staff", "dispute", {"reason": "y"})
    assert d.open_tasks(no) == [("resolve", "water"), ("rule_dispute", "xiagang"), ("rule_extension", "xiagang")]
    assert d.deliver(no, "resolve", "water", "sla_overdue") == 1
    assert d.open_tasks(no) == [("district_coordinate", "huangpu")]


# ---- coverage of the diagram (keep last) -----------------------------------------------------------

def test_every_sequence_flow_and_boundary_event_is_taken_by_a_test_above(request):
    mine = {item.nodeid for item in request.session.items
            if item.path == request.path and item.nodeid != request.node.nodeid}
    if not mine <= _RAN:
        pytest.skip("needs the whole module in one run (it checks what the other tests took)")
    tree = etree.parse(str(DIAGRAM))
    flows = {(f.get("sourceRef"), f.get("targetRef")): f.get("id") for f in tree.iter(f"{BPMN}sequenceFlow")}
    boundaries = {b.get("id") for b in tree.iter(f"{BPMN}boundaryEvent")}
    assert sorted(flow for pair, flow in flows.items() if pair not in _TAKEN) == []
    assert sorted(boundaries - _FIRED) == []
