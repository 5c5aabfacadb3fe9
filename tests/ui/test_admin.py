"""Administration pages: the org tree and users, process and routing versions, the routing editor, the calendar.

One server for the module; the calendar test moves the virtual clock to the end of the year, so it runs last.
"""
from __future__ import annotations

import re

from workflows.definitions_diff import diff_bundles

from .conftest import PASSWORD, ROOT, check_a11y

BPMN = ROOT / "bpmn" / "call_dispatch.bpmn"
ALT_DMN = ROOT / "tests" / "data" / "routing_alt.dmn"


def test_admin_sees_the_org_tree_and_creates_a_user_who_can_sign_in(open_as, shots):
    page = open_as("admin")
    assert page.url.endswith("/admin")  # the admin's landing page
    assert page.locator("h1").inner_text() == "系统管理"
    check_a11y(page, "admin overview")
    shots(page, "overview")

    page.click(".subnav >> text=组织架构")
    tree = page.locator("#unit-xiagang")
    assert "夏港街" in tree.inner_text() and "青年社区" in page.locator("#unit-qingnian").inner_text()
    assert "供电局" in page.locator("#unit-power").inner_text()
    shots(page, "org tree")

    page.click(".subnav >> text=用户")
    page.click("text=新建用户")
    page.fill("#f-username", "qingnian.grid2")
    page.fill("#f-display_name", "青年网格员二")
    page.select_option("#f-role", "grid_worker")
    page.select_option("#f-unit", "qingnian")
    page.fill("#f-password", "short")
    page.locator("#f-password").evaluate("el => el.removeAttribute('minlength')")  # let the server refuse it
    page.click("button:has-text('创建用户')")
    assert "应为 8 至 200 个字符" in page.locator("#f-password-error").inner_text()  # the service's message, in Chinese
    assert page.locator("#f-password").get_attribute("aria-invalid") == "true"
    shots(page, "new user refused")
    page.fill("#f-password", PASSWORD)
    page.click("button:has-text('创建用户')")
    assert "已创建用户 qingnian.grid2" in page.locator(".flash").inner_text()
    shots(page, "user created")

    page.goto("/admin/users?unit=qingnian")
    assert page.locator("table >> text=qingnian.grid2").count() == 1
    check_a11y(page, "users")
    shots(page, "users of qingnian")

    other = open_as("qingnian.grid2")  # a second browser context
    assert "青年网格员二" in other.locator("header").inner_text()
    shots(other, "new user signed in")


def test_deploy_a_new_routing_table_and_see_the_diff(open_as, shots):
    page = open_as("admin")
    page.goto("/admin/versions")
    check_a11y(page, "versions")
    broken = BPMN.read_bytes().replace(b"</bpmn:definitions>", b"")
    page.set_input_files("#f-files", [{"name": "call_dispatch.bpmn", "mimeType": "application/xml", "buffer": broken},
                                      {"name": ALT_DMN.name, "mimeType": "application/xml",
                                       "buffer": ALT_DMN.read_bytes()}])
    page.click("button:has-text('校验并部署')")
    assert "XML 格式不正确" in page.locator("#f-files-error").inner_text()
    assert page.locator("table.versions tbody tr").count() == 1  # nothing deployed
    shots(page, "bad bundle refused")

    page.set_input_files("#f-files", [str(BPMN), str(ALT_DMN)])
    page.select_option("#f-complete", "-")
    page.fill("#f-note", "积水改由区级统筹")
    page.click("button:has-text('校验并部署')")
    assert "call_dispatch 第 2 版" in page.locator(".flash").inner_text()
    assert page.locator("h1").inner_text() == "call_dispatch：第 1 版 → 第 2 版"
    row = page.locator("#diff-table tr[data-element='Rule_road_flooding']")
    assert "修改" in row.inner_text() and '"housing"' in row.inner_text() and '"water"' in row.inner_text()
    assert "routing_alt.dmn" in page.locator("#diff-counts").inner_text()
    page.wait_for_selector(".bpmn-canvas[data-rendered=true] >> nth=1")
    shots(page, "diff v1 v2")

    page.goto("/admin/versions")
    latest = page.locator("table.versions tbody tr").first
    assert "2" in latest.locator("th").inner_text() and "最新" in latest.inner_text()
    assert "积水改由区级统筹" in latest.inner_text()
    shots(page, "versions")


def test_edit_the_routing_table_in_dmn_js_and_save_a_new_version(open_as, shots):
    page = open_as("admin")
    page.goto("/admin/routing")
    page.wait_for_selector("#dmn-editor[data-ready=true] .tjs-table")
    rules = page.locator("#dmn-editor tbody tr")
    assert rules.count() >= 3
    shots(page, "dmn editor")
    # the lead department of the urgent road-flooding rule: housing (the table deployed above) -> water
    cell = page.locator("#dmn-editor td[data-element-id='OutputEntry_road_flooding_urgent_1']")
    before = cell.inner_text().strip()
    after = '"water"' if before != '"water"' else '"housing"'
    version = int(page.locator("#routing-save input[name=base_version]").input_value())
    cell.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(after)
    page.locator("#f-note").click()
    assert after in cell.inner_text()
    page.fill("#f-note", "紧急积水改回水务牵头")
    page.click("button:has-text('保存为新版本')")
    result = page.locator("#routing-result")
    result.locator("a").wait_for()
    assert f"call_dispatch 第 {version + 1} 版" in result.inner_text()
    assert result.get_attribute("data-version") == str(version + 1)
    shots(page, "dmn saved")
    result.locator("a").click()
    row = page.locator("#diff-table tr[data-element='Rule_road_flooding_urgent']")
    assert before in row.inner_text() and after in row.inner_text()
    shots(page, "diff of the edit")


