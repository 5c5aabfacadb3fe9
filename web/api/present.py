"""Domain objects -> the plain dicts the response schemas dump."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import url_for

from engine.models import SlaClock, WorkItem
from engine.sla import remaining_time
from workflows.actions import available_actions
from workflows.models import Attachment, Call, User
from workflows.org import may_act_on


def duration_text(td: timedelta) -> str:
    """'1d 3h 05m', '-2h 00m': whole minutes, days of 24 h."""
    sign = "-" if td.total_seconds() < 0 else ""
    minutes = int(abs(td.total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{days}d"] if days else []) + ([f"{hours}h"] if hours else []) + [f"{minutes:02d}m"]
    return sign + " ".join(parts)


def user_out(user: User) -> dict:
    return {"username": user.username, "display_name": user.display_name, "role": user.role,
            "unit": {"code": user.unit.code, "name": user.unit.name, "name_en": user.unit.name_en,
                     "kind": user.unit.kind}}


def deadline_out(dl) -> dict | None:
    if dl is None:
        return None
    return {"due_at": dl.due_at, "remaining_seconds": dl.remaining.total_seconds(),
            "remaining": duration_text(dl.remaining), "state": dl.state, "stage": dl.stage,
            "working_time": dl.working_time, "assumed_calendar": dl.assumed_calendar}


def item_out(wi: WorkItem, user: User | None = None, deadline=None) -> dict:
    actions = available_actions(wi) if wi.state == "open" else []
    return {"id": wi.id, "task_name": wi.task_name, "title": wi.title, "lane": wi.lane,
            "owner_unit": wi.owner_unit, "state": wi.state, "assignee": wi.assignee,
            "status": (wi.properties or {}).get("status"), "context": wi.context or {}, "actions": actions,
            "may_act": bool(user is not None and actions and may_act_on(user, wi.lane, wi.owner_unit)),
            "deadline": deadline_out(deadline), "created_at": wi.created_at, "closed_at": wi.closed_at,
            "closed_by": wi.closed_by, "action": wi.action}


def call_brief(call: Call) -> dict:
    """The fields of CallBriefSchema (no related rows to load)."""
    return {"number": call.number, "status": call.status, "level": call.level, "category_code": call.category_code,
            "description": call.description, "location": call.location, "urgency": call.urgency,
            "community_code": call.community_code, "street_code": call.street_code,
            "problem_ticket": call.problem_ticket, "reopen_count": call.reopen_count, "created_at": call.created_at}


def call_out(call: Call, overdue: bool | None = None) -> dict:
    return {**call_brief(call), "latitude": call.latitude, "longitude": call.longitude,
            "photos": list(call.photos or []), "reporter": call.reporter.username if call.reporter else None,
            "parent": call.parent.number if call.parent_id else None, "department_code": call.department_code,
            "merged_into": call.merged_into.number if call.merged_into_id else None,
            "handling_level": call.handling_level, "suggested_lead": call.suggested_lead,
            "suggested_assists": list(call.suggested_assists or []), "sla_class": call.sla_class,
            "rework_count": call.rework_count, "result": call.result, "satisfaction": call.satisfaction,
            "first_contact_at": call.first_contact_at, "overdue": overdue, "updated_at": call.updated_at,
            "closed_at": call.closed_at}


def clock_out(c: SlaClock, calendar, now: datetime) -> dict:
    remaining = remaining_time(c, calendar, now) if c.state == "running" else None
    return {"id": c.id, "stage": c.stage, "unit": c.unit, "round": c.round, "state": c.state, "outcome": c.outcome,
            "work_item_id": c.work_item_id, "started_at": c.started_at, "warn_at": c.warn_at, "due_at": c.due_at,
            "overdue_at": c.overdue_at, "warned_at": c.warned_at, "breached_at": c.breached_at,
            "stopped_at": c.stopped_at, "extension_days": c.extension_days, "paused_seconds": c.paused_seconds,
            "assumed_calendar": c.assumed_calendar,
            "remaining_seconds": remaining.total_seconds() if remaining is not None else None,
            "remaining": duration_text(remaining) if remaining is not None else None}


def attachment_out(a: Attachment) -> dict:
    return {"id": a.id, "url": url_for("attachments.attachment_file", attachment_id=a.id), "filename": a.filename,
            "content_type": a.content_type, "size": a.size, "purpose": a.purpose, "sha256": a.sha256,
            "uploaded_by": a.uploaded_by, "created_at": a.created_at}
