"""What the call pages show, in people's words: the filing form's checks, the org units a user may pick,
a call's timeline and where its process stands.  Used by :mod:`web.ui.calls`; no routes here."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import defusedxml.ElementTree as safe_et
from flask import g
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from engine.clock import SHANGHAI
from workflows.attachments import ALLOWED, MAX_FILES, Upload, sniff_type
from workflows.models import URGENCIES, Category, OrgUnit, User
from workflows.org import READ_ALL_ROLES, district_of
from workflows.queries import CallFilter

from . import labels

# ---- the org units and categories a user may choose ---------------------------------------------------


def categories() -> list[Category]:
    """Active categories by their shown name; "other" last."""
    rows = g.db.scalars(select(Category).where(Category.active.is_(True))).all()
    return sorted(rows, key=lambda c: (c.code == "other", labels.category_name(c.code)))


def _units(kind: str, parent_ids) -> list[OrgUnit]:
    if not parent_ids:
        return []
    return list(g.db.scalars(select(OrgUnit).where(OrgUnit.kind == kind, OrgUnit.active.is_(True),
                                                   OrgUnit.parent_id.in_(parent_ids)).order_by(OrgUnit.id)))


@dataclass
class Scope:
    """The streets, communities (by street) and departments a user may file for or filter on."""

    streets: list[OrgUnit] = field(default_factory=list)
    communities: dict[str, list[OrgUnit]] = field(default_factory=dict)  # street code -> its communities
    departments: list[OrgUnit] = field(default_factory=list)

    def community_codes(self) -> set[str]:
        return {c.code for units in self.communities.values() for c in units}


def scope_of(user: User) -> Scope:
    unit = user.unit
    if unit.kind == "community":
        return Scope([], {}, _units("department", [district_of(unit).id]))
    if unit.kind == "street":
        return Scope([unit], {unit.code: _units("community", [unit.id])}, _units("department", [district_of(unit).id]))
    district = district_of(unit)
    streets = _units("street", [district.id])
    communities = _units("community", [s.id for s in streets])
    by_street = {s.code: [c for c in communities if c.parent_id == s.id] for s in streets}
    return Scope(streets, by_street, _units("department", [district.id]))


# ---- the filing form ------------------------------------------------------------------------------

FIELD_HELP = {
    "category": _l("Choose a category from the list."),
    "description": _l("Describe the problem (at most 4000 characters)."),
    "location": _l("Say where it is (at most 200 characters)."),
    "urgency": _l("Choose normal or urgent."),
    "community": _l("Choose one of your communities."),
    "latitude": _l("Latitude is a number from -90 to 90; give both coordinates or neither."),
    "longitude": _l("Longitude is a number from -180 to 180; give both coordinates or neither."),
    "photos": _l("Photos must be JPEG, PNG, WebP or GIF images."),
}


def _text(form, name: str) -> str:
    return (form.get(name) or "").strip()


def _coordinate(raw: str, low: float, high: float) -> float | None:
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and low <= value <= high else None


def check_filing(form, user: User, scope: Scope, category_codes: set[str]) -> tuple[dict, dict[str, str]]:
    """(the service's input, {field: translated error}) from the posted form."""
    errors: dict[str, str] = {}
    values = {name: _text(form, name) for name in ("category", "description", "location", "urgency", "community",
                                                   "latitude", "longitude")}
    for name, value in values.items():
        if "\x00" in value:
            errors[name] = _("The text contains a character that cannot be stored.")
    if values["category"] not in category_codes:
        errors.setdefault("category", str(FIELD_HELP["category"]))
    if not values["description"] or len(values["description"]) > 4000:
        errors.setdefault("description", str(FIELD_HELP["description"]))
    if not values["location"] or len(values["location"]) > 200:
        errors.setdefault("location", str(FIELD_HELP["location"]))
    urgency = values["urgency"] or "normal"
    if urgency not in URGENCIES:
        errors.setdefault("urgency", str(FIELD_HELP["urgency"]))
    data = {"category": values["category"], "description": values["description"], "location": values["location"],
            "urgency": urgency}
    if user.unit.kind == "community":
        data["direct_to_street"] = form.get("direct_to_street") == "1"
    else:
        if values["community"] not in scope.community_codes():
            errors.setdefault("community", str(FIELD_HELP["community"]))
        data["community"] = values["community"]
    lat_raw, lon_raw = values["latitude"], values["longitude"]
    if lat_raw or lon_raw:
        lat, lon = _coordinate(lat_raw, -90, 90), _coordinate(lon_raw, -180, 180)
        if lat is None:
            errors.setdefault("latitude", str(FIELD_HELP["latitude"]))
        if lon is None:
            errors.setdefault("longitude", str(FIELD_HELP["longitude"]))
        data.update(latitude=lat, longitude=lon)
    return data, errors


def check_photos(files, max_bytes: int) -> tuple[list[Upload], str | None]:
    """The chosen photos (empty file inputs skipped), or a translated error naming the bad ones."""
    chosen = [f for f in files if f and f.filename]
    if len(chosen) > MAX_FILES:
        return [], _("Choose at most %(n)s photos.", n=MAX_FILES)
    uploads, problems = [], []
    for f in chosen:
        try:
            data = f.read(max_bytes + 1)
        finally:
            f.close()
        name = f.filename
        if not data:
            problems.append(_("%(name)s is empty.", name=name))
        elif len(data) > max_bytes:
            problems.append(_("%(name)s is larger than %(mb)s MB.", name=name, mb=f"{max_bytes / 1048576:g}"))
        elif sniff_type(data[:16]) not in ALLOWED["photo"]:
            problems.append(_("%(name)s is not a JPEG, PNG, WebP or GIF image.", name=name))
        uploads.append(Upload(name, data))
    if problems:
        return [], " ".join(problems) + " " + _("Choose the photos again.")
    return uploads, None


def service_errors(field_errors: dict) -> dict[str, str]:
    """The service's field errors (English, for machines) as the form's translated hints."""
    return {name: str(FIELD_HELP.get(name, _("Check this value."))) for name in field_errors}


# ---- the search form ------------------------------------------------------------------------------

SORT_CHOICES = {"-created_at": _l("Newest first"), "created_at": _l("Oldest first"),
                "-updated_at": _l("Recently changed"), "number": _l("By number")}
PER_PAGE = 20


def _day(raw: str) -> datetime | None:
    try:
        day = datetime.strptime(raw, "%Y-%m-%d")
    except ValueError:
        return None
    return day.replace(tzinfo=SHANGHAI)


def page_number(raw: str | None) -> int:
    try:
        return min(max(int(raw or 1), 1), 100000)
    except ValueError:
        return 1


def parse_search(args, user: User) -> tuple[CallFilter, dict[str, str]]:
    """A :class:`CallFilter` from the search form's query string; unusable values are errors, never a 500."""
    errors: dict[str, str] = {}
    raw = {k: (args.get(k) or "").strip() for k in ("q", "status", "level", "category", "street", "community",
                                                    "department", "overdue", "created_from", "created_to",
                                                    "sort")}
    for name, value in raw.items():
        if "\x00" in value or len(value) > 100:
            errors[name] = _("Check this value.")
            raw[name] = ""
    f = CallFilter(q=raw["q"] or None, category=raw["category"] or None, page=page_number(args.get("page")),
                   per_page=PER_PAGE, sort=raw["sort"] if raw["sort"] in SORT_CHOICES else "-created_at")
    if raw["status"] in labels.STATUS:
        f.status = [raw["status"]]
    elif raw["status"] == "open":
        f.status = [s for s in labels.STATUS if s not in ("closed", "voided", "merged")]
    if raw["level"] in labels.LEVEL:
        f.level = raw["level"]
    f.street = raw["street"] or None
    f.community = raw["community"] or None
    f.department = raw["department"] or None
    f.overdue = {"yes": True, "no": False}.get(raw["overdue"])
    for name in ("created_from", "created_to"):
        if raw[name]:
            day = _day(raw[name])
            if day is None:
                errors[name] = _("Enter a date as YYYY-MM-DD.")
            elif name == "created_from":
                f.created_from = day
            else:
                f.created_to = day + timedelta(days=1)  # the form's "to" day is inclusive
    if f.created_from and f.created_to and f.created_from >= f.created_to:
        errors["created_to"] = _("The end date is before the start date.")
    return f, errors


def searchable_filters(user: User) -> dict[str, bool]:
    """Which unit filters make sense for this user (a community sees only itself, and so on)."""
    kind = user.unit.kind
    return {"street": user.role in READ_ALL_ROLES or kind == "department",
            "community": kind != "community" and user.role != "hotline",
            "department": kind != "department" and user.role != "hotline"}


# ---- one call: the process position and the timeline ---------------------------------------------

_NAMES: dict[tuple[str, int], dict[str, str]] = {}
BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"


def element_names(process_id: str, version: int, xml: str) -> dict[str, str]:
    """BPMN element id -> its name ("中文 English"), read once per process version."""
    key = (process_id, version)
    if key not in _NAMES:
        root = safe_et.fromstring(xml.encode("utf-8"))
        _NAMES[key] = {el.get("id"): el.get("name") for el in root.iter() if el.get("id") and el.get("name")
                       and el.tag.startswith(BPMN) and not el.tag.endswith(("participant", "lane", "process",
                                                                               "collaboration"))}
    return _NAMES[key]


def element_label(element_id: str, names: dict[str, str]) -> str:
    return labels.task_label(element_id, names.get(element_id, element_id))


EVENT_TEXT = {
    "call.filed": _l("Call filed"),
    "event.sla_warning": _l("Deadline warning"),
    "event.sla_breach": _l("Deadline missed: reminder sent"),
    "event.sla_overdue": _l("Still overdue: formal supervision"),
    "supervision.urge": _l("Supervisor's reminder (催办)"),
    "supervision.supervise": _l("Supervisor's formal order (督办)"),
    "calendar.assumed": _l("Deadline set on an assumed working calendar"),
}
HIDDEN_EVENTS = {"process_started"}


@dataclass
class TimelineEntry:
    at: datetime
    actor: str
    text: str
    facts: list[tuple[str, str]]
    status_change: tuple[str, str] | None


def _facts(detail: dict, new: dict) -> list[tuple[str, str]]:
    facts = []

    def units(codes):
        return "、".join(labels.unit_name(c) for c in codes or [])

    if detail.get("unit"):
        facts.append((_("Unit"), labels.unit_name(detail["unit"])))
    for key, label in (("reason", _l("Reason")), ("note", _l("Note")), ("result", _l("Result")),
                       ("comment", _l("Comment"))):
        if detail.get(key):
            facts.append((str(label), str(detail[key])))
    if detail.get("days"):
        facts.append((_("Extra working days"), str(detail["days"])))
    if detail.get("lead"):
        facts.append((_("Lead department"), labels.unit_name(detail["lead"])))
    if detail.get("assists"):
        facts.append((_("Assisting departments"), units(detail["assists"])))
    if detail.get("department"):
        facts.append((_("Department"), labels.unit_name(detail["department"])))
    if detail.get("into"):
        facts.append((_("Merged into"), str(detail["into"])))
    if detail.get("satisfaction"):
        facts.append((_("Rating"), labels.FILTERS["satisfaction_label"](detail["satisfaction"])))
    if "resolved" in detail:
        facts.append((_("Resolved"), _("Yes") if detail["resolved"] else _("No")))
    routing = detail.get("routing") or {}
    if routing.get("lead"):
        facts.append((_("Suggested lead"), labels.unit_name(routing["lead"])))
    if routing.get("assists"):
        facts.append((_("Suggested assistants"), units(routing["assists"])))
    if new.get("child"):
        facts.append((_("Child ticket"), f'{new["child"]} · {labels.unit_name(new.get("department"))}'))
    return facts


def timeline(events) -> list[TimelineEntry]:
    """The audit trail of a call as people read it, newest first."""
    events = [e for e in events if e.action not in HIDDEN_EVENTS]
    actors = {e.actor for e in events}
    names = dict(g.db.execute(select(User.username, User.display_name).where(User.username.in_(actors))).all()) \
        if actors else {}
    system = {"scheduler": _("System (deadline clock)"), "system": _("System"), "calendar": _("System")}
    out = []
    for e in reversed(events):
        action = e.action
        if action in EVENT_TEXT:
            text = str(EVENT_TEXT[action])
        elif action == "call.child_opened":
            text = _("Child ticket opened")
        elif action.partition(".")[0] in labels.TASK:
            task, _dot, verb = action.partition(".")
            text = _("%(task)s: %(action)s", task=labels.task_label(task),
                     action=labels.FILTERS["action_label"](verb))
        else:
            text = action
        old, new = e.old or {}, e.new or {}
        change = None
        if old.get("status") and new.get("status") and old["status"] != new["status"]:
            change = (labels.FILTERS["status_label"](old["status"]), labels.FILTERS["status_label"](new["status"]))
        out.append(TimelineEntry(e.occurred_at, names.get(e.actor) or system.get(e.actor, e.actor), text,
                                 _facts(e.detail or {}, new), change))
    return out


CLOCK_STATE = {"running": _l("Running"), "paused": _l("Paused"), "stopped": _l("Stopped")}
CLOCK_OUTCOME = {"met": _l("Met the deadline"), "late": _l("Late"), "cancelled": _l("Cancelled")}


def clock_state(state: str | None) -> str:
    return str(CLOCK_STATE.get(state, state or ""))


def clock_outcome(outcome: str | None) -> str:
    return str(CLOCK_OUTCOME.get(outcome, outcome or ""))


def duplicate_reason(distance_m: float | None) -> str:
    if distance_m is not None:
        return _("%(m)s m away", m=f"{distance_m:.0f}")
    return _("Same community, similar address")
