"""Open311 GeoReport v2 at /open311/v2/: every resource in JSON and XML, filing, filters, errors."""
from __future__ import annotations

import dataclasses
from datetime import timedelta
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import func, select

from engine.models import AuditEvent
from web.app import create_app
from workflows.auth import create_api_key, revoke_api_key
from workflows.models import Call

BASE = "/open311/v2"
SERVICE_FIELDS = ["service_code", "service_name", "description", "metadata", "type", "keywords", "group"]
ATTRIBUTE_FIELDS = ["variable", "code", "datatype", "required", "datatype_description", "order", "description",
                    "values"]
REQUEST_FIELDS = ["service_request_id", "status", "status_notes", "service_name", "service_code", "description",
                  "agency_responsible", "service_notice", "requested_datetime", "updated_datetime",
                  "expected_datetime", "address", "address_id", "zipcode", "lat", "long", "media_url"]
COMMUNITIES = {"qingnian", "puhui", "honggang", "luofeng", "liucun", "huocun", "shenjing", "anlai", "jinzhou"}


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def key(services):
    with services.session_factory() as session:
        issued = create_api_key(session, "civic-app", username=None, now=services.clock.now(), actor="admin")
        session.commit()
        return issued.key


def _xml(r) -> ET.Element:
    assert r.mimetype == "application/xml", r.data
    assert r.data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(r.data)


def _children(element: ET.Element) -> list[str]:
    return [c.tag for c in element]


def _file(client, key, fmt="json", status=200, **fields):
    data = {"api_key": key, "service_code": "road_flooding", "description": "港前路积水没过脚踝",
            "address_string": "港前路 88 号", "attribute[community]": "qingnian", **fields}
    r = client.post(f"{BASE}/requests.{fmt}", data={k: v for k, v in data.items() if v is not None})
    assert r.status_code == status, r.data.decode()
    return r


def _number(client, key, **fields) -> str:
    return _file(client, key, **fields).get_json()[0]["service_request_id"]


def _errors(r, status, fmt="json") -> list[str]:
    """The Open311 error document: its descriptions, after checking the shape."""
    assert r.status_code == status, r.data.decode()
    if fmt == "json":
        body = r.get_json()
        assert r.mimetype == "application/json" and isinstance(body, list) and body
        assert all(set(e) == {"code", "description"} and e["code"] == status for e in body)
        return [e["description"] for e in body]
    root = _xml(r)
    assert root.tag == "errors" and _children(root) and set(_children(root)) == {"error"}
    assert all(_children(e) == ["code", "description"] and e.findtext("code") == str(status) for e in root)
    return [e.findtext("description") for e in root]


def _counts(services) -> tuple[int, int]:
    with services.session_factory() as session:
        return (session.scalar(select(func.count()).select_from(Call)),
                session.scalar(select(func.count()).select_from(AuditEvent)))


# ---- services ----------------------------------------------------------------------------------------

