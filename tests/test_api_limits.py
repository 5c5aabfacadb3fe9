"""Rate limits on sign-in and filing (flask-limiter): 429 in the API's error shape, per account."""
from __future__ import annotations

import dataclasses

from web.app import create_app


def _app(services, **limits):
    services.settings = dataclasses.replace(services.settings, **limits)
    app = create_app(services=services)
    app.config["TESTING"] = True
    return app


def test_sign_in_is_limited_per_account(services):
    client = _app(services, ratelimit_signin="3 per minute").test_client()
    wrong = {"username": "qingnian.grid", "password": "guess"}
    assert [client.post("/api/v1/auth/tokens", json=wrong).status_code for _ in range(3)] == [401] * 3
    r = client.post("/api/v1/auth/tokens", json={"username": "qingnian.grid", "password": "huying-demo"})
    assert r.status_code == 429, "even the right password waits once the account is being guessed at"
    body = r.get_json()
    assert body["code"] == "rate_limited" and set(body) == {"code", "message", "errors"}
    assert int(r.headers["Retry-After"]) > 0
    other = client.post("/api/v1/auth/tokens", json={"username": "puhui.grid", "password": "huying-demo"})
    assert other.status_code == 201, "another account is not affected"


def test_filing_is_limited_per_user(services):
    client = _app(services, ratelimit_filing="2 per minute").test_client()

    def headers(user):
        r = client.post("/api/v1/auth/tokens", json={"username": user, "password": "huying-demo"})
        return {"Authorization": f"Bearer {r.get_json()['token']}"}

    grid, other = headers("qingnian.grid"), headers("puhui.grid")
    body = {"category": "noise", "description": "d", "location": "l"}
    codes = [client.post("/api/v1/calls", json=body, headers=grid).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    assert client.post("/api/v1/calls", json=body, headers=other).status_code == 201
    assert client.get("/api/v1/calls", headers=grid).status_code == 200, "reading is not limited"


def test_limits_can_be_switched_off(services):
    client = _app(services, ratelimit_signin="1 per minute", ratelimit_enabled="false").test_client()
    wrong = {"username": "qingnian.grid", "password": "guess"}
    assert [client.post("/api/v1/auth/tokens", json=wrong).status_code for _ in range(3)] == [401] * 3
