"""Calls in the web UI: a grid worker files on a phone, my calls, search, and a call's page whose BPMN
diagram follows the process live."""
from __future__ import annotations

import base64
import json
import urllib.request

from .conftest import PASSWORD, PHONE, check_a11y

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def api(server, method: str, path: str, body: dict | None = None, token: str | None = None) -> dict:
    request = urllib.request.Request(server.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def token_of(server, username: str) -> str:
    return api(server, "POST", "/api/v1/auth/tokens", {"username": username, "password": PASSWORD})["token"]


def file_by_api(server, description: str, location: str, category: str = "road_flooding") -> dict:
    return api(server, "POST", "/api/v1/calls", {"category": category, "description": description,
                                                 "location": location}, token_of(server, "qingnian.grid"))


def refresh_live_parts(page) -> None:
    """What app.js does every 15 s, now: the page becoming visible again reloads every live part."""
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")


def test_grid_worker_files_a_call_on_a_phone_with_position_and_photo(open_as, shots):
    page = open_as("qingnian.grid", viewport=PHONE)
    assert page.url.endswith("/calls/new")  # the grid worker's start page
    assert page.locator("h1").inner_text() == "上报呼叫"
    check_a11y(page, "filing form (phone)")
    shots(page, "filing form phone")

    page.context.grant_permissions(["geolocation"])
    page.context.set_geolocation({"latitude": 23.10321, "longitude": 113.45218, "accuracy": 12})
    page.click("text=使用我当前的位置")
    page.wait_for_function("document.querySelector('#f-latitude').value !== ''")
    assert page.input_value("#f-latitude") == "23.103210" and page.input_value("#f-longitude") == "113.452180"
    assert "12 米" in page.locator("[data-locate-status]").inner_text()

    page.select_option("#f-category", "road_flooding")
    page.fill("#f-description", "青年路暴雨后积水约 30 厘米,行人无法通过")
    page.fill("#f-location", "青年路 12 号公交站旁")
    page.set_input_files("#f-photos", [{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}])
    page.click("form[data-filing] button[type=submit]")
    # refused next to the field, what was typed is kept
    assert "notes.txt 不是 JPEG、PNG、WebP 或 GIF 图片" in page.locator("#e-photos").inner_text()
    assert page.input_value("#f-description").startswith("青年路暴雨后积水")
    assert page.locator("#f-photos").get_attribute("aria-invalid") == "true"
    check_a11y(page, "filing form with an error (phone)")
    shots(page, "filing form photo refused")

    page.set_input_files("#f-photos", [{"name": "flood.png", "mimeType": "image/png", "buffer": PNG}])
    assert page.locator("[data-previews] img").count() == 1
    page.click("form[data-filing] button[type=submit]")
    page.wait_for_selector("#call-diagram.ready")
    number = page.locator("h1").inner_text().split()[-1]
    assert page.url.endswith(f"/calls/{number}")
    assert f"呼叫 {number} 已上报" in page.locator(".flash").inner_text()
    assert "当前环节：街镇研判" in page.locator("#call-now").inner_text()
    assert page.locator("[data-element-id=street_triage].hy-active").count() == 1
    assert page.locator("[data-element-id=call_filed].hy-done").count() == 1
    assert page.locator(".photos img").count() == 1
    assert "23.10321" in page.locator(".kv").first.inner_text()
    assert "呼叫已上报" in page.locator("#call-timeline").inner_text()
    check_a11y(page, "call page (phone)")
    shots(page, "call page phone")

    page.click("nav >> text=我的呼叫")
    assert page.locator(".call-list li").first.inner_text().count(number) == 1
    assert "待研判" in page.locator(".call-list li").first.inner_text()
    check_a11y(page, "my calls (phone)")
    shots(page, "my calls phone")


def test_call_page_follows_the_process_live(server, open_as, shots):
    filed = file_by_api(server, "宏岗路口积水,车辆熄火", "宏岗路与青年路交叉口")
    number, triage = filed["number"], filed["open_items"][0]
    page = open_as("xiagang.dispatcher")
    page.goto(f"/calls/{number}")
    page.wait_for_selector("#call-diagram.ready")
    assert page.locator("[data-element-id=street_triage].hy-active").count() == 1
    assert "待研判" in page.locator("#call-now .status").inner_text()
    assert "正常" in page.locator("#call-now .deadline").inner_text()
    check_a11y(page, "call page with the diagram (desktop)")
    shots(page, "call page before dispatch")

    api(server, "POST", f"/api/v1/work/{triage['id']}/actions/dispatch", {"lead": "water", "assists": ["urban"]},
        token_of(server, "xiagang.dispatcher"))
    refresh_live_parts(page)
    page.wait_for_function("document.querySelector('#call-now .status').textContent.includes('待签收')")
    page.wait_for_selector("[data-element-id=street_triage].hy-done")
    assert page.locator("[data-element-id=street_triage].hy-active").count() == 0
    assert page.locator(".hy-active").count() >= 1
    now = page.locator("#call-now").inner_text()
    assert "水务局" in now and "主办" in now
    page.wait_for_function("document.querySelector('#call-timeline').textContent.includes('派单')")
    latest = page.locator("#call-timeline li").first.inner_text()
    assert "街镇研判：" in latest and "待研判 → 待签收" in latest and "城管执法局" in latest
    shots(page, "call page after dispatch (live)")

    server.advance("2h")  # past the departments' 2 working hours to sign
    refresh_live_parts(page)
    page.wait_for_function("document.querySelector('#call-now').textContent.includes('超时')")
    assert page.locator("#call-now .deadline-overdue").count() >= 1
    assert "已超" in page.locator("#call-now .deadline").first.inner_text()
    shots(page, "call page sign overdue")


def test_search_in_both_languages_within_what_each_user_may_see(server, open_as, shots):
    number = file_by_api(server, "普晖小区门口占道摆卖", "普晖路 3 号", "street_vending")["number"]
    page = open_as("huangpu.dispatcher")
    page.goto("/calls?q=普晖路")
    assert page.locator("h2#results-heading").inner_text() == "共找到 1 条呼叫"
    assert page.locator("tbody tr").first.locator("a").inner_text() == number
    check_a11y(page, "search results (district)")
    shots(page, "search results zh")

    page.goto("/calls?lang=en")
    page.fill("#s-q", "普晖")
    page.select_option("#s-category", "street_vending")
    page.select_option("#s-status", "open")
    page.click("form.search button[type=submit]")
    assert page.locator("h1").inner_text() == "Search calls"
    row = page.locator("tbody tr").first.inner_text()
    assert number in row and "Street vending on public space" in row and "Awaiting triage" in row
    page.goto("/calls?created_from=2026-13-40&lang=en")
    assert "Enter a date as YYYY-MM-DD." in page.locator("#e-created_from").inner_text()
    check_a11y(page, "search with a bad date (en)")
    shots(page, "search error en")

    other = open_as("luogang.dispatcher")
    other.goto("/calls?q=普晖路")
    assert other.locator("h2#results-heading").inner_text() == "共找到 0 条呼叫"
    assert other.goto(f"/calls/{number}").status == 403


def test_filing_and_reading_work_without_javascript(browser, server, shots):
    context = browser.new_context(java_script_enabled=False, viewport=PHONE, locale="zh-CN", base_url=server.url)
    try:
        page = context.new_page()
        page.goto("/login")
        page.fill("#username", "xiagang.dispatcher")
        page.fill("#password", PASSWORD)
        page.click("button[type=submit]")
        page.goto("/calls/new")
        assert page.locator("[data-locate]").is_hidden()
        page.select_option("#f-category", "noise")
        page.select_option("#f-community", "honggang")
        page.fill("#f-description", "夜间广场舞音响扰民")
        page.fill("#f-location", "宏岗广场")
        page.check("input[name=urgency][value=urgent]")
        page.click("form[data-filing] button[type=submit]")
        assert "已上报" in page.locator(".flash").inner_text()
        assert "当前环节：" in page.locator("#call-now").inner_text()
        assert "流程图需要 JavaScript" in page.locator("#call-diagram").inner_text()
        shots(page, "call page without javascript")
    finally:
        context.close()
