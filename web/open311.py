"""Open311 GeoReport v2 at ``/open311/v2/``: civic-reporting apps file and track calls.

Resources (each ends in ``.json`` or ``.xml``; anything else is an Open311 error)::

    GET  services.{fmt}                      the categories, one service per category code
    GET  services/{service_code}.{fmt}       its definition: the attributes a request must carry
    POST requests.{fmt}                      file a call (form-encoded, ``api_key`` required)
    GET  requests.{fmt}                      search: service_request_id, service_code, start_date,
                                             end_date, status
    GET  requests/{service_request_id}.{fmt} one call
    GET  tokens/{token_id}.{fmt}             token -> service_request_id

Field names, list roots (``services``, ``service_definition``, ``service_requests``) and the
error document (``[{"code", "description"}]`` / ``<errors><error><code/><description/>``) are the
specification's.  Dates are W3C ISO 8601 with an offset (``+08:00`` on output).

Decisions:

* **service_code** is the category code (``road_flooding``); ``type`` is ``realtime``.
* **community attribute**: every call belongs to a community (社区), so every service has
  ``metadata=true`` and its definition has a required ``singlevaluelist`` attribute ``community``
  whose values are the jurisdiction's communities; an optional ``urgency`` (normal/urgent) too.
  POST them as ``attribute[community]=qingnian``.  Unknown attribute codes are refused (400).
* **Location**: ``address_string`` (the call's location) or ``lat`` + ``long``; with only the
  coordinates the location text is ``"lat,long"``.  ``address_id`` alone cannot be resolved
  (there is no master address repository), so it is refused.  ``media_url`` becomes a photo.
* **Tokens**: filing is synchronous, so the POST answers with ``service_request_id`` (the call
  number) and no token, as the specification allows.  ``tokens/{id}`` still answers for a call
  number used as a token (``[{service_request_id, token}]``), so token-polling clients work.
* **jurisdiction_id** is optional while the database holds one district (the root org unit,
  e.g. ``huangpu``); any other value is 404.  With several districts it is required (400).
* **api_key** (issued by an admin: ``huying apikey create``) is needed for POST only; a missing,
  unknown or revoked key is 403.  The call is filed as the key's user (the district's hotline
  user by default); the key's name and the citizen's contact fields (email, names, phone,
  device_id, account_id, address_id) go into the call's audit trail, never into the public
  GET answers.  Reading (GET) is public, as in the specification.
* **Status**: reported … feedback are ``open``; closed, voided, merged are ``closed``.
  ``status_notes`` is the result of a closed call (or "duplicate of …" / "voided");
  ``agency_responsible`` is the lead department once dispatched; ``expected_datetime`` is the
  resolve deadline (SLA) while one runs.
* **GET requests** defaults to the last 90 days; ``start_date``..``end_date`` may span at most
  90 days; at most 1000 requests, newest first.  ``service_request_id`` (comma list) overrides
  every other filter.  Child tickets of district coordination are internal and never listed.
* Errors: 400 bad input, 403 api_key, 404 unknown resource / service / request / jurisdiction,
  405 wrong method, 409 conflict, 413 too large, 429 rate limit, 500 unexpected (logged), all in the
  requested format (XML, or the Accept header's choice, when the extension itself is wrong).
  Control characters in any parameter or path segment are refused (400).  Nothing is written when a
  request fails: the request's one transaction is rolled back.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timedelta
from urllib.parse import urljoin
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, current_app, g, request
from flask_limiter.util import get_remote_address
from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate
from sqlalchemy import func, select
from sqlalchemy.orm import aliased, joinedload
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from engine.audit import record_audit
from engine.clock import SHANGHAI
from engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidDefinition,
    NotFound,
    ProcessError,
    ValidationFailed,
)
from engine.models import SlaClock, WorkItem
from workflows.auth import api_key_user
from workflows.calls import file_call
from workflows.context import ServiceContext
from workflows.models import URGENCIES, Call, Category, OrgUnit

from .api.security import filing_limit, limiter, services

log = logging.getLogger(__name__)

bp = Blueprint("open311", __name__, url_prefix="/open311/v2")

FORMATS = {"json": "application/json", "xml": "application/xml"}
OPEN = ("reported", "triage", "district", "dispatched", "in_progress", "on_hold", "verify", "feedback")
CLOSED = ("closed", "voided", "merged")
WINDOW = timedelta(days=90)
MAX_RESULTS = 1000
# XML list elements: the element of each item
ITEMS = {"services": "service", "service_requests": "request", "attributes": "attribute", "values": "value",
         "errors": "error"}
CONTACT_FIELDS = ("email", "first_name", "last_name", "phone", "device_id", "account_id", "address_id")
# characters XML 1.0 cannot carry (and lone surrogates, which UTF-8 cannot)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # refused on input (PostgreSQL cannot store NUL)
_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]*)\](\[\])?$")
# "+08:00" sent unencoded in a query string arrives as " 08:00"
_SPACED_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")
ENGINE_STATUS = ((ValidationFailed, 400), (InvalidDefinition, 400), (NotFound, 404), (Forbidden, 403),
                 (Conflict, 409), (ProcessError, 409))


class Open311Error(Exception):
    """An error answered in the Open311 format: one or more descriptions under one HTTP status."""

    def __init__(self, status: int, *descriptions: str):
        super().__init__(descriptions[0] if descriptions else "")
        self.status = status
        self.descriptions = list(descriptions)


# ---- output ------------------------------------------------------------------------------------

def _clean(value):
    if isinstance(value, str):
        return _NOT_XML.sub("", value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(element: ET.Element, value) -> None:
    if isinstance(value, dict):
        for key, v in value.items():
            _fill(ET.SubElement(element, key), v)
    elif isinstance(value, list):
        for v in value:
            _fill(ET.SubElement(element, ITEMS[element.tag]), v)
    else:
        element.text = _text(value)


def _render(fmt: str, root: str, payload, status: int = 200, headers: dict | None = None) -> Response:
    payload = _clean(payload)
    if fmt == "json":
        body = json.dumps(payload, ensure_ascii=False)
    else:
        element = ET.Element(root)
        _fill(element, payload)
        body = '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(element, encoding="unicode")
    response = Response(body.encode("utf-8"), status=status, content_type=f"{FORMATS[fmt]}; charset=utf-8")
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def _format(fmt: str) -> str:
    value = (fmt or "").lower()
    if value not in FORMATS:
        raise Open311Error(400, f"unsupported format '.{fmt}': use .json or .xml")
    return value


def _w3c(value: datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds") if value else None


# ---- errors --------------------------------------------------------------------------------------

def _error_format() -> str:
    fmt = (request.view_args or {}).get("fmt")
    if fmt is None:  # the catch-all: use the path's extension if it names a format
        last = request.path.rsplit("/", 1)[-1]
        fmt = last.rsplit(".", 1)[-1] if "." in last else None
    if isinstance(fmt, str) and fmt.lower() in FORMATS:
        return fmt.lower()
    best = request.accept_mimetypes.best_match(["application/xml", "text/xml", "application/json"],
                                               default="application/xml")
    return "json" if best == "application/json" else "xml"


def _error_response(status: int, descriptions: list[str], headers: dict | None = None) -> Response:
    db = g.get("db")
    if db is not None:
        db.rollback()
    errors = [{"code": status, "description": d} for d in (descriptions or ["error"])]
    return _render(_error_format(), "errors", errors, status, headers)


@bp.errorhandler(Open311Error)
def _open311_error(exc: Open311Error):
    return _error_response(exc.status, exc.descriptions)


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError):
    status = next((s for cls, s in ENGINE_STATUS if isinstance(exc, cls)), 400)
    if exc.field_errors:
        descriptions = [f"{_param(k)}: {' '.join(map(str, v))}" for k, v in exc.field_errors.items()]
    else:
        descriptions = [exc.message]
    return _error_response(status, descriptions)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    status = exc.code or 500
    headers = {}
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(exc.valid_methods)
    description = exc.description or exc.name
    if status == 429:
        description = f"too many requests ({exc.description}); try again later"
    return _error_response(status, [description], headers)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    log.exception("unhandled error in the Open311 API")
    return _error_response(500, ["an unexpected error occurred; it has been logged"])


# ---- inputs --------------------------------------------------------------------------------------

@bp.before_request
def _no_control_characters():
    """Control characters (NUL above all) in a path segment or parameter: 400 before anything reads them."""
    values = list((request.view_args or {}).items()) + list(request.args.items(multi=True))
    if request.method == "POST" and request.mimetype != "application/json":
        values += list(request.form.items(multi=True))
    for name, value in values:
        if _CONTROL.search(name) or (isinstance(value, str) and _CONTROL.search(value)):
            raise Open311Error(400, f"{_CONTROL.sub('?', name)[:80]}: control characters are not allowed")


# the names file_call's validation uses -> the Open311 parameter names
_PARAMS = {"category": "service_code", "location": "address_string", "latitude": "lat", "longitude": "long",
           "photos": "media_url", "community": "attribute[community]", "urgency": "attribute[urgency]"}


def _param(name: str) -> str:
    return _PARAMS.get(name.split(".", 1)[0], name)


def _schema_errors(exc: ValidationError) -> Open311Error:
    messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
    out = []
    for key, value in messages.items():
        text = " ".join(map(str, value)) if isinstance(value, list) else str(value)
        out.append(text if key == "_schema" else f"{key}: {text}")
    return Open311Error(400, *out)


def _load(schema: Schema, data: dict) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise _schema_errors(exc) from None


class CommaList(fields.Field):
    """``a,b,c`` -> ``["a", "b", "c"]`` (blank items dropped)."""

    def __init__(self, item_max: int = 64, max_items: int = MAX_RESULTS, choices=None, **kwargs):
        super().__init__(**kwargs)
        self.item_max, self.max_items, self.choices = item_max, max_items, choices

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError("a comma-separated list")
        items = list(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
        if not items:
            return None
        if len(items) > self.max_items:
            raise ValidationError(f"at most {self.max_items} values")
        for item in items:
            if len(item) > self.item_max:
                raise ValidationError(f"'{item[:40]}…' is too long")
            if self.choices is not None and item not in self.choices:
                raise ValidationError(f"'{item}' is not one of: {', '.join(self.choices)}")
        return items


class W3CDateTime(fields.AwareDateTime):
    default_error_messages = {"invalid": "not a W3C date-time (e.g. 2026-10-12T09:00:00+08:00)",
                              "invalid_awareness": "include a UTC offset (e.g. +08:00 or Z)"}

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        if not 1900 <= moment.year <= 9000:
            raise ValidationError("out of range")
        return moment


class RequestsQuery(Schema):
    class Meta:
        unknown = EXCLUDE  # jurisdiction_id, api_key and extensions other servers accept

    service_request_id = CommaList(item_max=32, load_default=None)
    service_code = CommaList(load_default=None)
    start_date = W3CDateTime(load_default=None)
    end_date = W3CDateTime(load_default=None)
    status = CommaList(choices=("open", "closed"), load_default=None)

    @pre_load
    def _plus_signs(self, data, **_kwargs):
        data = {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        for key in ("start_date", "end_date"):
            if isinstance(data.get(key), str):
                data[key] = _SPACED_OFFSET.sub(r"\1+\2", data[key].strip())
        return data


class PostRequest(Schema):
    class Meta:
        unknown = EXCLUDE  # api_key, jurisdiction_id and attribute[...] are read on their own

    service_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    lat = fields.Float(load_default=None, validate=validate.Range(min=-90, max=90))
    long = fields.Float(load_default=None, validate=validate.Range(min=-180, max=180))
    address_string = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    address_id = fields.String(load_default=None, validate=validate.Length(min=1, max=100))
    email = fields.String(load_default=None, validate=validate.Length(max=254))
    device_id = fields.String(load_default=None, validate=validate.Length(max=200))
    account_id = fields.String(load_default=None, validate=validate.Length(max=200))
    first_name = fields.String(load_default=None, validate=validate.Length(max=100))
    last_name = fields.String(load_default=None, validate=validate.Length(max=100))
    phone = fields.String(load_default=None, validate=validate.Length(max=50))
    description = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    media_url = fields.Url(load_default=None, schemes={"http", "https"}, validate=validate.Length(max=300))

    @pre_load
    def _blank_is_absent(self, data, **_kwargs):
        return {k: v.strip() for k, v in data.items() if isinstance(v, str) and v.strip()}


# ---- the jurisdiction, services --------------------------------------------------------------------

def _jurisdiction(args) -> OrgUnit:
    districts = g.db.scalars(select(OrgUnit).where(OrgUnit.kind == "district", OrgUnit.parent_id.is_(None),
                                                   OrgUnit.active.is_(True)).order_by(OrgUnit.id)).all()
    wanted = (args.get("jurisdiction_id") or "").strip()
    if wanted:
        for d in districts:
            if d.code == wanted:
                return d
        raise Open311Error(404, f"jurisdiction_id '{wanted[:64]}' not found"
                                + (f": this endpoint serves {', '.join(d.code for d in districts)}" if districts else ""))
    if len(districts) == 1:
        return districts[0]
    if not districts:
        raise Open311Error(404, "no jurisdiction is set up on this server yet")
    raise Open311Error(400, f"jurisdiction_id is required: one of {', '.join(d.code for d in districts)}")


def _streets(district: OrgUnit):
    return select(OrgUnit.code).where(OrgUnit.kind == "street", OrgUnit.parent_id == district.id)


def _communities(district: OrgUnit) -> list[tuple[OrgUnit, OrgUnit]]:
    street = aliased(OrgUnit)
    return list(g.db.execute(
        select(OrgUnit, street).join(street, OrgUnit.parent_id == street.id)
        .where(OrgUnit.kind == "community", OrgUnit.active.is_(True), street.parent_id == district.id)
        .order_by(street.id, OrgUnit.id)).all())


def _service(category: Category) -> dict:
    return {"service_code": category.code, "service_name": category.name,
            "description": category.name_en or category.name, "metadata": True, "type": "realtime",
            "keywords": ", ".join(k for k in (category.code, category.name_en) if k), "group": None}


def _active_category(code: str) -> Category | None:
    category = g.db.get(Category, code)
    return category if category is not None and category.active else None


def _attributes(district: OrgUnit) -> list[dict]:
    communities = [{"key": c.code, "name": f"{s.name} {c.name}" + (f" ({c.name_en})" if c.name_en else "")}
                   for c, s in _communities(district)]
    return [
        {"variable": True, "code": "community", "datatype": "singlevaluelist", "required": True,
         "datatype_description": "the code (key) of one community", "order": 1,
         "description": "社区 Community where the problem is", "values": communities},
        {"variable": True, "code": "urgency", "datatype": "singlevaluelist", "required": False,
         "datatype_description": "normal unless lives or property are at risk now", "order": 2,
         "description": "紧急程度 Urgency", "values": [{"key": "normal", "name": "一般 Normal"},
                                                      {"key": "urgent", "name": "紧急 Urgent"}]},
    ]


@bp.get("/services.<fmt>")
def service_list(fmt):
    fmt = _format(fmt)
    _jurisdiction(request.args)
    rows = g.db.scalars(select(Category).where(Category.active.is_(True)).order_by(Category.code)).all()
    return _render(fmt, "services", [_service(c) for c in rows])


@bp.get("/services/<code>.<fmt>")
def service_definition(code, fmt):
    fmt = _format(fmt)
    district = _jurisdiction(request.args)
    if _active_category(code) is None:
        raise Open311Error(404, f"service_code '{code[:64]}' not found")
    return _render(fmt, "service_definition", {"service_code": code, "attributes": _attributes(district)})


# ---- filing ----------------------------------------------------------------------------------------

def _api_key() -> str:
    key = request.values.get("api_key", "")
    return key.strip() if isinstance(key, str) else ""


def _filing_key() -> str:
    key = _api_key()
    return f"open311:{hashlib.sha256(key.encode()).hexdigest()[:16]}" if key else f"open311-ip:{get_remote_address()}"


def _post_params() -> dict:
    if request.mimetype == "application/json":
        raise Open311Error(400, "send the request as application/x-www-form-urlencoded (GeoReport v2), not JSON")
    params = request.args.to_dict()
    params.update(request.form.to_dict())
    return params


def _read_attributes(params: dict, district: OrgUnit) -> dict:
    values: dict[str, str] = {}
    problems = []
    for name, value in params.items():
        m = _ATTRIBUTE.match(name)
        if m is None:
            continue
        code = m.group(1)
        if code not in ("community", "urgency"):
            problems.append(f"{name[:80]}: unknown attribute; this service has community and urgency")
        elif value.strip():
            values[code] = value.strip()
    community = values.get("community")
    codes = [c.code for c, _s in _communities(district)]
    if community is None:
        problems.append("attribute[community]: required: the code of the community where the problem is "
                        f"(one of {', '.join(codes)})")
    elif community not in codes:
        problems.append(f"attribute[community]: '{community[:64]}' is not a community of {district.code} "
                        f"(one of {', '.join(codes)})")
    urgency = values.get("urgency", "normal")
    if urgency not in URGENCIES:
        problems.append(f"attribute[urgency]: '{urgency[:64]}' is not one of {', '.join(URGENCIES)}")
    if problems:
        raise Open311Error(400, *problems)
    return {"community": community, "urgency": urgency}


@bp.post("/requests.<fmt>")
@limiter.limit(filing_limit, key_func=_filing_key)
def create_request(fmt):
    fmt = _format(fmt)
    params = _post_params()
    key = params.get("api_key", "").strip()
    if not key:
        raise Open311Error(403, "api_key was not provided: ask the district's administrator for one")
    found = api_key_user(g.db, key)
    if found is None:
        raise Open311Error(403, "api_key is invalid or revoked")
    user, api_key = found
    district = _jurisdiction(params)
    values = _load(PostRequest(), params)
    if _active_category(values["service_code"]) is None:
        raise Open311Error(400, f"service_code '{values['service_code']}' not found: see services.{fmt}")
    problems = []
    if (values["lat"] is None) != (values["long"] is None):
        problems.append("lat and long: give both or neither")
    elif values["address_string"] is None and values["lat"] is None:
        problems.append("a location is required: address_string, or lat and long"
                        + (" (address_id alone cannot be resolved here)" if values["address_id"] else ""))
    try:
        attributes = _read_attributes(params, district)
    except Open311Error as exc:
        problems.extend(exc.descriptions)
    if problems:
        raise Open311Error(400, *problems)
    location = values["address_string"] or f"{values['lat']:.6f},{values['long']:.6f}"
    svc = services()
    ctx = ServiceContext(g.db, svc.clock, user, sla=svc.sla)
    call = file_call(ctx, {"category": values["service_code"], "description": values["description"],
                           "location": location, "latitude": values["lat"], "longitude": values["long"],
                           "photos": [values["media_url"]] if values["media_url"] else [], **attributes})
    contact = {k: values[k] for k in CONTACT_FIELDS if values.get(k)}
    record_audit(g.db, at=svc.clock.now(), actor=user.username, action="open311.request", subject=call.number,
                 instance_id=call.instance_id,
                 detail={"api_key": api_key.name, "key_prefix": api_key.prefix, "contact": contact})
    g.db.commit()
    return _render(fmt, "service_requests", [{
        "service_request_id": call.number,
        "service_notice": f"呼叫 {call.number} 已受理 Received as call {call.number}",
        "account_id": None}])


# ---- reading -----------------------------------------------------------------------------------

def _status(call: Call) -> str:
    return "closed" if call.status in CLOSED else "open"


def _status_notes(call: Call) -> str | None:
    if call.status == "merged":
        return f"duplicate of {call.merged_into.number}" if call.merged_into_id else "duplicate request"
    if call.status == "voided":
        return call.result or "voided: not a request the district handles"
    if call.status == "closed":
        return call.result
    return None


def _media_url(call: Call) -> str | None:
    photos = [p for p in (call.photos or []) if isinstance(p, str) and p]
    if not photos:
        return None
    return urljoin(request.host_url, photos[0]) if photos[0].startswith("/") else photos[0]


def _leads(instance_ids: list[int]) -> dict[int, str]:
    """instance id -> the name of its current lead department (the newest lead slot's)."""
    if not instance_ids:
        return {}
    codes: dict[int, str] = {}
    for instance_id, context in g.db.execute(
            select(WorkItem.instance_id, WorkItem.context)
            .where(WorkItem.instance_id.in_(instance_ids), WorkItem.lane == "department").order_by(WorkItem.id)):
        slot = (context or {}).get("slot") if isinstance(context, dict) else None
        if isinstance(slot, dict) and slot.get("role") == "lead" and slot.get("department"):
            codes[instance_id] = slot["department"]
    if not codes:
        return {}
    names = dict(g.db.execute(select(OrgUnit.code, OrgUnit.name).where(OrgUnit.code.in_(set(codes.values())))).all())
    return {i: names.get(code, code) for i, code in codes.items()}


def _resolve_deadlines(instance_ids: list[int]) -> dict[int, datetime]:
    if not instance_ids:
        return {}
    return dict(g.db.execute(
        select(SlaClock.instance_id, func.max(SlaClock.due_at))
        .where(SlaClock.instance_id.in_(instance_ids), SlaClock.stage == "resolve",
               SlaClock.state.in_(("running", "paused")))
        .group_by(SlaClock.instance_id)).all())


def _requests_out(calls: list[Call]) -> list[dict]:
    open_ids = [c.instance_id for c in calls if c.instance_id is not None and _status(c) == "open"]
    leads = _leads([c.instance_id for c in calls if c.instance_id is not None])
    due = _resolve_deadlines(open_ids)
    out = []
    for c in calls:
        is_open = _status(c) == "open"
        out.append({
            "service_request_id": c.number, "status": _status(c), "status_notes": _status_notes(c),
            "service_name": c.category.name, "service_code": c.category_code, "description": c.description,
            "agency_responsible": leads.get(c.instance_id), "service_notice": None,
            "requested_datetime": _w3c(c.created_at),
            "updated_datetime": _w3c(c.updated_at if is_open or c.closed_at is None else c.closed_at),
            "expected_datetime": _w3c(due.get(c.instance_id)) if is_open else None,
            "address": c.location, "address_id": None, "zipcode": None, "lat": c.latitude, "long": c.longitude,
            "media_url": _media_url(c)})
    return out


def _calls_query(district: OrgUnit):
    return (select(Call).options(joinedload(Call.category), joinedload(Call.merged_into))
            .where(Call.parent_id.is_(None), Call.number.is_not(None), Call.street_code.in_(_streets(district))))


def _window(start: datetime | None, end: datetime | None, now: datetime) -> tuple[datetime, datetime]:
    try:
        if start is None and end is None:
            return now - WINDOW, now
        if start is None:
            return end - WINDOW, end
        if end is None:
            return start, start + WINDOW
    except OverflowError:
        raise Open311Error(400, "start_date or end_date is out of range") from None
    if start > end:
        raise Open311Error(400, "start_date is after end_date")
    if end - start > WINDOW:
        raise Open311Error(400, "start_date to end_date may span at most 90 days")
    return start, end


@bp.get("/requests.<fmt>")
def request_list(fmt):
    fmt = _format(fmt)
    district = _jurisdiction(request.args)
    params = request.args.to_dict()
    for name in ("service_request_id", "service_code", "status"):  # repeated or comma-separated
        if name in request.args:
            params[name] = ",".join(request.args.getlist(name))
    args = _load(RequestsQuery(), params)
    query = _calls_query(district)
    if args["service_request_id"]:
        query = query.where(Call.number.in_(args["service_request_id"]))
    else:
        if args["service_code"]:
            known = set(g.db.scalars(select(Category.code).where(Category.code.in_(args["service_code"]))))
            unknown = [c for c in args["service_code"] if c not in known]
            if unknown:
                raise Open311Error(400, *(f"service_code '{c}' not found" for c in unknown))
            query = query.where(Call.category_code.in_(args["service_code"]))
        if args["status"] and len(args["status"]) == 1:
            query = query.where(Call.status.in_(OPEN if args["status"] == ["open"] else CLOSED))
        start, end = _window(args["start_date"], args["end_date"], services().clock.now())
        query = query.where(Call.created_at >= start, Call.created_at <= end)
    calls = g.db.scalars(query.order_by(Call.created_at.desc(), Call.id.desc()).limit(MAX_RESULTS)).unique().all()
    return _render(fmt, "service_requests", _requests_out(list(calls)))


def _one_call(number: str) -> Call | None:
    district = _jurisdiction(request.args)
    if len(number) > 32:
        return None
    return g.db.scalars(_calls_query(district).where(Call.number == number)).unique().one_or_none()


@bp.get("/requests/<number>.<fmt>")
def request_one(number, fmt):
    fmt = _format(fmt)
    call = _one_call(number)
    if call is None:
        raise Open311Error(404, f"service_request_id '{number[:64]}' not found")
    return _render(fmt, "service_requests", _requests_out([call]))


@bp.get("/tokens/<token>.<fmt>")
def token_lookup(token, fmt):
    fmt = _format(fmt)
    call = _one_call(token)
    if call is None:
        raise Open311Error(404, f"token '{token[:64]}' not found (this server answers POST requests with "
                                "service_request_id directly)")
    return _render(fmt, "service_requests", [{"service_request_id": call.number, "token": token}])


# ---- anything else under /open311/v2 -------------------------------------------------------------

@bp.route("/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown_resource(rest):
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in ("GET", "POST"):
        try:
            rule, _args = adapter.match(method=method, return_rule=True)
        except HTTPException:
            continue
        if rule.endpoint != request.endpoint:
            allowed.append(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=allowed, description=f"{request.method} is not allowed here; use "
                                                                  f"{' or '.join(allowed)}")
    raise Open311Error(404, f"no Open311 resource '{rest[:100]}': use services, services/{{service_code}}, "
                            "requests, requests/{service_request_id} or tokens/{token_id}, each ending in "
                            ".json or .xml")

