"""The Flask application factory: the landing page, health, the REST API (``web.api``)."""
from __future__ import annotations

import logging

from flask import Flask, g, render_template_string, request
from sqlalchemy import func, select

from config.settings import Settings
from engine.models import ProcessDefinition, SlaClock, WorkItem
from workflows.models import Call

from .bootstrap import Services, build_services

LANDING = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ t.title }}</title>
<style>body{font-family:system-ui,"PingFang SC","Microsoft YaHei",sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;line-height:1.6}
code{background:#f3f3f3;padding:0 .3em}</style></head>
<body><h1>{{ t.title }}</h1><p>{{ t.tagline }}</p>
<ul><li>{{ t.now }}: <strong>{{ now }}</strong> ({{ clock }})</li>
<li>{{ t.calls }}: {{ calls }} &middot; {{ t.open_items }}: {{ open_items }}</li>
<li>{{ t.process }}: {{ versions }}</li></ul>
<p>{{ t.cli }} <code>huying work list --user xiagang.dispatcher</code></p>
{% if assumed %}<p role="alert" style="background:#fff3cd;padding:.5em">⚠ {{ t.assumed|format(assumed) }}</p>{% endif %}
<p><a href="?lang={{ other }}">{{ t.switch }}</a> &middot; <a href="/api/v1/health">/api/v1/health</a></p>
</body></html>"""

TEXT = {
    "zh-CN": {"title": "呼应 Huying · 有呼必应调度引擎", "tagline": "社区—街镇—区三级响应，BPMN 流程驱动。",
              "now": "当前时间", "calls": "呼叫总数", "open_items": "待办事项", "process": "流程版本",
              "cli": "命令行示例：", "switch": "English",
              "assumed": "%d 个未结时限落在官方节假日数据之外，已按周一至周五为工作日估算。请管理员录入节假日安排（huying calendar set）。"},
    "en": {"title": "Huying · every call answered", "tagline": "Community → street → district dispatch, driven by BPMN.",
           "now": "Current time", "calls": "Calls", "open_items": "Open work items", "process": "Process versions",
           "cli": "Try the CLI:", "switch": "中文",
           "assumed": "%d open deadlines fall beyond the official holiday data and assume Monday–Friday are "
                      "workdays. An admin should enter the holiday notice (huying calendar set)."},
}


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level)
    # SpiffWorkflow logs every task state change at INFO: keep it for DEBUG only
    logging.getLogger("spiff").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    services = services or build_services(settings)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = services.settings.secret_key
    app.extensions["huying"] = services
    configure_logging(services.settings.log_level)

    @app.before_request
    def _open_session():
        g.db = services.session_factory()

    @app.teardown_request
    def _close_session(exc):
        db = g.pop("db", None)
        if db is not None:
            if exc is not None:
                db.rollback()
            db.close()

    from .api import init_api

    init_api(app, services.settings)

    @app.get("/")
    def index():
        lang = request.args.get("lang") or request.accept_languages.best_match(["zh-CN", "en"]) or "zh-CN"
        lang = lang if lang in TEXT else "zh-CN"
        db = g.db
        versions = ", ".join(f"{p} v{v}" for p, v in db.execute(
            select(ProcessDefinition.process_id, func.max(ProcessDefinition.version))
            .group_by(ProcessDefinition.process_id))) or "—"
        return render_template_string(
            LANDING, lang=lang, t=TEXT[lang], other="en" if lang == "zh-CN" else "zh-CN",
            now=services.clock.now().strftime("%Y-%m-%d %H:%M"), clock=services.settings.clock,
            calls=db.scalar(select(func.count()).select_from(Call)),
            open_items=db.scalar(select(func.count()).select_from(WorkItem).where(WorkItem.state == "open")),
            versions=versions,
            assumed=db.scalar(select(func.count()).select_from(SlaClock).where(
                SlaClock.assumed_calendar.is_(True), SlaClock.state.in_(("running", "paused")))))

    return app
