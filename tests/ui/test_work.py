"""Work queues and actions on work items (web/ui/work.py): triage with a suggested duplicate, dispatch,
sign, done with evidence, a dispute to rule on, the live queue, and a grid worker's verification on a phone."""
from __future__ import annotations

import json
import struct
import urllib.request
import zlib

import pytest

from .conftest import PASSWORD, PHONE, check_a11y


def _png() -> bytes:
    """A tiny valid PNG (an evidence photo)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x30\x80\x30" * 16 for _ in range(16))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 16, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


class Api:
    """The REST API of the live server, to prepare data quickly (one bearer token per user)."""

    def __init__(self, url: str):
        self.url = url
        self.tokens: dict[str, str] = {}

    def _send(self, method: str, path: str, body=None, user: str | None = None):
        headers = {"Content-Type": "application/json"}
        if user:
            if user not in self.tokens:
                self.tokens[user] = self._send("POST", "/api/v1/auth/tokens",
                                               {"username": user, "password": PASSWORD})["token"]
            headers["Authorization"] = f"Bearer {self.tokens[user]}"
        req = urllib.request.Request(self.url + path, method=method, headers=headers,
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=20) as r:
            return json.loads(r.read() or b"null")

    def file(self, user="qingnian.grid", **data) -> str:
        data.setdefault("description", "测试呼叫")
        return self._send("POST", "/api/v1/calls", data, user)["number"]

    def item(self, user: str, number: str) -> dict:
        entries = self._send("GET", "/api/v1/work?per_page=100", user=user)["items"]
        return next(e["item"] for e in entries if e["call"]["number"] == number)

    def do(self, user: str, number: str, action: str, data=None) -> dict:
        item = self.item(user, number)
        return self._send("POST", f"/api/v1/work/{item['id']}/actions/{action}", data or {}, user)


@pytest.fixture(scope="module")
def api(server):
    return Api(server.url)


def _row(page, number):
    return page.locator("#work-queue tr", has=page.locator(f"a:text-is('{number}')"))


def test_triage_dispatch_sign_done_and_a_dispute_to_rule_on(open_as, api, shots):
    first = api.file(category="lift_install", location="青年路8号大院", description="线缆阻挡旧楼加装电梯施工")
    second = api.file(category="lift_install", location="青年路8号大院东侧", description="电缆挡住电梯井位置")

    # the street dispatcher's queue: both calls, with a deadline badge, most urgent first
    street = open_as("xiagang.dispatcher")
    street.goto("/work")
    assert street.locator("h1").inner_text() == "我的待办"
    row = _row(street, second)
    assert row.locator(".badge.deadline-normal").inner_text() == "正常"
    assert "街镇研判" in row.inner_text() and "剩余" in row.inner_text()
    assert _row(street, first).count() == 1
    check_a11y(street, "queue (street dispatcher)")
    shots(street, "street queue")

    # the later call's triage page suggests the earlier one as a duplicate
    row.locator("a.task-link").click()
    assert second in street.locator("h1").inner_text()
    assert first in street.locator("#dups-h + ul").inner_text()
    assert street.locator("#act-dispatch").get_attribute("open") is not None
    check_a11y(street, "work item: street triage")
    shots(street, "triage with a suggested duplicate")

    # no lead: the form comes back with the error next to the field and the input kept
    form = street.locator("#act-dispatch form")
    form.locator("select[name=lead]").select_option("")
    form.locator("#dispatch-assists-telecom").check()
    form.locator("#dispatch-note").fill("供电牵头")
    form.locator("button[type=submit]").click()
    assert street.locator("#dispatch-lead-error").inner_text().endswith("此项必填。")
    assert street.locator("#dispatch-lead").get_attribute("aria-invalid") == "true"
    assert street.locator("#dispatch-assists-telecom").is_checked()
    assert street.locator("#dispatch-note").input_value() == "供电牵头"
    shots(street, "dispatch without a lead: error kept in the form")

    form.locator("select[name=lead]").select_option("power")
    form.locator("button[type=submit]").click()
    assert "已完成“派单到部门”" in street.locator(".flash.info").inner_text()

    # power signs (and lands on its resolve step), then reports done with an evidence photo
    power = open_as("power.staff")
    power.goto("/work")
    _row(power, second).locator("a.task-link").click()
    power.locator("#act-sign button[type=submit]").click()
    assert power.locator("h1").inner_text().startswith("办理")
    done = power.locator("#act-done form")
    done.locator("textarea[name=result]").fill("线缆已迁移，现场已清理")
    done.locator("input[type=file]").set_input_files(
        files=[{"name": "site.png", "mimeType": "image/png", "buffer": _png()}])
    check_a11y(power, "work item: resolve")
    shots(power, "power reports done with evidence")
    done.locator("button[type=submit]").click()
    assert "已完成“报告办结”" in power.locator(".flash.info").inner_text()
    shots(power, "after done")

    # telecom signs, then flags a dispute; the street sees it as a ruling to make
    telecom = open_as("telecom.staff")
    telecom.goto("/work")
    _row(telecom, second).locator("a.task-link").click()
    telecom.locator("#act-sign button[type=submit]").click()
    telecom.locator("#act-dispute > summary").click()
    telecom.locator("#act-dispute textarea[name=reason]").fill("权属不清：线缆属有线电视公司")
    telecom.locator("#act-dispute button[type=submit]").click()
    assert "等待指挥中心裁定" in telecom.locator("#item-h + dl").inner_text()
    shots(telecom, "telecom flagged a dispute")

    street.goto("/work")
    rulings = street.locator("section.rulings")
    assert "待您裁定" in rulings.inner_text() and "权属不清" in rulings.inner_text()
    shots(street, "queue with a ruling to make")
    rulings.locator("a.ruling-title").click()
    assert "权属不清" in street.locator("#item-h + dl").inner_text()
    check_a11y(street, "work item: rule on dispute")
    street.locator("#act-confirm #confirm-assists-property_mgmt").check()
    street.locator("#act-confirm button[type=submit]").click()
    assert street.locator(".flash.info").count() == 1
    shots(street, "dispute ruled")


def test_the_queue_updates_itself(open_as, api, server, shots):
    street = open_as("xiagang.dispatcher")
    street.goto("/work")
    street.evaluate("window.__notReloaded = true")
    number = api.file(category="noise", location="夏港大道88号", description="深夜噪声扰民", direct_to_street=True)
    street.locator(f"#work-queue a:text-is('{number}')").wait_for(timeout=25000)
    assert street.evaluate("window.__notReloaded") is True
    assert _row(street, number).get_attribute("class").find("row-new") >= 0
    shots(street, "a new call appeared without a reload")

    # time passes: the triage deadline (2 working hours) is missed; the badge turns overdue by itself
    server.advance("3h")
    street.locator(f"#work-queue tr.row-overdue a:text-is('{number}')").wait_for(timeout=25000)
    assert _row(street, number).locator(".badge").inner_text() == "超时"
    assert street.evaluate("window.__notReloaded") is True
    shots(street, "deadline overdue without a reload")


def test_grid_worker_verifies_on_a_phone(open_as, api, shots):
    number = api.file(category="road_flooding", location="港前路12号", description="道路积水")
    api.do("xiagang.dispatcher", number, "dispatch", {"lead": "water"})
    api.do("water.staff", number, "sign")
    api.do("water.staff", number, "done", {"result": "已疏通排水口"})

    grid = open_as("qingnian.grid", viewport=PHONE)
    grid.goto("/work")
    row = _row(grid, number)
    assert "核查" in row.inner_text()
    check_a11y(grid, "queue (grid worker, phone)")
    shots(grid, "grid worker queue phone")
    row.locator("a.task-link").click()
    assert "已疏通排水口" in grid.locator("#reports-h + ul").inner_text()
    check_a11y(grid, "work item: verify (phone)")
    shots(grid, "verify page phone")
    grid.locator("#act-pass button[type=submit]").click()
    assert grid.locator(".flash.info").count() == 1
    shots(grid, "verified")
