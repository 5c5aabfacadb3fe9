"""The actions of a call's life (domain.md §2), one named function each.

Each is :func:`workflows.calls.act_on_work_item` with that action: the same checks
(role and org unit, the task offers the action, the data's schema, the task's state)
and the same single step of the process, so a caller that knows what it wants to do
(a department system signing for its work, a script, a test) says so by name and
with typed arguments.  The web API and the UI, which offer whatever the diagram's
task offers, call :func:`~workflows.calls.act_on_work_item` directly.  Every function
takes the work item's id and returns the :class:`~workflows.calls.ActionOutcome`;
none commits.
"""
from __future__ import annotations

from collections.abc import Iterable

from .calls import ActionOutcome, act_on_work_item
from .context import ServiceContext

# ---- reported (呼叫): the community ----------------------------------------------------------------


def handle_in_community(ctx: ServiceContext, item_id: int, *, result: str,
                        evidence: Iterable[str] = ()) -> ActionOutcome:
    """社区先行处置: the community handled it itself; the call goes to verification."""
    return act_on_work_item(ctx, item_id, "handle", {"result": result, "evidence": list(evidence)})


def call_the_street(ctx: ServiceContext, item_id: int, *, reason: str) -> ActionOutcome:
    """呼叫街镇: the community cannot solve it and calls the street command centre."""
    return act_on_work_item(ctx, item_id, "call_street", {"reason": reason})


# ---- triage (待研判): the street command centre ------------------------------------------------------

def void(ctx: ServiceContext, item_id: int, *, reason: str) -> ActionOutcome:
    """作废: not a matter for the platform (a test call, no substance)."""
    return act_on_work_item(ctx, item_id, "void", {"reason": reason})


def merge(ctx: ServiceContext, item_id: int, *, into: str, note: str = "") -> ActionOutcome:
    """合并: the same matter as an earlier open call of this street (``into``: its number)."""
    return act_on_work_item(ctx, item_id, "merge", {"into": into, "note": note})


def handle_in_street(ctx: ServiceContext, item_id: int, *, note: str = "") -> ActionOutcome:
    """街镇自办: the street handles it itself."""
    return act_on_work_item(ctx, item_id, "handle", {"note": note})


def dispatch(ctx: ServiceContext, item_id: int, *, lead: str | None = None,
             assists: Iterable[str] | None = None, note: str = "") -> ActionOutcome:
    """派单: to a lead department and assisting ones, worked in parallel (none named: the routing table's)."""
    return act_on_work_item(ctx, item_id, "dispatch", {"lead": lead, "note": note,
                                                       "assists": None if assists is None else list(assists)})


def escalate(ctx: ServiceContext, item_id: int, *, reason: str) -> ActionOutcome:
    """上呼区级: the street cannot solve it; the district command centre coordinates."""
    return act_on_work_item(ctx, item_id, "escalate", {"reason": reason})


def report_street_done(ctx: ServiceContext, item_id: int, *, result: str,
                       evidence: Iterable[str] = ()) -> ActionOutcome:
    """街镇办结: the street's own handling is done; the call goes to verification."""
    return act_on_work_item(ctx, item_id, "done", {"result": result, "evidence": list(evidence)})


# ---- district (区级统筹) ------------------------------------------------------------------------------

def coordinate(ctx: ServiceContext, item_id: int, *, lead: str, assists: Iterable[str] = (),
               note: str = "") -> ActionOutcome:
    """区级统筹: a child ticket per department; the call closes when every child has."""
    return act_on_work_item(ctx, item_id, "coordinate", {"lead": lead, "assists": list(assists), "note": note})


# ---- dispatched (待签收) and in progress (办理中): the departments --------------------------------------

def sign(ctx: ServiceContext, item_id: int, *, note: str = "") -> ActionOutcome:
    """签收: the department accepts the work (there is no reject)."""
    return act_on_work_item(ctx, item_id, "sign", {"note": note})


def dispute(ctx: ServiceContext, item_id: int, *, reason: str) -> ActionOutcome:
    """争议 (e.g. 权属不清): flags the dispatch for the command centre; the clock keeps running."""
    return act_on_work_item(ctx, item_id, "dispute", {"reason": reason})


def record_first_contact(ctx: ServiceContext, item_id: int, *, note: str = "") -> ActionOutcome:
    """首次联系: the department has contacted the caller (a timestamp; the work goes on)."""
    return act_on_work_item(ctx, item_id, "contact", {"note": note})


