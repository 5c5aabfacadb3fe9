"""The actions of domain.md §2 by name (workflows.operations): every action of the process has its function,
and calls are played through them alone."""
from __future__ import annotations

import pytest

from engine.errors import ValidationFailed
from workflows import operations as op
from workflows.actions import ACTIONS

from .helpers import District


def test_every_action_of_the_process_has_a_named_function():
    table = {(task, action) for task, actions in ACTIONS.items() for action in actions}
    assert set(op.BY_ACTION) == table


class Named:
    """Play a call through the named functions, one transaction per step (restored from the database)."""

    def __init__(self, district: District):
        self.d = district

    def __call__(self, username, fn, number, task=None, **kwargs):
        item = self.d.item(number, username, task)
        self.d.from_storage()
        with self.d.session() as s:
            out = fn(self.d.ctx(s, username), item.id, **kwargs)
            s.commit()
        return out


def test_scenario_1_through_the_named_functions(district):
    d, do = district, Named(district)
    no = d.file("qingnian.grid", category="lift_install", direct_to_street=True,
                description="东园二街1号、2号加装电梯被电缆阻碍", location="夏港街东园二街1号")
    do("xiagang.dispatcher", op.dispatch, no, lead="power", assists=["telecom", "police"])
    for dept in ("power", "telecom", "police"):
        do(f"{dept}.staff", op.sign, no)
    do("power.staff", op.record_first_contact, no, note="现场会 site meeting")
    do("power.staff", op.request_extension, no, task="resolve", days=2, reason="需停电施工")
    do("xiagang.dispatcher", op.approve_extension, no)
    for dept, result in (("telecom", "通信线缆已迁移"), ("police", "监控线路已迁移"), ("power", "电缆已全部迁移")):
        do(f"{dept}.staff", op.report_done, no, result=result)
    do("qingnian.grid", op.verify, no, passed=True)
    out = do("xiagang.dispatcher", op.rate, no, satisfaction="satisfied", resolved=True)
    call = d.call(no)
    assert out.call.status == call.status == "closed" and call.result == "电缆已全部迁移"
    assert call.first_contact_at is not None
    assert "rule_extension.approve" in [e.action for e in d.view(no).timeline]


def test_the_other_roads_through_the_named_functions(district):
    d, do = district, Named(district)
    # the community handles one, verification fails, it handles it again
    no = d.file("qingnian.grid", category="pests")
    do("qingnian.staff", op.handle_in_community, no, result="已消杀")
    do("qingnian.grid", op.verify, no, passed=False, reason="仍有蚊虫")
    assert d.open_tasks(no) == [("community_handle", "qingnian")]
    do("qingnian.staff", op.call_the_street, no, reason="需专业消杀")
    # the street handles it itself
    do("xiagang.dispatcher", op.handle_in_street, no, note="街道城管科处理")
    do("xiagang.dispatcher", op.report_street_done, no, result="已专业消杀")
    assert d.call(no).status == "verify"
    # a dispute at sign, reassigned; a dispute later, confirmed with an assistant; on hold and back; refused extension
    no = d.file("qingnian.grid", category="street_vending", direct_to_street=True)
    do("xiagang.dispatcher", op.dispatch, no, lead="urban")
    do("urban.staff", op.dispute, no, reason="摊点在小区红线内")
    do("xiagang.dispatcher", op.reassign, no, department="market")
    do("market.staff", op.sign, no)
    do("market.staff", op.dispute, no, task="resolve", reason="需城管配合")
    do("xiagang.dispatcher", op.confirm_dispatch, no, assists=["urban"])
    do("urban.staff", op.report_done, no, result="已配合清理")
    do("market.staff", op.put_on_hold, no, reason="待执法程序")
    assert d.call(no).status == "on_hold"
    do("market.staff", op.resume, no)
    do("market.staff", op.request_extension, no, days=3, reason="待听证")
    do("xiagang.dispatcher", op.refuse_extension, no, reason="证据已足")
    do("market.staff", op.report_done, no, result="已取缔")
    do("qingnian.grid", op.verify, no, passed=True)
    do("xiagang.dispatcher", op.rate, no, satisfaction="unsatisfied", resolved=False)
    assert (d.call(no).status, d.call(no).reopen_count) == ("triage", 1)
    # merge into an earlier call, void, escalate, coordinate
    first = d.file("qingnian.grid", category="road_flooding", direct_to_street=True)
    again = d.file("qingnian.grid", category="road_flooding", direct_to_street=True)
    do("xiagang.dispatcher", op.merge, again, into=first)
    assert d.call(again).status == "merged"
    other = d.file("qingnian.grid", category="other", direct_to_street=True)
    do("xiagang.dispatcher", op.void, other, reason="测试呼叫")
    assert d.call(other).status == "voided"
    do("xiagang.dispatcher", op.escalate, first, reason="多部门")
    do("huangpu.dispatcher", op.coordinate, first, lead="water", assists=["housing"])
    assert sorted(c.department_code for c in d.view(first).children) == ["housing", "water"]


def test_a_named_action_on_the_wrong_task_or_with_bad_data_is_refused_and_changes_nothing(district):
    d, do = district, Named(district)
    no = d.file("qingnian.grid", category="road_flooding", direct_to_street=True)
    do("xiagang.dispatcher", op.dispatch, no, lead="water")
    before = d.state_of(no)
    with pytest.raises(ValidationFailed, match="'done' is not an action of"):
        do("water.staff", op.report_done, no, result="还没签收")
    assert d.state_of(no) == before and d.open_tasks(no) == [("sign", "water")]
    do("water.staff", op.sign, no)
    signed = d.state_of(no)
    with pytest.raises(ValidationFailed, match="invalid data for 'request_extension'"):
        do("water.staff", op.request_extension, no, days=30, reason="超过 10 个工作日")
    assert d.state_of(no) == signed and d.open_tasks(no) == [("resolve", "water")]
    do("water.staff", op.request_extension, no, days=3, reason="需排水管改造")
    assert d.open_tasks(no) == [("resolve", "water"), ("rule_extension", "xiagang")]
