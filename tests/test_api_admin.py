"""The admin API: org units, users, categories, process and SLA-policy versions, the calendar, API keys.

Every endpoint checks the role (403 for non-admins, whatever they send) and the org scope (an admin manages
their own district); refused requests write nothing.
"""
from __future__ import annotations

import io
import re
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from config.settings import PROJECT_ROOT
from engine.calendar import PACKAGE_YEARS
from engine.models import CalendarOverride, ProcessDefinition, SlaPolicy
from workflows.models import ApiKey, ApiToken, Category, OrgUnit, User

A = "/api/v1/admin"
BPMN = (PROJECT_ROOT / "bpmn" / "call_dispatch.bpmn").read_bytes()
DMN = (PROJECT_ROOT / "bpmn" / "routing.dmn").read_bytes()
ALT_DMN = (PROJECT_ROOT / "tests" / "data" / "routing_alt.dmn").read_bytes()


def snapshot(services) -> dict:
    """Everything the admin API can change, to check a refused request changed nothing."""
    with services.session_factory() as s:
        return {
            "units": sorted(s.execute(select(OrgUnit.code, OrgUnit.name, OrgUnit.name_en, OrgUnit.active)).all()),
            "users": sorted(s.execute(select(User.username, User.display_name, User.role, User.unit_id, User.active,
                                             User.password_hash)).all()),
            "categories": sorted(s.execute(select(Category.code, Category.name, Category.active)).all()),
            "definitions": sorted(s.execute(select(ProcessDefinition.process_id, ProcessDefinition.version)).all()),
            "policies": s.scalar(select(func.count()).select_from(SlaPolicy)),
            "overrides": sorted(s.execute(select(CalendarOverride.day, CalendarOverride.workday)).all()),
            "keys": sorted(s.execute(select(ApiKey.name, ApiKey.revoked_at)).all()),
            "revoked_tokens": s.scalar(select(func.count()).select_from(ApiToken)
                                       .where(ApiToken.revoked_at.is_not(None))),
        }


def bundle(dmn=DMN, bpmn=BPMN, note=None):
    data = {"files": [(io.BytesIO(bpmn), "call_dispatch.bpmn"), (io.BytesIO(dmn), "routing.dmn")]}
    if note is not None:
        data["note"] = note
    return {"data": data, "content_type": "multipart/form-data"}


def sign_in(api, username, password):
    return api.client.post("/api/v1/auth/tokens", json={"username": username, "password": password})


def at(text: str) -> datetime:
    """An ISO 8601 time with its offset, for comparing instants."""
    return datetime.fromisoformat(text)


def me(api, token):
    return api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})


# ---- role: 403 for everyone but admins, 401 when not signed in ------------------------------------------
ADMIN_ONLY = [
    ("GET", "/units", None),
    ("POST", "/units", {"code": "dongyuan", "name": "东园社区", "kind": "community", "parent": "xiagang"}),
    ("GET", "/units/xiagang", None),
    ("PATCH", "/units/qingnian", {"active": False}),
    ("GET", "/users", None),
    ("POST", "/users", {"username": "x.grid", "display_name": "X", "password": "long-enough",
                        "role": "grid_worker", "unit": "qingnian"}),
    ("GET", "/users/admin", None),
    ("PATCH", "/users/qingnian.grid", {"active": False}),
    ("POST", "/users/qingnian.grid/revoke-tokens", None),
    ("GET", "/categories", None),
    ("POST", "/categories", {"code": "noise", "name": "噪音"}),
    ("PATCH", "/categories/road_flooding", {"active": False}),
    ("GET", "/definitions", None),
    ("POST", "/definitions", "bundle"),
    ("GET", "/definitions/call_dispatch/1/files/routing.dmn", None),
    ("GET", "/sla-policies", None),
    ("GET", "/sla-policies/latest", None),
    ("GET", "/sla-policies/1", None),
    ("POST", "/sla-policies", {"rules": [{"match": {"stage": "triage"}, "target": {"working_hours": 1}}]}),
    ("GET", "/calendar", None),
    ("PUT", "/calendar/2026-10-13", {"workday": False}),
    ("DELETE", "/calendar/2026-10-13", None),
    ("GET", "/apikeys", None),
    ("POST", "/apikeys", {"name": "gateway"}),
    ("DELETE", "/apikeys/1", None),
]


def _send(api, username, method, path, body):
    kwargs = {}
    if body == "bundle":
        kwargs = bundle(ALT_DMN)
    elif body is not None:
        kwargs = {"json": body}
    return api.as_(username).open(method, A + path, **kwargs)


@pytest.mark.parametrize("username", ["huangpu.supervisor", "water.staff", "xiagang.dispatcher"])
def test_only_admins_may_use_the_admin_api_and_refusals_write_nothing(api, services, username):
    before = snapshot(services)
    for method, path, body in ADMIN_ONLY:
        r = _send(api, username, method, path, body)
        assert r.status_code == 403, (method, path, r.get_json())
        assert r.get_json()["code"] == "forbidden" and set(r.get_json()) == {"code", "message", "errors"}
    # the role is checked before the body: garbage from a non-admin is still a 403, not a 422
    r = api.as_(username).post(f"{A}/users", json={"username": 5})
    assert r.status_code == 403
    assert snapshot(services) == before


def test_not_signed_in_is_401(api):
    for method, path, body in ADMIN_ONLY[:3] + [("GET", "/calendar/due?from=2026-10-12T09:00&wall_hours=1", None)]:
        r = _send(api, None, method, path, body)
        assert r.status_code == 401 and r.get_json()["code"] == "unauthorized"
    assert api.as_(None).get("/api/v1/categories").status_code == 401


