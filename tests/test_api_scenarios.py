"""Scenarios 2-5 of domain.md §6 end to end through HTTP alone (scenario 1: tests/test_api_calls.py).

Time moves only through the admin clock endpoint, which runs the scheduler's sweep.
"""
from __future__ import annotations


def _timeline(api, no):
    return [e["action"] for e in api.call(no)["timeline"]]


def test_scenario_2_overdue_flooding_warned_urged_supervised_and_escalated(api):
    no = api.file(category="road_flooding", description="道路积水", location="港前路")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    api.do(no, "water.staff", "sign")
    resolve = api.item(no, "water.staff")
    assert resolve["task"] == "resolve" and resolve["deadline"]["state"] == "normal"
    # Monday 10:00 + 5 working days = Monday 2026-10-19 18:00; the warning comes at 80 %
    api.move_clock(set="2026-10-16T17:00:00+08:00")
    assert _timeline(api, no).count("event.sla_warning") == 1
    assert api.item(no, "water.staff")["deadline"]["state"] == "warning"
    assert api.as_("huangpu.supervisor").get("/api/v1/supervision/overdue").get_json()["total"] == 0
    api.move_clock(set="2026-10-20T10:00:00+08:00")
    assert _timeline(api, no).count("event.sla_breach") == 1  # 催办 from the scheduler
    item = api.item(no, "water.staff")
    assert item["deadline"]["state"] == "overdue" and item["deadline"]["remaining_seconds"] == -3600  # 1 working h
    overdue = api.as_("huangpu.supervisor").get("/api/v1/supervision/overdue").get_json()
    assert overdue["total"] == 1 and overdue["items"][0]["call"]["number"] == no
    assert overdue["items"][0]["clock"]["unit"] == "water"
    urged = api.as_("huangpu.supervisor").post("/api/v1/supervision/urges", json={
        "work_item": item["id"], "kind": "urge", "note": "请尽快处置"})
    assert urged.status_code == 201 and urged.get_json()["escalated"] is False
    # two 催办 now: the scheduler's at the deadline and the supervisor's
    assert api.as_("huangpu.supervisor").get("/api/v1/supervision/overdue").get_json()["items"][0]["urges"] == 2
    assert api.call(no)["level"] == "street"
    # five working days after the breach: 督办 and the district
    api.move_clock(set="2026-10-27T09:00:00+08:00")
    call = api.call(no)
    assert call["level"] == "district" and call["status"] == "district"
    assert "event.sla_overdue" in [e["action"] for e in call["timeline"]]
    coord = api.item(no, "huangpu.dispatcher")
    assert coord["task"] == "district_coordinate" and coord["context"]["supervised_department"] == "water"
    api.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water", "assists": ["housing", "transport"]})
    children = {c["department"] for c in api.call(no)["children"]}
    assert children == {"water", "housing", "transport"}
    ranking = api.as_("huangpu.supervisor").get("/api/v1/reports/ranking?month=2026-10").get_json()
    water = next(u for u in ranking["units"] if u["unit"] == "water")
    assert water["overdue"] >= 1 and "water" not in ranking["red"]


def test_a_supervisors_duban_past_the_deadline_escalates_at_once(api):
    no = api.file(category="road_flooding")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    api.do(no, "water.staff", "sign")
    item = api.item(no, "water.staff")
    sup = api.as_("huangpu.supervisor")
    early = sup.post("/api/v1/supervision/urges", json={"work_item": item["id"], "kind": "supervise"})
    assert early.status_code == 201 and early.get_json()["escalated"] is False  # a formal order, not yet due
    api.move_clock(set="2026-10-20T09:00:00+08:00")
    item = api.item(no, "water.staff")
    r = api.as_("huangpu.supervisor").post("/api/v1/supervision/urges",
                                           json={"work_item": item["id"], "kind": "supervise", "note": "督办"})
    assert r.status_code == 201 and r.get_json()["escalated"] is True
    assert api.call(no)["level"] == "district"
    # the scheduler does not fire the same 督办 again later
    api.move_clock(set="2026-10-28T09:00:00+08:00")
    assert _timeline(api, no).count("event.sla_overdue") == 1
    # only supervisors urge; bad input is a 422
    assert api.as_("huangpu.dispatcher").post("/api/v1/supervision/urges", json={
        "work_item": item["id"], "kind": "urge"}).status_code == 403
    bad = api.as_("huangpu.supervisor").post("/api/v1/supervision/urges", json={"work_item": "x", "kind": "shout"})
    assert bad.status_code == 422 and {"work_item", "kind"} <= set(bad.get_json()["errors"])


