"""The web UI: server-rendered pages (Jinja2 + Flask-Babel), enhanced by small scripts and npm assets.

Pages render from the same service layer as the REST API and post plain HTML
forms (each carrying the session's CSRF token), so everything works without
JavaScript; scripts add the BPMN diagram (bpmn-js), charts (ECharts) and live
refresh.  zh-CN is the default language, en the other; every user-facing
string goes through gettext.  Feature modules register their blueprints in
``UI_BLUEPRINTS`` and their message catalogs in ``TRANSLATION_DIRS``.
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path

from flask import Flask, request
from flask_babel import Babel

from . import labels
from .i18n import LANGUAGES, compile_catalogs, select_locale

HERE = Path(__file__).parent
# each feature keeps its own catalog directory (merged by Flask-Babel), so features never edit one file
TRANSLATION_DIRS = [HERE / "translations"]
TRANSLATION_DIRS.append(HERE / "translations_calls")
TRANSLATION_DIRS.append(HERE / "translations_supervision")
TRANSLATION_DIRS.append(HERE / "translations_work")
TRANSLATION_DIRS.append(HERE / "translations_admin")
# the service layer's messages (msg() templates of engine/ and workflows/), shown by web/ui/errors.py
TRANSLATION_DIRS.append(HERE / "translations_errors")
UI_BLUEPRINTS = [
    ("web.ui.core", "bp"),
    ("web.ui.calls", "bp"),
    ("web.ui.supervision", "bp"),
    ("web.ui.work", "bp"),
    ("web.ui.admin", "bp"),
]


def init_ui(app: Flask) -> None:
    for directory in TRANSLATION_DIRS:
        compile_catalogs(directory)
    app.config.setdefault("BABEL_DEFAULT_LOCALE", "zh_CN")
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", "Asia/Shanghai")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join(str(d) for d in TRANSLATION_DIRS)
    Babel(app, locale_selector=select_locale)
    labels.register(app)
    for module, attr in UI_BLUEPRINTS:
        app.register_blueprint(getattr(import_module(module), attr))

    @app.after_request
    def _remember_language(response):
        lang = request.args.get("lang")
        if lang in LANGUAGES:
            response.set_cookie("lang", lang, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
        return response