def test_every_admin_endpoint_is_in_the_openapi_document_with_schemas(api):
    spec = api.client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]

    def template_of(path):
        found = [t for t in paths if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(t)), A + path)]
        assert found, path
        return min(found, key=lambda t: t.count("{"))  # /calendar/due before /calendar/{day}

    for method, path, _ in ADMIN_ONLY:
        template = template_of(path)
        op = paths[template][method.lower()]
        assert op.get("summary"), (method, template)
        assert {"401", "403"} <= set(op["responses"]), (method, template)
        ok = next(code for code in op["responses"] if code.startswith("2"))
        if method in ("POST", "PUT", "PATCH") and not template.endswith("revoke-tokens"):
            assert "requestBody" in op, (method, template)
        if not template.endswith("/files/{name}"):
            assert "schema" in op["responses"][ok]["content"]["application/json"], (method, template)
    assert {f"{A}/calendar/due", "/api/v1/categories", "/api/v1/categories/{code}"} <= set(paths)
    deploy = paths[f"{A}/definitions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(spec["components"]["schemas"][deploy["$ref"].rsplit("/", 1)[1]]["properties"]) == {"files", "note"}
    assert set(spec["components"]["schemas"]["Error"]["properties"]) == {"code", "message", "errors"}


# ---- org scope: another district's units and users are out of reach --------------------------------
@pytest.fixture
def other_district(services):
    with services.session_factory() as s:
        tianhe = OrgUnit(code="tianhe", name="天河区", name_en="Tianhe", kind="district")
        street = OrgUnit(code="shipai", name="石牌街", name_en="Shipai", kind="street", parent=tianhe)
        s.add_all([tianhe, street])
        s.flush()
        hash_ = s.scalar(select(User.password_hash).where(User.username == "admin"))
        s.add_all([User(username="tianhe.admin", display_name="天河管理员", password_hash=hash_, role="admin",
                        unit=tianhe),
                   User(username="shipai.dispatcher", display_name="石牌调度", password_hash=hash_,
                        role="street_dispatcher", unit=street),
                   User(username="tianhe.hotline", display_name="天河热线", password_hash=hash_, role="hotline",
                        unit=tianhe)])
        s.commit()


def test_an_admin_manages_only_their_own_district(api, services, other_district):
    admin = api.as_("admin")
    codes = {u["code"] for u in admin.get(f"{A}/units").get_json()}
    assert "xiagang" in codes and not codes & {"tianhe", "shipai"}
    assert "shipai.dispatcher" not in {u["username"] for u in admin.get(f"{A}/users?per_page=200").get_json()["items"]}
    before = snapshot(services)
    for method, path, body in [
        ("GET", "/units/shipai", None),
        ("PATCH", "/units/shipai", {"name": "改名"}),
        ("POST", "/units", {"code": "new1", "name": "新社区", "kind": "community", "parent": "shipai"}),
        ("GET", "/users/shipai.dispatcher", None),
        ("PATCH", "/users/shipai.dispatcher", {"active": False}),
        ("POST", "/users/shipai.dispatcher/revoke-tokens", None),
        ("POST", "/users", {"username": "new.dispatcher", "display_name": "N", "password": "long-enough",
                            "role": "street_dispatcher", "unit": "shipai"}),
        ("PATCH", "/users/xiagang.dispatcher", {"unit": "shipai"}),
        ("POST", "/apikeys", {"name": "tianhe-gateway", "user": "tianhe.hotline"}),
    ]:
        r = _send(api, "admin", method, path, body)
        assert r.status_code == 403, (method, path, r.get_json())
        assert "tianhe" in r.get_json()["message"]
    assert snapshot(services) == before
    # and the other way round
    assert api.as_("tianhe.admin").get(f"{A}/users/qingnian.grid").status_code == 403
    r = api.as_("tianhe.admin").post(f"{A}/apikeys", json={"name": "tianhe-gateway"})
    assert r.status_code == 201 and r.get_json()["user"] == "tianhe.hotline"
    assert [k["name"] for k in api.as_("admin").get(f"{A}/apikeys").get_json()] == []
    key_id = r.get_json()["id"]
    assert api.as_("admin").delete(f"{A}/apikeys/{key_id}").status_code == 403


def test_nul_characters_and_huge_ids_are_refused_never_a_500(api, services):
    admin = api.as_("admin")
    before = snapshot(services)
    for method, path, kwargs, status in [
        ("POST", "/units", {"json": {"code": "x1", "name": "a\x00b", "kind": "community", "parent": "xiagang"}}, 422),
        ("POST", "/units", {"json": {"code": "x1", "name": "X", "kind": "community", "parent": "x\x00"}}, 422),
        ("POST", "/users", {"json": {"username": "a.b", "display_name": "\x00", "password": "long-enough",
                                     "role": "grid_worker", "unit": "qingnian"}}, 422),
        ("PATCH", "/users/qingnian.grid", {"json": {"unit": "qingnian\x00"}}, 422),
        ("PATCH", "/categories/noise", {"json": {"name_en": "\x07"}}, 422),
        ("GET", "/units/a%00b", {}, 404),
        ("GET", "/users/a%00", {}, 404),
        ("PATCH", "/users/a%00", {"json": {"active": False}}, 404),
        ("GET", "/users?q=%00", {}, 422),
        ("GET", "/units?parent=%00", {}, 422),
        ("GET", "/definitions?process_id=call%00", {}, 422),
        ("GET", "/definitions/call%00/1/files/routing.dmn", {}, 404),
        ("GET", "/definitions/call_dispatch/99999999999/files/routing.dmn", {}, 404),
        ("GET", "/sla-policies/99999999999", {}, 404),
        ("DELETE", "/apikeys/99999999999", {}, 404),
        ("POST", "/apikeys", {"json": {"name": "k\x00"}}, 422),
        ("POST", "/apikeys", {"json": {"name": "k", "user": "qingnian.grid\x00"}}, 422),
        ("PUT", "/calendar/2026-10-12", {"json": {"workday": False, "note": "\x00"}}, 422),
        ("PUT", "/calendar/2026-10-1%00", {"json": {"workday": False}}, 404),
        ("GET", "/calendar/due?from=9999-12-31T00:00&working_days=365", {}, 422),
        ("POST", "/sla-policies", {"json": {"note": "\x00", "rules": [{"match": {"stage": "triage"},
                                                                        "target": {"working_days": 1}}]}}, 422),
        ("POST", "/definitions", {**bundle(), "data": {**bundle()["data"], "note": "\x00"}}, 422),
        ("POST", "/definitions", {"data": {"files": [(io.BytesIO(BPMN), "a\x01.bpmn")]},
                                  "content_type": "multipart/form-data"}, 422),
    ]:
        r = admin.open(method, A + path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.get_json())
        assert set(r.get_json()) == {"code", "message", "errors"}
    assert api.as_("qingnian.grid").get("/api/v1/categories/a%00").status_code == 404
    assert snapshot(services) == before


# ---- org units ----------------------------------------------------------------------------------------
def test_list_units_with_filters(api):
    admin = api.as_("admin")
    units = admin.get(f"{A}/units").get_json()
    by_code = {u["code"]: u for u in units}
    assert by_code["huangpu"]["kind"] == "district" and by_code["huangpu"]["parent"] is None
    assert by_code["qingnian"] == {"code": "qingnian", "name": "青年社区", "name_en": "Qingnian Community",
                                   "kind": "community", "parent": "xiagang", "active": True, "active_users": 2}
    streets = admin.get(f"{A}/units?kind=street").get_json()
    assert {u["code"] for u in streets} == {"xiagang", "luogang", "changzhou"}
    under = admin.get(f"{A}/units?parent=xiagang").get_json()
    assert {u["code"] for u in under} == {"qingnian", "puhui", "honggang"}
    assert admin.get(f"{A}/units?active=false").get_json() == []
    r = admin.get(f"{A}/units?kind=planet")
    assert r.status_code == 422 and "kind" in r.get_json()["errors"]
    r = admin.get(f"{A}/units?parent=atlantis")
    assert r.status_code == 422 and "parent" in r.get_json()["errors"]


def test_create_a_community_then_a_user_in_it_who_can_sign_in_and_file(api, services):
    admin = api.as_("admin")
    r = admin.post(f"{A}/units", json={"code": "dongyuan", "name": "东园社区", "name_en": "Dongyuan",
                                       "kind": "community", "parent": "xiagang"})
    assert r.status_code == 201, r.get_json()
    assert r.get_json() == {"code": "dongyuan", "name": "东园社区", "name_en": "Dongyuan", "kind": "community",
                            "parent": "xiagang", "active": True, "active_users": 0}
    assert r.headers["Location"] == f"{A}/units/dongyuan"
    assert admin.get(f"{A}/units/dongyuan").get_json()["parent"] == "xiagang"
    r = admin.post(f"{A}/users", json={"username": "dongyuan.grid", "display_name": "东园网格员",
                                       "password": "s3cret-pass", "role": "grid_worker", "unit": "dongyuan"})
    assert r.status_code == 201, r.get_json()
    assert r.get_json() == {"username": "dongyuan.grid", "display_name": "东园网格员", "role": "grid_worker",
                            "active": True, "unit": {"code": "dongyuan", "name": "东园社区", "name_en": "Dongyuan",
                                                     "kind": "community"}}
    assert "password" not in r.get_json()
    with services.session_factory() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "dongyuan.grid"))
    assert stored.startswith("$argon2id$") and "s3cret-pass" not in stored
    token = sign_in(api, "dongyuan.grid", "s3cret-pass").get_json()["token"]
    r = api.client.post("/api/v1/calls", headers={"Authorization": f"Bearer {token}"},
                        json={"category": "road_flooding", "description": "积水", "location": "东园路"})
    assert r.status_code == 201, r.get_json()
    assert (r.get_json()["community"], r.get_json()["street"]) == ("dongyuan", "xiagang")
    assert admin.get(f"{A}/units/dongyuan").get_json()["active_users"] == 1


