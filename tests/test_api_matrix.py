"""Every role × every endpoint of /api/v1: who may call what, including the forbidden cells.

One representative user per role, plus users of the same role in another unit (the org-scope
half of the check: a street sees only its communities' calls, a department only work dispatched
to it).  An allowed cell must get past authentication and authorization (any answer but 401/403);
a forbidden cell must be 403 (401 when not signed in).  Writes are sent with invalid bodies or
unknown ids, so an allowed cell answers 404/422 and the matrix leaves the data as it found it.
The table must name every operation in the OpenAPI document: a new endpoint without a row fails.
"""
from __future__ import annotations

import io

USERS = {
    "anonymous": None,
    "grid": "qingnian.grid",
    "community": "qingnian.staff",
    "street": "xiagang.dispatcher",
    "other_street": "luogang.dispatcher",
    "department": "power.staff",  # the call below is dispatched to power
    "other_department": "water.staff",
    "district": "huangpu.dispatcher",
    "supervisor": "huangpu.supervisor",
    "hotline": "huangpu.hotline",
    "admin": "admin",
}
SIGNED_IN = set(USERS) - {"anonymous"}
EVERYONE = set(USERS)
ADMIN = {"admin"}
SEES_CALL = {"grid", "community", "street", "department", "district", "supervisor", "admin"}
FILERS = {"grid", "community", "street", "other_street", "hotline"}
OVERSIGHT = {"district", "supervisor", "admin"}

