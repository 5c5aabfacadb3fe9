"""The REST API: filing, searching, one call, the work queue and actions, through Flask's test client."""
from __future__ import annotations

import dataclasses
import io
import threading
from datetime import timedelta

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def test_scenario_1_through_http(api):
    """domain.md §6 scenario 1 through HTTP requests alone: the time is read from /api/v1/health and moved
    with the admin clock endpoint (which runs the scheduler's sweep), as an integrator's test rig would."""
    def now():
        health = api.client.get("/api/v1/health").get_json()
        assert health["clock"] == "virtual"
        return health["now"]

    assert now() == "2026-10-12T09:00:00+08:00"  # day 1, a Monday
    up = api.as_("qingnian.grid").post("/api/v1/attachments", data={"file": (io.BytesIO(PNG), "cables.png")},
                                       content_type="multipart/form-data")
    assert up.status_code == 201, up.get_json()
    photo = up.get_json()[0]
    r = api.as_("qingnian.grid").post("/api/v1/calls", json={
        "category": "lift_install", "direct_to_street": True, "photos": [photo["id"]],
        "description": "东园二街1号、2号加装电梯被电缆阻碍", "location": "夏港街东园二街1号"})
    assert r.status_code == 201, r.get_json()
    no = r.get_json()["number"]
    assert r.get_json()["status"] == "triage" and r.get_json()["photos"] == [photo["url"]]
    [triage] = r.get_json()["open_items"]  # no second request needed to find the next step
    assert triage["task"] == "street_triage" and triage["owner_unit"] == "xiagang" and triage["may_act"] is False
    assert r.headers["Location"] == f"/api/v1/calls/{no}"
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "power", "assists": ["telecom", "police"]})
    for dept in ("power", "telecom", "police"):
        out = api.do(no, f"{dept}.staff", "sign")
        assert [o["task"] for o in out["opened"]] == ["resolve"]
    assert api.call(no)["first_contact_at"] is None
    # day 2: the site meeting, where the lead department meets the caller (first contact)
    api.move_clock(set="2026-10-13T10:00:00+08:00")
    lead = api.item(no, "power.staff")
    out = api.do(no, "power.staff", "contact", {"note": "现场会：供电、电信、公安与业主到场，确定迁改方案"})
    assert out["item"]["id"] == lead["id"] and out["item"]["state"] == "open", "contact records, work goes on"
    assert out["opened"] == [] and out["closed"] == [] and out["call"]["status"] == "in_progress"
    view = api.call(no)
    assert view["first_contact_at"] == "2026-10-13T02:00:00+00:00"
    contact = next(e for e in view["timeline"] if e["action"] == "resolve.contact")
    assert contact["actor"] == "power.staff" and contact["detail"]["note"].startswith("现场会")
    # day 4: every department reports done
    api.move_clock(set="2026-10-15T15:00:00+08:00")
    assert now() == "2026-10-15T15:00:00+08:00"
    for dept in ("telecom", "police", "power"):
        api.do(no, f"{dept}.staff", "done", {"result": f"{dept} 已处理"})
    assert api.call(no)["status"] == "verify"
    api.do(no, "qingnian.grid", "pass")
    out = api.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": True})
    assert out["call"]["status"] == "closed" and out["opened"] == []
    view = api.call(no)
    assert view["status"] == "closed" and view["satisfaction"] == "satisfied" and view["open_items"] == []
    assert view["first_contact_at"] == "2026-10-13T02:00:00+00:00", "a first contact stays the first"
    actions = [e["action"] for e in view["timeline"]]
    assert actions[:3] == ["process_started", "call.filed", "street_triage.dispatch"]
    assert actions.index("resolve.contact") < actions.index("resolve.done")
    resolve = [c for c in view["clocks"] if c["stage"] == "resolve"]
    assert sorted(c["unit"] for c in resolve) == ["police", "power", "telecom"]
    assert {(c["state"], c["outcome"], c["stopped_at"]) for c in resolve} == {
        ("stopped", "met", "2026-10-15T07:00:00+00:00")}, "done on day 4, on time"
    assert {c["stage"] for c in view["clocks"]} >= {"triage", "sign", "resolve", "verify", "feedback"}
    assert [a["id"] for a in view["attachments"]] == [photo["id"]]
    img = api.as_("power.staff").get(photo["url"])
    assert img.status_code == 200 and img.data == PNG and img.mimetype == "image/png"