def test_street_and_department_hang_under_the_district(api):
    admin = api.as_("admin")
    r = admin.post(f"{A}/units", json={"code": "huangpu-st", "name": "黄埔街", "kind": "street", "parent": "huangpu"})
    assert r.status_code == 201
    r = admin.post(f"{A}/units", json={"code": "gas2", "name": "燃气二", "kind": "department", "parent": "huangpu"})
    assert r.status_code == 201 and r.get_json()["kind"] == "department"


@pytest.mark.parametrize("body, field, needle", [
    ({"code": "x1", "name": "X", "kind": "community", "parent": "huangpu"}, "parent", "belongs under a street"),
    ({"code": "x1", "name": "X", "kind": "street", "parent": "xiagang"}, "parent", "belongs under a district"),
    ({"code": "x1", "name": "X", "kind": "department", "parent": "qingnian"}, "parent", "a community"),
    ({"code": "x1", "name": "X", "kind": "community", "parent": "nowhere"}, "parent", "unknown"),
    ({"code": "x1", "name": "X", "kind": "district", "parent": "huangpu"}, "kind", "one of"),
    ({"code": "X 1", "name": "X", "kind": "community", "parent": "xiagang"}, "code", "lower-case"),
    ({"code": "x1", "name": "", "kind": "community", "parent": "xiagang"}, "name", ""),
    ({"code": "x1", "name": "X", "kind": "community"}, "parent", "Missing"),
    ({"code": "x1", "name": "X", "kind": "community", "parent": "xiagang", "colour": "red"}, "colour", "Unknown"),
])
def test_creating_a_unit_with_bad_fields_is_422_naming_the_field(api, services, body, field, needle):
    before = snapshot(services)
    r = api.as_("admin").post(f"{A}/units", json=body)
    assert r.status_code == 422, r.get_json()
    assert r.get_json()["code"] == "validation_failed"
    assert field in r.get_json()["errors"] and needle in " ".join(r.get_json()["errors"][field])
    assert snapshot(services) == before


def test_unit_code_conflict_and_missing_unit(api, services):
    admin = api.as_("admin")
    before = snapshot(services)
    r = admin.post(f"{A}/units", json={"code": "qingnian", "name": "又一个", "kind": "community", "parent": "luogang"})
    assert r.status_code == 409 and r.get_json()["code"] == "conflict" and "qingnian" in r.get_json()["message"]
    assert admin.get(f"{A}/units/atlantis").status_code == 404
    r = admin.patch(f"{A}/units/atlantis", json={"name": "x"})
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"
    assert snapshot(services) == before


