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


def _setup(api) -> dict:
    up = api.as_("qingnian.grid").post("/api/v1/attachments", data={"file": (io.BytesIO(b"\x89PNG\r\n\x1a\n" + bytes(32)),
                                                                           "p.png")},
                                       content_type="multipart/form-data").get_json()[0]
    call = api.file(category="road_flooding", photos=[up["id"]])
    api.do(call, "xiagang.dispatcher", "dispatch", {"lead": "power"})
    sign = api.item(call, "power.staff")
    return {"call": call, "photo": up["id"], "sign_item": sign["id"]}


def test_every_role_on_every_endpoint(api):
    ids = _setup(api)
    spec = api.client.get("/api/v1/openapi.json").get_json()
    operations = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops
                  if m in ("get", "post", "put", "patch", "delete")}
    assert operations == set(MATRIX), {"missing rows": sorted(operations - set(MATRIX)),
                                       "stale rows": sorted(set(MATRIX) - operations)}
    wrong = []
    for (method, template), (allowed, path, body) in sorted(MATRIX.items()):
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
    assert not wrong, "\n".join(wrong)


def test_scoped_lists_show_only_what_each_unit_may_see(api):
    ids = _setup(api)
    other = api.file("luofeng.grid", category="noise")

    def numbers(user):
        return {c["number"] for c in api.as_(user).get("/api/v1/calls?per_page=200").get_json()["items"]}

    assert numbers("xiagang.dispatcher") == {ids["call"]}
    assert numbers("luogang.dispatcher") == {other}
    assert numbers("power.staff") == {ids["call"]}
    assert numbers("water.staff") == set()
    assert numbers("qingnian.grid") == {ids["call"]}
    assert numbers("huangpu.supervisor") == numbers("admin") == {ids["call"], other}
    assert numbers("huangpu.hotline") == set(), "the hotline sees the calls it filed"
    queue = api.as_("power.staff").get("/api/v1/work").get_json()
    assert [e["item"]["id"] for e in queue["items"]] == [ids["sign_item"]]
    assert api.as_("water.staff").get("/api/v1/work").get_json()["items"] == []
