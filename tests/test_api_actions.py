"""The actions of domain.md §2 beyond the happy path, over HTTP: each one done through
``POST /api/v1/work/{id}/actions/{action}`` and checked by what a client then reads (the call's status,
level, open items, timeline and SLA clocks from ``GET /api/v1/calls/{number}``), and each one refused
when the work item's state does not allow it: 422 (``validation_failed``) for data the action does not
take or an action the task does not offer, 409 (``conflict``) for a work item already done or an
action the process no longer allows, 403 (``forbidden``) for the wrong role or unit.

Deadlines are checked against values worked out by hand on the calendar of domain.md §3 (office hours
09:00-12:00 and 14:00-18:00, Asia/Shanghai); the demo's virtual clock starts on Monday 2026-10-12 09:00.
"""
from __future__ import annotations

from datetime import datetime

import pytest


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def post(api, username, item_id, action, data=None):
    return api.as_(username).post(f"/api/v1/work/{item_id}/actions/{action}", json={} if data is None else data)


def refused(response, status, *fields):
    """The response is the API's error with ``status``; ``fields`` are named in its field errors."""
    body = response.get_json()
    assert response.status_code == status, body
    assert set(body) == {"code", "message", "errors"}
    assert body["code"] == {403: "forbidden", 404: "not_found", 409: "conflict", 422: "validation_failed"}[status]
    assert set(fields) <= set(body["errors"]), body
    return body


def tasks(call) -> list[tuple[str, str]]:
    return sorted((i["task"], i["owner_unit"]) for i in call["open_items"])


def timeline(call) -> list[str]:
    return [e["action"] for e in call["timeline"]]


def clocks(call, stage) -> list[dict]:
    return [c for c in call["clocks"] if c["stage"] == stage]


def dispatched(api, category="road_flooding", lead="water", assists=(), signed=True):
    no = api.file(category=category)
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": lead, "assists": list(assists)})
    if signed:
        api.do(no, f"{lead}.staff", "sign")
    return no


# ---- 延期: request, approve, refuse ---------------------------------------------------------------------

def test_an_approved_extension_moves_the_resolve_deadline_by_the_days_asked(api):
    no = dispatched(api, signed=False)
    sign = api.item(no, "water.staff")
    refused(post(api, "water.staff", sign["id"], "request_extension", {"days": 3, "reason": "x"}), 422, "action")
    api.do(no, "water.staff", "sign")
    resolve = api.item(no, "water.staff")
    [clock] = clocks(api.call(no), "resolve")
    # 5 working days from Monday 09:00: 18:00 on the 5th working day after the start day
    assert at(clock["due_at"]) == at("2026-10-19T18:00:00+08:00") and clock["extension_days"] == 0
    refused(post(api, "water.staff", resolve["id"], "request_extension", {"days": 11, "reason": "太久"}), 422, "days")
    refused(post(api, "water.staff", resolve["id"], "request_extension", {"days": "3", "reason": "x"}), 422, "days")
    refused(post(api, "water.staff", resolve["id"], "request_extension", {"days": 3}), 422, "reason")

    out = api.do(no, "water.staff", "request_extension", {"days": 3, "reason": "需排水管改造"})
    assert out["item"]["id"] == resolve["id"] and out["item"]["state"] == "open", "the work goes on meanwhile"
    [rule] = out["opened"]
    assert rule["task"] == "rule_extension" and rule["owner_unit"] == "xiagang"
    assert rule["context"]["extension"] == {"days": 3, "reason": "需排水管改造", "department": "water"}
    call = api.call(no)
    assert tasks(call) == [("resolve", "water"), ("rule_extension", "xiagang")]
    assert call["status"] == "in_progress" and "resolve.request_extension" in timeline(call)
    # the department cannot rule on its own request; the command centre can
    refused(post(api, "water.staff", rule["id"], "approve"), 403)
    refused(post(api, "luogang.dispatcher", rule["id"], "approve"), 403)
    api.do(no, "xiagang.dispatcher", "approve", {"note": "同意延期3个工作日"})

    call = api.call(no)
    [clock] = clocks(call, "resolve")
    assert clock["extension_days"] == 3 and clock["state"] == "running"
    assert at(clock["due_at"]) == at("2026-10-22T18:00:00+08:00"), "Tue 20, Wed 21, Thu 22"
    [item] = [i for i in call["open_items"] if i["task"] == "resolve"]
    assert at(item["deadline"]["due_at"]) == at("2026-10-22T18:00:00+08:00")
    assert tasks(call) == [("resolve", "water")] and "rule_extension.approve" in timeline(call)
    # ruled once: approving or refusing it again is a conflict
    refused(post(api, "xiagang.dispatcher", rule["id"], "approve"), 409)
    refused(post(api, "xiagang.dispatcher", rule["id"], "refuse", {"reason": "改主意"}), 409)