def test_rename_and_retire_a_unit(api, services):
    admin = api.as_("admin")
    r = admin.patch(f"{A}/units/qingnian", json={"name": "青年社区（新）", "name_en": "Qingnian New"})
    assert r.status_code == 200 and r.get_json()["name"] == "青年社区（新）"
    r = admin.patch(f"{A}/units/qingnian", json={})
    assert r.status_code == 422 and "_schema" in r.get_json()["errors"]
    before = snapshot(services)
    # active users: refused, naming them
    r = admin.patch(f"{A}/units/qingnian", json={"active": False})
    assert r.status_code == 409, r.get_json()
    assert "qingnian.grid" in r.get_json()["message"] and "qingnian.staff" in r.get_json()["message"]
    r = admin.patch(f"{A}/units/xiagang", json={"active": False, "name": "won't happen"})
    assert r.status_code == 409 and "xiagang.dispatcher" in r.get_json()["message"]
    # active sub-units: refused, naming them
    assert admin.post(f"{A}/units", json={"code": "newst", "name": "新街", "kind": "street",
                                          "parent": "huangpu"}).status_code == 201
    assert admin.post(f"{A}/units", json={"code": "newco", "name": "新社区", "kind": "community",
                                          "parent": "newst"}).status_code == 201
    r = admin.patch(f"{A}/units/newst", json={"active": False})
    assert r.status_code == 409 and "sub-units (newco)" in r.get_json()["message"]
    assert admin.patch(f"{A}/units/newco", json={"active": False}).status_code == 200
    assert admin.patch(f"{A}/units/newst", json={"active": False}).status_code == 200
    r = admin.patch(f"{A}/units/newco", json={"active": True})
    assert r.status_code == 409 and "reactivate the parent first" in r.get_json()["message"]
    for u in ("honggang.grid", "honggang.staff"):
        assert admin.patch(f"{A}/users/{u}", json={"active": False}).status_code == 200
    # a renamed-but-refused request left nothing behind
    assert admin.get(f"{A}/units/xiagang").get_json()["name"] == "夏港街"
    assert admin.get(f"{A}/units/qingnian").get_json()["active"] is True
    assert {u[0] for u in before["units"]} | {"newst", "newco"} == {u[0] for u in snapshot(services)["units"]}
    # a unit without users or open work can retire, and comes back only under an active parent
    r = admin.patch(f"{A}/units/honggang", json={"active": False})
    assert r.status_code == 200 and r.get_json()["active"] is False
    assert {u["code"] for u in admin.get(f"{A}/units?active=false").get_json()} == {"honggang", "newst", "newco"}
    r = admin.post(f"{A}/users", json={"username": "hg.grid", "display_name": "x", "password": "long-enough",
                                       "role": "grid_worker", "unit": "honggang"})
    assert r.status_code == 422 and "unit" in r.get_json()["errors"]
    assert admin.patch(f"{A}/units/honggang", json={"active": True}).status_code == 200


def test_a_unit_holding_open_work_cannot_retire(api):
    admin = api.as_("admin")
    no = api.file(category="road_flooding")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    assert admin.patch(f"{A}/users/water.staff", json={"active": False}).status_code == 200
    r = admin.patch(f"{A}/units/water", json={"active": False})
    assert r.status_code == 409 and "open work item" in r.get_json()["message"]


# ---- users --------------------------------------------------------------------------------------------
def test_list_users_with_filters_and_paging(api):
    admin = api.as_("admin")
    page = admin.get(f"{A}/users?per_page=5").get_json()
    assert page["page"] == 1 and page["per_page"] == 5 and len(page["items"]) == 5 and page["total"] > 20
    second = admin.get(f"{A}/users?per_page=5&page=2").get_json()
    assert not {u["username"] for u in page["items"]} & {u["username"] for u in second["items"]}
    grid = admin.get(f"{A}/users?role=grid_worker&per_page=200").get_json()
    assert grid["total"] == len(grid["items"]) and {u["role"] for u in grid["items"]} == {"grid_worker"}
    qn = admin.get(f"{A}/users?unit=qingnian").get_json()
    assert {u["username"] for u in qn["items"]} == {"qingnian.grid", "qingnian.staff"}
    found = admin.get(f"{A}/users", query_string={"q": "WATER"}).get_json()
    assert [u["username"] for u in found["items"]] == ["water.staff", "water_supply.staff"]
    found = admin.get(f"{A}/users", query_string={"q": "r_s"}).get_json()  # '_' is no wildcard
    assert [u["username"] for u in found["items"]] == ["water_supply.staff"]
    assert admin.get(f"{A}/users", query_string={"q": "%"}).get_json()["total"] == 0
    assert admin.get(f"{A}/users?active=false").get_json()["total"] == 0
    for bad in ("role=king", "per_page=0", "page=0", "unit=atlantis", "active=maybe"):
        r = admin.get(f"{A}/users?{bad}")
        assert r.status_code == 422, bad
        assert r.get_json()["errors"], bad


def test_get_one_user(api):
    r = api.as_("admin").get(f"{A}/users/water.staff")
    assert r.status_code == 200
    assert r.get_json() == {"username": "water.staff", "display_name": r.get_json()["display_name"],
                            "role": "department_staff", "active": True,
                            "unit": {"code": "water", "name": r.get_json()["unit"]["name"],
                                     "name_en": r.get_json()["unit"]["name_en"], "kind": "department"}}
    r = api.as_("admin").get(f"{A}/users/nobody")
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"


@pytest.mark.parametrize("body, field", [
    ({"username": "a.staff", "display_name": "A", "password": "long-enough", "role": "department_staff",
      "unit": "qingnian"}, "role"),  # a department role in a community
    ({"username": "a.disp", "display_name": "A", "password": "long-enough", "role": "street_dispatcher",
      "unit": "huangpu"}, "role"),
    ({"username": "a.admin", "display_name": "A", "password": "long-enough", "role": "admin",
      "unit": "water"}, "role"),
    ({"username": "a.grid", "display_name": "A", "password": "short", "role": "grid_worker",
      "unit": "qingnian"}, "password"),
    ({"username": "A Grid", "display_name": "A", "password": "long-enough", "role": "grid_worker",
      "unit": "qingnian"}, "username"),
    ({"username": "a.grid", "display_name": "A", "password": "long-enough", "role": "emperor",
      "unit": "qingnian"}, "role"),
    ({"username": "a.grid", "display_name": "A", "password": "long-enough", "role": "grid_worker",
      "unit": "atlantis"}, "unit"),
    ({"username": "a.grid", "password": "long-enough", "role": "grid_worker", "unit": "qingnian"},
     "display_name"),
])
def test_creating_a_user_with_bad_fields_is_422_naming_the_field(api, services, body, field):
    before = snapshot(services)
    r = api.as_("admin").post(f"{A}/users", json=body)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["errors"], r.get_json()
    assert snapshot(services) == before


def test_a_taken_username_is_409(api, services):
    before = snapshot(services)
    r = api.as_("admin").post(f"{A}/users", json={"username": "qingnian.grid", "display_name": "dup",
                                                  "password": "long-enough", "role": "grid_worker",
                                                  "unit": "qingnian"})
    assert r.status_code == 409 and "qingnian.grid" in r.get_json()["message"]
    assert snapshot(services) == before


