"""The supervisors' dashboard (督查): scenario 2 of domain.md §6 through the UI, permissions and exports.

Work is prepared through the REST API; time moves with the shared virtual clock (the CLI sweeps), and the
open dashboard must show the breach by itself (its live fragments), without a reload.
"""
from __future__ import annotations

import json
import re
import urllib.request

from .conftest import PASSWORD, PHONE, check_a11y

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LIVE_WAIT_MS = 25000  # the fragments reload every 2 s here (HUYING_UI_REFRESH_SECONDS), 15 s by default
SAME_AS_SERVED = """sel => { const el = document.querySelector(sel);
  return fetch(el.dataset.refresh, {credentials: 'same-origin'}).then(r => r.text()).then(t => {
    const tpl = document.createElement('template'); tpl.innerHTML = t; return tpl.innerHTML === el.innerHTML; }); }"""


def _settles_as_served(page, selector: str) -> bool:
    """The live region equals what the server serves now (allowing a refresh or a sweep in flight)."""
    for _ in range(10):
        if page.evaluate(SAME_AS_SERVED, selector):
            return True
        page.wait_for_timeout(500)
    return False


class Api:
    """The REST API as demo users (bearer tokens; signed in again after the clock moves)."""

    def __init__(self, server):
        self.url = server.url
        self.tokens: dict[str, str] = {}

    def _send(self, method, path, body=None, token=None):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json", "Accept": "application/json",
                                                  **({"Authorization": f"Bearer {token}"} if token else {})})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def as_(self, username, method, path, body=None):
        if username not in self.tokens:
            self.tokens[username] = self._send("POST", "/api/v1/auth/tokens",
                                               {"username": username, "password": PASSWORD})["token"]
        return self._send(method, path, body, self.tokens[username])

    def act(self, number, username, action, data=None):
        items = self.as_(username, "GET", "/api/v1/work?per_page=200")["items"]
        item = next(e["item"] for e in items if e["call"]["number"] == number)
        return self.as_(username, "POST", f"/api/v1/work/{item['id']}/actions/{action}", data or {})

    def flooding_signed_by_water(self, location):
        number = self.as_("qingnian.grid", "POST", "/api/v1/calls", {
            "category": "road_flooding", "description": f"{location}积水没过脚踝", "location": location})["number"]
        self.act(number, "xiagang.dispatcher", "dispatch", {"lead": "water"})
        self.act(number, "water.staff", "sign")
        return number

    def level(self, number):
        return self.as_("huangpu.supervisor", "GET", f"/api/v1/calls/{number}")["level"]


def _row(page, number):
    return page.locator(f"#overdue-table tbody tr[data-call='{number}']")