def test_services_in_json_and_xml(client):
    r = client.get(f"{BASE}/services.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    services = {s["service_code"]: s for s in r.get_json()}
    flooding = services["road_flooding"]
    assert list(flooding) == SERVICE_FIELDS
    assert flooding["service_name"] == "道路积水" and flooding["description"] == "Road flooding"
    assert flooding["metadata"] is True and flooding["type"] == "realtime"
    assert {"noise", "lift_install"} <= set(services)

    root = _xml(client.get(f"{BASE}/services.xml"))
    assert root.tag == "services" and set(_children(root)) == {"service"} and len(root) == len(services)
    first = root[0]
    assert _children(first) == SERVICE_FIELDS
    assert first.findtext("metadata") == "true" and first.findtext("type") == "realtime"
    assert {s.findtext("service_code") for s in root} == set(services)


def test_service_definition_has_the_community_attribute(client):
    r = client.get(f"{BASE}/services/road_flooding.json")
    assert r.status_code == 200
    body = r.get_json()
    assert list(body) == ["service_code", "attributes"] and body["service_code"] == "road_flooding"
    community, urgency = body["attributes"]
    assert list(community) == ATTRIBUTE_FIELDS
    assert community["code"] == "community" and community["datatype"] == "singlevaluelist"
    assert community["required"] is True and community["variable"] is True and community["order"] == 1
    assert {v["key"] for v in community["values"]} == COMMUNITIES
    assert all(set(v) == {"key", "name"} for v in community["values"])
    assert urgency["code"] == "urgency" and urgency["required"] is False
    assert [v["key"] for v in urgency["values"]] == ["normal", "urgent"]

    root = _xml(client.get(f"{BASE}/services/road_flooding.xml"))
    assert root.tag == "service_definition" and _children(root) == ["service_code", "attributes"]
    attributes = root.find("attributes")
    assert set(_children(attributes)) == {"attribute"}
    first = attributes[0]
    assert _children(first) == ATTRIBUTE_FIELDS and first.findtext("required") == "true"
    values = first.find("values")
    assert set(_children(values)) == {"value"} and all(_children(v) == ["key", "name"] for v in values)
    assert {v.findtext("key") for v in values} == COMMUNITIES


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_service_is_404(client, fmt):
    [message] = _errors(client.get(f"{BASE}/services/ufo_sighting.{fmt}"), 404, fmt)
    assert "ufo_sighting" in message


def test_jurisdiction_id_is_the_district(client):
    assert client.get(f"{BASE}/services.json?jurisdiction_id=huangpu").status_code == 200
    [message] = _errors(client.get(f"{BASE}/services.json?jurisdiction_id=chaoyang"), 404)
    assert "chaoyang" in message and "huangpu" in message
    _errors(client.get(f"{BASE}/requests.xml?jurisdiction_id=chaoyang"), 404, "xml")


# ---- filing --------------------------------------------------------------------------------------------

def _call(services, number) -> dict:
    with services.session_factory() as session:
        c = session.scalar(select(Call).where(Call.number == number))
        return {"category": c.category_code, "community": c.community_code, "street": c.street_code,
                "status": c.status, "location": c.location, "description": c.description, "lat": c.latitude,
                "long": c.longitude, "photos": list(c.photos), "urgency": c.urgency,
                "reporter": c.reporter.username}


def _audit(services, number, action) -> list[AuditEvent]:
    with services.session_factory() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.subject == number,
                                                             AuditEvent.action == action)))


def test_filing_creates_a_real_call(client, key, api, services):
    r = _file(client, key, lat="23.1005", long="113.4602", media_url="https://photos.example.com/flood.jpg",
              email="citizen@example.com", phone="13800000000", first_name="小明")
    [answer] = r.get_json()
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}
    no = answer["service_request_id"]
    assert no.startswith("HY") and no in answer["service_notice"] and answer["account_id"] is None
    seen = api.as_("huangpu.supervisor").get(f"/api/v1/calls/{no}")
    assert seen.status_code == 200 and seen.get_json()["number"] == no, "the internal API shows it"
    assert _call(services, no) == {
        "category": "road_flooding", "community": "qingnian", "street": "xiagang", "status": "triage",
        "location": "港前路 88 号", "description": "港前路积水没过脚踝", "lat": 23.1005, "long": 113.4602,
        "photos": ["https://photos.example.com/flood.jpg"], "urgency": "normal", "reporter": "huangpu.hotline"}
    [filed] = _audit(services, no, "open311.request")
    assert filed.actor == "huangpu.hotline" and filed.detail["api_key"] == "civic-app"
    assert filed.detail["contact"] == {"email": "citizen@example.com", "phone": "13800000000", "first_name": "小明"}
    assert [e["call"]["number"] for e in api.queue("xiagang.dispatcher")] == [no], "the street triages it"