def test_a_new_password_revokes_the_users_tokens(api):
    admin = api.as_("admin")
    old = api.token("qingnian.grid")
    assert me(api, old).status_code == 200
    r = admin.patch(f"{A}/users/qingnian.grid", json={"password": "brand-new-pass"})
    assert r.status_code == 200 and r.get_json()["tokens_revoked"] == 1
    assert me(api, old).status_code == 401
    assert sign_in(api, "qingnian.grid", "huying-demo").status_code == 401
    assert sign_in(api, "qingnian.grid", "brand-new-pass").status_code == 201
    r = admin.patch(f"{A}/users/qingnian.grid", json={"password": "short"})
    assert r.status_code == 422 and "password" in r.get_json()["errors"]


def test_deactivating_a_user_revokes_tokens_and_reactivating_does_not_bring_them_back(api):
    admin = api.as_("admin")
    old = api.token("water.staff")
    r = admin.patch(f"{A}/users/water.staff", json={"active": False})
    assert r.status_code == 200 and r.get_json()["active"] is False and r.get_json()["tokens_revoked"] == 1
    assert me(api, old).status_code == 401
    assert sign_in(api, "water.staff", "huying-demo").status_code == 401
    assert admin.get(f"{A}/users?active=false").get_json()["items"][0]["username"] == "water.staff"
    r = admin.patch(f"{A}/users/water.staff", json={"active": True})
    assert r.status_code == 200 and r.get_json()["active"] is True
    assert me(api, old).status_code == 401
    assert sign_in(api, "water.staff", "huying-demo").status_code == 201


def test_change_role_unit_and_name(api, services):
    admin = api.as_("admin")
    r = admin.patch(f"{A}/users/qingnian.staff", json={"unit": "puhui", "display_name": "调岗"})
    assert r.status_code == 200 and r.get_json()["unit"]["code"] == "puhui"
    assert r.get_json()["display_name"] == "调岗" and r.get_json()["tokens_revoked"] == 0
    r = admin.patch(f"{A}/users/qingnian.staff", json={"role": "grid_worker"})
    assert r.status_code == 200 and r.get_json()["role"] == "grid_worker"
    before = snapshot(services)
    # a move to a unit of the wrong kind names the unit; a role that does not fit names the role
    r = admin.patch(f"{A}/users/qingnian.staff", json={"unit": "water"})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["unit"]
    r = admin.patch(f"{A}/users/qingnian.staff", json={"role": "supervisor", "display_name": "not saved"})
    assert r.status_code == 422 and list(r.get_json()["errors"]) == ["role"]
    r = admin.patch(f"{A}/users/qingnian.staff", json={"role": "supervisor", "unit": "huangpu"})
    assert r.status_code == 200 and r.get_json()["role"] == "supervisor"
    assert admin.patch(f"{A}/users/nobody", json={"active": False}).status_code == 404
    r = admin.patch(f"{A}/users/qingnian.staff", json={"username": "renamed"})
    assert r.status_code == 422 and "username" in r.get_json()["errors"]
    assert snapshot(services)["users"] != before["users"]  # only the last valid change


def test_an_admin_cannot_lock_themselves_out(api, services):
    before = snapshot(services)
    for body in ({"active": False}, {"role": "supervisor"}):
        r = api.as_("admin").patch(f"{A}/users/admin", json=body)
        assert r.status_code == 409 and "your own" in r.get_json()["message"]
    assert snapshot(services) == before


def test_revoke_tokens(api):
    t1 = api.token("xiagang.dispatcher")
    t2 = sign_in(api, "xiagang.dispatcher", "huying-demo").get_json()["token"]
    r = api.as_("admin").post(f"{A}/users/xiagang.dispatcher/revoke-tokens")
    assert r.status_code == 200 and r.get_json() == {"username": "xiagang.dispatcher", "tokens_revoked": 2}
    assert me(api, t1).status_code == 401 and me(api, t2).status_code == 401
    r = api.as_("admin").post(f"{A}/users/xiagang.dispatcher/revoke-tokens")
    assert r.get_json()["tokens_revoked"] == 0
    assert api.as_("admin").post(f"{A}/users/nobody/revoke-tokens").status_code == 404


# ---- categories ---------------------------------------------------------------------------------------
def test_categories(api, services):
    admin = api.as_("admin")
    listed = admin.get(f"{A}/categories").get_json()
    assert {"code": "road_flooding", "active": True} .items() <= next(
        c for c in listed if c["code"] == "road_flooding").items()
    r = admin.post(f"{A}/categories", json={"code": "square_dance", "name": "广场舞扰民", "name_en": "Square dancing"})
    assert r.status_code == 201 and r.get_json() == {"code": "square_dance", "name": "广场舞扰民", "name_en": "Square dancing",
                                                     "active": True}
    before = snapshot(services)
    r = admin.post(f"{A}/categories", json={"code": "square_dance", "name": "again"})
    assert r.status_code == 409
    r = admin.post(f"{A}/categories", json={"code": "Square Dance!", "name": ""})
    assert r.status_code == 422 and set(r.get_json()["errors"]) == {"code", "name"}
    assert admin.patch(f"{A}/categories/ufo", json={"name": "x"}).status_code == 404
    r = admin.patch(f"{A}/categories/square_dance", json={"active": "perhaps"})
    assert r.status_code == 422 and "active" in r.get_json()["errors"]
    assert snapshot(services) == before
    # anyone signed in reads the active list; a retired category takes no new calls
    public = api.as_("qingnian.grid").get("/api/v1/categories")
    assert public.status_code == 200 and "square_dance" in {c["code"] for c in public.get_json()}
    r = admin.patch(f"{A}/categories/square_dance", json={"active": False, "name": "广场舞"})
    assert r.status_code == 200 and r.get_json()["active"] is False and r.get_json()["name"] == "广场舞"
    assert "square_dance" not in {c["code"] for c in api.as_("qingnian.grid").get("/api/v1/categories").get_json()}
    assert api.as_("qingnian.grid").get("/api/v1/categories/square_dance").get_json()["active"] is False
    assert api.as_("qingnian.grid").get("/api/v1/categories/ufo").status_code == 404
    assert {c["code"] for c in admin.get(f"{A}/categories?active=false").get_json()} == {"square_dance"}
    r = api.as_("qingnian.grid").post("/api/v1/calls", json={"category": "square_dance", "description": "吵",
                                                             "location": "x"})
    assert r.status_code == 422 and "category" in r.get_json()["errors"]


