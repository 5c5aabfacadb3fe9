"""Administering the org tree, users, categories and API keys: the rules, checked before anything is written.

Every function takes the acting admin's :class:`ServiceContext` and checks the
role *and* the org scope: an admin manages the units and users of their own
district (the root of their unit's tree).  Categories are district-wide
configuration.  Errors are the engine's: :class:`ValidationFailed` (422, with
field messages), :class:`NotFound` (404), :class:`Forbidden` (403),
:class:`Conflict` (409).  Nothing here commits; the entry point owns the
transaction and rolls it back on any error, so a refused change writes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from marshmallow import Schema, fields, validate
from marshmallow import ValidationError as SchemaError
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from engine.audit import record_audit
from engine.errors import Conflict, Forbidden, NotFound, ValidationFailed, msg
from engine.models import WorkItem

from .auth import IssuedKey, create_api_key, revoke_all, revoke_api_key
from .context import ServiceContext
from .models import ROLE_UNIT_KIND, ROLES, ApiKey, ApiToken, Category, OrgUnit, User
from .org import FILING_ROLES, district_of
from .passwords import hash_password

ADMIN_ROLES = {"admin"}
# The kind of parent each kind of unit hangs under; districts are the roots, created at installation.
PARENT_KIND = {"street": "district", "community": "street", "department": "district"}
MIN_PASSWORD = 8
PASSWORD_LENGTH = msg("%(low)s-%(high)s characters", low=MIN_PASSWORD, high=200)
# marshmallow formats a validator's error into a plain string; msg() marks it for the UI's catalog all the same
CODE = validate.Regexp(r"^[a-z0-9][a-z0-9_-]*$", error=msg("lower-case letters, digits, '_' and '-' only "
                                                            "(starting with a letter or digit)"))
# PostgreSQL text cannot hold NUL; no control character belongs in a name or note
PLAIN = validate.Regexp(r"\A[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*\Z", error=msg("control characters are not allowed"))


def has_control(text: str) -> bool:
    try:
        PLAIN(text)
    except SchemaError:
        return True
    return False


USERNAME = validate.Regexp(r"^[a-z0-9][a-z0-9._-]*$", error=msg("lower-case letters, digits, '.', '_' and '-' only "
                                                                "(starting with a letter or digit)"))


# ---- request schemas (the web layer documents and parses with these too) ---------------------------
class UnitCreateSchema(Schema):
    code = fields.String(required=True, validate=[validate.Length(min=2, max=64), CODE],
                         metadata={"description": "permanent: diagrams and routing tables name units by code",
                                   "example": "dongyuan"})
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), PLAIN],
                         metadata={"example": "东园社区"})
    name_en = fields.String(load_default="", validate=[validate.Length(max=100), PLAIN])
    kind = fields.String(required=True, validate=validate.OneOf(tuple(PARENT_KIND)),
                         metadata={"description": "street and department hang under the district, "
                                                  "community under a street"})
    parent = fields.String(required=True, validate=[validate.Length(min=1, max=64), PLAIN],
                           metadata={"description": "code of the parent unit", "example": "xiagang"})


class UnitUpdateSchema(Schema):
    name = fields.String(validate=[validate.Length(min=1, max=100), PLAIN])
    name_en = fields.String(validate=[validate.Length(max=100), PLAIN])
    active = fields.Boolean(metadata={"description": "false retires the unit (refused while it has active users, "
                                                     "active sub-units or open work)"})


class UserCreateSchema(Schema):
    username = fields.String(required=True, validate=[validate.Length(min=2, max=64), USERNAME],
                             metadata={"example": "dongyuan.grid"})
    display_name = fields.String(required=True, validate=[validate.Length(min=1, max=100), PLAIN])
    password = fields.String(required=True, load_only=True,
                             validate=validate.Length(min=MIN_PASSWORD, max=200,
                                                      error=PASSWORD_LENGTH))
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    unit = fields.String(required=True, validate=[validate.Length(min=1, max=64), PLAIN],
                         metadata={"description": "unit code; its kind must suit the role "
                                                  + ", ".join(f"{r}→{k}" for r, k in ROLE_UNIT_KIND.items())})


class UserUpdateSchema(Schema):
    display_name = fields.String(validate=[validate.Length(min=1, max=100), PLAIN])
    role = fields.String(validate=validate.OneOf(ROLES))
    unit = fields.String(validate=[validate.Length(min=1, max=64), PLAIN])
    active = fields.Boolean(metadata={"description": "false disables sign-in and revokes the user's tokens"})
    password = fields.String(load_only=True, validate=validate.Length(min=MIN_PASSWORD, max=200,
                                                                      error=PASSWORD_LENGTH),
                             metadata={"description": "a new password; revokes the user's tokens"})


class CategoryCreateSchema(Schema):
    code = fields.String(required=True, validate=[validate.Length(min=2, max=64), CODE],
                         metadata={"example": "noise"})
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), PLAIN],
                         metadata={"example": "噪音扰民"})
    name_en = fields.String(load_default="", validate=[validate.Length(max=100), PLAIN])


class CategoryUpdateSchema(Schema):
    name = fields.String(validate=[validate.Length(min=1, max=100), PLAIN])
    name_en = fields.String(validate=[validate.Length(max=100), PLAIN])
    active = fields.Boolean(metadata={"description": "false: new calls can no longer be filed in it"})


class ApiKeyCreateSchema(Schema):
    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), PLAIN],
                         metadata={"example": "open311-gateway"})
    user = fields.String(load_default=None, validate=[validate.Length(min=1, max=64), PLAIN],
                         metadata={"description": "who the key files calls as (a user who may file calls); "
                                                  "default: the district's first active hotline user"})


def _load(schema: Schema, data, *, changes: bool = False) -> dict:
    if not isinstance(data, dict):
        raise ValidationFailed(msg("expected a JSON object"), field_errors={"_schema": [msg("expected a JSON object")]})
    try:
        values = schema.load(data)
    except SchemaError as exc:
        msgs = {k: (v if isinstance(v, list) else [str(v)]) for k, v in exc.messages.items()}
        raise ValidationFailed("; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in msgs.items()),
                               field_errors=msgs) from None
    if changes and not values:
        fields_ = ", ".join(n for n, f in schema.fields.items() if not f.dump_only)
        raise ValidationFailed(msg("nothing to change: give at least one of %(fields)s", fields=fields_),
                               field_errors={"_schema": [msg("give at least one of %(fields)s", fields=fields_)]})
    return values


# ---- role and scope ---------------------------------------------------------------------------------
def parse_day(text: str) -> date:
    """A calendar override's day: ``YYYY-MM-DD`` between 2000 and 2100 (the calendar's sane range)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is None or len(text) != 10 or not 2000 <= day.year <= 2100:
        raise ValidationFailed(msg("not a day: %(text)s (YYYY-MM-DD, 2000-2100)", text=repr(text)),
                               field_errors={"day": [msg("a date as YYYY-MM-DD between 2000 and 2100")]})
    return day