def test_filing_in_xml_with_coordinates_only_and_urgency(client, key, services):
    r = _file(client, key, fmt="xml", address_string=None, lat="23.1", long="113.45",
              **{"attribute[urgency]": "urgent", "attribute[community]": "jinzhou"})
    root = _xml(r)
    assert root.tag == "service_requests" and _children(root) == ["request"]
    assert _children(root[0]) == ["service_request_id", "service_notice", "account_id"]
    no = root[0].findtext("service_request_id")
    call = _call(services, no)
    assert call["location"] == "23.100000,113.450000" and call["urgency"] == "urgent"
    assert (call["lat"], call["long"]) == (23.1, 113.45)
    assert call["community"] == "jinzhou" and call["street"] == "changzhou"


def test_jurisdiction_id_on_post(client, key, services):
    _file(client, key, jurisdiction_id="huangpu")
    _errors(_file(client, key, jurisdiction_id="chaoyang", status=404), 404)
    assert _counts(services)[0] == 1


# ---- reading ---------------------------------------------------------------------------------------------

def test_one_request_in_json_and_xml(client, key):
    no = _number(client, key, lat="23.1", long="113.4", media_url="https://photos.example.com/a.jpg")
    r = client.get(f"{BASE}/requests/{no}.json")
    assert r.status_code == 200
    [req] = r.get_json()
    assert list(req) == REQUEST_FIELDS
    assert req["service_request_id"] == no and req["status"] == "open" and req["service_code"] == "road_flooding"
    assert req["service_name"] == "道路积水" and req["address"] == "港前路 88 号"
    assert (req["lat"], req["long"]) == (23.1, 113.4) and req["media_url"] == "https://photos.example.com/a.jpg"
    assert req["requested_datetime"] == "2026-10-12T09:00:00+08:00" == req["updated_datetime"]
    assert req["status_notes"] is None and req["agency_responsible"] is None

    root = _xml(client.get(f"{BASE}/requests/{no}.xml"))
    assert root.tag == "service_requests" and _children(root) == ["request"]
    assert _children(root[0]) == REQUEST_FIELDS
    assert root[0].findtext("status") == "open" and root[0].findtext("lat") == "23.1"
    assert root[0].findtext("status_notes") == "" and root[0].findtext("requested_datetime").endswith("+08:00")


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_unknown_request_and_token_are_404(client, fmt):
    _errors(client.get(f"{BASE}/requests/HY20990101000001.{fmt}"), 404, fmt)
    _errors(client.get(f"{BASE}/tokens/HY20990101000001.{fmt}"), 404, fmt)
    _errors(client.get(f"{BASE}/requests/{'X' * 500}.{fmt}"), 404, fmt)


def test_tokens_resolve_to_the_request(client, key):
    no = _number(client, key)
    assert client.get(f"{BASE}/tokens/{no}.json").get_json() == [{"service_request_id": no, "token": no}]
    root = _xml(client.get(f"{BASE}/tokens/{no}.xml"))
    assert root.tag == "service_requests" and _children(root[0]) == ["service_request_id", "token"]
    assert root[0].findtext("service_request_id") == no


def test_status_notes_agency_and_dates_follow_the_call(client, key, api, services):
    no = _number(client, key)
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water", "assists": ["urban"]})
    [req] = client.get(f"{BASE}/requests/{no}.json").get_json()
    assert req["status"] == "open" and req["agency_responsible"] == "水务局"
    api.do(no, "water.staff", "sign")
    [req] = client.get(f"{BASE}/requests/{no}.json").get_json()
    assert req["expected_datetime"] and req["expected_datetime"].endswith("+08:00"), "the resolve deadline"
    api.do(no, "urban.staff", "sign")
    api.advance(timedelta(days=1))
    api.do(no, "urban.staff", "done", {"result": "城管已协助"})
    api.do(no, "water.staff", "done", {"result": "已疏通排水管"})
    api.do(no, "qingnian.grid", "pass")
    api.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": True})
    root = _xml(client.get(f"{BASE}/requests/{no}.xml"))
    req = root[0]
    assert req.findtext("status") == "closed" and req.findtext("status_notes") == "已疏通排水管"
    assert req.findtext("updated_datetime") == "2026-10-13T09:00:00+08:00"
    assert req.findtext("expected_datetime") == "" and req.findtext("agency_responsible") == "水务局"


