"""One error shape for the whole API: ``{"code", "message", "errors"}``.

``code`` is a stable machine-readable word (``validation_failed``, ``not_found``,
``conflict``...), ``message`` a sentence for people, ``errors`` field -> messages
(``{}`` when the error is not about fields).  Validation failures are 422,
conflicts 409, missing 404, forbidden 403, not signed in 401, too many requests 429.
"""
from __future__ import annotations

import logging

from flask import g, jsonify
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidDefinition,
    NotFound,
    ProcessError,
    ValidationFailed,
)

log = logging.getLogger(__name__)

ENGINE_STATUS = ((ValidationFailed, 422), (InvalidDefinition, 422), (NotFound, 404), (Forbidden, 403),
                 (Conflict, 409), (ProcessError, 409))
HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 413: "too_large",
              415: "unsupported_media_type", 422: "validation_failed", 429: "rate_limited",
              500: "internal_error", 503: "unavailable"}


class ErrorSchema(Schema):
    code = fields.String(required=True, metadata={"description": "machine-readable error code",
                                                  "example": "validation_failed"})
    message = fields.String(required=True, metadata={"description": "what went wrong, for people"})
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), required=True,
                         metadata={"description": "field -> messages (empty when no field is at fault)",
                                   "example": {"category": ["unknown category 'x'"]}})


def flatten(messages, prefix: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow messages (nested by location and field) -> ``{"a.b": ["msg"]}``."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            for k, v in flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            out[prefix or "_schema"] = list(messages)
        else:
            for i, m in enumerate(messages):
                for k, v in flatten(m, f"{prefix}.{i}" if prefix else str(i)).items():
                    out.setdefault(k, []).extend(v)
    else:
        out[prefix or "_schema"] = [str(messages)]
    return out


def error_response(status: int, code: str, message: str, errors: dict | None = None, headers=None):
    response = jsonify(code=code, message=message, errors=errors or {})
    response.status_code = status
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def _rollback():
    db = g.get("db")
    if db is not None:
        db.rollback()


def handle_http_exception(error: HTTPException):
    _rollback()
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    errors = {}
    if "messages" in data:
        # webargs: {"json": {...}, "query": {...}}; the location only adds noise for the client
        messages = data["messages"]
        if isinstance(messages, dict) and set(messages) <= {"json", "query", "form", "files", "headers",
                                                             "view_args", "path", "cookies", "json_or_form"}:
            merged: dict = {}
            for part in messages.values():
                if isinstance(part, dict):
                    merged.update(part)
                else:
                    merged.setdefault("_schema", part)
            messages = merged
        errors = flatten(messages)
    elif isinstance(data.get("errors"), dict):
        errors = flatten(data["errors"])
    message = data.get("message")
    if not message:
        if errors:
            message = "; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items())
        else:
            message = error.description or error.name
    if status == 429:
        message = f"too many requests ({error.description}); try again later"
    headers = dict(data.get("headers") or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="huying"')
    return error_response(status, HTTP_CODES.get(status, "error"), message, errors, headers)


def handle_engine_error(exc: EngineError):
    _rollback()
    status = next((s for cls, s in ENGINE_STATUS if isinstance(exc, cls)), 400)
    return error_response(status, exc.code, exc.message, exc.field_errors)


def handle_unexpected(exc: Exception):
    _rollback()
    log.exception("unhandled error")
    return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