def admin_district(ctx: ServiceContext) -> OrgUnit:
    """The district the acting admin manages; Forbidden for anyone else."""
    if ctx.user is None or ctx.user.role not in ADMIN_ROLES:
        raise Forbidden(msg("%(username)s is not an admin", username=ctx.actor))
    return district_of(ctx.user.unit)


def _in_scope(unit: OrgUnit, district: OrgUnit) -> bool:
    return district_of(unit).id == district.id


def _check_scope(unit: OrgUnit, district: OrgUnit, what: str) -> None:
    if not _in_scope(unit, district):
        raise Forbidden(msg("%(what)s belongs to %(owner)s; you administer %(district)s only", what=what,
                            owner=district_of(unit).code, district=district.code))


def scope_unit_ids(session: Session, district: OrgUnit) -> list[int]:
    """Ids of every unit in ``district`` (the org table is small and the tree at most three deep)."""
    return [u.id for u in session.scalars(select(OrgUnit)) if _in_scope(u, district)]


def _unit_by_code(session: Session, code: str) -> OrgUnit | None:
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code))


# ---- org units --------------------------------------------------------------------------------------
@dataclass
class UnitRow:
    unit: OrgUnit
    active_users: int


def _active_users(session: Session, unit_ids: list[int]) -> dict[int, int]:
    if not unit_ids:
        return {}
    return dict(session.execute(select(User.unit_id, func.count()).where(User.unit_id.in_(unit_ids),
                                                                         User.active.is_(True))
                                .group_by(User.unit_id)).all())