def test_a_twin_created_at_the_same_moment_is_a_409_not_a_500(api, services):
    """Both requests pass the uniqueness check; the database's constraint decides, and the loser gets 409."""
    from sqlalchemy import event
    from sqlalchemy.orm import sessionmaker

    def twin_commits_first(session, flush_context, instances):
        with sessionmaker(bind=services.engine)() as other:
            other.add(Category(code="square_dance", name="广场舞", name_en="", active=True))
            other.commit()

    admin = api.as_("admin")
    api.token("admin")  # sign in first: that flushes too
    event.listen(services.session_factory, "before_flush", twin_commits_first, once=True)
    try:
        r = admin.post(f"{A}/categories", json={"code": "square_dance", "name": "广场舞扰民"})
    finally:
        event.remove(services.session_factory, "before_flush", twin_commits_first)
    assert r.status_code == 409, r.get_json()
    assert r.get_json()["code"] == "conflict" and "same moment" in r.get_json()["message"]
    with services.session_factory() as s:
        assert s.get(Category, "square_dance").name == "广场舞"


# ---- process definitions ------------------------------------------------------------------------------
def test_list_definitions_and_read_a_file(api):
    admin = api.as_("admin")
    [d] = admin.get(f"{A}/definitions").get_json()
    assert (d["process_id"], d["version"], d["latest"], d["deployed_by"]) == ("call_dispatch", 1, True, "demo")
    assert d["files"] == ["call_dispatch.bpmn", "routing.dmn"] and len(d["sha256"]) == 64 and d["deployed_at"]
    assert admin.get(f"{A}/definitions?process_id=nope").get_json() == []
    r = admin.get(f"{A}/definitions/call_dispatch/1/files/routing.dmn")
    assert r.status_code == 200 and r.mimetype == "application/xml" and r.data == DMN
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert admin.get(f"{A}/definitions/call_dispatch/1/files/other.dmn").status_code == 404
    assert admin.get(f"{A}/definitions/call_dispatch/9/files/routing.dmn").status_code == 404
    assert admin.get(f"{A}/definitions/nope/1/files/routing.dmn").status_code == 404


def test_deploying_a_new_routing_table_changes_where_a_new_call_goes(api):
    admin = api.as_("admin")
    before = api.file(category="road_flooding")
    assert [(i["task"], i["owner_unit"]) for i in api.call(before)["open_items"]] == [("street_triage", "xiagang")]
    r = admin.post(f"{A}/definitions", **bundle(ALT_DMN, note="积水改由区级统筹"))
    assert r.status_code == 201, r.get_json()
    out = r.get_json()
    assert out["created"] == ["call_dispatch"] and out["unchanged"] == []
    assert out["files"] == ["call_dispatch.bpmn", "routing.dmn"]
    assert [(p["process_id"], p["version"], p["created"]) for p in out["processes"]] == [("call_dispatch", 2, True)]
    after = api.file(category="road_flooding")
    view = api.call(after)
    assert [(i["task"], i["owner_unit"]) for i in view["open_items"]] == [("district_coordinate", "huangpu")]
    assert (view["level"], view["suggested_lead"], view["suggested_assists"]) == ("district", "housing", ["transport"])
    # the running call stays on version 1
    assert [(i["task"], i["owner_unit"]) for i in api.call(before)["open_items"]] == [("street_triage", "xiagang")]
    versions = admin.get(f"{A}/definitions").get_json()
    assert [(d["version"], d["latest"], d["note"], d["deployed_by"]) for d in versions] == [
        (1, False, "demo district", "demo"), (2, True, "积水改由区级统筹", "admin")]
    # the UI can diff the two versions' tables
    v1 = admin.get(f"{A}/definitions/call_dispatch/1/files/routing.dmn").data
    v2 = admin.get(f"{A}/definitions/call_dispatch/2/files/routing.dmn").data
    assert (v1, v2) == (DMN, ALT_DMN)
    # the same bundle again is no new version
    r = admin.post(f"{A}/definitions", **bundle(ALT_DMN))
    assert r.status_code == 200 and r.get_json()["created"] == [] and r.get_json()["unchanged"] == ["call_dispatch"]
    assert r.get_json()["processes"][0]["version"] == 2
    assert len(admin.get(f"{A}/definitions").get_json()) == 2


