"""The frame every page shares: sign-in, language, the phone layout, accessibility."""
from __future__ import annotations

from .conftest import PHONE, check_a11y


def test_sign_in_is_in_chinese_by_default_and_switches_to_english(open_as, shots):
    page = open_as(None, viewport=PHONE)
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("h1").inner_text() == "登录"
    check_a11y(page, "sign-in (zh-CN, phone)")
    shots(page, "sign-in zh-CN phone")
    page.fill("#username", "qingnian.grid")
    page.fill("#password", "wrong")
    page.click("button[type=submit]")
    assert "用户名或密码错误" in page.locator("[role=alert]").inner_text()
    page.click("text=English")
    assert page.locator("h1").inner_text() == "Sign in"
    assert page.locator("html").get_attribute("lang") == "en"
    shots(page, "sign-in en")


def test_signed_in_frame_and_sign_out(open_as, shots):
    page = open_as("qingnian.grid", viewport=PHONE)
    assert "网格员" in page.locator("header").inner_text()
    check_a11y(page, "home (grid worker, phone)")
    shots(page, "home grid worker phone")
    page.click("text=退出")
    assert page.url.endswith("/login")
    assert "您已退出登录" in page.locator("main").inner_text()


def test_unknown_pages_are_friendly(open_as):
    page = open_as("qingnian.grid")
    response = page.goto("/no-such-page")
    assert response.status == 404 and page.locator("h1").inner_text() == "页面不存在"