def test_queue_shows_deadline_and_remaining_working_time(api):
    no = api.file(category="road_flooding", description="道路积水", location="港前路")
    [entry] = [e for e in api.queue("xiagang.dispatcher") if e["call"]["number"] == no]
    item = entry["item"]
    assert item["task"] == "street_triage" and item["may_act"] is True
    assert set(item["actions"]) >= {"dispatch", "void", "merge", "escalate"}
    assert item["deadline"]["state"] == "normal" and item["deadline"]["working_time"] is True
    assert item["deadline"]["remaining_seconds"] > 0 and item["deadline"]["due_at"]


def test_validation_errors_are_422_with_field_messages_and_write_nothing(api):
    r = api.as_("qingnian.grid").post("/api/v1/calls", json={"category": "nope", "location": "x"})
    assert r.status_code == 422
    body = r.get_json()
    assert body["code"] == "validation_failed" and "description" in body["errors"]
    r = api.as_("qingnian.grid").post("/api/v1/calls", json={"category": "nope", "description": "d", "location": "x"})
    body = r.get_json()
    assert r.status_code == 422 and body["code"] == "validation_failed"
    assert body["errors"] == {"category": ["unknown category 'nope'"]}
    r = api.as_("qingnian.grid").post("/api/v1/calls", data="not json", content_type="application/json")
    assert r.status_code in (400, 422) and set(r.get_json()) == {"code", "message", "errors"}
    listing = api.as_("huangpu.supervisor").get("/api/v1/calls").get_json()
    assert listing["total"] == 0


def test_action_errors(api):
    no = api.file(category="road_flooding")
    item = api.item(no, "xiagang.dispatcher")
    r = api.as_("xiagang.dispatcher").post(f"/api/v1/work/{item['id']}/actions/sign", json={})
    assert r.status_code == 422 and "action" in r.get_json()["errors"]
    r = api.as_("xiagang.dispatcher").post(f"/api/v1/work/{item['id']}/actions/dispatch", json={"lead": 5})
    assert r.status_code == 422 and "lead" in r.get_json()["errors"]
    r = api.as_("luogang.dispatcher").post(f"/api/v1/work/{item['id']}/actions/void", json={"reason": "x"})
    assert r.status_code == 403 and r.get_json()["code"] == "forbidden"
    r = api.as_("xiagang.dispatcher").post("/api/v1/work/999999/actions/void", json={"reason": "x"})
    assert r.status_code == 404 and r.get_json()["code"] == "not_found"
    ok = api.as_("xiagang.dispatcher").post(f"/api/v1/work/{item['id']}/actions/void", json={"reason": "重复"})
    assert ok.status_code == 200
    again = api.as_("xiagang.dispatcher").post(f"/api/v1/work/{item['id']}/actions/void", json={"reason": "重复"})
    assert again.status_code == 409 and again.get_json()["code"] == "conflict"