def test_scenario_2_the_dashboard_sees_the_breach_live_urges_supervises_and_the_district_takes_over(
        server, open_as, shots):
    api = Api(server)
    # Mon 2026-10-12 09:00: two road-flooding calls, dispatched to 水务 and signed; resolve by Mon 10-19 18:00
    a = api.flooding_signed_by_water("港前路88号")
    b = api.flooding_signed_by_water("青年路12号")

    page = open_as("huangpu.supervisor")
    assert page.url.endswith("/dashboard")  # the supervisor's landing page
    assert page.locator("h1").inner_text() == "督查看板"
    assert page.locator("#stat-overdue").inner_text() == "0"
    assert "当前没有超时件" in page.locator("#live-overdue").inner_text()
    shots(page, "dashboard nothing overdue")

    # Mon 10-19 17:00: past the 80 % warning, the deadline is later today
    server.set_clock("2026-10-19T17:00:00+08:00")
    api.tokens.clear()
    page = open_as("huangpu.supervisor")  # the old sign-in expired with the simulated week
    assert page.locator("#stat-warnings").inner_text() == "2"
    warned = page.locator(f"#warnings-table tr[data-call='{a}']")
    assert "预警" in warned.inner_text() and "水务局" in warned.inner_text()
    page.wait_for_function("typeof echarts !== 'undefined' && !document.getElementById('chart-trend').hidden")
    shots(page, "warnings due today")

    # 18:05: the deadline has passed; the open page shows it by itself
    page.evaluate("window.__notReloaded = true")
    server.set_clock("2026-10-19T18:05:00+08:00")
    page.locator("#stat-overdue").filter(has_text=re.compile(r"^2$")).wait_for(timeout=LIVE_WAIT_MS)
    _row(page, a).wait_for(timeout=LIVE_WAIT_MS)
    assert page.evaluate("window.__notReloaded === true")
    row = _row(page, a)
    assert "水务局" in row.inner_text() and "办理" in row.inner_text() and "超时" in row.inner_text()
    # the scheduler's 催办 at the deadline (the page may have refreshed between the clock move and the sweep)
    row.locator(".sup-urges").filter(has_text=re.compile(r"^1$")).wait_for(timeout=LIVE_WAIT_MS)
    assert page.locator("#live-summary .sup-asof").inner_text().endswith("2026-10-19 18:05")
    for region in ("summary", "overdue"):  # unchanged figures leave the region (and the focus in it) alone
        assert _settles_as_served(page, f"#live-{region}"), region
    check_a11y(page, "supervision dashboard with overdue work")
    shots(page, "breach appears live")

    # 催办 from the list
    row.get_by_role("button", name=re.compile("催办")).click()
    page.wait_for_load_state("networkidle")
    assert f"已向水务局催办（呼叫 {a}）" in page.locator(".flash").inner_text()
    assert _row(page, a).locator(".sup-urges").inner_text() == "2"
    shots(page, "urged")

    # 督办 on the other: it is past its deadline, so it goes up to the district at once
    page.once("dialog", lambda dialog: dialog.accept())
    _row(page, b).get_by_role("button", name=re.compile("督办")).click()
    page.wait_for_load_state("networkidle")
    assert "立即上报区级统筹" in page.locator(".flash").inner_text()
    assert _row(page, b).count() == 0 and api.level(b) == "district"
    ranking = page.locator("#ranking-department tr[data-unit='water']")
    assert int(ranking.locator(".sup-overdue").inner_text()) >= 1 and "黑榜" in ranking.inner_text()
    shots(page, "supervised and ranking")

    # five working days after the breach (Mon 10-26 18:00) the 督办 escalates the other call too
    server.set_clock("2026-10-27T09:00:00+08:00")
    api.tokens.clear()
    page = open_as("huangpu.supervisor")
    assert api.level(a) == "district"
    assert _row(page, a).count() == 0  # no longer the department's: the district coordinates it now
    late_at_district = _row(page, b)  # the district's own coordination deadline (1 working day) passed
    assert late_at_district.locator(".sup-level").inner_text() == "区"
    assert "区级统筹" in late_at_district.inner_text() and "黄埔区" in late_at_district.inner_text()
    page.select_option("#f-unit", "water")
    page.click(".sup-filters button[type=submit]")
    assert "当前没有超时件" in page.locator("#live-overdue").inner_text()
    assert "unit=water" in page.locator("[data-export='overdue-csv']").get_attribute("href")
    ranking = page.locator("#ranking-department tr[data-unit='water']")
    assert int(ranking.locator(".sup-overdue").inner_text()) == 2
    shots(page, "escalated to the district")


def test_only_supervisors_urge_others_read_and_exports_download(server, open_as, shots):
    page = open_as("huangpu.dispatcher", lang="en")
    page.goto("/dashboard")
    assert page.locator("h1").inner_text() == "Supervision dashboard"
    assert page.locator("nav a[aria-current=page]").inner_text() == "Supervision"
    assert page.locator("#live-overdue button").count() == 0
    assert set(page.locator("#overdue-table .badge").all_inner_texts()) <= {"Overdue"}
    csrf = page.evaluate("window.HUYING.csrf")
    refused = page.request.post("/dashboard/urges", form={"csrf_token": csrf, "work_item": "1", "kind": "urge"},
                                max_redirects=0)
    assert refused.status == 403
    links = page.locator("a[data-export]")
    assert links.count() == 6
    for i in range(links.count()):
        href = links.nth(i).get_attribute("href")
        response = page.request.get(href)
        kind = href.rsplit("format=", 1)[1].split("&")[0]
        assert response.status == 200, href
        assert response.headers["content-type"].startswith("text/csv" if kind == "csv" else XLSX), href
        assert "attachment" in response.headers["content-disposition"]
        assert response.body()[:3] == (b"\xef\xbb\xbf" if kind == "csv" else b"PK\x03")
    check_a11y(page, "supervision dashboard (English, district dispatcher)")
    shots(page, "district dispatcher reads en")
    page.set_viewport_size(PHONE)
    shots(page, "district dispatcher reads en phone")

    staff = open_as("water.staff")
    assert staff.goto("/dashboard").status == 403
    assert staff.request.get("/dashboard/live/overdue").status == 403
