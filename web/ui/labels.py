"""Domain values as people read them, in the page's language (Jinja filters shared by every UI page).

``{{ call.status|status_label }}``, ``{{ item.task_name|task_label }}``, ``{{ action|action_label }}``,
``{{ code|unit_name }}``, ``{{ code|category_name }}``, ``{{ moment|localtime }}``, ``{{ delta|duration }}``.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import g
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from jinja2 import pass_context
from sqlalchemy import select

from engine.clock import SHANGHAI
from workflows.models import Category, OrgUnit

STATUS = {"reported": _l("Reported"), "triage": _l("Awaiting triage"), "district": _l("District coordination"),
          "dispatched": _l("Awaiting sign-off"), "in_progress": _l("In progress"), "on_hold": _l("On hold"),
          "verify": _l("Awaiting verification"), "feedback": _l("Awaiting feedback call"), "closed": _l("Closed"),
          "voided": _l("Voided"), "merged": _l("Merged")}
LEVEL = {"community": _l("Community"), "street": _l("Street"), "district": _l("District")}
URGENCY = {"normal": _l("Normal"), "urgent": _l("Urgent")}
DEADLINE = {"normal": _l("On time"), "warning": _l("Warning"), "overdue": _l("Overdue"), "paused": _l("Paused")}
TASK = {"community_handle": _l("Community handling"), "street_triage": _l("Street triage"),
        "street_handle": _l("Street handles"), "district_coordinate": _l("District coordination"),
        "sign": _l("Sign for"), "resolve": _l("Resolve"), "on_hold": _l("On hold"),
        "rule_dispute": _l("Rule on dispute"), "rule_extension": _l("Rule on extension"),
        "assist_work": _l("Assist"), "verify": _l("Verify result"), "feedback": _l("Feedback call")}
STAGE = {"community_handle": _l("Community handling"), "triage": _l("Triage"), "sign": _l("Sign for"),
         "resolve": _l("Resolve"), "verify": _l("Verify"), "feedback": _l("Feedback call"),
         "district_coordinate": _l("District coordination")}
ACTION = {"handle": _l("Handle"), "call_street": _l("Call the street"), "void": _l("Void"),
          "merge": _l("Merge into an earlier call"), "dispatch": _l("Dispatch to departments"),
          "escalate": _l("Escalate to the district"), "done": _l("Report done"), "coordinate": _l("Coordinate"),
          "sign": _l("Sign for"), "dispute": _l("Flag a dispute"), "hang": _l("Put on hold"),
          "request_extension": _l("Request an extension"), "contact": _l("Record first contact"),
          "resume": _l("Resume"), "confirm": _l("Confirm the department"), "reassign": _l("Reassign"),
          "approve": _l("Approve"), "refuse": _l("Refuse"), "pass": _l("Pass"), "fail": _l("Fail: rework"),
          "rate": _l("Record the rating")}
SATISFACTION = {"satisfied": _l("Satisfied"), "basically_satisfied": _l("Basically satisfied"),
                "unsatisfied": _l("Unsatisfied")}


def _english() -> bool:
    locale = get_locale()
    return locale is not None and locale.language == "en"


def _pick(table, value):
    return str(table[value]) if value in table else (value or "")


def _names(model, key) -> dict[str, tuple[str, str]]:
    """code -> (name, name_en), read once per request."""
    cache = g.setdefault("_ui_names", {})
    if key not in cache:
        cache[key] = {code: (name, name_en) for code, name, name_en in g.db.execute(
            select(model.code, model.name, model.name_en))}
    return cache[key]


def unit_name(code: str | None) -> str:
    if not code:
        return ""
    name, name_en = _names(OrgUnit, "units").get(code, (code, ""))
    return (name_en or name) if _english() else name


def category_name(code: str | None) -> str:
    if not code:
        return ""
    name, name_en = _names(Category, "categories").get(code, (code, ""))
    return (name_en or name) if _english() else name


def task_label(task_name: str | None, title: str | None = None) -> str:
    if task_name in TASK:
        return str(TASK[task_name])
    # a task of a newer diagram: its BPMN name is "中文 English"
    zh, _, en = (title or task_name or "").partition(" ")
    return (en or zh) if _english() else zh


def localtime(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(SHANGHAI).strftime(fmt) if moment is not None else ""


def duration(delta: timedelta | float | None) -> str:
    from web.api.present import duration_text

    if delta is None:
        return ""
    return duration_text(delta if isinstance(delta, timedelta) else timedelta(seconds=delta))


def status_label(value: str | None) -> str:
    return _pick(STATUS, value)


def level_label(value: str | None) -> str:
    return _pick(LEVEL, value)


def urgency_label(value: str | None) -> str:
    return _pick(URGENCY, value)


def deadline_label(value: str | None) -> str:
    return _pick(DEADLINE, value)


def stage_label(value: str | None) -> str:
    return _pick(STAGE, value)


def action_label(value: str | None) -> str:
    return _pick(ACTION, value)


def satisfaction_label(value: str | None) -> str:
    return _pick(SATISFACTION, value)


FILTERS = {
    "status_label": status_label, "level_label": level_label, "urgency_label": urgency_label,
    "deadline_label": deadline_label, "stage_label": stage_label, "action_label": action_label,
    "satisfaction_label": satisfaction_label, "task_label": task_label, "unit_name": unit_name,
    "category_name": category_name, "localtime": localtime, "duration": duration,
}


def _per_render(fn):
    """Evaluate at render time: Jinja would fold ``{{ "overdue"|deadline_label }}`` into the compiled
    template in whichever language rendered it first."""
    @pass_context
    def filter_(_context, *args, **kwargs):
        return fn(*args, **kwargs)
    return filter_


def register(app) -> None:
    app.jinja_env.filters.update({name: _per_render(fn) for name, fn in FILTERS.items()})