# (method, OpenAPI path) -> (allowed users, concrete path, JSON body or None)
MATRIX = {
    ("GET", "/api/v1/health"): (EVERYONE, "/api/v1/health", None),
    ("POST", "/api/v1/auth/tokens"): (EVERYONE, "/api/v1/auth/tokens", {}),
    ("POST", "/api/v1/auth/session"): (EVERYONE, "/api/v1/auth/session", {}),
    ("DELETE", "/api/v1/auth/session"): (EVERYONE, "/api/v1/auth/session", None),
    ("DELETE", "/api/v1/auth/tokens/current"): (SIGNED_IN, "/api/v1/auth/tokens/current", None),
    ("GET", "/api/v1/auth/me"): (SIGNED_IN, "/api/v1/auth/me", None),
    ("POST", "/api/v1/admin/clock"): (ADMIN, "/api/v1/admin/clock", {}),
    ("POST", "/api/v1/calls"): (FILERS, "/api/v1/calls", {}),
    ("GET", "/api/v1/calls"): (SIGNED_IN, "/api/v1/calls", None),
    ("GET", "/api/v1/calls/{number}"): (SEES_CALL, "/api/v1/calls/{call}", None),
    ("GET", "/api/v1/calls/{number}/diagram"): (SEES_CALL, "/api/v1/calls/{call}/diagram", None),
    ("GET", "/api/v1/calls/{number}/duplicates"): (SEES_CALL, "/api/v1/calls/{call}/duplicates", None),
    ("GET", "/api/v1/reports/dashboard"): (OVERSIGHT, "/api/v1/reports/dashboard", None),
    ("POST", "/api/v1/attachments"): (SIGNED_IN, "/api/v1/attachments", None),
    ("GET", "/api/v1/attachments/{attachment_id}"): (SEES_CALL, "/api/v1/attachments/{photo}", None),
    ("GET", "/api/v1/work"): (SIGNED_IN, "/api/v1/work", None),
    ("GET", "/api/v1/work/{item_id}"): (SEES_CALL, "/api/v1/work/{sign_item}", None),
    ("POST", "/api/v1/work/{item_id}/actions/{action}"): ({"department"}, "/api/v1/work/{sign_item}/actions/sign",
                                                          {"note": 5}),
    ("GET", "/api/v1/supervision/overdue"): (OVERSIGHT, "/api/v1/supervision/overdue", None),
    ("POST", "/api/v1/supervision/urges"): ({"supervisor"}, "/api/v1/supervision/urges", {}),
    ("GET", "/api/v1/reports/ranking"): (SIGNED_IN, "/api/v1/reports/ranking?month=2026-10", None),
    ("GET", "/api/v1/categories"): (SIGNED_IN, "/api/v1/categories", None),
    ("GET", "/api/v1/categories/{code}"): (SIGNED_IN, "/api/v1/categories/noise", None),
    ("GET", "/api/v1/admin/calendar/due"): (SIGNED_IN, "/api/v1/admin/calendar/due?from=2026-09-30T17:00:00%2B08:00"
                                                       "&working_hours=2", None),
}
ADMIN_ONLY = {
    ("GET", "/api/v1/admin/webhooks/subscriptions"): ("/api/v1/admin/webhooks/subscriptions", None),
    ("POST", "/api/v1/admin/webhooks/subscriptions"): ("/api/v1/admin/webhooks/subscriptions", {}),
    ("GET", "/api/v1/admin/webhooks/subscriptions/{subscription_id}"):
        ("/api/v1/admin/webhooks/subscriptions/999999", None),
    ("PATCH", "/api/v1/admin/webhooks/subscriptions/{subscription_id}"):
        ("/api/v1/admin/webhooks/subscriptions/999999", {}),
    ("DELETE", "/api/v1/admin/webhooks/subscriptions/{subscription_id}"):
        ("/api/v1/admin/webhooks/subscriptions/999999", None),
    ("POST", "/api/v1/admin/webhooks/subscriptions/{subscription_id}/ping"):
        ("/api/v1/admin/webhooks/subscriptions/999999/ping", None),
    ("GET", "/api/v1/admin/webhooks/deliveries"): ("/api/v1/admin/webhooks/deliveries", None),
    ("GET", "/api/v1/admin/webhooks/deliveries/{delivery_id}"): ("/api/v1/admin/webhooks/deliveries/999999", None),
    ("POST", "/api/v1/admin/webhooks/deliveries/{delivery_id}/redeliver"):
        ("/api/v1/admin/webhooks/deliveries/999999/redeliver", None),
    ("GET", "/api/v1/admin/units"): ("/api/v1/admin/units", None),
    ("POST", "/api/v1/admin/units"): ("/api/v1/admin/units", {}),
    ("GET", "/api/v1/admin/units/{code}"): ("/api/v1/admin/units/xiagang", None),
    ("PATCH", "/api/v1/admin/units/{code}"): ("/api/v1/admin/units/no-such-unit", {}),
    ("GET", "/api/v1/admin/users"): ("/api/v1/admin/users", None),
    ("POST", "/api/v1/admin/users"): ("/api/v1/admin/users", {}),
    ("GET", "/api/v1/admin/users/{username}"): ("/api/v1/admin/users/qingnian.grid", None),
    ("PATCH", "/api/v1/admin/users/{username}"): ("/api/v1/admin/users/no.such.user", {}),
    ("POST", "/api/v1/admin/users/{username}/revoke-tokens"): ("/api/v1/admin/users/no.such.user/revoke-tokens",
                                                               None),
    ("GET", "/api/v1/admin/categories"): ("/api/v1/admin/categories", None),
    ("POST", "/api/v1/admin/categories"): ("/api/v1/admin/categories", {}),
    ("PATCH", "/api/v1/admin/categories/{code}"): ("/api/v1/admin/categories/no-such-category", {}),
    ("GET", "/api/v1/admin/definitions"): ("/api/v1/admin/definitions", None),
    ("POST", "/api/v1/admin/definitions"): ("/api/v1/admin/definitions", None),
    ("GET", "/api/v1/admin/definitions/{process_id}/{version}/files/{name}"):
        ("/api/v1/admin/definitions/call_dispatch/1/files/call_dispatch.bpmn", None),
    ("GET", "/api/v1/admin/sla-policies"): ("/api/v1/admin/sla-policies", None),
    ("POST", "/api/v1/admin/sla-policies"): ("/api/v1/admin/sla-policies", {}),
    ("GET", "/api/v1/admin/sla-policies/latest"): ("/api/v1/admin/sla-policies/latest", None),
    ("GET", "/api/v1/admin/sla-policies/{version}"): ("/api/v1/admin/sla-policies/1", None),
    ("GET", "/api/v1/admin/calendar"): ("/api/v1/admin/calendar", None),
    ("PUT", "/api/v1/admin/calendar/{day}"): ("/api/v1/admin/calendar/2031-01-01", {}),
    ("DELETE", "/api/v1/admin/calendar/{day}"): ("/api/v1/admin/calendar/2031-01-01", None),
    ("GET", "/api/v1/admin/apikeys"): ("/api/v1/admin/apikeys", None),
    ("POST", "/api/v1/admin/apikeys"): ("/api/v1/admin/apikeys", {}),
    ("DELETE", "/api/v1/admin/apikeys/{key_id}"): ("/api/v1/admin/apikeys/999999", None),
}
MATRIX.update({key: (ADMIN, path, body) for key, (path, body) in ADMIN_ONLY.items()})