def test_a_refused_extension_leaves_the_deadline_and_approving_without_a_request_is_refused(api):
    no = dispatched(api)
    resolve = api.item(no, "water.staff")
    # no extension was asked for: the resolve task offers no ruling, and the street has nothing to rule on
    refused(post(api, "water.staff", resolve["id"], "approve"), 422, "action")
    refused(post(api, "xiagang.dispatcher", resolve["id"], "approve"), 403)
    assert [e for e in api.queue("xiagang.dispatcher") if e["call"]["number"] == no] == []

    before = clocks(api.call(no), "resolve")
    api.do(no, "water.staff", "request_extension", {"days": 5, "reason": "材料未到"})
    rule = api.item(no, "xiagang.dispatcher", task="rule_extension")
    refused(post(api, "xiagang.dispatcher", rule["id"], "refuse"), 422, "reason")
    refused(post(api, "xiagang.dispatcher", rule["id"], "refuse", {"reason": "x", "days": 2}), 422, "days")
    api.do(no, "xiagang.dispatcher", "refuse", {"reason": "理由不足"})

    call = api.call(no)
    assert clocks(call, "resolve") == before, "a refused extension moves nothing"
    assert tasks(call) == [("resolve", "water")] and "rule_extension.refuse" in timeline(call)
    refused(post(api, "xiagang.dispatcher", rule["id"], "approve"), 409)


# ---- 挂账: hang and resume -------------------------------------------------------------------------------

def test_hang_pauses_the_clock_and_resume_moves_the_deadline_by_the_paused_working_time(api):
    no = dispatched(api, "lift_install", "housing", signed=False)
    sign = api.item(no, "housing.staff")
    refused(post(api, "housing.staff", sign["id"], "hang", {"reason": "x"}), 422, "action")
    api.do(no, "housing.staff", "sign")
    resolve = api.item(no, "housing.staff")
    refused(post(api, "housing.staff", resolve["id"], "resume"), 422, "action")
    refused(post(api, "housing.staff", resolve["id"], "hang", {}), 422, "reason")
    [clock] = clocks(api.call(no), "resolve")
    due = at("2026-11-02T18:00:00+08:00")  # a complex case: 15 working days from Monday 2026-10-12
    assert at(clock["due_at"]) == due

    out = api.do(no, "housing.staff", "hang", {"reason": "需立项施工，待资金到位"})
    assert [w["task"] for w in out["closed"]] == ["resolve"] and [w["task"] for w in out["opened"]] == ["on_hold"]
    call = api.call(no)
    assert call["status"] == "on_hold" and tasks(call) == [("on_hold", "housing")]
    [clock] = clocks(call, "resolve")
    assert clock["state"] == "paused" and clock["remaining"] is None
    on_hold = api.item(no, "housing.staff")
    refused(post(api, "housing.staff", on_hold["id"], "done", {"result": "x"}), 422, "action")
    refused(post(api, "water.staff", on_hold["id"], "resume"), 403)

    # held from Monday 09:00 to Tuesday 10:00: 7 + 1 = 8 working hours
    api.move_clock(set="2026-10-13T10:00:00+08:00")
    api.do(no, "housing.staff", "resume", {"note": "资金到位，恢复施工"})
    call = api.call(no)
    assert call["status"] == "in_progress" and tasks(call) == [("resolve", "housing")]
    [clock] = clocks(call, "resolve")
    assert clock["state"] == "running" and clock["paused_seconds"] == 8 * 3600
    # the deadline moves by those 8 working hours: Monday 18:00 -> Tuesday 09-12, 14-18 -> Wednesday 10:00
    assert at(clock["due_at"]) == at("2026-11-04T10:00:00+08:00")
    check = api.as_("housing.staff").get("/api/v1/admin/calendar/due",
                                         query_string={"from": due.isoformat(), "working_hours": 8}).get_json()
    assert at(check["due_at"]) == at(clock["due_at"])
    assert timeline(call)[-2:] == ["resolve.hang", "on_hold.resume"]
    refused(post(api, "housing.staff", on_hold["id"], "resume"), 409)