def list_units(ctx: ServiceContext, *, kind: str | None = None, parent: str | None = None,
               active: bool | None = None) -> list[UnitRow]:
    district = admin_district(ctx)
    session = ctx.session
    q = select(OrgUnit).where(OrgUnit.id.in_(scope_unit_ids(session, district)))
    if kind is not None:
        q = q.where(OrgUnit.kind == kind)
    if parent is not None:
        p = _unit_by_code(session, parent)
        if p is None:
            text = msg("unknown org unit '%(code)s'", code=parent)
            raise ValidationFailed(text, field_errors={"parent": [text]})
        q = q.where(OrgUnit.parent_id == p.id)
    if active is not None:
        q = q.where(OrgUnit.active.is_(active))
    units = list(session.scalars(q.order_by(OrgUnit.id)))
    counts = _active_users(session, [u.id for u in units])
    return [UnitRow(u, counts.get(u.id, 0)) for u in units]


def unit_row(session: Session, unit: OrgUnit) -> UnitRow:
    return UnitRow(unit, _active_users(session, [unit.id]).get(unit.id, 0))


def get_unit_admin(ctx: ServiceContext, code: str) -> OrgUnit:
    district = admin_district(ctx)
    unit = _unit_by_code(ctx.session, code)
    if unit is None:
        raise NotFound(msg("no org unit '%(code)s'", code=code))
    _check_scope(unit, district, msg("org unit '%(code)s'", code=code))
    return unit


def create_unit(ctx: ServiceContext, data: dict) -> OrgUnit:
    district = admin_district(ctx)
    values = _load(UnitCreateSchema(), data)
    session = ctx.session
    kind, code = values["kind"], values["code"]
    parent = _unit_by_code(session, values["parent"])
    if parent is None:
        text = msg("unknown org unit '%(code)s'", code=values["parent"])
        raise ValidationFailed(text, field_errors={"parent": [text]})
    _check_scope(parent, district, msg("org unit '%(code)s'", code=parent.code))
    want = PARENT_KIND[kind]
    if parent.kind != want:
        text = msg("a %(kind)s belongs under a %(parent_kind)s; '%(code)s' is a %(code_kind)s", kind=kind,
                   parent_kind=want, code=parent.code, code_kind=parent.kind)
        raise ValidationFailed(text, field_errors={"parent": [text]})
    if not parent.active:
        text = msg("'%(code)s' is inactive", code=parent.code)
        raise ValidationFailed(text, field_errors={"parent": [text]})
    if _unit_by_code(session, code) is not None:
        raise Conflict(msg("an org unit with code '%(code)s' already exists", code=code))
    unit = OrgUnit(code=code, name=values["name"], name_en=values["name_en"], kind=kind, parent=parent, active=True)
    session.add(unit)
    session.flush()
    record_audit(session, at=ctx.clock.now(), actor=ctx.actor, action="org.unit_created", subject=code,
                 new={"name": unit.name, "name_en": unit.name_en, "kind": kind, "parent": parent.code})
    return unit