XXE = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
<bpmn:process id="p" isExecutable="true"><bpmn:documentation>&x;</bpmn:documentation></bpmn:process>
</bpmn:definitions>"""


def multipart(*files: tuple[str, bytes], **form) -> dict:
    """Request kwargs for a multipart upload (fresh streams: a request consumes them)."""
    return {"data": {"files": [(io.BytesIO(data), name) for name, data in files], **form},
            "content_type": "multipart/form-data"}


BAD_DEPLOYS = {
    "not well-formed": lambda: bundle(bpmn=BPMN.replace(b"</bpmn:definitions>", b"")),
    "userTask 'street_triage'": lambda: bundle(
        bpmn=BPMN.replace(b'<spiffworkflow:property name="owner" value="street" />', b"", 1)),
    "unsafe XML": lambda: bundle(dmn=XXE),
    "nope": lambda: bundle(bpmn=BPMN.replace(b'calledElement="department_work"', b'calledElement="nope"')),
    "only .bpmn and .dmn": lambda: multipart(("notes.txt", b"<a/>")),
    "no executable process": lambda: multipart(("routing.dmn", DMN)),
    "given twice": lambda: multipart(("a.bpmn", BPMN), ("a.bpmn", BPMN)),
    "not UTF-8": lambda: multipart(("x.dmn", "<?xml version='1.0' encoding='gbk'?><a>中</a>".encode("gbk"))),
    "files": lambda: multipart(note="no files"),
    "files ": lambda: {"json": {"files": "call_dispatch.bpmn"}},  # JSON, not multipart
    "note": lambda: multipart(("call_dispatch.bpmn", BPMN), ("routing.dmn", DMN), note="x" * 501),
}


@pytest.mark.parametrize("needle", list(BAD_DEPLOYS))
def test_a_bad_deploy_is_422_with_the_parsers_message_and_adds_no_version(api, services, needle):
    before = snapshot(services)
    r = api.as_("admin").post(f"{A}/definitions", **BAD_DEPLOYS[needle]())
    assert r.status_code == 422, r.get_json()
    body = r.get_json()
    assert body["code"] in ("invalid_definition", "validation_failed")
    assert needle.strip() in body["message"] + " ".join(" ".join(v) for v in body["errors"].values()), body
    assert body["errors"], body
    assert snapshot(services) == before


# ---- SLA policy ---------------------------------------------------------------------------------------
def _policy(api):
    return api.as_("admin").get(f"{A}/sla-policies/latest").get_json()["policy"]


def test_sla_policy_versions_and_deploy(api):
    admin = api.as_("admin")
    [v1] = admin.get(f"{A}/sla-policies").get_json()
    assert (v1["version"], v1["latest"], v1["deployed_by"], v1["rule_count"]) == (1, True, "demo", 14)
    latest = admin.get(f"{A}/sla-policies/latest").get_json()
    assert latest["version"] == 1 and latest["policy"]["warn_ratio"] == 0.8
    triage = next(r for r in latest["policy"]["rules"] if r["match"] == {"stage": "triage"})
    assert triage["target"] == {"working_hours": 2.0}
    document = latest["policy"]
    for rule in document["rules"]:
        if rule["match"] == {"stage": "triage"}:
            rule["target"] = {"working_hours": 4}
    r = admin.post(f"{A}/sla-policies", json={**document, "note": "研判放宽到 4 工作时"})
    assert r.status_code == 201, r.get_json()
    out = r.get_json()
    assert (out["version"], out["created"], out["latest"], out["note"]) == (2, True, True, "研判放宽到 4 工作时")
    # new deadlines use it: filed Mon 09:00, 4 working hours -> 15:00 (lunch 12-14 excluded)
    no = api.file(category="road_flooding")
    [clock] = [c for c in api.call(no)["clocks"] if c["stage"] == "triage"]
    assert at(clock["due_at"]) == at("2026-10-12T15:00:00+08:00")
    # the same document again: unchanged
    r = admin.post(f"{A}/sla-policies", json=document)
    assert r.status_code == 200 and (r.get_json()["version"], r.get_json()["created"]) == (2, False)
    assert [p["version"] for p in admin.get(f"{A}/sla-policies").get_json()] == [1, 2]
    assert admin.get(f"{A}/sla-policies/1").get_json()["latest"] is False
    assert admin.get(f"{A}/sla-policies/7").status_code == 404


@pytest.mark.parametrize("document, field", [
    ({"rules": []}, "rules"),
    ({}, "rules"),
    ({"rules": [{"match": {"stage": "triage"}, "target": {"working_hours": 1, "wall_hours": 1}}]},
     "rules.0.target._schema"),
    ({"rules": [{"match": {"category": "x"}, "target": {"working_days": 1}}]}, "rules.0.match"),
    ({"rules": [{"match": {"stage": "triage", "colour": "red"}, "target": {"working_days": 1}}]}, "rules.0.match"),
    ({"rules": [{"match": {"stage": "triage"}, "target": {"working_days": 1.5}}]}, "rules.0.target.working_days"),
    ({"warn_ratio": 2, "rules": [{"match": {"stage": "triage"}, "target": {"working_days": 1}}]}, "warn_ratio"),
    ({"extra": 1, "rules": [{"match": {"stage": "triage"}, "target": {"working_days": 1}}]}, "extra"),
])
def test_a_bad_sla_policy_is_422_with_field_messages_and_adds_no_version(api, services, document, field):
    before = snapshot(services)
    r = api.as_("admin").post(f"{A}/sla-policies", json=document)
    assert r.status_code == 422, r.get_json()
    assert any(k.startswith(field) for k in r.get_json()["errors"]), r.get_json()
    assert snapshot(services) == before


# ---- calendar -----------------------------------------------------------------------------------------
def test_calendar_status(api):
    r = api.as_("admin").get(f"{A}/calendar")
    assert r.status_code == 200
    out = r.get_json()
    assert out["official_data"] == {"first_year": PACKAGE_YEARS[0], "last_year": PACKAGE_YEARS[1],
                                    "source": "chinesecalendar"}
    assert out["office_hours"] == ["09:00-12:00", "14:00-18:00"]
    assert out["overrides"] == [] and out["open_clocks"] == 0 and out["open_clocks_assumed"] == 0


def test_a_calendar_override_recomputes_an_open_calls_deadline(api):
    admin = api.as_("admin")
    no = api.file(category="road_flooding")  # Mon 2026-10-12 09:00, triage 2 working hours

    def triage():
        view = api.call(no)
        [clock] = [c for c in view["clocks"] if c["stage"] == "triage"]
        [item] = view["open_items"]
        return at(clock["due_at"]), at(item["deadline"]["due_at"])

    assert triage() == (at("2026-10-12T11:00:00+08:00"),) * 2
    r = admin.put(f"{A}/calendar/2026-10-12", json={"workday": False, "note": "台风停工"})
    assert r.status_code == 200, r.get_json()
    assert r.get_json() == {"day": "2026-10-12", "workday": False, "note": "台风停工", "recomputed": 1}
    assert triage() == (at("2026-10-13T11:00:00+08:00"),) * 2
    status = admin.get(f"{A}/calendar").get_json()
    assert [(o["day"], o["workday"], o["note"], o["set_by"]) for o in status["overrides"]] == [
        ("2026-10-12", False, "台风停工", "admin")]
    assert status["open_clocks"] == 1
    # anyone signed in can check the calendar's answer
    r = api.as_("water.staff").get(f"{A}/calendar/due", query_string={"from": "2026-10-12T09:00:00+08:00",
                                                                        "working_hours": 2})
    assert r.status_code == 200 and r.get_json()["due_at"] == "2026-10-13T11:00:00+08:00"
    r = admin.delete(f"{A}/calendar/2026-10-12")
    assert r.status_code == 200 and r.get_json() == {"day": "2026-10-12", "workday": None, "note": "",
                                                     "recomputed": 1}
    assert triage() == (at("2026-10-12T11:00:00+08:00"),) * 2
    assert admin.delete(f"{A}/calendar/2026-10-12").status_code == 404
    assert admin.get(f"{A}/calendar").get_json()["overrides"] == []


def test_calendar_override_bad_input(api, services):
    admin = api.as_("admin")
    before = snapshot(services)
    for day, body, field in [("2026-13-01", {"workday": True}, "day"), ("tomorrow", {"workday": True}, "day"),
                             ("1899-01-01", {"workday": True}, "day"), ("2026-10-12", {}, "workday"),
                             ("2026-10-12", {"workday": "sometimes"}, "workday"),
                             ("2026-10-12", {"workday": True, "note": "x" * 201}, "note")]:
        r = admin.put(f"{A}/calendar/{day}", json=body)
        assert r.status_code == 422, (day, body, r.get_json())
        assert field in r.get_json()["errors"], (day, body, r.get_json())
    assert admin.delete(f"{A}/calendar/someday").status_code == 422
    assert snapshot(services) == before


def test_calendar_due(api):
    grid = api.as_("qingnian.grid")
    r = grid.get(f"{A}/calendar/due", query_string={"from": "2026-09-30T17:00:00+08:00", "working_hours": 2})
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert out["due_at"] == "2026-10-08T10:00:00+08:00" and out["assumed"] is False and out["assumed_days"] == []
    assert out["target"] == {"kind": "working_hours", "amount": 2.0, "label": "2 工作时"}
    # no offset: Asia/Shanghai
    r = grid.get(f"{A}/calendar/due", query_string={"from": "2026-09-30T17:00", "working_days": 1})
    assert r.get_json()["due_at"] == "2026-10-08T18:00:00+08:00"
    r = grid.get(f"{A}/calendar/due", query_string={"from": "2026-10-12T09:00:00+08:00", "wall_hours": 0.5})
    assert r.get_json()["due_at"] == "2026-10-12T09:30:00+08:00"
    beyond = PACKAGE_YEARS[1] + 1
    r = grid.get(f"{A}/calendar/due", query_string={"from": f"{beyond}-03-02T09:00:00+08:00", "working_days": 2})
    assert r.get_json()["assumed"] is True and r.get_json()["assumed_days"][0].startswith(str(beyond))
    for query in ({"from": "2026-10-12T09:00"}, {"from": "2026-10-12T09:00", "working_hours": 1, "wall_hours": 1},
                  {"working_hours": 1}, {"from": "yesterday", "working_hours": 1},
                  {"from": "2026-10-12T09:00", "working_days": 0}, {"from": "2026-10-12T09:00", "working_days": 1.5}):
        r = grid.get(f"{A}/calendar/due", query_string=query)
        assert r.status_code == 422 and r.get_json()["errors"], (query, r.get_json())


def test_an_override_beyond_the_data_clears_the_assumption(api, services):
    """Enter next year's notice: an open deadline resting on assumed days no longer does."""
    beyond = PACKAGE_YEARS[1] + 1
    services.clock.set(datetime(beyond - 1, 12, 28, 9, 0, tzinfo=services.clock.now().tzinfo))
    api.tokens.clear()
    no = api.file(category="lift_install")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "housing"})
    api.do(no, "housing.staff", "sign")
    admin = api.as_("admin")
    assert admin.get(f"{A}/calendar").get_json()["open_clocks_assumed"] == 1
    resolve = next(c for c in api.call(no)["clocks"] if c["stage"] == "resolve" and c["state"] == "running")
    assert resolve["assumed_calendar"] is True
    # make 1 January a holiday: the deadline moves a working day later
    r = admin.put(f"{A}/calendar/{beyond}-01-01", json={"workday": False, "note": "元旦"})
    assert r.status_code == 200 and r.get_json()["recomputed"] >= 1
    moved = next(c for c in api.call(no)["clocks"] if c["stage"] == "resolve" and c["state"] == "running")
    assert at(moved["due_at"]) > at(resolve["due_at"])