def test_search_filters_paging_and_scope(api):
    a = api.file(category="road_flooding", description="积水 A")
    b = api.file("qingnian.grid", category="noise", description="噪声 B")
    c = api.file("luofeng.grid", category="road_flooding", description="积水 C")
    sup = api.as_("huangpu.supervisor")
    got = sup.get("/api/v1/calls?category=road_flooding&sort=number").get_json()
    assert [x["number"] for x in got["items"]] == [a, c] and got["total"] == 2
    got = sup.get("/api/v1/calls?per_page=1&page=2&sort=number").get_json()
    assert got["total"] == 3 and [x["number"] for x in got["items"]] == [b]
    got = sup.get("/api/v1/calls?q=噪声").get_json()
    assert [x["number"] for x in got["items"]] == [b]
    # a community sees its own calls only; a department none until work is dispatched to it
    own = api.as_("qingnian.staff").get("/api/v1/calls").get_json()
    assert {x["number"] for x in own["items"]} == {a, b}
    assert [x["number"] for x in api.as_("luogang.dispatcher").get("/api/v1/calls").get_json()["items"]] == [c]
    assert api.as_("water.staff").get("/api/v1/calls").get_json()["total"] == 0
    assert api.as_("water.staff").get(f"/api/v1/calls/{a}").status_code == 403
    api.do(a, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    assert [x["number"] for x in api.as_("water.staff").get("/api/v1/calls").get_json()["items"]] == [a]
    r = sup.get("/api/v1/calls?status=bogus&per_page=500")
    assert r.status_code == 422 and {"status.0", "per_page"} <= set(r.get_json()["errors"])


def test_each_search_filter_returns_exactly_the_matching_calls(api):
    """level, street, community, department, overdue and the date range, each alone and combined."""
    # Monday 09:00: two calls from 青年社区
    a = api.file("qingnian.grid", category="road_flooding", description="A 积水")  # street level (triage)
    b = api.file("qingnian.grid", category="exposed_garbage", description="B 垃圾")  # the community handles it
    api.do(a, "xiagang.dispatcher", "dispatch", {"lead": "water"})  # water must sign by 11:00
    # 10:30: one from 普晖社区 (same street), one from 萝岗街, a district case
    api.move_clock(set="2026-10-12T10:30:00+08:00")
    c = api.file("puhui.grid", category="noise", description="C 噪声")
    d = api.file("luofeng.grid", category="road_flooding", description="D 积水")
    e = api.file("qingnian.grid", category="joint_pollution", description="E 河涌污染")
    api.do(c, "xiagang.dispatcher", "dispatch", {"lead": "power", "assists": ["water"]})  # sign by 14:30
    api.do(d, "luogang.dispatcher", "dispatch", {"lead": "power"})
    # 12:00: water has not signed for A (due 11:00); the others are still within their time
    api.move_clock(set="2026-10-12T12:00:00+08:00")
    sup = api.as_("huangpu.supervisor")

    def found(query):
        r = sup.get("/api/v1/calls", query_string={"per_page": 200, **query})
        assert r.status_code == 200, r.get_json()
        got = r.get_json()
        assert got["total"] == len(got["items"])
        return {x["number"] for x in got["items"]}

    assert found({}) == {a, b, c, d, e}
    assert found({"level": "community"}) == {b}
    assert found({"level": "street"}) == {a, c, d}
    assert found({"level": "district"}) == {e}
    assert found({"street": "xiagang"}) == {a, b, c, e}
    assert found({"street": "luogang"}) == {d}
    assert found({"street": "changzhou"}) == set()
    assert found({"community": "qingnian"}) == {a, b, e}
    assert found({"community": "puhui"}) == {c}
    assert found({"department": "water"}) == {a, c}, "lead or assisting"
    assert found({"department": "power"}) == {c, d}
    assert found({"department": "housing"}) == set()
    assert found({"overdue": "true"}) == {a}
    assert found({"overdue": "false"}) == {b, c, d, e}
    assert [x["overdue"] for x in sup.get("/api/v1/calls?overdue=true").get_json()["items"]] == [True]
    assert found({"created_from": "2026-10-12T10:30:00+08:00"}) == {c, d, e}, "from is inclusive"
    assert found({"created_to": "2026-10-12T10:30:00+08:00"}) == {a, b}, "to is exclusive"
    assert found({"created_from": "2026-10-12T01:00:00+00:00", "created_to": "2026-10-12T02:30:00Z"}) == {a, b}
    assert found({"created_from": "2026-10-12T10:30:01+08:00", "created_to": "2026-10-13T00:00:00+08:00"}) == set()
    assert found({"street": "xiagang", "level": "street", "department": "water"}) == {a, c}
    assert found({"community": "qingnian", "overdue": "false"}) == {b, e}
    assert found({"department": "power", "created_to": "2026-10-12T10:30:00+08:00"}) == set()
    # filters narrow what the user may see, never widen it
    luogang = api.as_("luogang.dispatcher").get("/api/v1/calls", query_string={"street": "xiagang"}).get_json()
    assert luogang["total"] == 0
    water = api.as_("water.staff").get("/api/v1/calls", query_string={"community": "qingnian"}).get_json()
    assert {x["number"] for x in water["items"]} == {a}
    for bad in ({"level": "city"}, {"overdue": "perhaps"}, {"created_from": "2026-10-12T10:30:00"},
                {"created_to": "yesterday"}):
        r = sup.get("/api/v1/calls", query_string=bad)
        assert r.status_code == 422 and set(bad) <= set(r.get_json()["errors"]), (bad, r.get_json())


def test_my_calls_over_the_api_are_the_ones_i_filed(api):
    """A grid worker's app lists "my calls": ``mine=true`` narrows what the user may see to what they filed."""
    mine = api.file("qingnian.grid", category="road_flooding", description="积水 我的")
    theirs = api.file("qingnian.staff", category="road_flooding", description="积水 社区的")
    grid = api.as_("qingnian.grid")
    assert {x["number"] for x in grid.get("/api/v1/calls").get_json()["items"]} == {mine, theirs}
    got = grid.get("/api/v1/calls?mine=true").get_json()
    assert [x["number"] for x in got["items"]] == [mine] and got["total"] == 1
    assert api.as_("huangpu.supervisor").get("/api/v1/calls?mine=true").get_json()["total"] == 0
    assert grid.get("/api/v1/calls?mine=perhaps").status_code == 422


def test_idempotent_filing_returns_the_same_call(api):
    body = {"category": "noise", "description": "夜间施工", "location": "港前路"}
    grid = api.as_("qingnian.grid")
    first = grid.post("/api/v1/calls", json=body, headers={"Idempotency-Key": "k-1"})
    again = grid.post("/api/v1/calls", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.get_json()["number"] == first.get_json()["number"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = grid.post("/api/v1/calls", json={**body, "description": "别的"}, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 409
    assert api.as_("huangpu.supervisor").get("/api/v1/calls").get_json()["total"] == 1


def test_idempotent_filing_under_racing_retries(api, monkeypatch):
    """Six retries with one Idempotency-Key at once, at their worst: every one has looked for the key and
    found none before any of them files.  On SQLite (a file database: the engine's writer gate lets one
    transaction write at a time) as on PostgreSQL, the first commit wins and the others fail on the key's
    unique index, roll back their whole filing and replay the winner's call."""
    from workflows import calls as calls_module

    token = api.token("qingnian.grid")
    body = {"category": "noise", "description": "并发重试", "location": "港前路"}
    results, start, looked = [], threading.Barrier(6), threading.Barrier(6, timeout=30)
    file_for_real, filings = calls_module._file, []

    def file_after_everyone_looked(ctx, data):
        looked.wait()  # all six passed the key lookup (and found nothing) before anyone files
        filings.append(1)
        return file_for_real(ctx, data)

    monkeypatch.setattr(calls_module, "_file", file_after_everyone_looked)

    def post():
        client = api.app.test_client()
        start.wait()
        r = client.post("/api/v1/calls", json=body, headers={"Authorization": f"Bearer {token}",
                                                               "Idempotency-Key": "race-1"})
        results.append((r.status_code, r.get_json().get("number"), r.headers.get("Idempotent-Replayed")))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(filings) == 6, "every request raced into filing"
    assert sorted(s for s, _, _ in results) == [200] * 5 + [201], results
    assert len({n for _, n, _ in results}) == 1
    assert sorted(str(r) for _, _, r in results) == ["None"] + ["true"] * 5
    monkeypatch.undo()
    assert api.as_("huangpu.supervisor").get("/api/v1/calls").get_json()["total"] == 1
    grid = api.as_("qingnian.grid").post("/api/v1/calls", json=body, headers={"Idempotency-Key": "race-1"})
    assert grid.status_code == 200 and grid.get_json()["number"] == results[0][1]


def test_uploads_are_type_and_size_checked(api):
    grid = api.as_("qingnian.grid")
    r = grid.post("/api/v1/attachments", data={"file": (io.BytesIO(b"MZ\x90\x00 not an image"), "x.jpg")},
                  content_type="multipart/form-data")
    assert r.status_code == 422 and "file" in r.get_json()["errors"]
    svc = api.app.extensions["huying"]
    svc.settings = dataclasses.replace(svc.settings, max_upload_mb=0.01)  # 10 KiB, to keep the test small
    big = b"\xff\xd8\xff" + b"\x00" * 20_000
    r = grid.post("/api/v1/attachments", data={"file": (io.BytesIO(big), "big.jpg")},
                  content_type="multipart/form-data")
    assert r.status_code == 422 and "limit is 10485 bytes" in r.get_json()["message"]
    r = grid.post("/api/v1/calls", json={"category": "noise", "description": "d", "location": "l", "photos": [12345]})
    assert r.status_code == 422 and "photos" in r.get_json()["errors"]
    up = grid.post("/api/v1/attachments", data={"file": (io.BytesIO(PNG), "a.png")},
                   content_type="multipart/form-data").get_json()[0]
    assert api.as_("luogang.dispatcher").get(up["url"]).status_code == 403  # someone else's loose upload


def test_not_signed_in_and_bad_tokens(api):
    r = api.as_(None).get("/api/v1/work")
    assert r.status_code == 401 and r.get_json()["code"] == "unauthorized"
    assert "Bearer" in r.headers["WWW-Authenticate"]
    r = api.as_(None).get("/api/v1/work", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = api.client.post("/api/v1/auth/tokens", json={"username": "qingnian.grid", "password": "wrong"})
    assert r.status_code == 401
    token = api.token("qingnian.grid")
    assert api.as_("qingnian.grid").delete("/api/v1/auth/tokens/current").status_code == 204
    r = api.client.get("/api/v1/work", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, "a revoked token no longer works"


def test_tokens_expire(api):
    token = api.token("qingnian.grid")
    api.app.extensions["huying"].clock.advance(timedelta(hours=13))
    r = api.client.get("/api/v1/work", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_browser_session_needs_csrf_token_for_writes(api):
    c = api.app.test_client()
    r = c.post("/api/v1/auth/session", json={"username": "qingnian.grid", "password": "huying-demo"})
    assert r.status_code == 200
    csrf = r.get_json()["csrf_token"]
    assert c.get("/api/v1/auth/me").get_json()["via"] == "session"
    body = {"category": "noise", "description": "d", "location": "l"}
    assert c.post("/api/v1/calls", json=body).status_code == 403
    assert c.post("/api/v1/calls", json=body, headers={"X-CSRF-Token": csrf}).status_code == 201
    assert c.delete("/api/v1/auth/session", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert c.get("/api/v1/auth/me").status_code == 401


def test_openapi_document_and_docs_are_served(api):
    spec = api.client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert {"/api/v1/calls", "/api/v1/work/{item_id}/actions/{action}", "/api/v1/auth/tokens"} <= set(spec["paths"])
    assert "Error" in spec["components"]["schemas"]
    page = api.client.get("/api/v1/docs")
    assert page.status_code == 200 and b"/api/v1/docs/assets/swagger-ui-bundle.js" in page.data
    asset = api.client.get("/api/v1/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and asset.mimetype == "text/javascript"
    asset.close()


def test_nul_characters_are_refused_at_the_edge(api):
    grid = api.as_("qingnian.grid")
    r = grid.post("/api/v1/calls", json={"category": "noise", "description": "a\u0000b", "location": "l"})
    assert r.status_code == 422 and r.get_json()["message"] == "text must not contain NUL characters"
    assert grid.get("/api/v1/calls?q=%00").status_code == 422
    assert grid.get("/api/v1/calls/HY%00").status_code == 404
    assert api.as_("huangpu.supervisor").get("/api/v1/calls").get_json()["total"] == 0


def test_queue_total_is_counted_up_to_a_cap(api, district):
    from workflows.calls import count_my_work

    for _ in range(3):
        api.file(category="noise")
    page = api.as_("xiagang.dispatcher").get("/api/v1/work?per_page=2").get_json()
    assert page["total"] == 3 and page["total_exact"] is True and len(page["items"]) == 2
    with district.session() as s:
        assert count_my_work(district.ctx(s, "xiagang.dispatcher"), cap=2) == (2, False)
        assert count_my_work(district.ctx(s, "xiagang.dispatcher"), cap=3) == (3, True)


def test_done_with_evidence_files_attaches_them_to_the_call(api):
    no = api.file(category="road_flooding")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    api.do(no, "water.staff", "sign")
    up = api.as_("water.staff").post("/api/v1/attachments", data={"purpose": "evidence",
                                                                   "file": (io.BytesIO(PNG), "after.png")},
                                     content_type="multipart/form-data").get_json()[0]
    bad = api.do(no, "water.staff", "done", {"result": "已疏通", "evidence": [up["id"] + 999]}, status=422)
    assert "evidence" in bad["errors"]
    api.do(no, "water.staff", "done", {"result": "已疏通", "evidence": [up["id"]]})
    view = api.call(no)
    assert up["id"] in [a["id"] for a in view["attachments"]]
    done = next(e for e in view["timeline"] if e["action"] == "resolve.done")
    assert done["detail"]["evidence"] == [up["url"]]
    assert api.as_("qingnian.grid").get(up["url"]).status_code == 200, "the verifier sees the evidence"


def test_ids_beyond_an_id_column_are_not_found_or_invalid_never_a_server_error(api):
    """Ids are INTEGER columns: a larger one in a path names nothing (404), in a body it is a field error (422);
    the database never sees it (it overflowed: 500 on SQLite, on PostgreSQL too)."""
    huge, too_big = 2 ** 70, 2 ** 31
    no = api.file(category="road_flooding")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    api.do(no, "water.staff", "sign")
    item = api.item(no, "water.staff")
    for user, path in (("water.staff", f"/api/v1/work/{huge}"), ("water.staff", f"/api/v1/work/{too_big}"),
                       ("admin", f"/api/v1/attachments/{huge}"), ("admin", f"/api/v1/admin/apikeys/{too_big}"),
                       ("admin", f"/api/v1/admin/webhooks/deliveries/{huge}")):
        r = api.as_(user).get(path) if "apikeys" not in path else api.as_(user).delete(path)
        assert r.status_code == 404 and r.get_json()["code"] == "not_found", (path, r.get_json())
    r = api.as_("water.staff").post(f"/api/v1/work/{huge}/actions/done", json={"result": "x"})
    assert r.status_code == 404
    r = api.as_("water.staff").post(f"/api/v1/work/{item['id']}/actions/done",
                                    json={"result": "x", "evidence": [huge]})
    assert r.status_code == 422 and "evidence.0" in r.get_json()["errors"]
    r = api.as_("qingnian.grid").post("/api/v1/calls", json={"category": "noise", "description": "d",
                                                             "location": "l", "photos": [too_big]})
    assert r.status_code == 422 and "photos.0" in r.get_json()["errors"]
    r = api.as_("huangpu.supervisor").post("/api/v1/supervision/urges", json={"work_item": huge, "kind": "urge"})
    assert r.status_code == 422 and "work_item" in r.get_json()["errors"]
    spec = api.client.get("/api/v1/openapi.json").get_json()
    [param] = [p for p in spec["paths"]["/api/v1/work/{item_id}"]["parameters"] if p["name"] == "item_id"]
    assert param["schema"] == {"type": "integer", "minimum": 0, "maximum": too_big - 1}