def update_unit(ctx: ServiceContext, code: str, data: dict) -> OrgUnit:
    unit = get_unit_admin(ctx, code)
    values = _load(UnitUpdateSchema(), data, changes=True)
    session = ctx.session
    old = {k: getattr(unit, k) for k in values}
    if values.get("active") is False and unit.active:
        _check_may_retire(session, unit)
    if values.get("active") is True and not unit.active and unit.parent is not None and not unit.parent.active:
        raise Conflict(msg("'%(code)s' cannot be reactivated under '%(parent)s', which is inactive; "
                           "reactivate the parent first", code=code, parent=unit.parent.code))
    for k, v in values.items():
        setattr(unit, k, v)
    session.flush()
    record_audit(session, at=ctx.clock.now(), actor=ctx.actor, action="org.unit_updated", subject=code,
                 old=old, new=values)
    return unit


def _names(rows, n: int = 5) -> str:
    rows = list(rows)
    if len(rows) > n:
        return msg("%(names)s and %(n)s more", names=", ".join(rows[:n]), n=len(rows) - n)
    return ", ".join(rows)


def _check_may_retire(session: Session, unit: OrgUnit) -> None:
    users = list(session.scalars(select(User.username).where(User.unit_id == unit.id, User.active.is_(True))
                                 .order_by(User.username)))
    if users:
        raise Conflict(msg("'%(code)s' still has %(n)s active users (%(names)s): deactivate them or move them to "
                           "another unit first", code=unit.code, n=len(users), names=_names(users))
                       if len(users) > 1 else
                       msg("'%(code)s' still has %(n)s active user (%(names)s): deactivate them or move them to "
                           "another unit first", code=unit.code, n=len(users), names=_names(users)))
    children = list(session.scalars(select(OrgUnit.code).where(OrgUnit.parent_id == unit.id,
                                                               OrgUnit.active.is_(True)).order_by(OrgUnit.code)))
    if children:
        raise Conflict(msg("'%(code)s' still has active sub-units (%(names)s): deactivate them first",
                           code=unit.code, names=_names(children)))
    open_items = session.scalar(select(func.count()).select_from(WorkItem)
                                .where(WorkItem.owner_unit == unit.code, WorkItem.state == "open")) or 0
    if open_items:
        raise Conflict(msg("'%(code)s' still holds %(n)s open work items: finish or reassign them first",
                           code=unit.code, n=open_items) if open_items > 1 else
                       msg("'%(code)s' still holds %(n)s open work item: finish or reassign them first",
                           code=unit.code, n=open_items))


# ---- users ------------------------------------------------------------------------------------------
def _escape_like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_users(ctx: ServiceContext, *, role: str | None = None, unit: str | None = None,
               active: bool | None = None, q: str | None = None, limit: int = 50,
               offset: int = 0) -> tuple[int, list[User]]:
    district = admin_district(ctx)
    session = ctx.session
    cond = [User.unit_id.in_(scope_unit_ids(session, district))]
    if role is not None:
        cond.append(User.role == role)
    if unit is not None:
        u = _unit_by_code(session, unit)
        if u is None:
            text = msg("unknown org unit '%(code)s'", code=unit)
            raise ValidationFailed(text, field_errors={"unit": [text]})
        cond.append(User.unit_id == u.id)
    if active is not None:
        cond.append(User.active.is_(active))
    if q:
        like = _escape_like(q.lower())
        cond.append(or_(func.lower(User.username).like(like, escape="\\"),
                        func.lower(User.display_name).like(like, escape="\\")))
    total = session.scalar(select(func.count()).select_from(User).where(*cond)) or 0
    rows = list(session.scalars(select(User).where(*cond).order_by(User.username).limit(limit).offset(offset)))
    return total, rows


def get_user_admin(ctx: ServiceContext, username: str) -> User:
    """Any user of the admin's district, active or not."""
    district = admin_district(ctx)
    user = ctx.session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(msg("no user '%(username)s'", username=username))
    _check_scope(user.unit, district, msg("user '%(username)s'", username=username))
    return user


