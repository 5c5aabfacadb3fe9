"""Administration: org units, users, categories, process and SLA-policy versions, the calendar, API keys.

Every endpoint under ``/api/v1/admin`` needs the admin role (checked before the
request is even parsed, so others get 403 whatever they send), except
``GET /calendar/due`` which any signed-in user may use to check a deadline.
Org scope: an admin manages the units, users and API keys of their own district
(``workflows.admin``); categories, process definitions, the SLA policy and the
calendar are district-wide configuration.  ``GET /api/v1/categories`` lists the
active categories for every signed-in user (filing clients need them).

Each request is one transaction: any error rolls it back, so a refused change
(422, 403, 404, 409) writes nothing.  ``POST /api/v1/admin/clock`` (the virtual
clock) lives in ``web/app.py``.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from http import HTTPStatus
from pathlib import PurePosixPath

from flask import Response, g, request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from engine.calendar import PACKAGE_YEARS, SHANGHAI, CalendarError, Target
from engine.definitions import MAX_FILE_BYTES, deploy, get_definition, list_definitions
from engine.errors import Conflict, InvalidDefinition, NotFound, ValidationFailed
from engine.models import CalendarOverride, SlaClock, SlaPolicy
from engine.sla import PolicySchema, deploy_policy, latest_policy, set_override
from workflows import admin as svc
from workflows.models import ROLES, UNIT_KINDS, Category

from .errors import flatten
from .present import user_out
from .schemas import UnitRefSchema, UserSchema
from .security import ctx, require, services

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin",
                description="Administration (admin role): org units, users, categories, process definitions, "
                            "SLA policy, calendar overrides, API keys")
categories = Blueprint("categories", __name__, url_prefix="/api/v1/categories",
                       description="Call categories (any signed-in user)")

MAX_DEPLOY_FILES = 20


def _errors(*codes: int):
    """Document the error responses an endpoint may give (all in the one error schema)."""
    def decorator(fn):
        for code in codes:
            fn = blp.alt_response(code, response=HTTPStatus(code).name)(fn)
        return fn
    return decorator


def _no_nul() -> None:
    """PostgreSQL text cannot hold NUL: such a path or query value names nothing (404) or is bad input (422)."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str) and "\x00" in value:
            raise NotFound(f"no such {name}")
    bad = sorted({k for k, values in request.args.lists() for v in [k, *values] if "\x00" in v})
    if bad:
        raise ValidationFailed("NUL characters are not allowed", field_errors={k: ["NUL characters are not allowed"]
                                                                              for k in bad})


blp.before_request(_no_nul)
categories.before_request(_no_nul)


@contextmanager
def _unique(message: str):
    """A unique constraint lost to a simultaneous request (the checks passed for both): 409, nothing written."""
    try:
        yield
    except IntegrityError:
        g.db.rollback()
        raise Conflict(message) from None


# ---- schemas ----------------------------------------------------------------------------------------
class UnitSchema(UnitRefSchema):
    parent = fields.String(allow_none=True, metadata={"description": "code of the parent unit"})
    active = fields.Boolean()
    active_users = fields.Integer()


class UnitQuery(Schema):
    kind = fields.String(load_default=None, validate=validate.OneOf(UNIT_KINDS))
    parent = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    active = fields.Boolean(load_default=None)


class AdminUserSchema(UserSchema):
    active = fields.Boolean()


class UserChangedSchema(AdminUserSchema):
    tokens_revoked = fields.Integer(metadata={"description": "sign-in tokens revoked by this change "
                                                             "(new password, deactivation)"})