def test_the_sla_policy_reads_as_a_table_and_a_new_version_deploys(open_as, shots):
    page = open_as("admin")
    page.goto("/admin/sla")
    complex_resolve = page.locator("#policy-table tr", has_text="复杂")
    assert "办理" in complex_resolve.inner_text() and "15 个工作日" in complex_resolve.inner_text()
    shots(page, "sla policy")
    page.fill("#f-policy", "{\"rules\": [")
    page.click("button:has-text('校验并部署')")
    assert "不是有效的 JSON" in page.locator("#f-policy-error").inner_text()
    page.goto("/admin/sla")
    page.fill("#f-policy", page.input_value("#f-policy").replace('"warn_ratio": 0.8', '"warn_ratio": 0.75', 1))
    page.fill("#f-note", "预警提前到 75%")
    page.click("button:has-text('校验并部署')")
    assert "已部署时限规则第 2 版" in page.locator(".flash").inner_text()
    assert "75%" in page.locator("#policy-table").inner_text()
    shots(page, "sla policy version 2")


def test_a_calendar_override_recomputes_open_deadlines_and_the_warning_shows(open_as, server, shots):
    server.set_clock("2026-12-30T10:00:00+08:00")
    server.run("call", "file", "--user", "qingnian.grid", "--category", "noise", "--description", "夜间施工噪音",
               "--location", "青年路 1 号")
    page = open_as("admin")
    warning = page.locator("#calendar-warning")
    assert re.search(r"有 [1-9]\d* 个未结时限落在 2026 年之后", warning.inner_text())
    assert "2027" in page.locator(".warning-card").inner_text()
    shots(page, "overview with calendar warning")

    page.click(".warning-card a.button")
    check_a11y(page, "calendar")
    page.fill("#f-day", "2027-01-01")
    page.check("input[name=workday][value=holiday]")
    page.fill("#f-note", "元旦")
    page.click("button:has-text('保存并重新计算时限')")
    flash = page.locator(".flash.info").inner_text()
    assert re.search(r"已重新计算 [1-9]\d* 个未结时限", flash), flash
    assert "元旦" in page.locator("#overrides").inner_text()
    shots(page, "override added")

    page.once("dialog", lambda dialog: dialog.accept())  # app.js asks first
    page.click("#overrides button:has-text('删除 2027-01-01')")
    assert page.locator("#overrides").count() == 0


def test_only_admins_may_open_the_admin_pages(open_as, shots):
    page = open_as("huangpu.supervisor")
    for url in ("/admin", "/admin/users", "/admin/calendar"):
        response = page.goto(url)
        assert response.status == 403 and page.locator("h1").inner_text() == "无权访问"
    shots(page, "403 for a supervisor")


def test_the_diff_names_changed_bpmn_attributes_and_routing_cells():
    """The version diff without a browser: a renamed task, a moved owner, a new flow, a changed routing cell."""
    bpmn, dmn = BPMN.read_text(encoding="utf-8"), (ROOT / "bpmn" / "routing.dmn").read_text(encoding="utf-8")
    new_bpmn = (bpmn.replace('name="社区先行处置 Community handles"', 'name="社区处置 Community handles"')
                .replace('<spiffworkflow:property name="sla_stage" value="triage" />',
                         '<spiffworkflow:property name="sla_stage" value="street_triage" />'))
    result = diff_bundles({"call_dispatch.bpmn": bpmn, "routing.dmn": dmn},
                          {"call_dispatch.bpmn": new_bpmn, "routing.dmn": ALT_DMN.read_text(encoding="utf-8")})
    changed = {c.element.id: {a.attr: (a.old, a.new) for a in c.changes} for c in result.changes
               if c.status == "changed"}
    assert changed["community_handle"] == {"name": ("社区先行处置 Community handles", "社区处置 Community handles")}
    assert changed["street_triage"] == {"property:sla_stage": ("triage", "street_triage")}
    assert changed["Rule_road_flooding"]["then 牵头部门 Lead department"] == ('"water"', '"housing"')
    removed = [c.element.id for c in result.changes if c.status == "removed"]
    assert "Rule_gas_leak" in removed and len(removed) == result.count("removed") == 54
    assert result.diagram_marks("new") == {"community_handle": "changed", "street_triage": "changed"}
    assert result.files_changed == ["call_dispatch.bpmn", "routing.dmn"]