def _unit_for_user(session: Session, code: str, district: OrgUnit) -> OrgUnit:
    unit = _unit_by_code(session, code)
    if unit is None or not unit.active:
        text = msg("unknown or inactive org unit '%(code)s'", code=code)
        raise ValidationFailed(text, field_errors={"unit": [text]})
    _check_scope(unit, district, msg("org unit '%(code)s'", code=code))
    return unit


def _check_role_fits(role: str, unit: OrgUnit, field: str) -> None:
    want = ROLE_UNIT_KIND[role]
    if unit.kind != want:
        text = msg("a %(role)s belongs to a %(kind)s; '%(code)s' is a %(code_kind)s", role=role, kind=want,
                   code=unit.code, code_kind=unit.kind)
        raise ValidationFailed(text, field_errors={field: [text]})


def create_user(ctx: ServiceContext, data: dict) -> User:
    district = admin_district(ctx)
    values = _load(UserCreateSchema(), data)
    session = ctx.session
    unit = _unit_for_user(session, values["unit"], district)
    _check_role_fits(values["role"], unit, "role")
    username = values["username"]
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(msg("a user named '%(username)s' already exists", username=username))
    user = User(username=username, display_name=values["display_name"],
                password_hash=hash_password(values["password"]), role=values["role"], unit=unit, active=True)
    session.add(user)
    session.flush()
    record_audit(session, at=ctx.clock.now(), actor=ctx.actor, action="user.created", subject=username,
                 new={"display_name": user.display_name, "role": user.role, "unit": unit.code})
    return user


def update_user(ctx: ServiceContext, username: str, data: dict) -> tuple[User, int]:
    """Apply changes; returns the user and how many tokens were revoked (new password, (de)activation)."""
    district = admin_district(ctx)
    user = get_user_admin(ctx, username)
    values = _load(UserUpdateSchema(), data, changes=True)
    session = ctx.session
    if user.id == ctx.user.id and (values.get("active") is False or values.get("role", "admin") != "admin"):
        raise Conflict(msg("you cannot deactivate your own account or take away your own admin role; "
                           "ask another admin"))
    unit = _unit_for_user(session, values["unit"], district) if "unit" in values else user.unit
    role = values.get("role", user.role)
    if "unit" in values or "role" in values:
        _check_role_fits(role, unit, "role" if "role" in values else "unit")
    now = ctx.clock.now()
    old = {"display_name": user.display_name, "role": user.role, "unit": user.unit.code, "active": user.active}
    revoked = 0
    deactivating = values.get("active") is False and user.active
    reactivating = values.get("active") is True and not user.active
    if user.active and (deactivating or "password" in values):
        revoked = revoke_all(session, user.username, now=now, actor=ctx.actor)
    for k in ("display_name", "role", "active"):
        if k in values:
            setattr(user, k, values[k])
    user.unit = unit
    if "password" in values:
        user.password_hash = hash_password(values["password"])
    session.flush()
    if reactivating:  # tokens left from before the deactivation must not come back to life
        revoked += revoke_all(session, user.username, now=now, actor=ctx.actor)
    new = {k: v for k, v in values.items() if k != "password"}
    if "password" in values:
        new["password"] = "changed"
    record_audit(session, at=now, actor=ctx.actor, action="user.updated", subject=user.username,
                 old={k: old[k] for k in new if k in old}, new=new, detail={"tokens_revoked": revoked})
    return user, revoked


def revoke_user_tokens(ctx: ServiceContext, username: str) -> int:
    """Revoke every live sign-in token of a user (e.g. a lost phone); returns how many."""
    user = get_user_admin(ctx, username)
    now = ctx.clock.now()
    if user.active:
        return revoke_all(ctx.session, user.username, now=now, actor=ctx.actor)
    # workflows.auth.revoke_all looks up active users only; an inactive user's tokens are revoked here
    count = ctx.session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
                                                       ApiToken.expires_at > now).values(revoked_at=now)).rowcount
    record_audit(ctx.session, at=now, actor=ctx.actor, action="auth.revoke_all", subject=user.username,
                 new={"revoked": count})
    ctx.session.flush()
    return count


