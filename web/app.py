"""The Flask application factory (the full REST API and UI come in later issues)."""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify, render_template_string, request
from sqlalchemy import func, select

from config.settings import Settings
from engine.errors import Conflict, EngineError, Forbidden, InvalidDefinition, NotFound, ValidationFailed
from engine.models import ProcessDefinition, WorkItem
from workflows.models import Call

from .bootstrap import Services, build_services

HTTP_STATUS = {ValidationFailed: 422, InvalidDefinition: 422, NotFound: 404, Forbidden: 403, Conflict: 409}

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
<p><a href="?lang={{ other }}">{{ t.switch }}</a> &middot; <a href="/api/v1/health">/api/v1/health</a></p>
</body></html>"""

TEXT = {
    "zh-CN": {"title": "呼应 Huying · 有呼必应调度引擎", "tagline": "社区—街镇—区三级响应，BPMN 流程驱动。",
              "now": "当前时间", "calls": "呼叫总数", "open_items": "待办事项", "process": "流程版本",
              "cli": "命令行示例：", "switch": "English"},
    "en": {"title": "Huying · every call answered", "tagline": "Community → street → district dispatch, driven by BPMN.",
           "now": "Current time", "calls": "Calls", "open_items": "Open work items", "process": "Process versions",
           "cli": "Try the CLI:", "switch": "中文"},
}


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    services = services or build_services(settings)
    app = Flask(__name__)
    app.config["SECRET_KEY"] = services.settings.secret_key
    app.extensions["huying"] = services
    logging.basicConfig(level=services.settings.log_level)

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

    @app.errorhandler(EngineError)
    def _engine_error(exc: EngineError):
        g.db.rollback()
        status = next((s for cls, s in HTTP_STATUS.items() if isinstance(exc, cls)), 400)
        return jsonify(code=exc.code, message=exc.message, errors=exc.field_errors), status

    @app.get("/api/v1/health")
    def health():
        db = g.db
        db.execute(select(1))
        return jsonify(status="ok", now=services.clock.now().isoformat(), clock=services.settings.clock,
                       database=services.engine.dialect.name)

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
            versions=versions)

    return app
