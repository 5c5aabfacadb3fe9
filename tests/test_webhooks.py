"""Webhooks: subscribers receive signed events from the outbox, retried with backoff, with a delivery log.

A real HTTP receiver (``http.server`` on 127.0.0.1) takes the deliveries; time only moves on the
virtual clock, and the scheduler's sweep (``web.scheduler.sweep_once``) does the sending.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from web.scheduler import sweep_once
from workflows.models import OutboxEvent, WebhookDelivery
from workflows.webhooks import MAX_ATTEMPTS, deliver_due, http_send, retry_delay, verify_signature

BASE = "/api/v1/admin/webhooks"
LIFECYCLE = ["call.filed", "call.dispatched", "call.signed", "call.warning", "call.breach", "call.closed"]


class Receiver:
    """An HTTP server on a free local port that records every POST and answers ``status[path]`` (200)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status: dict[str, int] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    status = receiver.status.get(self.path, 200)
                answer = b"boom" if status >= 500 else b"ok"
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def got(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def types(self, path: str) -> list[str]:
        return [json.loads(r["body"])["type"] for r in self.got(path)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def subscribe(api, url, events=None, name=None, **extra):
    body = {"name": name or url.rsplit("/", 1)[-1], "url": url, **extra}
    if events is not None:
        body["events"] = events
    r = api.as_("admin").post(f"{BASE}/subscriptions", json=body)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def log(api, **query):
    r = api.as_("admin").get(f"{BASE}/deliveries", query_string={"per_page": 200, **query})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["items"]


def close_call(api, no):
    """Done, verified, rated: the call closes."""
    api.do(no, "water.staff", "done", {"result": "已疏通"})
    api.do(no, "qingnian.grid", "pass")
    out = api.do(no, "xiagang.dispatcher", "rate", {"satisfaction": "satisfied", "resolved": True})
    assert out["call"]["status"] == "closed"


def integrator_verifies(secret: str, headers: dict, raw: bytes) -> bool:
    """What a receiver writes from the documentation alone, with Python's hmac module (not the project's
    code): HMAC-SHA256 with the secret over the timestamp header, a dot and the exact bytes received."""
    expected = "sha256=" + hmac.new(secret.encode("utf-8"), headers["X-Huying-Timestamp"].encode("ascii") + b"."
                                    + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["X-Huying-Signature"])


def assert_signed(request, secret):
    h = request["headers"]
    assert h["Content-Type"] == "application/json"
    raw = request["body"]
    assert int(h["Content-Length"]) == len(raw), "the receiver got the whole body"
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", h["X-Huying-Signature"]), h["X-Huying-Signature"]
    assert re.fullmatch(r"[0-9]+", h["X-Huying-Timestamp"])
    assert abs(time.time() - int(h["X-Huying-Timestamp"])) < 300, "Unix seconds of the sending, real time"
    assert integrator_verifies(secret, h, raw)
    assert not integrator_verifies(secret + "x", h, raw)
    assert not integrator_verifies(secret, h, raw.replace(b'"', b"'", 1))
    assert not integrator_verifies(secret, {**h, "X-Huying-Timestamp": str(int(h["X-Huying-Timestamp"]) + 1)}, raw)
    assert verify_signature(secret, h["X-Huying-Timestamp"], request["body"], h["X-Huying-Signature"])
    assert not verify_signature("not-the-secret-at-all", h["X-Huying-Timestamp"], request["body"],
                                h["X-Huying-Signature"])
    assert not verify_signature(secret, h["X-Huying-Timestamp"], request["body"] + b" ", h["X-Huying-Signature"])
    body = json.loads(request["body"])
    assert h["X-Huying-Event"] == body["type"]
    return body


# ---- the life of a call, on a real receiver ------------------------------------------------------
def test_a_subscriber_receives_every_step_of_a_call_signed_and_in_order(api, services, receiver):
    every = subscribe(api, receiver.url("/every"))
    some = subscribe(api, receiver.url("/some"), events=["call.closed", "call.dispatched"])
    assert every["events"] == [] and every["secret"] and len(every["secret"]) >= 32
    no = api.file(category="road_flooding", description="道路积水", location="港前路")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    assert receiver.requests == []  # nothing is sent from the request itself: the sweep sends
    assert sweep_once(services)["deliver_webhooks"] == 3  # filed, dispatched (both subscribers)
    api.do(no, "water.staff", "sign")
    api.advance(timedelta(days=10))  # past the 5-working-day warning and deadline of the resolve step
    sweep_once(services)
    close_call(api, no)
    sweep_once(services)

    assert receiver.types("/every") == LIFECYCLE
    assert receiver.types("/some") == ["call.dispatched", "call.closed"]
    for request in receiver.got("/every"):
        body = assert_signed(request, every["secret"])
        assert body["call"]["number"] == no and body["id"] and body["occurred_at"]
    closed = json.loads(receiver.got("/every")[-1]["body"])
    assert closed["call"]["status"] == "closed" and closed["actor"] == "xiagang.dispatcher"
    assert closed["data"] == {"result": "已疏通", "satisfaction": "satisfied"}
    warning = json.loads(receiver.got("/every")[3]["body"])
    assert warning["actor"] == "scheduler" and warning["data"]["unit"] == "water"
    for request in receiver.got("/some"):
        assert_signed(request, some["secret"])

    # the delivery log: one delivered attempt each, with the id the receiver saw
    entries = log(api, subscription=every["id"])
    assert [e["event"] for e in reversed(entries)] == LIFECYCLE
    assert {(e["state"], e["attempts"], e["last_status"], e["call"]) for e in entries} == {("delivered", 1, 200, no)}
    assert sorted(int(r["headers"]["X-Huying-Delivery"]) for r in receiver.got("/every")) == sorted(
        e["id"] for e in entries)
    assert sweep_once(services)["deliver_webhooks"] == 0  # delivered once, never again


# ---- failures: backoff, dead, redelivery ---------------------------------------------------------
def test_a_failing_receiver_is_retried_with_backoff_until_dead_and_can_be_redelivered(api, services, receiver):
    sub = subscribe(api, receiver.url("/down"), events=["call.filed"])
    receiver.status["/down"] = 500
    no = api.file(category="road_flooding")
    sweep_once(services)
    assert len(receiver.got("/down")) == 1
    [entry] = log(api, subscription=sub["id"])
    assert (entry["event"], entry["call"], entry["state"], entry["attempts"]) == ("call.filed", no, "pending", 1)
    assert entry["last_status"] == 500 and entry["last_error"] == "HTTP 500: boom"
    first = services.clock.now()
    assert datetime.fromisoformat(entry["next_attempt_at"]) == first + timedelta(seconds=30)

    services.clock.advance(timedelta(seconds=29))
    sweep_once(services)
    assert len(receiver.got("/down")) == 1  # not before its time
    services.clock.advance(timedelta(seconds=1))
    sweep_once(services)
    assert len(receiver.got("/down")) == 2
    waits = [timedelta(seconds=30)]
    for attempt in range(2, MAX_ATTEMPTS):
        waits.append(retry_delay(attempt))
        services.clock.advance(retry_delay(attempt))
        sweep_once(services)
        assert len(receiver.got("/down")) == attempt + 1
    for request in receiver.got("/down"):
        assert_signed(request, sub["secret"])
    assert [w.total_seconds() for w in waits] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    [entry] = log(api, subscription=sub["id"])
    assert (entry["state"], entry["attempts"], entry["last_status"], entry["next_attempt_at"]) == ("dead", 10, 500, None)
    assert log(api, state="dead") == [entry] and log(api, state="pending") == []
    assert api.as_("admin").get(f"{BASE}/subscriptions/{sub['id']}").get_json()["dead"] == 1
    api.advance(timedelta(days=2))  # (signs everyone in again)
    sweep_once(services)
    assert len(receiver.got("/down")) == MAX_ATTEMPTS  # dead is dead
    # every attempt carried the same delivery id and a valid signature
    assert {r["headers"]["X-Huying-Delivery"] for r in receiver.got("/down")} == {str(entry["id"])}

    # the receiver is fixed; the administrator redelivers from the log
    receiver.status["/down"] = 200
    r = api.as_("admin").post(f"{BASE}/deliveries/{entry['id']}/redeliver")
    assert r.status_code == 200 and (r.get_json()["state"], r.get_json()["attempts"]) == ("pending", 0)
    r = api.as_("admin").post(f"{BASE}/deliveries/{entry['id']}/redeliver")
    assert r.status_code == 409 and r.get_json()["code"] == "conflict"  # already pending
    assert sweep_once(services)["deliver_webhooks"] == 1
    last = receiver.got("/down")[-1]
    assert assert_signed(last, sub["secret"])["call"]["number"] == no
    r = api.as_("admin").get(f"{BASE}/deliveries/{entry['id']}")
    done = r.get_json()
    assert (done["state"], done["attempts"], done["last_status"], done["last_error"]) == ("delivered", 1, 200, None)
    assert done["payload"] == json.loads(last["body"])
    # a delivered one can be sent again too (the receiver lost it)
    assert api.as_("admin").post(f"{BASE}/deliveries/{entry['id']}/redeliver").status_code == 200
    sweep_once(services)
    assert len(receiver.got("/down")) == MAX_ATTEMPTS + 2


def test_no_answer_redirects_and_timeouts_are_failed_attempts(api, services, receiver):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    refused = subscribe(api, f"http://127.0.0.1:{closed_port}/hook", name="refused", events=["call.filed"])
    moved = subscribe(api, receiver.url("/moved"), events=["call.filed"])
    receiver.status["/moved"] = 302
    api.file(category="road_flooding")
    assert sweep_once(services)["deliver_webhooks"] == 0
    [r] = log(api, subscription=refused["id"])
    assert r["state"] == "pending" and r["attempts"] == 1 and r["last_status"] is None
    assert "refused" in r["last_error"].lower()
    [m] = log(api, subscription=moved["id"])
    assert (m["state"], m["last_status"], m["last_error"]) == ("pending", 302, "HTTP 302: ok")
    assert len(receiver.got("/moved")) == 1 and receiver.got("/elsewhere") == []  # not followed

    def too_slow(url, body, headers, timeout):
        assert timeout == 5.0
        raise TimeoutError("timed out")

    services.clock.advance(timedelta(seconds=30))
    assert deliver_due(services.session_factory, services.clock, too_slow) == 0
    [r] = log(api, subscription=refused["id"])
    assert (r["attempts"], r["last_error"]) == (2, "TimeoutError: timed out")


def test_a_failing_event_holds_back_later_events_of_the_same_call_only(api, services, receiver):
    sub = subscribe(api, receiver.url("/ordered"))
    receiver.status["/ordered"] = 503
    a = api.file(category="road_flooding")
    sweep_once(services)  # call.filed of A fails
    api.do(a, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    b = api.file(category="road_flooding")
    receiver.status["/ordered"] = 200
    sweep_once(services)
    # A's dispatch waits for A's filing (retrying); B is another call and goes at once
    sent = [(json.loads(r["body"])["call"]["number"], json.loads(r["body"])["type"]) for r in receiver.got("/ordered")]
    assert sent == [(a, "call.filed"), (b, "call.filed")]
    services.clock.advance(timedelta(seconds=30))
    sweep_once(services)
    sent = [(json.loads(r["body"])["call"]["number"], json.loads(r["body"])["type"]) for r in receiver.got("/ordered")]
    assert sent[2:] == [(a, "call.filed"), (a, "call.dispatched")]
    assert {e["state"] for e in log(api, subscription=sub["id"])} == {"delivered"}


# ---- the outbox is transactional -----------------------------------------------------------------
def test_a_refused_or_rolled_back_action_announces_nothing(api, services, receiver, monkeypatch):
    from engine.errors import StaleInstance
    from engine.runtime import ProcessRuntime

    subscribe(api, receiver.url("/tx"))
    no = api.file(category="road_flooding")
    sweep_once(services)
    assert receiver.types("/tx") == ["call.filed"]

    def counts():
        with services.session_factory() as s:
            return (s.scalar(select(func.count()).select_from(OutboxEvent)),
                    s.scalar(select(func.count()).select_from(WebhookDelivery)))

    before = counts()
    item = api.item(no, "xiagang.dispatcher")
    r = api.as_("xiagang.dispatcher").post(f"/api/v1/work/{item['id']}/actions/dispatch", json={"lead": "nowhere"})
    assert r.status_code == 422
    # a dispatch that got as far as announcing itself, then lost its optimistic lock at the flush
    real_flush = ProcessRuntime.flush

    def lost_the_race(self):
        raise StaleInstance(f"{no} was changed by someone else at the same time")

    monkeypatch.setattr(ProcessRuntime, "flush", lost_the_race)
    r = api.as_("xiagang.dispatcher").post(f"/api/v1/work/{item['id']}/actions/dispatch", json={"lead": "water"})
    assert r.status_code == 409 and r.get_json()["code"] == "conflict"
    monkeypatch.setattr(ProcessRuntime, "flush", real_flush)
    assert counts() == before
    assert sweep_once(services)["deliver_webhooks"] == 0
    assert receiver.types("/tx") == ["call.filed"]
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    sweep_once(services)
    assert receiver.types("/tx") == ["call.filed", "call.dispatched"]


# ---- one sender per attempt --------------------------------------------------------------------
class Crash(BaseException):
    """The deliverer's process dies (not an exception it could record)."""


def test_a_deliverer_that_dies_mid_attempt_leaves_the_delivery_to_be_retried_after_its_lease(
        api, services, receiver):
    from workflows.webhooks import LEASE

    sub = subscribe(api, receiver.url("/lease"), events=["call.filed"])
    api.file(category="road_flooding")

    def dies(url, body, headers, timeout):
        raise Crash

    with pytest.raises(Crash):
        deliver_due(services.session_factory, services.clock, dies)
    [entry] = log(api, subscription=sub["id"])
    assert entry["state"] == "pending" and entry["attempts"] == 1  # claimed, never answered
    assert sweep_once(services)["deliver_webhooks"] == 0  # leased: nobody else sends it meanwhile
    assert receiver.got("/lease") == []
    services.clock.advance(LEASE)
    assert sweep_once(services)["deliver_webhooks"] == 1
    [entry] = log(api, subscription=sub["id"])
    assert (entry["state"], entry["attempts"]) == ("delivered", 2)
    assert [r["headers"]["X-Huying-Delivery"] for r in receiver.got("/lease")] == [str(entry["id"])]


def test_a_delivery_whose_deliverer_keeps_dying_is_given_up(api, services, receiver):
    from workflows.webhooks import LEASE

    sub = subscribe(api, receiver.url("/poison"), events=["call.filed"])
    api.file(category="road_flooding")

    def dies(url, body, headers, timeout):
        raise Crash

    for _ in range(MAX_ATTEMPTS):
        with pytest.raises(Crash):
            deliver_due(services.session_factory, services.clock, dies)
        services.clock.advance(LEASE)
    assert sweep_once(services)["deliver_webhooks"] == 0
    [entry] = log(api, subscription=sub["id"])
    assert (entry["state"], entry["attempts"]) == ("dead", MAX_ATTEMPTS)
    assert entry["last_error"] == f"gave up: {MAX_ATTEMPTS} attempts were interrupted before an answer"
    assert receiver.got("/poison") == []


def test_two_deliverers_at_once_send_each_delivery_once(api, district, services, receiver):
    subscribe(api, receiver.url("/race"), events=["call.filed"])
    calls = [district.file("qingnian.grid", category="road_flooding") for _ in range(24)]
    both_sending = threading.Barrier(2, timeout=60)
    local = threading.local()
    per_thread: dict[str, int] = {}
    errors: list[BaseException] = []

    def send(url, body, headers, timeout):
        if not getattr(local, "met", False):  # each deliverer's first send waits for the other's
            local.met = True
            both_sending.wait()
        return http_send(url, body, headers, timeout)

    def run(name):
        try:
            per_thread[name] = deliver_due(services.session_factory, services.clock, send)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    received = Counter(r["headers"]["X-Huying-Delivery"] for r in receiver.got("/race"))
    assert len(received) == len(calls) and set(received.values()) == {1}
    assert sorted(json.loads(r["body"])["call"]["number"] for r in receiver.got("/race")) == sorted(calls)
    assert sum(per_thread.values()) == len(calls) and min(per_thread.values()) >= 1, per_thread
    assert {e["state"] for e in log(api)} == {"delivered"}


# ---- the admin API ------------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"url": "http://127.0.0.1:9/x"}, "name"),
    ({"name": "x"}, "url"),
    ({"name": "x", "url": "ftp://example.com/hook"}, "url"),
    ({"name": "x", "url": "not a url"}, "url"),
    ({"name": "x", "url": "http://example.com/" + "a" * 500}, "url"),
    ({"name": "   ", "url": "http://example.com/hook"}, "name"),
    ({"name": "x", "url": "http://example.com/hook", "events": ["call.exploded"]}, "events.0"),
    ({"name": "x", "url": "http://example.com/hook", "events": "call.closed"}, "events"),
    ({"name": "x", "url": "http://example.com/hook", "secret": "short"}, "secret"),
    ({"name": "x", "url": "http://example.com/hook", "colour": "red"}, "colour"),
])
def test_bad_subscriptions_are_refused_with_the_field_named(api, body, field):
    r = api.as_("admin").post(f"{BASE}/subscriptions", json=body)
    assert r.status_code == 422, r.get_json()
    out = r.get_json()
    assert out["code"] == "validation_failed" and field in out["errors"], out
    assert api.as_("admin").get(f"{BASE}/subscriptions").get_json()["total"] == 0


def test_only_admins_manage_webhooks(api, receiver):
    sub = subscribe(api, receiver.url("/admin-only"))
    paths = [("get", f"{BASE}/subscriptions"), ("post", f"{BASE}/subscriptions"),
             ("get", f"{BASE}/subscriptions/{sub['id']}"), ("patch", f"{BASE}/subscriptions/{sub['id']}"),
             ("delete", f"{BASE}/subscriptions/{sub['id']}"), ("post", f"{BASE}/subscriptions/{sub['id']}/ping"),
             ("get", f"{BASE}/deliveries"), ("get", f"{BASE}/deliveries/1"), ("post", f"{BASE}/deliveries/1/redeliver")]
    for user in ("huangpu.supervisor", "xiagang.dispatcher", "water.staff"):
        for method, path in paths:
            r = getattr(api.as_(user), method)(path, json={"name": 5})  # a bad body too: still 403, not 422
            assert r.status_code == 403 and r.get_json()["code"] == "forbidden", (user, method, path, r.get_json())
    r = api.as_(None).get(f"{BASE}/subscriptions")
    assert r.status_code == 401 and set(r.get_json()) == {"code", "message", "errors"}
    r = api.as_("admin").get(f"{BASE}/subscriptions/{sub['id']}").get_json()
    assert r["active"] is True and "secret" not in r  # the secret is never shown again


def test_unknown_ids_are_404_and_conflicts_409(api, receiver):
    sub = subscribe(api, receiver.url("/dup"), name="dup")
    admin = api.as_("admin")
    for method, path in [("get", f"{BASE}/subscriptions/999999"), ("patch", f"{BASE}/subscriptions/999999"),
                         ("delete", f"{BASE}/subscriptions/999999"), ("post", f"{BASE}/subscriptions/999999/ping"),
                         ("get", f"{BASE}/deliveries/999999"), ("post", f"{BASE}/deliveries/999999/redeliver"),
                         ("get", f"{BASE}/subscriptions/99999999999999999999999"),
                         ("post", f"{BASE}/deliveries/99999999999999999999999/redeliver")]:
        r = getattr(admin, method)(path, json={})
        assert r.status_code == 404 and r.get_json()["code"] == "not_found", (method, path, r.get_json())
    r = admin.post(f"{BASE}/subscriptions", json={"name": "dup", "url": receiver.url("/other")})
    assert r.status_code == 409 and r.get_json()["errors"] == {"name": ["already taken"]}
    other = subscribe(api, receiver.url("/other"), name="other")
    r = admin.patch(f"{BASE}/subscriptions/{other['id']}", json={"name": "dup"})
    assert r.status_code == 409
    r = admin.patch(f"{BASE}/subscriptions/{sub['id']}", json={"secret": "x" * 20, "rotate_secret": True})
    assert r.status_code == 422 and "rotate_secret" in r.get_json()["errors"]
    for query in ({"state": "lost"}, {"event": "call.exploded"}, {"subscription": 0}, {"per_page": 1000},
                  {"subscription": "x"}, {"page": 0}):
        r = admin.get(f"{BASE}/deliveries", query_string=query)
        assert r.status_code == 422 and r.get_json()["code"] == "validation_failed", (query, r.get_json())


def test_ping_rotate_deactivate_and_reactivate(api, services, receiver):
    sub = subscribe(api, receiver.url("/ping"), events=["call.closed"], secret="a-secret-of-sixteen+")
    assert sub["secret"] == "a-secret-of-sixteen+"
    admin = api.as_("admin")
    r = admin.post(f"{BASE}/subscriptions/{sub['id']}/ping")
    assert r.status_code == 202 and (r.get_json()["event"], r.get_json()["call"], r.get_json()["state"]) == (
        "ping", None, "pending")
    assert sweep_once(services)["deliver_webhooks"] == 1  # a ping goes whatever the event list
    [ping] = receiver.got("/ping")
    assert ping["headers"]["X-Huying-Event"] == "ping"
    assert assert_signed(ping, "a-secret-of-sixteen+")["data"] == {"subscription": "ping"}

    # a new secret (shown once) and URL apply from the next delivery on
    r = admin.patch(f"{BASE}/subscriptions/{sub['id']}", json={"rotate_secret": True, "url": receiver.url("/new"),
                                                               "events": ["call.filed", "call.filed"]})
    assert r.status_code == 200, r.get_json()
    changed = r.get_json()
    assert changed["secret"] != sub["secret"] and changed["events"] == ["call.filed"]
    assert "secret" not in admin.patch(f"{BASE}/subscriptions/{sub['id']}", json={}).get_json()
    api.file(category="road_flooding")
    sweep_once(services)
    [filed] = receiver.got("/new")
    assert_signed(filed, changed["secret"])
    h = filed["headers"]
    assert not verify_signature(sub["secret"], h["X-Huying-Timestamp"], filed["body"], h["X-Huying-Signature"])

    # deactivated: what is pending is cancelled, nothing new is queued, nothing is sent
    receiver.status["/new"] = 500
    no = api.file(category="road_flooding")
    r = admin.delete(f"{BASE}/subscriptions/{sub['id']}")
    assert r.status_code == 200 and r.get_json()["active"] is False and r.get_json()["pending"] == 0
    assert admin.delete(f"{BASE}/subscriptions/{sub['id']}").status_code == 200  # again: no harm
    [cancelled] = log(api, call=no)
    assert cancelled["state"] == "dead" and cancelled["last_error"] == "cancelled: subscription deactivated"
    api.file(category="road_flooding")
    sweep_once(services)
    assert len(receiver.got("/new")) == 1 and len(log(api, subscription=sub["id"])) == 3
    assert admin.post(f"{BASE}/subscriptions/{sub['id']}/ping").status_code == 409
    assert admin.post(f"{BASE}/deliveries/{cancelled['id']}/redeliver").status_code == 409
    assert [s["active"] for s in admin.get(f"{BASE}/subscriptions?active=false").get_json()["items"]] == [False]

    # active again: the cancelled one can be redelivered
    receiver.status["/new"] = 200
    assert admin.patch(f"{BASE}/subscriptions/{sub['id']}", json={"active": True}).get_json()["active"] is True
    assert admin.post(f"{BASE}/deliveries/{cancelled['id']}/redeliver").status_code == 200
    sweep_once(services)
    assert json.loads(receiver.got("/new")[-1]["body"])["call"]["number"] == no
    assert [e["event"] for e in log(api, subscription=sub["id"], state="delivered")] == [
        "call.filed", "call.filed", "ping"]


def test_the_signature_helper_refuses_stale_or_malformed_deliveries():
    from workflows.webhooks import sign

    body = b'{"type":"call.filed","call":{"number":"HY1"}}'
    sig = sign("s" * 16, 1_760_000_000, body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify_signature("s" * 16, "1760000000", body, sig, now=1_760_000_100)
    assert verify_signature("s" * 16, 1_760_000_000, body.decode(), sig, now=1_760_000_000)
    assert not verify_signature("s" * 16, "1760000000", body, sig, now=1_760_000_301)  # a replay, too late
    assert verify_signature("s" * 16, "1760000000", body, sig, tolerance=None)
    assert not verify_signature("s" * 16, "1760000001", body, sig, tolerance=None)  # timestamp is signed
    for bad in ("", "sha256=", sig.upper(), sig[7:]):
        assert not verify_signature("s" * 16, "1760000000", body, bad, tolerance=None)
    assert not verify_signature("s" * 16, "soon", body, sig)


def test_the_delivery_log_keeps_every_attempt_with_its_answer(api, services, receiver):
    """An integrator sees each try: when it was sent, what came back, how long it took, what happened next."""
    sub = subscribe(api, receiver.url("/flaky"), events=["call.filed"])
    receiver.status["/flaky"] = 503
    api.file(category="road_flooding")
    sweep_once(services)
    receiver.status["/flaky"] = 200
    services.clock.advance(retry_delay(1))
    sweep_once(services)
    [entry] = log(api, subscription=sub["id"])
    assert entry["state"] == "delivered"
    r = api.as_("admin").get(f"{BASE}/deliveries/{entry['id']}")
    assert r.status_code == 200, r.get_json()
    history = r.get_json()["history"]
    assert [(h["attempt"], h["status"], h["error"], h["outcome"]) for h in history] == [
        (1, 503, "HTTP 503: boom", "retry"), (2, 200, None, "delivered")]
    first, second = (datetime.fromisoformat(h["sent_at"]) for h in history)
    assert second - first == retry_delay(1)
    assert all(h["duration_ms"] >= 0 and h["answered_at"] >= h["sent_at"] for h in history)
    # a redelivery starts a new round of attempts; the log keeps the earlier ones
    assert api.as_("admin").post(f"{BASE}/deliveries/{entry['id']}/redeliver").status_code == 200
    sweep_once(services)
    history = api.as_("admin").get(f"{BASE}/deliveries/{entry['id']}").get_json()["history"]
    assert [(h["attempt"], h["outcome"]) for h in history] == [(1, "retry"), (2, "delivered"), (1, "delivered")]
