"""Browser tests: Playwright (Python) driving Debian's Chromium against a real `huying serve`.

* Chromium: /usr/bin/chromium, installed here with apt-get when missing (as the CI machine allows).
* The server: a fresh SQLite database with the demo district, the virtual clock, on a free port;
  one per test module (modules that move the clock get their own time line).
* Screenshots of every step go to test-artifacts/ui/<test>/ (kept by CI as artifacts).
* Accessibility: axe-core (from npm, `make assets`) on each page; no serious or critical violations.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts" / "ui"
AXE = ROOT / "web" / "ui" / "static" / "vendor" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-component-update", "--disable-sync"]
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1366, "height": 900}
PASSWORD = "huying-demo"


def _has_chinese_font() -> bool:
    fc = shutil.which("fc-list")
    return bool(fc and subprocess.run([fc, ":lang=zh"], capture_output=True, text=True).stdout.strip())


def _ensure_chromium() -> str:
    """Debian's chromium (and a Chinese font, so screenshots are legible), installed with apt when missing."""
    packages = ([] if Path(CHROMIUM).exists() else ["chromium"]) + ([] if _has_chinese_font() else
                                                                   ["fonts-wqy-microhei"])
    if packages:
        apt = shutil.which("apt-get")
        if apt is None:
            pytest.skip(f"{', '.join(packages)} not installed and apt-get is not available")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        done = subprocess.run([apt, "install", "-y", "-q", *packages], env=env, capture_output=True, text=True)
        if done.returncode != 0 or not Path(CHROMIUM).exists():
            pytest.fail(f"could not install {', '.join(packages)} with apt-get: {done.stderr[-2000:]}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser():
    if not AXE.exists():
        pytest.fail("the UI's npm assets are missing: run `make assets` (make test does)")
    path = _ensure_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, tmp: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "HUYING_DATABASE_URL": f"sqlite:///{tmp / 'ui.sqlite3'}", "HUYING_CLOCK": "virtual",
                    "HUYING_SCHEDULER_INTERVAL_SECONDS": "1", "HUYING_RATELIMIT_SIGNIN": "1000 per minute",
                    "HUYING_ATTACHMENT_DIR": str(tmp / "attachments"), "HUYING_LOG_LEVEL": "WARNING",
                    "HUYING_UI_REFRESH_SECONDS": "2"}  # live parts refresh fast, so tests wait less
        self.env.pop("HUYING_TEST_DATABASE_URL", None)
        self.huying = str(BIN / "huying")
        self.run("db", "upgrade")
        self.run("demo", "load")
        self.log = open(tmp / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([self.huying, "serve", "--port", str(self.port)], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"huying serve did not start: {(tmp / 'server.log').read_text()[-2000:]}")

    def run(self, *args: str) -> str:
        done = subprocess.run([self.huying, *args], env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def advance(self, duration: str) -> str:
        """Move the shared virtual clock and run one sweep (as `huying clock advance` + `huying sweep`)."""
        self.run("clock", "advance", duration)
        return self.run("sweep")

    def set_clock(self, when: str) -> str:
        self.run("clock", "set", when)
        return self.run("sweep")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("ui-server"))
    yield srv
    srv.stop()


class Shots:
    """Numbered screenshots of one test, in test-artifacts/ui/<test name>/."""

    def __init__(self, name: str):
        self.dir = ARTIFACTS / re.sub(r"[^\w.-]+", "_", name)
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.n = 0

    def __call__(self, page, label: str) -> Path:
        self.n += 1
        slug = re.sub(r"[^\w.-]+", "_", label)
        path = self.dir / f"{self.n:02d}-{slug}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shots(request):
    return Shots(request.node.name)


def check_a11y(page, context: str = "") -> None:
    """axe-core on the current page: no serious or critical violations."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    bad = [f"{v['id']} ({v['impact']}): {v['help']} — " + "; ".join(n["target"][0] if isinstance(n["target"][0], str)
                                                                    else str(n["target"]) for n in v["nodes"][:3])
           for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert not bad, f"accessibility violations on {context or page.url}:\n" + "\n".join(bad)


@pytest.fixture
def open_as(browser, server):
    """open_as(username, viewport=DESKTOP, lang=None) -> a signed-in page (own browser context)."""
    contexts = []

    def _open(username: str | None, viewport=DESKTOP, lang: str | None = None):
        context = browser.new_context(viewport=viewport, locale="zh-CN", base_url=server.url)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10000)
        page.goto("/login" + (f"?lang={lang}" if lang else ""))
        if username is not None:
            page.fill("#username", username)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
        return page

    yield _open
    for context in contexts:
        context.close()
