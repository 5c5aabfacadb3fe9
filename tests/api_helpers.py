"""Driving the REST API through Flask's test client, signed in as demo users."""
from __future__ import annotations

from workflows.demo import DEMO_PASSWORD


class ApiClient:
    """``api.as_("water.staff").post(...)``: requests carry that user's bearer token (one sign-in per user)."""

    def __init__(self, app):
        self.app = app
        self.client = app.test_client()
        self.tokens: dict[str, str] = {}

    def token(self, username: str) -> str:
        if username not in self.tokens:
            r = self.client.post("/api/v1/auth/tokens", json={"username": username, "password": DEMO_PASSWORD})
            assert r.status_code == 201, r.get_json()
            self.tokens[username] = r.get_json()["token"]
        return self.tokens[username]

    def advance(self, delta) -> None:
        """Move the virtual clock; tokens expire (12 h), so everyone signs in again afterwards."""
        self.app.extensions["huying"].clock.advance(delta)
        self.tokens.clear()

    def move_clock(self, **body) -> dict:
        """As admin, through the API: set or advance the virtual clock and run one sweep."""
        r = self.as_("admin").post("/api/v1/admin/clock", json=body)
        assert r.status_code == 200, r.get_json()
        self.tokens.clear()
        return r.get_json()

    def as_(self, username: str | None) -> UserClient:
        return UserClient(self, username)

    # ---- scenario helpers -------------------------------------------------------------------------
    def file(self, username="qingnian.grid", **data):
        data.setdefault("description", "测试呼叫")
        data.setdefault("location", "东园二街1号")
        r = self.as_(username).post("/api/v1/calls", json=data)
        assert r.status_code == 201, r.get_json()
        return r.get_json()["number"]

    def queue(self, username):
        r = self.as_(username).get("/api/v1/work?per_page=200")
        assert r.status_code == 200, r.get_json()
        return r.get_json()["items"]

    def item(self, number, username, task=None):
        found = [e["item"] for e in self.queue(username)
                 if e["call"]["number"] == number and (task is None or e["item"]["task"] == task)]
        assert len(found) == 1, f"{username} should have one item on {number} ({task}): {found}"
        return found[0]

    def do(self, number, username, action, data=None, task=None, status=200):
        item = self.item(number, username, task)
        r = self.as_(username).post(f"/api/v1/work/{item['id']}/actions/{action}", json=data or {})
        assert r.status_code == status, r.get_json()
        return r.get_json()

    def call(self, number, username="huangpu.supervisor"):
        r = self.as_(username).get(f"/api/v1/calls/{number}")
        assert r.status_code == 200, r.get_json()
        return r.get_json()


class UserClient:
    def __init__(self, api: ApiClient, username: str | None):
        self.api = api
        self.username = username

    def _headers(self, headers):
        headers = dict(headers or {})
        if self.username is not None:
            headers.setdefault("Authorization", f"Bearer {self.api.token(self.username)}")
        return headers

    def open(self, method, path, headers=None, **kwargs):
        return self.api.client.open(path, method=method, headers=self._headers(headers), **kwargs)

    def get(self, path, **kwargs):
        return self.open("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.open("POST", path, **kwargs)

    def put(self, path, **kwargs):
        return self.open("PUT", path, **kwargs)

    def patch(self, path, **kwargs):
        return self.open("PATCH", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.open("DELETE", path, **kwargs)