def test_voided_and_merged_calls_are_closed(client, key, api):
    first, dup, prank = _number(client, key), _number(client, key), _number(client, key)
    api.do(dup, "xiagang.dispatcher", "merge", {"into": first})
    api.do(prank, "xiagang.dispatcher", "void", {"reason": "恶意报警"})
    out = {r["service_request_id"]: r for r in client.get(f"{BASE}/requests.json").get_json()}
    assert out[first]["status"] == "open"
    assert out[dup]["status"] == "closed" and out[dup]["status_notes"] == f"duplicate of {first}"
    assert out[prank]["status"] == "closed" and out[prank]["status_notes"]


def test_request_list_filters(client, key, services):
    old = _number(client, key, service_code="noise")
    services.clock.advance(timedelta(days=100))
    flood = _number(client, key)
    services.clock.advance(timedelta(hours=1))
    noise = _number(client, key, service_code="noise", **{"attribute[community]": "anlai"})

    def ids(query="", fmt="json"):
        r = client.get(f"{BASE}/requests.{fmt}{query}")
        assert r.status_code == 200, r.data.decode()
        if fmt == "xml":
            root = _xml(r)
            assert root.tag == "service_requests"
            return [req.findtext("service_request_id") for req in root]
        return [req["service_request_id"] for req in r.get_json()]

    assert ids() == [noise, flood], "the last 90 days, newest first"
    assert ids(fmt="xml") == [noise, flood]
    assert ids("?service_code=noise") == [noise]
    assert ids("?service_code=noise,road_flooding") == [noise, flood]
    assert ids("?status=open") == [noise, flood] and ids("?status=closed") == []
    assert ids("?status=open,closed") == [noise, flood]
    assert ids("?start_date=2026-10-01T00:00:00%2B08:00&end_date=2026-10-20T00:00:00Z") == [old]
    assert ids("?start_date=2026-10-01T00:00:00+08:00") == [old], "an unencoded + arrives as a space"
    assert ids("?end_date=2026-10-13T00:00:00Z") == [old]
    assert ids("?start_date=2027-01-20T09:00:00%2B08:00&end_date=2027-01-20T10:00:00%2B08:00") == [noise, flood]
    assert ids("?start_date=2027-01-20T09:30:00%2B08:00&end_date=2027-01-20T11:00:00%2B08:00") == [noise]
    assert ids(f"?service_request_id={old},{noise},HY1&service_code=road_flooding&status=closed") == [noise, old], \
        "service_request_id overrides every other filter"
    assert ids(f"?service_request_id={old}&service_request_id={flood}") == [flood, old]


def test_request_list_returns_at_most_the_limit(client, key, monkeypatch):
    import web.open311

    numbers = [_number(client, key) for _ in range(3)]
    monkeypatch.setattr(web.open311, "MAX_RESULTS", 2)
    assert [r["service_request_id"] for r in client.get(f"{BASE}/requests.json").get_json()] == numbers[:0:-1]


def test_child_tickets_are_not_listed(client, key, api):
    no = _number(client, key, service_code="lift_install")
    api.do(no, "xiagang.dispatcher", "escalate", {"reason": "需区级统筹"})
    api.do(no, "huangpu.dispatcher", "coordinate", {"lead": "power", "assists": ["telecom"]})
    assert [r["service_request_id"] for r in client.get(f"{BASE}/requests.json").get_json()] == [no]
    _errors(client.get(f"{BASE}/requests/{no}-1.json"), 404)
    [req] = client.get(f"{BASE}/requests/{no}.json").get_json()
    assert req["agency_responsible"] == "供电局"


