"""Rate limits on sign-in and filing (flask-limiter): 429 in the API's error shape, per account and (failed
sign-ins) per address."""
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


def test_failed_sign_ins_are_limited_per_address_whatever_the_username(services):
    """One address guessing at many accounts: each account stays under its own limit, the address does not.
    Only failures count, so a street office behind one address can sign everyone in."""
    app = _app(services, ratelimit_signin="100 per minute")
    app.config["HUYING_RATELIMIT_SIGNIN_IP"] = "4 per minute"
    client = app.test_client()
    right = "huying-demo"
    assert [client.post("/api/v1/auth/tokens", json={"username": "qingnian.grid", "password": right}).status_code
            for _ in range(6)] == [201] * 6, "successful sign-ins do not count against the address"
    users = ["puhui.grid", "honggang.grid", "luofeng.grid", "liucun.grid"]
    assert [client.post("/api/v1/auth/tokens", json={"username": u, "password": "guess"}).status_code
            for u in users] == [401] * 4
    r = client.post("/api/v1/auth/tokens", json={"username": "shenjing.grid", "password": right})
    assert r.status_code == 429, "a fifth account from the same address waits, right password or not"
    body = r.get_json()
    assert body["code"] == "rate_limited" and set(body) == {"code", "message", "errors"}
    assert int(r.headers["Retry-After"]) > 0
    session = client.post("/api/v1/auth/session", json={"username": "shenjing.grid", "password": right})
    assert session.status_code == 429, "the browser's sign-in shares the address's count"
    elsewhere = client.post("/api/v1/auth/tokens", json={"username": "shenjing.grid", "password": right},
                            environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert elsewhere.status_code == 201, "another address is not affected"


def test_the_per_address_sign_in_limit_counts_the_browser_sign_in_too(services):
    app = _app(services, ratelimit_signin="100 per minute")
    app.config["HUYING_RATELIMIT_SIGNIN_IP"] = "2 per minute"
    client = app.test_client()
    assert client.post("/api/v1/auth/session", json={"username": "puhui.grid", "password": "x"}).status_code == 401
    assert client.post("/api/v1/auth/tokens", json={"username": "honggang.grid", "password": "x"}).status_code == 401
    r = client.post("/api/v1/auth/tokens", json={"username": "luofeng.grid", "password": "huying-demo"})
    assert r.status_code == 429


def test_the_per_address_limit_has_a_default(services):
    assert _app(services).config["HUYING_RATELIMIT_SIGNIN_IP"] == "30 per minute"


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


def test_the_sign_in_page_and_the_api_share_the_per_account_limit(services):
    """Guesses at one account count together whether they come through the API's token or session sign-in or
    the sign-in page: switching doors gives no extra attempts."""
    client = _app(services, ratelimit_signin="3 per minute").test_client()
    wrong = {"username": "qingnian.grid", "password": "guess"}
    assert client.post("/login", data=wrong).status_code == 401
    assert client.post("/api/v1/auth/tokens", json=wrong).status_code == 401
    assert client.post("/api/v1/auth/session", json=wrong).status_code == 401
    right = {"username": "qingnian.grid", "password": "huying-demo"}
    assert client.post("/api/v1/auth/tokens", json=right).status_code == 429
    page = client.post("/login", data=right)
    assert page.status_code == 429 and "登录尝试过于频繁" in page.get_data(as_text=True)
    assert client.get("/login").status_code == 200, "the page itself still shows"
    assert client.post("/login", data={"username": "puhui.grid", "password": "huying-demo"}).status_code == 302


def test_failed_sign_ins_on_the_page_count_against_the_address(services):
    app = _app(services, ratelimit_signin="100 per minute")
    app.config["HUYING_RATELIMIT_SIGNIN_IP"] = "2 per minute"
    client = app.test_client()
    for user in ("puhui.grid", "honggang.grid"):
        assert client.post("/login", data={"username": user, "password": "x"}).status_code == 401
    r = client.post("/api/v1/auth/tokens", json={"username": "luofeng.grid", "password": "huying-demo"})
    assert r.status_code == 429 and r.get_json()["code"] == "rate_limited"
    assert client.post("/login", data={"username": "luofeng.grid", "password": "huying-demo"}).status_code == 429


def test_the_per_address_limit_is_a_setting():
    from config.settings import load_settings

    assert load_settings({"HUYING_RATELIMIT_SIGNIN_IP": "5 per minute"}).ratelimit_signin_ip == "5 per minute"
