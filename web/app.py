"""The Flask application factory: the landing page, health, the REST API (``web.api``)."""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template_string, request
from sqlalchemy import func, select

from config.settings import Settings
from engine.errors import Conflict, Forbidden, ValidationFailed
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

    @app.get("/api/v1/health")
    def health():
        db = g.db
        db.execute(select(1))
        return jsonify(status="ok", now=services.clock.now().isoformat(), clock=services.settings.clock,
                       database=services.engine.dialect.name)

    @app.post("/api/v1/admin/clock")
    def move_virtual_clock():
        """Admin only, and only with the virtual clock: {"set": ISO} or {"advance": "2h"}; then one sweep."""
        from engine.clock import parse_duration
        from workflows.org import authenticate

        auth = request.authorization
        user = authenticate(g.db, auth.username, auth.password) if auth and auth.type == "basic" else None
        if user is None:
            return jsonify(code="unauthorized", message="sign in as an admin (HTTP Basic)", errors={}), 401, \
                {"WWW-Authenticate": 'Basic realm="huying"'}
        if user.role != "admin":
            raise Forbidden(f"{user.username} is not an admin")
        if not getattr(services.clock, "virtual", False):
            raise Conflict("the clock is the wall clock; set HUYING_CLOCK=virtual to move time")
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or len(body.keys() & {"set", "advance"}) != 1:
            raise ValidationFailed("give exactly one of 'set' (ISO 8601) or 'advance' (e.g. 2h, 90m, PT2H)",
                                   field_errors={"_schema": ["one of set, advance"]})
        try:
            if "set" in body:
                from datetime import datetime

                from engine.clock import ensure_aware
                now = services.clock.set(ensure_aware(datetime.fromisoformat(str(body["set"]))))
            else:
                now = services.clock.advance(parse_duration(str(body["advance"])))
        except ValueError as exc:
            key = "set" if "set" in body else "advance"
            raise ValidationFailed(str(exc), field_errors={key: [str(exc)]}) from None
        from .scheduler import sweep_once

        fired = sweep_once(services)
        return jsonify(now=now.isoformat(), fired=fired)

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