# ---- errors ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_api_key_is_required_and_checked(client, key, services, fmt):
    before = _counts(services)
    assert "api_key" in _errors(_file(client, None, fmt=fmt, status=403), 403, fmt)[0]
    assert "invalid" in _errors(_file(client, "hy_not-a-key", fmt=fmt, status=403), 403, fmt)[0]
    assert _counts(services) == before


def test_a_revoked_key_is_refused(client, key, services):
    _file(client, key)
    with services.session_factory() as session:
        from workflows.models import ApiKey

        revoke_api_key(session, session.scalar(select(ApiKey.id)), now=services.clock.now(), actor="admin")
        session.commit()
    before = _counts(services)
    assert "revoked" in _errors(_file(client, key, status=403), 403)[0]
    assert _counts(services) == before


@pytest.mark.parametrize("fields, words", [
    ({"service_code": None}, ["service_code"]),
    ({"service_code": "ufo_sighting"}, ["service_code", "ufo_sighting"]),
    ({"description": None}, ["description"]),
    ({"description": "x" * 4001}, ["description"]),
    ({"attribute[community]": None}, ["attribute[community]", "required", "qingnian"]),
    ({"attribute[community]": "atlantis"}, ["attribute[community]", "atlantis"]),
    ({"attribute[urgency]": "whenever"}, ["attribute[urgency]", "whenever"]),
    ({"attribute[colour]": "red"}, ["attribute[colour]", "unknown attribute"]),
    ({"address_string": None}, ["location", "address_string"]),
    ({"address_string": None, "address_id": "A-1"}, ["address_id"]),
    ({"lat": "23.1"}, ["lat and long"]),
    ({"lat": "north", "long": "113"}, ["lat"]),
    ({"lat": "91", "long": "113"}, ["lat"]),
    ({"lat": "nan", "long": "113"}, ["lat"]),
    ({"lat": "1e999", "long": "113"}, ["lat"]),
    ({"media_url": "javascript:alert(1)"}, ["media_url"]),
    ({"email": "x" * 300}, ["email"]),
])
def test_bad_fields_are_400_and_write_nothing(client, key, services, fields, words):
    before = _counts(services)
    descriptions = _errors(_file(client, key, status=400, **fields), 400)
    text = " ".join(descriptions)
    assert all(w in text for w in words), descriptions
    assert _counts(services) == before


def test_several_problems_are_reported_together_in_xml(client, key):
    r = _file(client, key, fmt="xml", status=400, address_string=None, **{"attribute[community]": None})
    descriptions = _errors(r, 400, "xml")
    assert len(descriptions) == 2 and "location" in descriptions[0] and "community" in descriptions[1]


def test_json_bodies_are_refused_with_a_hint(client, key):
    r = client.post(f"{BASE}/requests.json", json={"api_key": key, "service_code": "noise"})
    assert "x-www-form-urlencoded" in _errors(r, 400)[0]


@pytest.mark.parametrize("query, words", [
    ("?start_date=2026-10-01T00:00:00", ["start_date", "offset"]),
    ("?start_date=yesterday", ["start_date", "date-time"]),
    ("?end_date=0001-01-01T00:00:00%2B08:00", ["end_date", "range"]),
    ("?start_date=2026-10-20T00:00:00Z&end_date=2026-10-01T00:00:00Z", ["after"]),
    ("?start_date=2026-01-01T00:00:00Z&end_date=2026-10-01T00:00:00Z", ["90 days"]),
    ("?status=pending", ["status", "pending"]),
    ("?service_code=ufo_sighting", ["ufo_sighting"]),
    ("?service_request_id=" + ",".join(f"HY{i}" for i in range(1001)), ["service_request_id", "1000"]),
])
@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_bad_filters_are_400(client, query, words, fmt):
    text = " ".join(_errors(client.get(f"{BASE}/requests.{fmt}{query}"), 400, fmt))
    assert all(w in text for w in words), text