class UserQuery(Schema):
    role = fields.String(load_default=None, validate=validate.OneOf(ROLES))
    unit = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    active = fields.Boolean(load_default=None)
    q = fields.String(load_default=None, validate=validate.Length(min=1, max=100),
                      metadata={"description": "text in the username or display name"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class UserPageSchema(Schema):
    items = fields.List(fields.Nested(AdminUserSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class RevokedSchema(Schema):
    username = fields.String()
    tokens_revoked = fields.Integer()


class CategorySchema(Schema):
    code = fields.String()
    name = fields.String()
    name_en = fields.String()
    active = fields.Boolean()


class CategoryQuery(Schema):
    active = fields.Boolean(load_default=None)


class DefinitionSchema(Schema):
    id = fields.Integer()
    process_id = fields.String()
    version = fields.Integer()
    sha256 = fields.String(metadata={"description": "of the whole bundle (file names and contents)"})
    deployed_at = fields.DateTime()
    deployed_by = fields.String()
    note = fields.String()
    files = fields.List(fields.String(), metadata={"description": "file names; GET .../files/{name} for the XML"})
    latest = fields.Boolean(metadata={"description": "new calls start on this version"})


class DefinitionQuery(Schema):
    process_id = fields.String(load_default=None, validate=validate.Length(min=1, max=100))


class DeployNote(Schema):
    note = fields.String(load_default="", validate=[validate.Length(max=500), svc.PLAIN])


class DeployRequest(Schema):
    """multipart/form-data: the files, and a note (a plain form field)."""

    files = fields.List(fields.Raw(metadata={"type": "string", "format": "binary"}), required=True,
                        metadata={"description": "the .bpmn diagrams and the .dmn tables they call, deployed "
                                                 "together as one bundle (repeat the field)"})
    note = fields.String(load_default="", validate=[validate.Length(max=500), svc.PLAIN],
                         metadata={"description": "why this version (shown in the version list)"})


class DeployedProcessSchema(Schema):
    process_id = fields.String()
    version = fields.Integer()
    definition_id = fields.Integer()
    created = fields.Boolean(metadata={"description": "false: identical to the latest version, not redeployed"})


class DeployResultSchema(Schema):
    processes = fields.List(fields.Nested(DeployedProcessSchema))
    created = fields.List(fields.String(), metadata={"description": "processes that got a new version"})
    unchanged = fields.List(fields.String(), metadata={"description": "processes whose latest version is "
                                                                      "already this bundle"})
    files = fields.List(fields.String())


class PolicyVersionSchema(Schema):
    version = fields.Integer()
    sha256 = fields.String()
    deployed_at = fields.DateTime()
    deployed_by = fields.String()
    note = fields.String()
    rule_count = fields.Integer()
    latest = fields.Boolean(metadata={"description": "new deadlines use this version; running ones keep theirs"})


class PolicyDetailSchema(PolicyVersionSchema):
    policy = fields.Nested(PolicySchema, metadata={"description": "warn_ratio, overdue_working_days and the rules"})


class PolicyDeployedSchema(PolicyDetailSchema):
    created = fields.Boolean(metadata={"description": "false: identical to the latest version, not redeployed"})


class PolicyDeployRequest(PolicySchema):
    """An SLA policy document (as config/sla_policy.json), plus an optional note."""

    note = fields.String(load_default="", validate=[validate.Length(max=500), svc.PLAIN])


class OverrideSchema(Schema):
    day = fields.Date()
    workday = fields.Boolean()
    note = fields.String()
    set_by = fields.String()
    set_at = fields.DateTime()


class FileOverrideSchema(Schema):
    day = fields.Date()
    workday = fields.Boolean()


class OfficialDataSchema(Schema):
    first_year = fields.Integer()
    last_year = fields.Integer()
    source = fields.String()


class CalendarStatusSchema(Schema):
    official_data = fields.Nested(OfficialDataSchema, metadata={"description": "years the holiday package covers; "
                                                                              "beyond them weekdays are assumed "
                                                                              "to be workdays unless overridden"})
    office_hours = fields.List(fields.String(), metadata={"example": ["09:00-12:00", "14:00-18:00"]})
    overrides = fields.List(fields.Nested(OverrideSchema), metadata={"description": "set here or with "
                                                                                    "`huying calendar set`"})
    file_overrides = fields.List(fields.Nested(FileOverrideSchema),
                                 metadata={"description": "from the calendar file (database overrides win)"})
    open_clocks = fields.Integer(metadata={"description": "running or paused SLA clocks"})
    open_clocks_assumed = fields.Integer(metadata={"description": "open clocks whose deadline rests on days beyond "
                                                                  "the official data: enter the overrides"})


class OverrideRequest(Schema):
    workday = fields.Boolean(required=True, metadata={"description": "true: a workday (e.g. a 调休 Saturday); "
                                                                     "false: a holiday"})
    note = fields.String(load_default="", validate=[validate.Length(max=200), svc.PLAIN],
                         metadata={"example": "国务院办公厅关于2027年部分节假日安排的通知"})


class OverrideResultSchema(Schema):
    day = fields.Date()
    workday = fields.Boolean(allow_none=True, metadata={"description": "null: the override was removed"})
    note = fields.String()
    recomputed = fields.Integer(metadata={"description": "open SLA clocks whose deadlines were recomputed"})


class DueQuery(Schema):
    start = fields.DateTime(data_key="from", required=True,
                            metadata={"description": "ISO 8601; without an offset it is Asia/Shanghai time",
                                      "example": "2026-09-30T17:00:00+08:00"})
    working_hours = fields.Float(load_default=None, validate=validate.Range(min=0.01, max=10000))
    working_days = fields.Integer(load_default=None, validate=validate.Range(min=1, max=365))
    wall_hours = fields.Float(load_default=None, validate=validate.Range(min=0.01, max=10000))

    @validates_schema
    def _one_target(self, data, **_):
        given = [k for k in Target.KINDS if data.get(k) is not None]
        if len(given) != 1:
            raise ValidationError("give exactly one of working_hours, working_days, wall_hours")
        if "start" in data and not 2000 <= data["start"].year <= 2100:
            raise ValidationError("between the years 2000 and 2100", "from")


class TargetSchema(Schema):
    kind = fields.String(validate=validate.OneOf(Target.KINDS))
    amount = fields.Float()
    label = fields.String(metadata={"example": "2 工作时"})


class DueSchema(Schema):
    start = fields.DateTime(data_key="from")
    target = fields.Nested(TargetSchema)
    due_at = fields.DateTime()
    assumed_days = fields.List(fields.Date(), metadata={"description": "days beyond the official data the answer "
                                                                       "rests on (weekdays assumed workdays)"})
    assumed = fields.Boolean()


class ApiKeySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    prefix = fields.String(metadata={"description": "the key's first characters, to recognise it"})
    user = fields.String(metadata={"description": "the user the key files calls as"})
    created_at = fields.DateTime()
    created_by = fields.String()
    revoked_at = fields.DateTime(allow_none=True)
    active = fields.Boolean()


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(metadata={"description": "the secret: shown this once, only its hash is kept"})


# ---- presenters -------------------------------------------------------------------------------------
def unit_out(row: svc.UnitRow) -> dict:
    u = row.unit
    return {"code": u.code, "name": u.name, "name_en": u.name_en, "kind": u.kind,
            "parent": u.parent.code if u.parent is not None else None, "active": u.active,
            "active_users": row.active_users}


def admin_user_out(user) -> dict:
    return {**user_out(user), "active": user.active}


def category_out(c) -> dict:
    return {"code": c.code, "name": c.name, "name_en": c.name_en, "active": c.active}


def policy_out(row: SlaPolicy, latest_version: int | None, detail: bool = False) -> dict:
    out = {"version": row.version, "sha256": row.sha256, "deployed_at": row.deployed_at,
           "deployed_by": row.deployed_by, "note": row.note, "rule_count": len(row.rules.get("rules", [])),
           "latest": row.version == latest_version}
    if detail:
        out["policy"] = row.rules
    return out


def key_out(k) -> dict:
    return {"id": k.id, "name": k.name, "prefix": k.prefix, "user": k.user.username, "created_at": k.created_at,
            "created_by": k.created_by, "revoked_at": k.revoked_at, "active": k.revoked_at is None}


# ---- org units --------------------------------------------------------------------------------------
@blp.route("/units", methods=["GET"])
@require("admin")
@blp.arguments(UnitQuery, location="query")
@blp.response(200, UnitSchema(many=True))
@_errors(401, 403)
def list_units(args):
    """The org units of your district (filter by kind, parent code, active)"""
    return [unit_out(r) for r in svc.list_units(ctx(), **args)]


@blp.route("/units", methods=["POST"])
@require("admin")
@blp.arguments(svc.UnitCreateSchema)
@blp.response(201, UnitSchema)
@_errors(401, 403, 409)
def create_unit(body):
    """Create a street or department (under the district) or a community (under a street)"""
    c = ctx()
    with _unique(f"an org unit with code '{body['code']}' was created at the same moment"):
        unit = svc.create_unit(c, body)
        g.db.commit()
    return unit_out(svc.unit_row(g.db, unit)), 201, {"Location": f"{blp.url_prefix}/units/{unit.code}"}


@blp.route("/units/<string(maxlength=64):code>", methods=["GET"])
@require("admin")
@blp.response(200, UnitSchema)
@_errors(401, 403, 404)
def get_unit(code):
    """One org unit"""
    c = ctx()
    return unit_out(svc.unit_row(g.db, svc.get_unit_admin(c, code)))


@blp.route("/units/<string(maxlength=64):code>", methods=["PATCH"])
@require("admin")
@blp.arguments(svc.UnitUpdateSchema)
@blp.response(200, UnitSchema)
@_errors(401, 403, 404, 409)
def update_unit(body, code):
    """Rename an org unit or (de)activate it (refused while it has active users, sub-units or open work)"""
    unit = svc.update_unit(ctx(), code, body)
    g.db.commit()
    return unit_out(svc.unit_row(g.db, unit))


# ---- users ------------------------------------------------------------------------------------------
@blp.route("/users", methods=["GET"])
@require("admin")
@blp.arguments(UserQuery, location="query")
@blp.response(200, UserPageSchema)
@_errors(401, 403)
def list_users(args):
    """The users of your district (filter by role, unit, active, text; paged)"""
    per_page = args.pop("per_page")
    page = args.pop("page")
    total, rows = svc.list_users(ctx(), **args, limit=per_page, offset=(page - 1) * per_page)
    return {"items": [admin_user_out(u) for u in rows], "total": total, "page": page, "per_page": per_page}


@blp.route("/users", methods=["POST"])
@require("admin")
@blp.arguments(svc.UserCreateSchema)
@blp.response(201, AdminUserSchema)
@_errors(401, 403, 409)
def create_user(body):
    """Create a user (the role must suit the unit's kind; the password is stored as an Argon2id hash)"""
    c = ctx()
    with _unique(f"a user named '{body['username']}' was created at the same moment"):
        user = svc.create_user(c, body)
        g.db.commit()
    return admin_user_out(user), 201, {"Location": f"{blp.url_prefix}/users/{user.username}"}


@blp.route("/users/<string(maxlength=64):username>", methods=["GET"])
@require("admin")
@blp.response(200, AdminUserSchema)
@_errors(401, 403, 404)
def get_user(username):
    """One user (active or not)"""
    return admin_user_out(svc.get_user_admin(ctx(), username))


@blp.route("/users/<string(maxlength=64):username>", methods=["PATCH"])
@require("admin")
@blp.arguments(svc.UserUpdateSchema)
@blp.response(200, UserChangedSchema)
@_errors(401, 403, 404, 409)
def update_user(body, username):
    """Change a user's name, role, unit, password or active flag (a new password or deactivation revokes
    their tokens)"""
    user, revoked = svc.update_user(ctx(), username, body)
    g.db.commit()
    return {**admin_user_out(user), "tokens_revoked": revoked}


@blp.route("/users/<string(maxlength=64):username>/revoke-tokens", methods=["POST"])
@require("admin")
@blp.response(200, RevokedSchema)
@_errors(401, 403, 404)
def revoke_tokens(username):
    """Revoke every sign-in token and browser session of a user (e.g. a lost phone)"""
    n = svc.revoke_user_tokens(ctx(), username)
    g.db.commit()
    return {"username": username, "tokens_revoked": n}


# ---- categories -------------------------------------------------------------------------------------
@blp.route("/categories", methods=["GET"])
@require("admin")
@blp.arguments(CategoryQuery, location="query")
@blp.response(200, CategorySchema(many=True))
@_errors(401, 403)
def list_all_categories(args):
    """Every category, active or not"""
    return [category_out(c) for c in svc.list_categories(g.db, active=args["active"])]


@blp.route("/categories", methods=["POST"])
@require("admin")
@blp.arguments(svc.CategoryCreateSchema)
@blp.response(201, CategorySchema)
@_errors(401, 403, 409)
def create_category(body):
    """Create a category (route it: deploy a routing table that knows it, else it takes the default rule)"""
    c = ctx()
    with _unique(f"a category with code '{body['code']}' was created at the same moment"):
        row = svc.create_category(c, body)
        g.db.commit()
    return category_out(row), 201, {"Location": f"{categories.url_prefix}/{row.code}"}


@blp.route("/categories/<string(maxlength=64):code>", methods=["PATCH"])
@require("admin")
@blp.arguments(svc.CategoryUpdateSchema)
@blp.response(200, CategorySchema)
@_errors(401, 403, 404)
def update_category(body, code):
    """Rename a category or (de)activate it (calls already filed keep it)"""
    row = svc.update_category(ctx(), code, body)
    g.db.commit()
    return category_out(row)


@categories.route("", methods=["GET"])
@require()
@categories.response(200, CategorySchema(many=True))
def active_categories():
    """The categories a call can be filed in"""
    return [category_out(c) for c in svc.list_categories(g.db, active=True)]


@categories.route("/<string(maxlength=64):code>", methods=["GET"])
@require()
@categories.response(200, CategorySchema)
def one_category(code):
    """One category (inactive ones too, for old calls)"""
    row = g.db.get(Category, code)
    if row is None:
        raise NotFound(f"no category '{code}'")
    return category_out(row)


# ---- process definitions ----------------------------------------------------------------------------
def _definition_out(d, latest: dict[str, int]) -> dict:
    return {"id": d.id, "process_id": d.process_id, "version": d.version, "sha256": d.sha256,
            "deployed_at": d.deployed_at, "deployed_by": d.deployed_by, "note": d.note or "",
            "files": sorted(d.files or {}), "latest": latest.get(d.process_id) == d.version}


@blp.route("/definitions", methods=["GET"])
@require("admin")
@blp.arguments(DefinitionQuery, location="query")
@blp.response(200, DefinitionSchema(many=True))
@_errors(401, 403)
def definitions(args):
    """Deployed process versions (BPMN + DMN bundles), oldest first per process"""
    rows = list_definitions(g.db, args["process_id"])
    latest: dict[str, int] = {}
    for d in rows:
        latest[d.process_id] = max(latest.get(d.process_id, 0), d.version)
    return [_definition_out(d, latest) for d in rows]


def _read_uploads() -> dict[str, bytes]:
    uploads = request.files.getlist("files")
    problems: list[str] = []
    files: dict[str, bytes] = {}
    if not uploads:
        problems.append("give one or more .bpmn/.dmn files in the multipart field 'files'")
    if len(uploads) > MAX_DEPLOY_FILES:
        problems.append(f"at most {MAX_DEPLOY_FILES} files in one bundle")
    for f in uploads[:MAX_DEPLOY_FILES]:
        try:
            name = PurePosixPath((f.filename or "").replace("\\", "/")).name
            data = f.read(MAX_FILE_BYTES + 1)
        finally:
            f.close()
        if not name or len(name) > 200 or not name.endswith((".bpmn", ".dmn")) or svc.has_control(name):
            problems.append(f"{name or '(no name)'}: only .bpmn and .dmn files can be deployed")
        elif name in files:
            problems.append(f"{name}: given twice")
        elif len(data) > MAX_FILE_BYTES:
            problems.append(f"{name}: file is larger than {MAX_FILE_BYTES // 1024} KiB")
        else:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{name}: not UTF-8 text")
            files[name] = data
    if problems:
        raise ValidationFailed("; ".join(problems), field_errors={"files": problems})
    return files


@blp.route("/definitions", methods=["POST"])
@require("admin")
@blp.arguments(DeployRequest, location="files")
@blp.response(201, DeployResultSchema)
@blp.alt_response(200, schema=DeployResultSchema, description="nothing new: every process is already at this "
                                                              "bundle", success=True)
@_errors(401, 403, 409)
def deploy_definitions(_files):
    """Deploy a bundle of BPMN diagrams and DMN tables (multipart field ``files``, repeatable)

    Every file is checked before anything is stored: safe XML, the BPMN schema, references that name a real
    element (sequence flows, boundary events, default flows, lanes, signals/messages/errors/escalations, the
    decisions business-rule tasks call), our rules (an owner and a lane on every human task, conditions on
    gateway flows, valid scripts), and every DMN rule's input entries compiled as the engine will run them; a
    bad file gives 422 naming the element. Processes whose latest version is this very bundle are left alone.
    Running calls stay on their version; new calls start on the new one; each new version is audited. The
    routing table ``routing.dmn`` is deployed together with ``call_dispatch.bpmn``.
    """
    c = ctx()
    try:  # the note is a form field: flask-smorest documents one request body, parsed from one location
        note = DeployNote().load({k: request.form[k] for k in ("note",) if k in request.form})["note"]
    except ValidationError as exc:
        raise ValidationFailed(f"note: {exc.messages}", field_errors=flatten(exc.messages)) from None
    files = _read_uploads()
    with _unique("another deployment of the same process happened at the same moment; try again"):
        try:
            results = deploy(g.db, files, at=c.clock.now(), actor=c.actor, note=note)
        except InvalidDefinition as exc:
            raise InvalidDefinition(exc.message, field_errors={"files": [exc.message]}) from None
        g.db.commit()
    out = {"processes": [{"process_id": r.process_id, "version": r.version, "definition_id": r.definition_id,
                          "created": r.created} for r in results],
           "created": [r.process_id for r in results if r.created],
           "unchanged": [r.process_id for r in results if not r.created], "files": sorted(files)}
    return out, 201 if out["created"] else 200


@blp.route("/definitions/<string(maxlength=100):process_id>/<int(max=2147483647):version>"
           "/files/<string(maxlength=200):name>", methods=["GET"])
@require("admin")
@blp.response(200, description="the file's XML", content_type="application/xml")
@_errors(401, 403, 404)
def definition_file(process_id, version, name):
    """One file (BPMN or DMN XML) of a deployed version, e.g. to compare versions"""
    row = get_definition(g.db, process_id, version)
    text = (row.files or {}).get(name)
    if text is None:
        raise NotFound(f"{process_id} v{version} has no file '{name}' "
                       f"(it has: {', '.join(sorted(row.files or {}))})")
    return Response(text, mimetype="application/xml", headers={
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
        "ETag": f'"{row.sha256[:32]}-{name}"'})


# ---- SLA policy -------------------------------------------------------------------------------------
def _latest_policy_version() -> int | None:
    return g.db.scalar(select(func.max(SlaPolicy.version)))


@blp.route("/sla-policies", methods=["GET"])
@require("admin")
@blp.response(200, PolicyVersionSchema(many=True))
@_errors(401, 403)
def sla_policies():
    """SLA policy versions, oldest first"""
    latest = _latest_policy_version()
    return [policy_out(r, latest) for r in g.db.scalars(select(SlaPolicy).order_by(SlaPolicy.version))]


@blp.route("/sla-policies/latest", methods=["GET"])
@require("admin")
@blp.response(200, PolicyDetailSchema)
@_errors(401, 403, 404)
def sla_policy_latest():
    """The SLA policy new deadlines use: targets per stage, category/class and urgency"""
    row = latest_policy(g.db)
    if row is None:
        raise NotFound("no SLA policy deployed")
    return policy_out(row, row.version, detail=True)


@blp.route("/sla-policies/<int(max=2147483647):version>", methods=["GET"])
@require("admin")
@blp.response(200, PolicyDetailSchema)
@_errors(401, 403, 404)
def sla_policy_version(version):
    """One SLA policy version with its rules"""
    row = g.db.scalar(select(SlaPolicy).where(SlaPolicy.version == version))
    if row is None:
        raise NotFound(f"no SLA policy version {version}")
    return policy_out(row, _latest_policy_version(), detail=True)


@blp.route("/sla-policies", methods=["POST"])
@require("admin")
@blp.arguments(PolicyDeployRequest)
@blp.response(201, PolicyDeployedSchema)
@blp.alt_response(200, schema=PolicyDeployedSchema, description="identical to the latest version: not redeployed",
                  success=True)
@_errors(401, 403, 409)
def deploy_sla_policy(body):
    """Deploy a new SLA policy version (new deadlines use it; running clocks keep the version they started on)"""
    c = ctx()
    note = body.pop("note")
    before = _latest_policy_version()
    with _unique("another SLA policy was deployed at the same moment; try again"):
        row = deploy_policy(g.db, body, at=c.clock.now(), actor=c.actor, note=note)
        g.db.commit()
    created = row.version != before
    return {**policy_out(row, row.version, detail=True), "created": created}, 201 if created else 200


# ---- calendar ---------------------------------------------------------------------------------------
def _count_open(assumed: bool = False) -> int:
    q = select(func.count()).select_from(SlaClock).where(SlaClock.state.in_(("running", "paused")))
    if assumed:
        q = q.where(SlaClock.assumed_calendar.is_(True))
    return g.db.scalar(q) or 0


@blp.route("/calendar", methods=["GET"])
@require("admin")
@blp.response(200, CalendarStatusSchema)
@_errors(401, 403)
def calendar_status():
    """The calendar: the years the official holiday data covers, office hours, overrides, open deadlines
    resting on assumptions"""
    keeper = services().sla
    cal = keeper.calendars.get(g.db, fresh=True)
    rows = g.db.scalars(select(CalendarOverride).order_by(CalendarOverride.day)).all()
    return {"official_data": {"first_year": PACKAGE_YEARS[0], "last_year": PACKAGE_YEARS[1],
                              "source": "chinesecalendar"},
            "office_hours": [f"{s:%H:%M}-{e:%H:%M}" for s, e in cal.office_hours],
            "overrides": [{"day": r.day, "workday": r.workday, "note": r.note, "set_by": r.set_by,
                           "set_at": r.set_at} for r in rows],
            "file_overrides": [{"day": d, "workday": w}
                               for d, w in sorted(keeper.calendars.file_overrides.items())],
            "open_clocks": _count_open(), "open_clocks_assumed": _count_open(assumed=True)}


@blp.route("/calendar/due", methods=["GET"])
@require()
@blp.arguments(DueQuery, location="query")
@blp.response(200, DueSchema)
@_errors(401)
def calendar_due(args):
    """When a target starting at ``from`` falls due on the business calendar (any signed-in user)"""
    start: datetime = args["start"]
    if start.tzinfo is None:
        start = start.replace(tzinfo=SHANGHAI)
    kind = next(k for k in Target.KINDS if args.get(k) is not None)
    try:
        target = Target(kind, args[kind])
        deadline = services().sla.calendars.get(g.db).deadline(start, target)
    except CalendarError as exc:
        raise ValidationFailed(str(exc), field_errors={kind: [str(exc)]}) from None
    return {"start": start, "target": {"kind": kind, "amount": target.amount, "label": target.describe()},
            "due_at": deadline.due.astimezone(SHANGHAI), "assumed_days": list(deadline.assumed),
            "assumed": bool(deadline.assumed)}


@blp.route("/calendar/<string(maxlength=32):day>", methods=["PUT"])
@require("admin")
@blp.arguments(OverrideRequest)
@blp.response(200, OverrideResultSchema)
@_errors(401, 403)
def set_calendar_day(body, day):
    """Make a day a workday or a holiday (e.g. from the State Council's notice); recomputes open deadlines"""
    d = svc.parse_day(day)
    c = ctx()
    with _unique(f"{d.isoformat()} was overridden at the same moment by someone else; try again"):
        set_override(g.db, d, body["workday"], actor=c.actor, at=c.clock.now(), note=body["note"])
        n = c.sla.recompute_open(g.db)
        g.db.commit()
    return {"day": d, "workday": body["workday"], "note": body["note"], "recomputed": n}


@blp.route("/calendar/<string(maxlength=32):day>", methods=["DELETE"])
@require("admin")
@blp.response(200, OverrideResultSchema)
@_errors(401, 403, 404)
def unset_calendar_day(day):
    """Remove a day's override (the official data, or the weekday assumption, decides again); recomputes open
    deadlines"""
    d = svc.parse_day(day)
    c = ctx()
    if g.db.get(CalendarOverride, d) is None:
        raise NotFound(f"{d.isoformat()} has no override")
    set_override(g.db, d, None, actor=c.actor, at=c.clock.now())
    n = c.sla.recompute_open(g.db)
    g.db.commit()
    return {"day": d, "workday": None, "note": "", "recomputed": n}


# ---- API keys ---------------------------------------------------------------------------------------
@blp.route("/apikeys", methods=["GET"])
@require("admin")
@blp.response(200, ApiKeySchema(many=True))
@_errors(401, 403)
def api_keys():
    """Integrators' API keys of your district (never the secret)"""
    return [key_out(k) for k in svc.list_keys(ctx())]


@blp.route("/apikeys", methods=["POST"])
@require("admin")
@blp.arguments(svc.ApiKeyCreateSchema)
@blp.response(201, ApiKeyCreatedSchema)
@_errors(401, 403, 409)
def create_api_key(body):
    """Issue an API key (Open311 ``api_key``) that files calls as a user; the key is shown once"""
    c = ctx()
    with _unique(f"an API key named '{body['name']}' was created at the same moment"):
        issued = svc.issue_key(c, body)
        g.db.commit()
    return {**key_out(issued.row), "key": issued.key}, 201


@blp.route("/apikeys/<int(max=2147483647):key_id>", methods=["DELETE"])
@require("admin")
@blp.response(200, ApiKeySchema)
@_errors(401, 403, 404)
def revoke_api_key(key_id):
    """Revoke an API key (at once; revoking twice is harmless)"""
    row = svc.revoke_key(ctx(), key_id)
    g.db.commit()
    return key_out(row)