# ---- categories -------------------------------------------------------------------------------------
def list_categories(session: Session, *, active: bool | None = None) -> list[Category]:
    q = select(Category).order_by(Category.code)
    if active is not None:
        q = q.where(Category.active.is_(active))
    return list(session.scalars(q))


def create_category(ctx: ServiceContext, data: dict) -> Category:
    admin_district(ctx)
    values = _load(CategoryCreateSchema(), data)
    session = ctx.session
    if session.get(Category, values["code"]) is not None:
        raise Conflict(msg("a category with code '%(code)s' already exists", code=values["code"]))
    row = Category(code=values["code"], name=values["name"], name_en=values["name_en"], active=True)
    session.add(row)
    session.flush()
    record_audit(session, at=ctx.clock.now(), actor=ctx.actor, action="category.created", subject=row.code,
                 new={"name": row.name, "name_en": row.name_en})
    return row


def update_category(ctx: ServiceContext, code: str, data: dict) -> Category:
    admin_district(ctx)
    row = ctx.session.get(Category, code)
    if row is None:
        raise NotFound(msg("no category '%(code)s'", code=code))
    values = _load(CategoryUpdateSchema(), data, changes=True)
    old = {k: getattr(row, k) for k in values}
    for k, v in values.items():
        setattr(row, k, v)
    ctx.session.flush()
    record_audit(ctx.session, at=ctx.clock.now(), actor=ctx.actor, action="category.updated", subject=code,
                 old=old, new=values)
    return row


# ---- API keys ---------------------------------------------------------------------------------------
def list_keys(ctx: ServiceContext) -> list[ApiKey]:
    district = admin_district(ctx)
    ids = scope_unit_ids(ctx.session, district)
    return list(ctx.session.scalars(select(ApiKey).join(ApiKey.user).where(User.unit_id.in_(ids))
                                    .order_by(ApiKey.id)))


def issue_key(ctx: ServiceContext, data: dict) -> IssuedKey:
    """A new API key (shown once) filing calls as ``user`` (default: the district's hotline user)."""
    district = admin_district(ctx)
    values = _load(ApiKeyCreateSchema(), data)
    session = ctx.session
    if values["user"]:
        user = session.scalar(select(User).where(User.username == values["user"]))
        if user is None or not user.active:
            text = msg("no active user '%(username)s'", username=values["user"])
            raise ValidationFailed(text, field_errors={"user": [text]})
        _check_scope(user.unit, district, msg("user '%(username)s'", username=user.username))
    else:
        ids = scope_unit_ids(session, district)
        user = session.scalar(select(User).where(User.role == "hotline", User.active.is_(True),
                                                 User.unit_id.in_(ids)).order_by(User.id))
        if user is None:
            text = msg("no active hotline user in %(district)s to file calls as; name a user", district=district.code)
            raise ValidationFailed(text, field_errors={"user": [text]})
    if user.role not in FILING_ROLES:
        text = msg("%(username)s (%(role)s) cannot file calls; choose a user with one of the roles %(roles)s",
                   username=user.username, role=user.role, roles=", ".join(sorted(FILING_ROLES)))
        raise ValidationFailed(text, field_errors={"user": [text]})
    return create_api_key(session, values["name"], username=user.username, now=ctx.clock.now(), actor=ctx.actor)


def revoke_key(ctx: ServiceContext, key_id: int) -> ApiKey:
    district = admin_district(ctx)
    row = ctx.session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(msg("no API key %(id)s", id=key_id))
    _check_scope(row.user.unit, district, msg("API key %(id)s", id=key_id))
    return revoke_api_key(ctx.session, key_id, now=ctx.clock.now(), actor=ctx.actor)

