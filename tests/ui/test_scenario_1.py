"""Scenario 1 of domain.md §6 played through the web UI alone, by the people who do it, in turn:
the grid worker files from a phone, the street dispatcher dispatches to 供电 (lead), 电信 and 公安,
each department signs and reports done, the grid worker verifies, the street records the
satisfied feedback call — and the call page shows the whole path."""
from __future__ import annotations

from .conftest import PHONE, check_a11y


def _open_item(page, number):
    page.goto("/work")
    row = page.locator("#work-queue tr", has=page.locator(f"a:text-is('{number}')"))
    row.locator("a.task-link").click()


def test_scenario_1_lift_and_cables_through_the_ui(open_as, shots):
    # 1. the grid worker of 青年社区 files the call on a phone, straight to the street
    grid = open_as("qingnian.grid", viewport=PHONE)
    grid.goto("/calls/new")
    grid.select_option("#f-category", "lift_install")
    grid.fill("#f-description", "东园二街1号、2号加装电梯被电缆阻碍")
    grid.fill("#f-location", "夏港街东园二街1号")
    grid.check("input[name=direct_to_street]")
    shots(grid, "1 grid worker files (phone)")
    grid.click("button[type=submit].primary")
    number = grid.locator("h1").inner_text().split()[-1]
    assert number.startswith("HY"), grid.locator("h1").inner_text()
    shots(grid, "1 filed: the call page (phone)")

    # 2. the street dispatcher dispatches: 供电 leads, 电信 and 公安 assist
    street = open_as("xiagang.dispatcher")
    _open_item(street, number)
    form = street.locator("#act-dispatch form")
    form.locator("select[name=lead]").select_option("power")
    for dept in ("telecom", "police"):
        form.locator(f"#dispatch-assists-{dept}").check()
    shots(street, "2 street dispatches to three departments")
    form.locator("button[type=submit]").click()
    assert street.locator(".flash.info").count() == 1

    # 3. each department signs, then reports done (the lead last)
    for dept in ("power", "telecom", "police"):
        page = open_as(f"{dept}.staff")
        _open_item(page, number)
        page.locator("#act-sign button[type=submit]").click()
        assert page.locator("h1").inner_text().startswith("办理"), f"{dept} lands on its resolve step"
    for dept, result in (("telecom", "通信线缆已迁移"), ("police", "监控线路已迁移"),
                         ("power", "电缆已全部迁移，费用按工作量分担")):
        page = open_as(f"{dept}.staff")
        _open_item(page, number)
        page.locator("#act-done textarea[name=result]").fill(result)
        page.locator("#act-done button[type=submit]").click()
        assert page.locator(".flash.info").count() == 1
        shots(page, f"3 {dept} reports done")

    # 4. the grid worker verifies on site (phone)
    grid = open_as("qingnian.grid", viewport=PHONE)
    _open_item(grid, number)
    assert "电缆已全部迁移" in grid.locator("main").inner_text()
    grid.locator("#act-pass button[type=submit]").click()
    shots(grid, "4 grid worker verified (phone)")

    # 5. the street records the feedback call: satisfied, resolved -> closed (办结销号)
    street = open_as("xiagang.dispatcher")
    _open_item(street, number)
    rate = street.locator("#act-rate form")
    rate.locator("select[name=satisfaction]").select_option("satisfied")
    rate.locator("input[name=resolved][value=true]").check()
    rate.locator("button[type=submit]").click()
    assert street.locator(".flash.info").count() == 1

    # the call page: closed, every step on the timeline, the diagram's path ends at the end event
    street.goto(f"/calls/{number}")
    main = street.locator("main").inner_text()
    assert "已办结" in main and "满意" in main
    street.locator(".djs-element.hy-done").first.wait_for()
    check_a11y(street, "the closed call's page")
    shots(street, "5 closed call page with its path")
