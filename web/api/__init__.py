"""The REST API under /api/v1: flask-smorest blueprints, OpenAPI 3 at /api/v1/openapi.json, docs at /api/v1/docs."""
from __future__ import annotations

from datetime import timedelta
from importlib import import_module

from flask import Flask, send_from_directory
from flask_smorest import Api
from werkzeug.routing import IntegerConverter

from . import errors
from .schemas import MAX_ID
from .security import gate, limiter, reject_nul

# (module, attribute) of every blueprint; each feature registers itself here
BLUEPRINTS = [
    ("web.api.system", "blp"),
    ("web.api.auth", "blp"),
    ("web.api.calls", "blp"),
    ("web.api.calls", "attachments"),
    ("web.api.work", "blp"),
    ("web.api.supervision", "blp"),
    ("web.api.reports", "blp"),
    ("web.api.webhooks", "blp"),
    ("web.api.admin", "blp"),
    ("web.api.admin", "categories"),
]


class IdConverter(IntegerConverter):
    """``<int:...>`` in a route is a row id: one beyond what an id column holds matches no route (404) instead
    of overflowing in the database (and the OpenAPI document says ``maximum``)."""

    def __init__(self, url_map, *args, **kwargs):
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


class HuyingApi(Api):
    ERROR_SCHEMA = errors.ErrorSchema

    def handle_http_exception(self, error):
        return errors.handle_http_exception(error)


def init_api(app: Flask, settings) -> HuyingApi:
    import swagger_ui_bundle

    app.config.update(
        API_TITLE="Huying 呼应 API", API_VERSION="v1", OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1", OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs", OPENAPI_SWAGGER_UI_URL="/api/v1/docs/assets/",
        API_SPEC_OPTIONS={
            "info": {"description": "有呼必应 dispatch: file calls, work queues, every action of the three-level "
                                    "process, SLA deadlines on the Chinese working calendar, supervision. Errors are "
                                    "always `{code, message, errors}`."},
            "security": [{"bearerAuth": []}, {"cookieAuth": []}],
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "a token from POST /api/v1/auth/tokens"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "session",
                               "description": "the browser session from POST /api/v1/auth/session "
                                              "(send X-CSRF-Token on writes)"}}}},
        RATELIMIT_STORAGE_URI=settings.ratelimit_storage, RATELIMIT_ENABLED=settings.ratelimit_enabled == "true",
        RATELIMIT_HEADERS_ENABLED=True,
        HUYING_RATELIMIT_SIGNIN=settings.ratelimit_signin, HUYING_RATELIMIT_FILING=settings.ratelimit_filing,
        HUYING_RATELIMIT_SIGNIN_IP=settings.ratelimit_signin_ip,
        SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env == "production",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.token_ttl_hours),
        MAX_CONTENT_LENGTH=int((settings.max_upload_mb * 9 + 1) * 1024 * 1024),
    )
    app.url_map.converters["int"] = IdConverter  # before any route is added
    api = HuyingApi(app)
    limiter.init_app(app)
    for module, attr in BLUEPRINTS:
        api.register_blueprint(getattr(import_module(module), attr))
    app.before_request(gate)
    app.before_request(reject_nul)

    assets = swagger_ui_bundle.swagger_ui_path

    @app.get("/api/v1/docs/assets/<path:filename>")
    def swagger_assets(filename):  # served locally: the district's machines are offline
        return send_from_directory(assets, filename)

    from web.open311 import bp as open311_bp
    app.register_blueprint(open311_bp)
    return api