def test_scenario_3_dispute_keeps_the_clock_and_the_street_rules(api):
    no = api.file(category="street_vending", description="广场占道经营", location="青年广场")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "urban"})
    api.do(no, "urban.staff", "sign")
    before = api.item(no, "urban.staff")
    api.do(no, "urban.staff", "dispute", {"reason": "权属不清 广场属物业管理"})
    after = api.item(no, "urban.staff")
    assert after["id"] == before["id"] and after["deadline"]["due_at"] == before["deadline"]["due_at"]
    assert after["context"]["dispute"]["reason"].startswith("权属不清")
    ruling = api.item(no, "xiagang.dispatcher")
    assert ruling["task"] == "rule_dispute" and set(ruling["actions"]) == {"confirm", "reassign"}
    api.do(no, "xiagang.dispatcher", "confirm", {"assists": ["property_mgmt"], "note": "城管牵头，物业协办"})
    api.do(no, "property_mgmt.staff", "done", {"result": "物业配合清理"})
    api.do(no, "urban.staff", "done", {"result": "占道经营已清理"})
    assert api.call(no)["status"] == "verify"


def test_scenario_4_joint_district_case_closes_after_every_child(api):
    no = api.file(category="joint_pollution", description="作坊污水直排河涌，河岸违建棚屋", location="南岗河")
    assert api.call(no)["level"] == "district"
    api.do(no, "huangpu.dispatcher", "coordinate", {"lead": "water", "assists": ["eco", "urban", "market"]})
    children = {c["department"]: c["number"] for c in api.call(no)["children"]}
    assert sorted(children) == ["eco", "market", "urban", "water"]
    for dept in children:
        api.do(no, f"{dept}.staff", "sign")
    for dept in ("eco", "urban", "market"):
        api.do(no, f"{dept}.staff", "done", {"result": f"{dept} 已处置"})
    assert api.call(no)["status"] == "in_progress"
    child = api.as_("eco.staff").get(f"/api/v1/calls/{children['eco']}")
    assert child.status_code == 200 and child.get_json()["status"] == "closed"
    assert api.as_("eco.staff").get(f"/api/v1/calls/{children['water']}").status_code == 403
    api.do(no, "water.staff", "done", {"result": "截污完成，水质达标"})
    api.do(no, "qingnian.grid", "pass")
    api.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "basically_satisfied", "resolved": True})
    call = api.call(no)
    assert call["status"] == "closed" and all(c["status"] == "closed" for c in call["children"])


def test_scenario_5_third_reopen_is_a_problem_ticket_at_the_district(api):
    no = api.file(category="restaurant_fumes", description="餐饮油烟扰民", location="夏港大道")
    for reopen in (1, 2, 3):
        api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "eco"})
        api.do(no, "eco.staff", "sign")
        api.do(no, "eco.staff", "done", {"result": "已整改"})
        api.do(no, "qingnian.grid", "pass")
        api.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "unsatisfied", "resolved": False})
        call = api.call(no)
        assert call["reopen_count"] == reopen
        assert call["problem_ticket"] is (reopen == 3)
        assert call["level"] == ("district" if reopen == 3 else "street")
    coord = api.item(no, "huangpu.dispatcher")
    assert coord["task"] == "district_coordinate" and coord["context"]["problem_ticket"] is True