# ---- 首次联系: contact -----------------------------------------------------------------------------------

def test_first_contact_is_recorded_once_and_only_by_the_department_at_work(api):
    no = dispatched(api, signed=False)
    sign = api.item(no, "water.staff")
    refused(post(api, "water.staff", sign["id"], "contact"), 422, "action")
    api.do(no, "water.staff", "sign")
    resolve = api.item(no, "water.staff")
    refused(post(api, "power.staff", resolve["id"], "contact"), 403)
    refused(post(api, "water.staff", resolve["id"], "contact", {"note": 7}), 422, "note")
    assert api.call(no)["first_contact_at"] is None

    api.move_clock(set="2026-10-12T15:30:00+08:00")
    out = api.do(no, "water.staff", "contact", {"note": "已电话联系报事人"})
    assert out["opened"] == [] and out["closed"] == [] and out["item"]["state"] == "open"
    api.move_clock(set="2026-10-13T11:00:00+08:00")
    api.do(no, "water.staff", "contact", {"note": "再次联系"})
    call = api.call(no)
    assert at(call["first_contact_at"]) == at("2026-10-12T15:30:00+08:00"), "the first contact stays the first"
    assert timeline(call).count("resolve.contact") == 2 and tasks(call) == [("resolve", "water")]
    api.do(no, "water.staff", "done", {"result": "已疏通"})
    refused(post(api, "water.staff", resolve["id"], "contact"), 409)


# ---- 改派: a dispute ruled by reassigning -------------------------------------------------------------

def test_reassign_moves_the_disputed_work_to_another_department(api):
    # without a dispute there is nothing to rule on: triage offers no reassign, the department's work is not
    # the street's to touch
    undisputed = api.file(category="street_vending")
    triage = api.item(undisputed, "xiagang.dispatcher")
    refused(post(api, "xiagang.dispatcher", triage["id"], "reassign", {"department": "market"}), 422, "action")
    no = dispatched(api, "street_vending", "urban")
    resolve = api.item(no, "urban.staff")
    refused(post(api, "xiagang.dispatcher", resolve["id"], "reassign", {"department": "market"}), 403)
    assert [e for e in api.queue("xiagang.dispatcher") if e["call"]["number"] == no] == []
    api.do(no, "urban.staff", "dispute", {"reason": "摊点在小区红线内，应由市场监管处理"})
    rule = api.item(no, "xiagang.dispatcher", task="rule_dispute")
    assert tasks(api.call(no)) == [("resolve", "urban"), ("rule_dispute", "xiagang")]
    refused(post(api, "xiagang.dispatcher", rule["id"], "reassign", {"department": "urban"}), 422, "department")
    refused(post(api, "xiagang.dispatcher", rule["id"], "reassign", {"department": "nowhere"}), 422)  # (see below)
    refused(post(api, "xiagang.dispatcher", rule["id"], "reassign", {}), 422, "department")
    refused(post(api, "urban.staff", rule["id"], "reassign", {"department": "market"}), 403)

    out = api.do(no, "xiagang.dispatcher", "reassign", {"department": "market", "note": "改派市场监管"})
    assert [(w["task"], w["owner_unit"]) for w in out["opened"]] == [("sign", "market")]
    call = api.call(no)
    assert call["status"] == "dispatched" and tasks(call) == [("sign", "market")]
    assert "rule_dispute.reassign" in timeline(call)
    assert [c["state"] for c in clocks(call, "resolve")] == ["stopped"], "urban's clock stops with its work"
    assert [c["unit"] for c in clocks(call, "sign") if c["state"] == "running"] == ["market"]
    assert no in {c["number"] for c in api.as_("market.staff").get("/api/v1/calls").get_json()["items"]}
    refused(post(api, "xiagang.dispatcher", rule["id"], "reassign", {"department": "police"}), 409)