# The reads of one call again, on a call the 12345 hotline filed for 青年社区 (still in triage): the hotline
# sees what it filed, as do the community and street it is in and the district; a department nothing yet.
SEES_HOTLINE_CALL = {"hotline", "grid", "community", "street", "district", "supervisor", "admin"}
HOTLINE_CALL_READS = {
    ("GET", "/api/v1/calls/{number}"): "/api/v1/calls/{hotline_call}",
    ("GET", "/api/v1/calls/{number}/diagram"): "/api/v1/calls/{hotline_call}/diagram",
    ("GET", "/api/v1/calls/{number}/duplicates"): "/api/v1/calls/{hotline_call}/duplicates",
    ("GET", "/api/v1/work/{item_id}"): "/api/v1/work/{hotline_item}",
    ("GET", "/api/v1/attachments/{attachment_id}"): "/api/v1/attachments/{hotline_photo}",
}


def _upload(api, username) -> int:
    r = api.as_(username).post("/api/v1/attachments", data={"file": (io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(32)),
                                                                      "p.png")},
                               content_type="multipart/form-data")
    assert r.status_code == 201, r.get_json()
    return r.get_json()[0]["id"]


def _setup(api) -> dict:
    photo = _upload(api, "qingnian.grid")
    call = api.file(category="road_flooding", photos=[photo])
    api.do(call, "xiagang.dispatcher", "dispatch", {"lead": "power"})
    sign = api.item(call, "power.staff")
    hotline_photo = _upload(api, "huangpu.hotline")
    hotline_call = api.file("huangpu.hotline", category="noise", community="qingnian", photos=[hotline_photo],
                            description="12345转来：夜间施工噪声")
    hotline_item = api.item(hotline_call, "xiagang.dispatcher")
    return {"call": call, "photo": photo, "sign_item": sign["id"], "hotline_call": hotline_call,
            "hotline_item": hotline_item["id"], "hotline_photo": hotline_photo}


def _wrong_cells(api, cells: dict, ids: dict) -> list[str]:
    """Each (method, template) -> (allowed users, path, body) tried as every user; the cells that answer wrong."""
    wrong = []
    for (method, template), (allowed, path, body) in sorted(cells.items()):
        path = path.format(**ids)
        for who, username in USERS.items():
            if (method, template) == ("DELETE", "/api/v1/auth/tokens/current"):
                api.tokens.pop(username, None)  # revoke a throwaway token, not the one the matrix uses
            kwargs = {"json": body} if body is not None else {}
            status = api.as_(username).open(method, path, **kwargs).status_code
            if (method, template) == ("DELETE", "/api/v1/auth/tokens/current"):
                api.tokens.pop(username, None)
            if who in allowed:
                ok = status not in (401, 403) and status < 500
            else:
                ok = status == (401 if username is None else 403)
            if not ok:
                wrong.append(f"{method} {path} as {who}: {status} ({'allowed' if who in allowed else 'forbidden'})")
    return wrong