def test_unknown_format_extension_is_400_in_xml_or_the_accepted_format(client, key, services):
    for path in ("services.csv", "services/noise.html", "requests.yaml", "requests/HY1.txt", "tokens/HY1.rss"):
        assert ".json or .xml" in _errors(client.get(f"{BASE}/{path}"), 400, "xml")[0]
    _errors(client.get(f"{BASE}/services.csv", headers={"Accept": "application/json"}), 400, "json")
    before = _counts(services)
    _errors(client.post(f"{BASE}/requests.csv", data={"api_key": key}), 400, "xml")
    assert _counts(services) == before


def test_unknown_resources_and_methods(client):
    assert "services" in _errors(client.get(f"{BASE}/discovery.json"), 404, "json")[0]
    _errors(client.get(f"{BASE}/"), 404, "xml")
    _errors(client.get(f"{BASE}/services"), 404, "xml")
    r = client.delete(f"{BASE}/services.json")
    assert _errors(r, 405, "json") and r.headers["Allow"] == "GET"
    r = client.put(f"{BASE}/requests.xml")
    assert _errors(r, 405, "xml") and r.headers["Allow"] == "GET, POST"
    _errors(client.post(f"{BASE}/requests/HY1.json"), 405, "json")


def test_an_unexpected_failure_is_a_500_in_open311_format_and_writes_nothing(client, key, services, monkeypatch):
    import web.open311

    real = web.open311.file_call

    def file_then_fail(ctx, data):
        real(ctx, data)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(web.open311, "file_call", file_then_fail)
    before = _counts(services)
    [message] = _errors(_file(client, key, fmt="xml", status=500), 500, "xml")
    assert "unexpected" in message and "disk" not in message
    assert _counts(services) == before


def test_text_is_escaped_in_xml(client, key, services):
    no = _number(client, key, description='<b>"水浸"</b> & ]]> 街')
    root = _xml(client.get(f"{BASE}/requests/{no}.xml"))
    assert root[0].findtext("description") == '<b>"水浸"</b> & ]]> 街'
    with services.session_factory() as session:  # filed another way: XML cannot carry \x01, so it is dropped
        session.scalar(select(Call).where(Call.number == no)).description = "a\x01b"
        session.commit()
    assert _xml(client.get(f"{BASE}/requests/{no}.xml"))[0].findtext("description") == "ab"
    assert client.get(f"{BASE}/requests/{no}.json").get_json()[0]["description"] == "ab"


@pytest.mark.parametrize("path", [
    "/requests.json?service_request_id=HY%00", "/requests/HY%00.json", "/tokens/%00.xml", "/services/no%00ise.json",
    "/requests.json?service_code=no%00ise", "/requests.json?jurisdiction_id=%00", "/requests.json?status=open%01",
    "/requests.json?start_date=2026-10-01T00:00:00%2B25:00",
])
def test_odd_query_input_is_400_never_500(client, path):
    _errors(client.get(BASE + path), 400, "xml" if path.split("?")[0].endswith(".xml") else "json")


@pytest.mark.parametrize("fields", [
    {"description": "a\x00b"}, {"address_string": "x\x00"}, {"attribute[community]": "qing\x00nian"},
    {"service_code": "noise\x00"}, {"phone": "1\x00"}, {"attribute[\x00]": "x"}, {"description": "a\x01b"},
    {"media_url": "https://a.example.com/\x00"}, {"lat": "23\x00", "long": "113"},
])
def test_control_characters_are_refused(client, key, services, fields):
    before = _counts(services)
    assert "control characters" in _errors(_file(client, key, status=400, **fields), 400)[0]
    assert _errors(_file(client, "hy_\x00", status=400), 400)
    assert _counts(services) == before


def test_filing_is_rate_limited_per_key(services, key):
    services.settings = dataclasses.replace(services.settings, ratelimit_filing="2 per minute")
    app = create_app(services=services)
    app.config["TESTING"] = True
    client = app.test_client()
    _file(client, key)
    _file(client, key)
    assert "too many requests" in _errors(_file(client, key, fmt="xml", status=429), 429, "xml")[0]