def test_reassign_to_an_unknown_department_names_the_department_field(api):
    no = dispatched(api, "street_vending", "urban")
    api.do(no, "urban.staff", "dispute", {"reason": "权属不清"})
    rule = api.item(no, "xiagang.dispatcher", task="rule_dispute")
    body = refused(post(api, "xiagang.dispatcher", rule["id"], "reassign", {"department": "nowhere"}), 422)
    assert set(body["errors"]) == {"department"}, body


def test_reassign_after_the_department_reported_done_is_a_conflict(api):
    no = dispatched(api, "street_vending", "urban")
    api.do(no, "urban.staff", "dispute", {"reason": "权属不清"})
    api.do(no, "urban.staff", "done", {"result": "已清理"}, task="resolve")
    rule = api.item(no, "xiagang.dispatcher", task="rule_dispute")
    body = refused(post(api, "xiagang.dispatcher", rule["id"], "reassign", {"department": "police"}), 409)
    assert "already reported" in body["message"]
    call = api.call(no)
    assert tasks(call) == [("rule_dispute", "xiagang")] and "rule_dispute.reassign" not in timeline(call)


# ---- triage: escalate, merge, handle ------------------------------------------------------------------

def test_escalate_sends_the_call_to_the_district(api):
    no = api.file(category="road_flooding")
    triage = api.item(no, "xiagang.dispatcher")
    refused(post(api, "xiagang.dispatcher", triage["id"], "escalate", {}), 422, "reason")
    refused(post(api, "luogang.dispatcher", triage["id"], "escalate", {"reason": "x"}), 403)
    refused(post(api, "huangpu.dispatcher", triage["id"], "escalate", {"reason": "x"}), 403)
    call = api.call(no)
    assert (call["level"], call["status"]) == ("street", "triage")

    out = api.do(no, "xiagang.dispatcher", "escalate", {"reason": "涉及多个部门，街道无法协调"})
    assert [(w["task"], w["owner_unit"]) for w in out["opened"]] == [("district_coordinate", "huangpu")]
    call = api.call(no)
    assert (call["level"], call["status"]) == ("district", "district")
    assert tasks(call) == [("district_coordinate", "huangpu")]
    assert "street_triage.escalate" in timeline(call)
    assert [c["state"] for c in clocks(call, "triage")] == ["stopped"]
    refused(post(api, "xiagang.dispatcher", triage["id"], "escalate", {"reason": "again"}), 409)
    refused(post(api, "xiagang.dispatcher", triage["id"], "dispatch", {"lead": "water"}), 409)


def test_merge_into_an_earlier_open_call_of_the_same_street(api):
    first = api.file(category="road_flooding", description="港前路积水")
    voided = api.file(category="road_flooding")
    api.do(voided, "xiagang.dispatcher", "void", {"reason": "误报"})
    elsewhere = api.file("luofeng.grid", category="road_flooding")
    second = api.file(category="road_flooding", description="港前路积水（重复）")
    triage = api.item(second, "xiagang.dispatcher")
    for into in (second, "HY-NOPE", voided, elsewhere):  # itself, unknown, voided, another street
        refused(post(api, "xiagang.dispatcher", triage["id"], "merge", {"into": into}), 422, "into")
    refused(post(api, "xiagang.dispatcher", triage["id"], "merge", {}), 422, "into")
    assert api.call(second)["status"] == "triage", "nothing changed"

    out = api.do(second, "xiagang.dispatcher", "merge", {"into": first, "note": "同一积水点"})
    assert out["opened"] == [] and out["call"]["status"] == "merged"
    call = api.call(second)
    assert call["status"] == "merged" and call["merged_into"] == first and call["open_items"] == []
    assert call["closed_at"] is not None and "street_triage.merge" in timeline(call)
    assert api.call(first)["status"] == "triage", "the earlier call goes on"
    refused(post(api, "xiagang.dispatcher", triage["id"], "merge", {"into": first}), 409)
    listed = api.as_("huangpu.supervisor").get("/api/v1/calls?status=merged").get_json()["items"]
    assert [c["number"] for c in listed] == [second]