def test_every_role_on_every_endpoint(api):
    ids = _setup(api)
    spec = api.client.get("/api/v1/openapi.json").get_json()
    operations = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete")}
    assert operations == set(MATRIX), {"missing rows": sorted(operations - set(MATRIX)),
                                       "stale rows": sorted(set(MATRIX) - operations)}
    wrong = _wrong_cells(api, MATRIX, ids)
    assert not wrong, "\n".join(wrong)


def test_every_role_on_the_reads_of_a_call_the_hotline_filed(api):
    ids = _setup(api)
    assert set(HOTLINE_CALL_READS) <= set(MATRIX)
    cells = {key: (SEES_HOTLINE_CALL, path, None) for key, path in HOTLINE_CALL_READS.items()}
    wrong = _wrong_cells(api, cells, ids)
    assert not wrong, "\n".join(wrong)
    # and what the hotline reads is its own call, in full
    hotline = api.as_("huangpu.hotline")
    detail = hotline.get(f"/api/v1/calls/{ids['hotline_call']}").get_json()
    assert detail["reporter"] == "huangpu.hotline" and [a["id"] for a in detail["attachments"]] == [
        ids["hotline_photo"]]
    assert [i["task"] for i in detail["open_items"]] == ["street_triage"]
    assert all(i["may_act"] is False for i in detail["open_items"]), "the hotline reads; the street acts"
    assert hotline.get(f"/api/v1/calls/{ids['call']}").status_code == 403, "someone else's call"


def test_a_list_never_shows_a_call_its_detail_refuses_nor_the_other_way_round(api):
    """For every signed-in role: the calls (and child tickets) it lists are exactly those it may open."""
    ids = _setup(api)
    api.do(ids["hotline_call"], "xiagang.dispatcher", "dispatch", {"lead": "power"})
    other_street = api.file("luofeng.grid", category="noise")
    joint = api.file(category="joint_pollution", description="河涌污染")
    api.do(joint, "huangpu.dispatcher", "coordinate", {"lead": "water", "assists": ["eco"]})
    children = [c["number"] for c in api.call(joint)["children"]]
    assert len(children) == 2
    everything = {ids["call"], ids["hotline_call"], other_street, joint, *children}
    seen_by = {}
    for who, username in USERS.items():
        if username is None:
            continue
        r = api.as_(username).get("/api/v1/calls", query_string={"include_children": "true", "per_page": 200})
        assert r.status_code == 200, (who, r.get_json())
        listed = {c["number"] for c in r.get_json()["items"]}
        opened = {no for no in everything if api.as_(username).get(f"/api/v1/calls/{no}").status_code == 200}
        assert listed == opened, (who, {"listed only": listed - opened, "opened only": opened - listed})
        seen_by[who] = listed
    assert seen_by["hotline"] == {ids["hotline_call"]}, "the calls it filed"
    assert seen_by["department"] == {ids["call"], ids["hotline_call"]}
    assert seen_by["other_department"] == {joint, f"{joint}-1"}, "water: the joint case and its own child"
    assert seen_by["other_street"] == {other_street}
    assert seen_by["supervisor"] == seen_by["district"] == seen_by["admin"] == everything


def test_scoped_lists_show_only_what_each_unit_may_see(api):
    ids = _setup(api)
    other = api.file("luofeng.grid", category="noise")

    def numbers(user):
        return {c["number"] for c in api.as_(user).get("/api/v1/calls?per_page=200").get_json()["items"]}

    assert numbers("xiagang.dispatcher") == {ids["call"], ids["hotline_call"]}
    assert numbers("luogang.dispatcher") == {other}
    assert numbers("power.staff") == {ids["call"]}
    assert numbers("water.staff") == set()
    assert numbers("qingnian.grid") == {ids["call"], ids["hotline_call"]}
    assert numbers("huangpu.supervisor") == numbers("admin") == {ids["call"], ids["hotline_call"], other}
    assert numbers("huangpu.hotline") == {ids["hotline_call"]}, "the hotline sees the calls it filed"
    queue = api.as_("power.staff").get("/api/v1/work").get_json()
    assert [e["item"]["id"] for e in queue["items"]] == [ids["sign_item"]]
    assert api.as_("water.staff").get("/api/v1/work").get_json()["items"] == []
