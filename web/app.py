"""The Flask application factory: the REST API (``web.api``), Open311, and the web UI (``web.ui``)."""
from __future__ import annotations

import logging

from flask import Flask, g, render_template, request
from werkzeug.exceptions import HTTPException

from config.settings import Settings
from engine.errors import EngineError

from .bootstrap import Services, build_services

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level)
    # SpiffWorkflow logs every task state change at INFO: keep it for DEBUG only
    logging.getLogger("spiff").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def _is_machine_path() -> bool:
    return request.path.startswith(("/api/", "/open311/"))


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

    from .api import errors as api_errors
    from .api import init_api
    from .ui import init_ui
    from .ui.errors import error_text

    init_api(app, services.settings)
    init_ui(app)

    # errors: JSON for the API (one schema), Open311's own format (its blueprint), HTML pages for people
    from flask_babel import gettext as _

    def page(status: int, title: str, message: str):
        if "db" in g:
            g.db.rollback()
        return render_template("error.html", title=title, message=message), status

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if _is_machine_path():
            return api_errors.handle_http_exception(error)
        status = error.code or 500
        titles = {403: _("Not allowed"), 404: _("Page not found"), 400: _("Bad request"),
                  429: _("Too many attempts")}
        messages = {403: _("You may not open this page."), 404: _("The page or item you asked for does not exist.")}
        return page(status, titles.get(status, _("Something went wrong")),
                    messages.get(status, error.description or ""))

    @app.errorhandler(EngineError)
    def _engine_error(error: EngineError):
        if _is_machine_path():
            return api_errors.handle_engine_error(error)
        status = next((s for cls, s in api_errors.ENGINE_STATUS if isinstance(error, cls)), 400)
        return page(status, _("Something went wrong"), error_text(error))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if _is_machine_path():
            return api_errors.handle_unexpected(error)
        log.exception("unhandled error")
        return page(500, _("Something went wrong"), _("An unexpected error occurred; it has been logged."))

    return app