def request_extension(ctx: ServiceContext, item_id: int, *, days: int, reason: str) -> ActionOutcome:
    """延期申请: asks the command centre for ``days`` more working days; work goes on meanwhile."""
    return act_on_work_item(ctx, item_id, "request_extension", {"days": days, "reason": reason})


def put_on_hold(ctx: ServiceContext, item_id: int, *, reason: str) -> ActionOutcome:
    """挂账: long engineering work; the clock is paused and counted apart."""
    return act_on_work_item(ctx, item_id, "hang", {"reason": reason})


def resume(ctx: ServiceContext, item_id: int, *, note: str = "") -> ActionOutcome:
    """Back from 挂账: the clock runs again, its deadline moved by the paused working time."""
    return act_on_work_item(ctx, item_id, "resume", {"note": note})


def report_done(ctx: ServiceContext, item_id: int, *, result: str, evidence: Iterable[str] = ()) -> ActionOutcome:
    """办结上报: the department's work (lead, assisting or added assistant) is done, with its result."""
    return act_on_work_item(ctx, item_id, "done", {"result": result, "evidence": list(evidence)})


# ---- the command centre's rulings ----------------------------------------------------------------

def confirm_dispatch(ctx: ServiceContext, item_id: int, *, assists: Iterable[str] = (),
                     note: str = "") -> ActionOutcome:
    """维持派单: the disputing department keeps the work, optionally with assisting units added."""
    return act_on_work_item(ctx, item_id, "confirm", {"assists": list(assists), "note": note})


def reassign(ctx: ServiceContext, item_id: int, *, department: str, note: str = "") -> ActionOutcome:
    """改派: the disputed work moves to ``department`` (counted against the dispatcher)."""
    return act_on_work_item(ctx, item_id, "reassign", {"department": department, "note": note})


def approve_extension(ctx: ServiceContext, item_id: int, *, note: str = "") -> ActionOutcome:
    """延期批准: the department's resolve deadline moves by the working days it asked for."""
    return act_on_work_item(ctx, item_id, "approve", {"note": note})


def refuse_extension(ctx: ServiceContext, item_id: int, *, reason: str) -> ActionOutcome:
    """延期驳回: the deadline stands."""
    return act_on_work_item(ctx, item_id, "refuse", {"reason": reason})


# ---- verify (核查) and feedback (回访) ------------------------------------------------------------

def verify(ctx: ServiceContext, item_id: int, *, passed: bool, reason: str = "", note: str = "") -> ActionOutcome:
    """核查: passed → the feedback call; failed (``reason`` required) → 返工, back to whoever did the work."""
    if passed:
        return act_on_work_item(ctx, item_id, "pass", {"note": note})
    return act_on_work_item(ctx, item_id, "fail", {"reason": reason})


def rate(ctx: ServiceContext, item_id: int, *, satisfaction: str, resolved: bool,
         comment: str = "") -> ActionOutcome:
    """回访: the caller's satisfaction; satisfied and resolved closes (办结销号), otherwise 重办."""
    return act_on_work_item(ctx, item_id, "rate", {"satisfaction": satisfaction, "resolved": resolved,
                                                   "comment": comment})


# each action of the process (workflows.actions.ACTIONS) and the function above that does it
BY_ACTION = {
    ("community_handle", "handle"): handle_in_community, ("community_handle", "call_street"): call_the_street,
    ("street_triage", "void"): void, ("street_triage", "merge"): merge, ("street_triage", "handle"): handle_in_street,
    ("street_triage", "dispatch"): dispatch, ("street_triage", "escalate"): escalate,
    ("street_handle", "done"): report_street_done, ("district_coordinate", "coordinate"): coordinate,
    ("sign", "sign"): sign, ("sign", "dispute"): dispute,
    ("resolve", "done"): report_done, ("resolve", "hang"): put_on_hold, ("resolve", "dispute"): dispute,
    ("resolve", "request_extension"): request_extension, ("resolve", "contact"): record_first_contact,
    ("on_hold", "resume"): resume, ("assist_work", "done"): report_done,
    ("rule_dispute", "confirm"): confirm_dispatch, ("rule_dispute", "reassign"): reassign,
    ("rule_extension", "approve"): approve_extension, ("rule_extension", "refuse"): refuse_extension,
    ("verify", "pass"): verify, ("verify", "fail"): verify, ("feedback", "rate"): rate,
}