# ---- API keys -----------------------------------------------------------------------------------------
def test_api_keys(api, services):
    from workflows.auth import api_key_user

    admin = api.as_("admin")
    r = admin.post(f"{A}/apikeys", json={"name": "open311-gateway"})
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert created["user"] == "huangpu.hotline" and created["key"].startswith("hy_") and created["active"] is True
    assert created["key"].startswith(created["prefix"])
    with services.session_factory() as s:
        user, _ = api_key_user(s, created["key"])
        assert user.username == "huangpu.hotline"
        assert created["key"] not in str(s.execute(select(ApiKey.key_hash, ApiKey.prefix)).all())
    r = admin.post(f"{A}/apikeys", json={"name": "grid-app", "user": "qingnian.grid"})
    assert r.status_code == 201 and r.get_json()["user"] == "qingnian.grid"
    listed = admin.get(f"{A}/apikeys").get_json()
    assert [k["name"] for k in listed] == ["open311-gateway", "grid-app"]
    assert all("key" not in k for k in listed)
    before = snapshot(services)
    for body, status, field in [({"name": "open311-gateway"}, 409, None),
                                ({"name": ""}, 422, "name"),
                                ({"name": "x", "user": "water.staff"}, 422, "user"),
                                ({"name": "x", "user": "nobody"}, 422, "user"),
                                ({"user": "qingnian.grid"}, 422, "name")]:
        r = admin.post(f"{A}/apikeys", json=body)
        assert r.status_code == status, (body, r.get_json())
        if field:
            assert field in r.get_json()["errors"]
    assert snapshot(services) == before
    r = admin.delete(f"{A}/apikeys/{created['id']}")
    assert r.status_code == 200 and r.get_json()["active"] is False and r.get_json()["revoked_at"]
    with services.session_factory() as s:
        assert api_key_user(s, created["key"]) is None
    assert admin.delete(f"{A}/apikeys/{created['id']}").status_code == 200  # harmless twice
    assert admin.delete(f"{A}/apikeys/999").status_code == 404


def test_time_moves_on_and_the_admin_api_keeps_working(api):
    """Tokens expire with the virtual clock; a fresh sign-in works and dates serialize with offsets."""
    api.advance(timedelta(days=2))
    r = api.as_("admin").put(f"{A}/calendar/{date(2026, 10, 20).isoformat()}", json={"workday": True})
    assert r.status_code == 200 and r.get_json()["recomputed"] == 0
    [o] = api.as_("admin").get(f"{A}/calendar").get_json()["overrides"]
    assert at(o["set_at"]) == at("2026-10-14T09:00:00+08:00")