def test_handle_means_what_its_task_says_community_with_a_result_street_with_a_note(api):
    # the community handles a minor matter itself (a result), then it is verified
    no = api.file(category="exposed_garbage")
    call = api.call(no)
    assert (call["status"], call["level"]) == ("reported", "community")
    assert tasks(call) == [("community_handle", "qingnian")]
    item = api.item(no, "qingnian.staff")
    refused(post(api, "qingnian.staff", item["id"], "handle", {}), 422, "result")
    refused(post(api, "qingnian.staff", item["id"], "handle", {"note": "x"}), 422, "result", "note")
    refused(post(api, "qingnian.grid", item["id"], "handle", {"result": "x"}), 403)  # grid workers file, staff handle
    out = api.do(no, "qingnian.staff", "handle", {"result": "已清运"})
    assert [(w["task"], w["owner_unit"]) for w in out["opened"]] == [("verify", "qingnian")]
    call = api.call(no)
    assert (call["status"], call["level"], call["result"]) == ("verify", "community", "已清运")
    assert "community_handle.handle" in timeline(call)
    refused(post(api, "qingnian.staff", item["id"], "call_street", {"reason": "x"}), 409)

    # the street handles one itself: the triage's handle takes a note, not a result
    no = api.file(category="other")
    triage = api.item(no, "xiagang.dispatcher")
    refused(post(api, "xiagang.dispatcher", triage["id"], "handle", {"result": "x"}), 422, "result")
    out = api.do(no, "xiagang.dispatcher", "handle", {"note": "街道综合执法队处理"})
    assert [(w["task"], w["owner_unit"]) for w in out["opened"]] == [("street_handle", "xiagang")]
    call = api.call(no)
    assert (call["status"], call["level"]) == ("in_progress", "street")
    assert [(c["unit"], c["state"]) for c in clocks(call, "resolve")] == [("xiagang", "running")]
    api.do(no, "xiagang.dispatcher", "done", {"result": "已处理"})
    assert api.call(no)["status"] == "verify"


def test_the_community_calls_the_street_when_it_cannot_solve_it(api):
    no = api.file(category="exposed_garbage")
    item = api.item(no, "qingnian.staff")
    refused(post(api, "qingnian.staff", item["id"], "call_street", {}), 422, "reason")
    refused(post(api, "puhui.staff", item["id"], "call_street", {"reason": "x"}), 403)
    refused(post(api, "qingnian.staff", item["id"], "dispatch", {"lead": "water"}), 422, "action")
    out = api.do(no, "qingnian.staff", "call_street", {"reason": "渣土量大，社区无力清运"})
    assert [(w["task"], w["owner_unit"]) for w in out["opened"]] == [("street_triage", "xiagang")]
    call = api.call(no)
    assert (call["status"], call["level"]) == ("triage", "street")
    assert tasks(call) == [("street_triage", "xiagang")]
    assert [c["state"] for c in clocks(call, "community_handle")] == ["stopped"]
    assert [c["state"] for c in clocks(call, "triage")] == ["running"]
    assert "community_handle.call_street" in timeline(call)
    refused(post(api, "qingnian.staff", item["id"], "call_street", {"reason": "again"}), 409)
    refused(post(api, "qingnian.staff", item["id"], "handle", {"result": "x"}), 409)


# ---- 核查不通过: verify fail is rework ------------------------------------------------------------------

def test_a_failed_verification_sends_the_work_back_as_rework(api):
    no = dispatched(api, assists=["transport"], signed=False)
    for dept in ("water", "transport"):
        api.do(no, f"{dept}.staff", "sign")
        api.do(no, f"{dept}.staff", "done", {"result": f"{dept} 已处理"})
    verify = api.item(no, "qingnian.grid")
    refused(post(api, "qingnian.grid", verify["id"], "fail", {}), 422, "reason")
    refused(post(api, "luofeng.grid", verify["id"], "fail", {"reason": "x"}), 403)
    refused(post(api, "water.staff", verify["id"], "pass"), 403)
    assert api.call(no)["rework_count"] == 0

    out = api.do(no, "qingnian.grid", "fail", {"reason": "现场仍有积水"})
    assert sorted((w["task"], w["owner_unit"]) for w in out["opened"]) == [("resolve", "transport"),
                                                                          ("resolve", "water")]
    call = api.call(no)
    assert call["status"] == "in_progress" and call["rework_count"] == 1
    assert tasks(call) == [("resolve", "transport"), ("resolve", "water")], "back to work, no second signing"
    assert "verify.fail" in timeline(call)
    rounds = sorted((c["unit"], c["round"], c["state"]) for c in clocks(call, "resolve"))
    assert rounds == [("transport", 1, "stopped"), ("transport", 2, "running"),
                      ("water", 1, "stopped"), ("water", 2, "running")]
    refused(post(api, "qingnian.grid", verify["id"], "pass"), 409)
    for dept in ("water", "transport"):
        api.do(no, f"{dept}.staff", "done", {"result": "返工完成"})
    api.do(no, "qingnian.grid", "pass")
    assert api.call(no)["status"] == "feedback"


# ---- the data an action takes -------------------------------------------------------------------------

@pytest.mark.parametrize("evidence, field", [(["https://elsewhere.example/x.jpg"], "evidence.0"),
                                             ("1", "evidence"), ([0], "evidence.0"), ([True], "evidence.0")])
def test_evidence_is_a_list_of_upload_ids(api, evidence, field):
    no = dispatched(api)
    item = api.item(no, "water.staff")
    refused(post(api, "water.staff", item["id"], "done", {"result": "x", "evidence": evidence}), 422, field)
    assert api.call(no)["status"] == "in_progress"


def test_an_action_name_no_task_has_is_refused_with_the_field_named(api):
    no = dispatched(api)
    item = api.item(no, "water.staff")
    body = refused(post(api, "water.staff", item["id"], "teleport"), 422, "action")
    assert "done" in " ".join(body["errors"]["action"])


# ---- the contract in the OpenAPI document ------------------------------------------------------------

JSON_TYPES = {"String": "string", "Integer": "integer", "Boolean": "boolean", "List": "array"}


def test_the_openapi_document_describes_every_action_and_the_data_it_takes(api):
    """Compared with the action table the service validates with (workflows.actions.ACTIONS): the ``action``
    path parameter lists every action, and every (task, action) points at a body schema with exactly that
    action's fields, their types and which are required.  An action added without its documentation, or
    documentation that drifts from the schema, fails here."""
    from workflows.actions import ACTIONS

    spec = api.client.get("/api/v1/openapi.json").get_json()
    path = spec["paths"]["/api/v1/work/{item_id}/actions/{action}"]
    op = path["post"]
    [param] = [p for p in path.get("parameters", []) + op.get("parameters", []) if p["name"] == "action"]
    assert param["in"] == "path" and param["required"] is True
    assert sorted(param["schema"]["enum"]) == sorted({a for actions in ACTIONS.values() for a in actions})

    body = op["requestBody"]
    assert body["required"] is True
    alternatives = {r["$ref"] for r in body["content"]["application/json"]["schema"]["anyOf"]}
    by_action = body["x-huying-action-bodies"]
    documented = {(task, action) for action, tasks_ in by_action.items() for task in tasks_}
    assert documented == {(task, action) for task, actions in ACTIONS.items() for action in actions}
    components = spec["components"]["schemas"]
    for task, actions in ACTIONS.items():
        for action, entry in actions.items():
            ref = by_action[action][task]["$ref"]
            assert ref in alternatives, (task, action)
            doc = components[ref.removeprefix("#/components/schemas/")]
            fields = {f.data_key or name: f for name, f in entry.schema().fields.items() if not f.dump_only}
            assert set(doc.get("properties", {})) == set(fields), (task, action)
            assert set(doc.get("required", [])) == {n for n, f in fields.items() if f.required}, (task, action)
            assert doc["additionalProperties"] is False, "a field the action does not know is refused"
            for name, f in fields.items():
                assert doc["properties"][name]["type"] == JSON_TYPES[type(f).__name__], (task, action, name)
            assert f"| `{task}` | `{action}` | `{ref.rsplit('/', 1)[1]}` |" in op["description"]
    # evidence is sent as the ids of uploads (the API turns them into links for the action)
    result = components[by_action["done"]["resolve"]["$ref"].rsplit("/", 1)[1]]
    assert result["properties"]["evidence"]["items"]["type"] == "integer"
    rate = components[by_action["rate"]["feedback"]["$ref"].rsplit("/", 1)[1]]
    assert rate["properties"]["satisfaction"]["enum"] == ["satisfied", "basically_satisfied", "unsatisfied"]
    assert {"403", "404", "409", "422"} <= set(op["responses"])
