"""The ``huying`` command line: database, demo, server, BPMN deployment, calls, work, clock.

Every command is one transaction: it commits on success and rolls back on any
error, printing a one-line message and exiting non-zero (exit codes below).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime

import click

from config.settings import SettingsError, load_settings
from engine.clock import SHANGHAI, parse_duration
from engine.errors import (
    Conflict,
    EngineError,
    Forbidden,
    InvalidDefinition,
    NotFound,
    ProcessError,
    ValidationFailed,
)

EXIT = {ValidationFailed: 3, Forbidden: 4, NotFound: 5, Conflict: 6, InvalidDefinition: 7, ProcessError: 8}


def _fail(message: str, code: int):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class AppState:
    def __init__(self):
        self._services = None

    @property
    def services(self):
        if self._services is None:
            from .bootstrap import build_services

            try:
                self._services = build_services(load_settings())
            except SettingsError as exc:
                _fail(str(exc), 9)
            ctx = click.get_current_context(silent=True)
            if ctx is not None:
                ctx.find_root().call_on_close(self._services.engine.dispose)
        return self._services


pass_state = click.make_pass_decorator(AppState, ensure=True)


@contextmanager
def _errors():
    """Turn engine errors into a one-line message and an exit code."""
    try:
        yield
    except EngineError as exc:
        detail = "".join(f"\n  {k}: {' '.join(map(str, v))}" for k, v in exc.field_errors.items())
        _fail(exc.message + detail, next((c for cls, c in EXIT.items() if isinstance(exc, cls)), 1))


@contextmanager
def transaction(state: AppState):
    session = state.services.session_factory()
    try:
        with _errors():
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
    finally:
        session.close()


def _context(state: AppState, session, username: str):
    from workflows.context import ServiceContext
    from workflows.org import get_user

    return ServiceContext(session, state.services.clock, get_user(session, username), sla=state.services.sla)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(SHANGHAI).isoformat(timespec="seconds") if value else None


def _echo(obj, as_json: bool, text: Callable[[], str]):
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2) if as_json else text())


@click.group()
def main():
    """Huying (呼应): BPMN dispatch for 有呼必应 citizen-call routing."""


# ---- db / demo / serve -------------------------------------------------------------------------
@main.group()
def db():
    """Database schema."""


@db.command("upgrade")
@pass_state
def db_upgrade(state: AppState):
    """Apply all migrations (creates the database when missing)."""
    from .bootstrap import upgrade_database

    upgrade_database(state.services)
    click.echo("database is up to date")


@main.group()
def demo():
    """The demo district."""


@demo.command("load")
@click.option("--if-empty", is_flag=True, help="Do nothing (and succeed) when the database already has data.")
@pass_state
def demo_load(state: AppState, if_empty: bool):
    """Load the Huangpu-like demo district into an empty database."""
    from workflows.demo import database_is_empty, load_demo

    s = state.services.settings
    with transaction(state) as session:
        if not database_is_empty(session):
            if if_empty:
                click.echo("database already has an org tree; demo not loaded")
                return
            _fail("the database already has an org tree; the demo loads into an empty database only", 6)
        summary = load_demo(session, s.demo_file, s.bpmn_dir, at=state.services.clock.now(),
                            sla_policy_file=s.sla_policy_file)
    click.echo(f"demo district loaded: {summary.units} org units, {summary.users} users "
               f"(password huying-demo), {summary.categories} categories; deployed {', '.join(summary.deployed)}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--no-scheduler", is_flag=True, help="Do not run the scheduler in this process.")
@pass_state
def serve(state: AppState, host: str, port: int, no_scheduler: bool):
    """Serve the web app (development server) with the scheduler."""
    from .app import create_app
    from .scheduler import start_scheduler

    services = state.services
    app = create_app(services=services)
    if not no_scheduler:
        start_scheduler(services)
    click.echo(f"Huying serving on http://{host}:{port} (clock: {services.settings.clock})")
    app.run(host=host, port=port, use_reloader=False, threaded=True)


# ---- bpmn ----------------------------------------------------------------------------------------
@main.group()
def bpmn():
    """Process definitions (BPMN diagrams and DMN routing tables)."""


@bpmn.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def bpmn_validate(files):
    """Check files without deploying them."""
    from engine.definitions import parse_bundle, read_files

    try:
        parsed = parse_bundle(read_files(list(files)))
    except InvalidDefinition as exc:
        _fail(exc.message, 7)
    click.echo(f"valid: {', '.join(parsed)}")


@bpmn.command("deploy")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--note", default="", help="Why this version (shown in the version list).")
@click.option("--user", "username", default="admin", show_default=True)
@pass_state
def bpmn_deploy(state: AppState, files, note: str, username: str):
    """Deploy a new version of the processes in FILES (BPMN plus the DMN tables they call)."""
    from engine.definitions import deploy, read_files

    with transaction(state) as session:
        ctx = _context(state, session, username)
        if ctx.user.role != "admin":
            raise Forbidden(f"{username} is not an admin")
        results = deploy(session, read_files(list(files)), at=state.services.clock.now(), actor=username, note=note)
    for r in results:
        click.echo(f"{r.process_id}: version {r.version}" + ("" if r.created else " (unchanged, not redeployed)"))


@bpmn.command("list")
@pass_state
def bpmn_list(state: AppState):
    """List deployed versions."""
    from engine.definitions import list_definitions

    with transaction(state) as session:
        for d in list_definitions(session):
            click.echo(f"{d.process_id} v{d.version}  {d.sha256[:12]}  {_iso(d.deployed_at)}  {d.deployed_by}  "
                       f"{', '.join(sorted(d.files))}  {d.note}")


# ---- calls ---------------------------------------------------------------------------------------
@main.group()
def call():
    """Citizen calls (tickets)."""


@call.command("file")
@click.option("--user", "username", required=True, help="Who files it (a grid worker, usually).")
@click.option("--category", required=True)
@click.option("--description", required=True)
@click.option("--location", required=True)
@click.option("--urgency", default="normal", show_default=True)
@click.option("--community", default=None, help="Required when a street dispatcher files.")
@click.option("--direct", "direct_to_street", is_flag=True, help="Call the street directly (skip community handling).")
@click.option("--photo", "photos", multiple=True, help="Photo reference (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def call_file(state: AppState, username, as_json, **fields):
    """File a call."""
    from workflows.calls import file_call

    data = {k: v for k, v in fields.items() if v is not None}
    data["photos"] = list(fields["photos"])
    with transaction(state) as session:
        c = file_call(_context(state, session, username), data)
        out = {"number": c.number, "status": c.status, "level": c.level}
    _echo(out, as_json, lambda: f"{out['number']} filed: {out['status']} at {out['level']} level")


def _duration(td) -> str:
    sign = "-" if td.total_seconds() < 0 else ""
    minutes = int(abs(td.total_seconds()) // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = ([f"{days}d"] if days else []) + ([f"{hours}h"] if hours else []) + [f"{minutes:02d}m"]
    return sign + "".join(parts)


def _deadline_dict(dl):
    if dl is None:
        return None
    return {"due_at": _iso(dl.due_at), "remaining_minutes": int(dl.remaining.total_seconds() // 60),
            "remaining": _duration(dl.remaining) + (" working" if dl.working_time else ""), "state": dl.state,
            "beyond_calendar_data": dl.assumed_calendar}


def _deadline_text(d) -> str:
    if not d:
        return ""
    flag = {"warning": " ⚠预警", "overdue": " ⛔超时", "paused": " ⏸挂账"}.get(d["state"], "")
    return f"  due {d['due_at']} ({d['remaining']}){flag}" + ("  [beyond calendar data]" if d["beyond_calendar_data"] else "")


def _item_dict(wi, actions=None, deadline=None):
    return {"id": wi.id, "task": wi.task_name, "title": wi.title, "lane": wi.lane, "unit": wi.owner_unit,
            "created_at": _iso(wi.created_at), "actions": actions, "context": wi.context,
            "deadline": _deadline_dict(deadline)}


@call.command("show")
@click.argument("number")
@click.option("--user", "username", default="admin", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def call_show(state: AppState, number, username, as_json):
    """A call's state, level, open work items and timeline."""
    from workflows.actions import available_actions
    from workflows.calls import show_call

    with transaction(state) as session:
        v = show_call(_context(state, session, username), number)
        c = v.call
        out = {"number": c.number, "category": c.category_code, "status": c.status, "level": c.level,
               "urgency": c.urgency, "community": c.community_code, "street": c.street_code,
               "description": c.description, "location": c.location, "problem_ticket": c.problem_ticket,
               "reopen_count": c.reopen_count, "rework_count": c.rework_count, "satisfaction": c.satisfaction,
               "result": c.result, "created_at": _iso(c.created_at), "closed_at": _iso(c.closed_at),
               "merged_into": c.merged_into.number if c.merged_into else None,
               "parent": c.parent.number if c.parent else None,
               "children": [{"number": ch.number, "department": ch.department_code, "status": ch.status}
                            for ch in v.children],
               "open_items": [_item_dict(wi, available_actions(wi), v.deadlines.get(wi.id)) for wi in v.open_items],
               "sla_clocks": [{"stage": k.stage, "unit": k.unit, "round": k.round, "state": k.state,
                               "outcome": k.outcome, "target": f"{k.target_amount:g} {k.target_kind}",
                               "warn_at": _iso(k.warn_at), "due_at": _iso(k.due_at),
                               "warned": k.warned_at is not None, "breached": k.breached_at is not None,
                               "supervised": k.overdue_fired_at is not None} for k in v.clocks],
               "timeline": [{"at": _iso(e.occurred_at), "actor": e.actor, "action": e.action,
                             "old": e.old, "new": e.new} for e in v.timeline]}

    def text():
        lines = [f"{out['number']}  {out['category']}  status={out['status']}  level={out['level']}"
                 + ("  问题工单" if out["problem_ticket"] else ""),
                 f"  {out['description']} @ {out['location']}"]
        for ch in out["children"]:
            lines.append(f"  child {ch['number']}  {ch['department']}  {ch['status']}")
        lines.append("open work items:" if out["open_items"] else "open work items: none")
        for wi in out["open_items"]:
            lines.append(f"  #{wi['id']}  {wi['title']}  [{wi['lane']} / {wi['unit']}]  actions: "
                         f"{', '.join(wi['actions'])}{_deadline_text(wi['deadline'])}")
        if out["sla_clocks"]:
            lines.append("SLA clocks:")
        for k in out["sla_clocks"]:
            marks = "".join(m for m, on in (("  预警", k["warned"]), ("  催办", k["breached"]),
                                            ("  督办", k["supervised"])) if on)
            lines.append(f"  {k['stage']:<20} {k['unit']:<12} {k['target']:<18} due {k['due_at']}  "
                         f"{k['state']}{'/' + k['outcome'] if k['outcome'] else ''}{marks}")
        lines.append("timeline:")
        for e in out["timeline"]:
            change = ""
            if e["old"] and e["new"] and e["old"] != e["new"]:
                change = f"  {e['old'].get('status')} → {e['new'].get('status')}"
            lines.append(f"  {e['at']}  {e['actor']:<22} {e['action']}{change}")
        return "\n".join(lines)

    _echo(out, as_json, text)


# ---- work ----------------------------------------------------------------------------------------
@main.group()
def work():
    """Work items (human tasks)."""


@work.command("list")
@click.option("--user", "username", required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def work_list(state: AppState, username, as_json):
    """The work items USER may act on now."""
    from workflows.calls import my_work

    with transaction(state) as session:
        entries = my_work(_context(state, session, username))
        out = [{**_item_dict(e.item, e.actions, e.deadline), "call": e.call.number, "category": e.call.category_code,
                "call_status": e.call.status} for e in entries]

    def text():
        if not out:
            return "no open work items"
        return "\n".join(f"#{r['id']:<6} {r['call']}  {r['title']}  ({r['category']})  actions: "
                         f"{', '.join(r['actions'])}{_deadline_text(r['deadline'])}" for r in out)

    _echo(out, as_json, text)


@work.command("do")
@click.argument("item", type=int)
@click.argument("action")
@click.option("--data", default="{}", help='Action data as a JSON object, e.g. \'{"lead": "water"}\'.')
@click.option("--user", "username", required=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def work_do(state: AppState, item, action, data, username, as_json):
    """Do ACTION on work item ITEM."""
    from workflows.calls import act_on_work_item

    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        _fail(f"--data is not valid JSON: {exc.msg} (column {exc.colno})", 3)
    from workflows.transactions import run_in_transaction

    def act(session):
        r = act_on_work_item(_context(state, session, username), item, action, payload)
        return {"call": r.call.number, "status": r.call.status, "level": r.call.level,
                "opened": [_item_dict(wi) for wi in r.opened]}

    with _errors():
        out = run_in_transaction(state.services.session_factory, act)
    _echo(out, as_json, lambda: f"{out['call']}: {action} done → status {out['status']}, level {out['level']}"
          + "".join(f"\n  new #{o['id']} {o['title']} → {o['unit']}" for o in out["opened"]))


# ---- clock ---------------------------------------------------------------------------------------
@main.group()
def clock():
    """The virtual clock (HUYING_CLOCK=virtual)."""


def _virtual(state: AppState):
    c = state.services.clock
    if not getattr(c, "virtual", False):
        _fail("the clock is the wall clock; set HUYING_CLOCK=virtual to move time", 3)
    return c


@clock.command("show")
@pass_state
def clock_show(state: AppState):
    click.echo(_iso(state.services.clock.now()))


@clock.command("set")
@click.argument("when")
@pass_state
def clock_set(state: AppState, when):
    """Set virtual time to WHEN (ISO 8601; no offset means Asia/Shanghai)."""
    try:
        value = datetime.fromisoformat(when)
    except ValueError:
        _fail(f"not an ISO 8601 time: {when!r} (example: 2026-10-12T09:00)", 3)
    try:
        click.echo(_iso(_virtual(state).set(value)))
    except ValueError as exc:
        _fail(str(exc), 3)


@clock.command("advance")
@click.argument("duration")
@pass_state
def clock_advance(state: AppState, duration):
    """Move virtual time forward by DURATION (90m, 2h, 3d, PT2H)."""
    try:
        delta = parse_duration(duration)
        click.echo(_iso(_virtual(state).advance(delta)))
    except ValueError as exc:
        _fail(str(exc), 3)


# ---- scheduler -----------------------------------------------------------------------------------
@main.command()
@pass_state
def scheduler(state: AppState):
    """Run the scheduler alone (deployments with several web workers run one or two of these)."""
    from .scheduler import start_scheduler

    s = state.services.settings
    click.echo(f"Huying scheduler: sweeping every {s.scheduler_interval_seconds:g}s (clock: {s.clock})")
    start_scheduler(state.services, blocking=True)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_state
def sweep(state: AppState, as_json: bool):
    """Run every sweep once now: fire what is due (handy with the virtual clock)."""
    from .scheduler import sweep_once

    out = sweep_once(state.services)
    _echo(out, as_json, lambda: f"fired {out['fire_due_sla_clocks']} SLA events, "
                                f"advanced {out['fire_due_timers']} timers, "
                                f"delivered {out.get('deliver_webhooks', 0)} webhooks")


# ---- calendar ------------------------------------------------------------------------------------
@main.group()
def calendar():
    """The business calendar (office hours, holidays, 调休 make-up workdays, overrides)."""


def _parse_moment(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"not an ISO 8601 time: {text!r} (example: 2026-09-30T17:00)", 3)
    return value if value.tzinfo else value.replace(tzinfo=SHANGHAI)


@calendar.command("due")
@click.option("--from", "start", required=True, help="Start (ISO 8601; no offset means Asia/Shanghai).")
@click.option("--working-hours", type=float)
@click.option("--working-days", type=int)
@click.option("--wall-hours", type=float)
@pass_state
def calendar_due(state: AppState, start, working_hours, working_days, wall_hours):
    """Print the deadline of a target, to check the calendar by hand."""
    from engine.calendar import CalendarError, Target

    given = [(k, v) for k, v in (("working_hours", working_hours), ("working_days", working_days),
                                 ("wall_hours", wall_hours)) if v is not None]
    if len(given) != 1:
        _fail("give exactly one of --working-hours, --working-days, --wall-hours", 3)
    moment = _parse_moment(start)
    with transaction(state) as session:
        cal = state.services.sla.calendars.get(session, fresh=True)
    try:
        deadline = cal.deadline(moment, Target(*given[0]))
    except CalendarError as exc:
        _fail(str(exc), 3)
    click.echo(_iso(deadline.due))
    if deadline.assumed:
        click.echo(f"warning: {', '.join(d.isoformat() for d in deadline.assumed[:5])}"
                   f"{' …' if len(deadline.assumed) > 5 else ''} are beyond the official holiday data; "
                   "weekdays were assumed to be workdays — add overrides with `huying calendar set`", err=True)


@calendar.command("set")
@click.argument("day")
@click.option("--workday/--holiday", "workday", required=True, help="What the day is.")
@click.option("--note", default="")
@click.option("--user", "username", default="admin", show_default=True)
@pass_state
def calendar_set(state: AppState, day, workday, note, username):
    """Override one day (e.g. from the State Council's notice for next year); recomputes open deadlines."""
    from datetime import date as date_cls

    from engine.sla import set_override

    try:
        d = date_cls.fromisoformat(day)
    except ValueError:
        _fail(f"not a date: {day!r} (example: 2027-02-06)", 3)
    with transaction(state) as session:
        ctx = _context(state, session, username)
        if ctx.user.role != "admin":
            raise Forbidden(f"{username} is not an admin")
        set_override(session, d, workday, actor=username, at=state.services.clock.now(), note=note)
        n = state.services.sla.recompute_open(session)
    click.echo(f"{d.isoformat()} is now a {'workday' if workday else 'holiday'}; recomputed {n} open deadlines")


@calendar.command("unset")
@click.argument("day")
@click.option("--user", "username", default="admin", show_default=True)
@pass_state
def calendar_unset(state: AppState, day, username):
    """Remove an override."""
    from datetime import date as date_cls

    from engine.sla import set_override

    with transaction(state) as session:
        ctx = _context(state, session, username)
        if ctx.user.role != "admin":
            raise Forbidden(f"{username} is not an admin")
        set_override(session, date_cls.fromisoformat(day), None, actor=username, at=state.services.clock.now())
        n = state.services.sla.recompute_open(session)
    click.echo(f"override of {day} removed; recomputed {n} open deadlines")


@calendar.command("status")
@pass_state
def calendar_status(state: AppState):
    """Overrides, the years the official data covers, and open deadlines resting on assumptions."""
    from sqlalchemy import func, select

    from engine.calendar import PACKAGE_YEARS
    from engine.models import CalendarOverride, SlaClock

    with transaction(state) as session:
        rows = session.scalars(select(CalendarOverride).order_by(CalendarOverride.day)).all()
        assumed = session.scalar(select(func.count()).select_from(SlaClock).where(
            SlaClock.assumed_calendar.is_(True), SlaClock.state.in_(("running", "paused"))))
    click.echo(f"official holiday data: {PACKAGE_YEARS[0]}–{PACKAGE_YEARS[1]} (chinesecalendar)")
    for r in rows:
        click.echo(f"  {r.day.isoformat()}  {'workday' if r.workday else 'holiday'}  {r.note}  ({r.set_by})")
    if assumed:
        click.echo(f"WARNING: {assumed} open deadlines fall beyond the official data and assume weekdays are "
                   "workdays; enter the overrides for those dates (`huying calendar set`)")


# ---- SLA policy ----------------------------------------------------------------------------------
@main.group()
def sla():
    """The SLA policy (targets per stage, category/class and urgency)."""


@sla.command("show")
@pass_state
def sla_show(state: AppState):
    from engine.sla import latest_policy

    with transaction(state) as session:
        row = latest_policy(session)
        if row is None:
            _fail("no SLA policy deployed", 5)
        click.echo(f"SLA policy v{row.version} ({_iso(row.deployed_at)}, {row.deployed_by}) "
                   f"warn at {row.rules['warn_ratio']:.0%}, 督办 {row.rules['overdue_working_days']} working days "
                   "after a breach")
        for rule in row.rules["rules"]:
            (kind, amount), = rule["target"].items()
            match = ", ".join(f"{k}={v}" for k, v in rule["match"].items())
            click.echo(f"  {match:<45} {amount:g} {kind}  {rule.get('note', '')}")


@sla.command("deploy")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--note", default="")
@click.option("--user", "username", default="admin", show_default=True)
@pass_state
def sla_deploy(state: AppState, file, note, username):
    """Deploy a new SLA policy version (new clocks use it; running clocks keep theirs)."""
    from pathlib import Path

    from engine.sla import deploy_policy

    try:
        document = json.loads(Path(file).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        _fail(f"{file}: not valid JSON: {exc.msg} (line {exc.lineno})", 3)
    with transaction(state) as session:
        ctx = _context(state, session, username)
        if ctx.user.role != "admin":
            raise Forbidden(f"{username} is not an admin")
        row = deploy_policy(session, document, at=state.services.clock.now(), actor=username, note=note)
    click.echo(f"SLA policy: version {row.version}")


# ---- reports -------------------------------------------------------------------------------------
@main.group()
def report():
    """Performance reports."""


def _pct(value):
    return "—" if value is None else f"{value:.0%}"


@report.command("ranking")
@click.option("--month", required=True, help="YYYY-MM")
@click.option("--kind", type=click.Choice(["department", "street"]), default="department", show_default=True)
@click.option("--top", default=3, show_default=True, help="How many units on each list.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def report_ranking(state: AppState, month, kind, top, as_json):
    """On-time sign/resolve rates, close rate, satisfaction, rework, overtime, and the 红黑榜."""
    from workflows.metrics import monthly_ranking

    with transaction(state) as session:
        try:
            r = monthly_ranking(session, month, kind, now=state.services.clock.now(),
                                calendar=state.services.sla.calendars.get(session), top=top)
        except ValueError as exc:
            _fail(str(exc), 3)
    out = {"month": r.month, "kind": r.kind, "units": [u.as_dict() for u in r.units],
           "red": [u.unit for u in r.red], "black": [u.unit for u in r.black]}

    def text():
        lines = [f"{r.month} {'部门' if kind == 'department' else '街镇'} ranking",
                 f"{'unit':<16}{'score':>7}{'sign':>7}{'resolve':>9}{'close':>7}{'satisf.':>9}{'rework':>8}"
                 f"{'overtime':>10}{'overdue':>9}"]
        for u in r.units:
            lines.append(f"{u.unit:<16}{'—' if u.score is None else u.score:>7}{_pct(u.on_time_sign):>7}"
                         f"{_pct(u.on_time_resolve):>9}{_pct(u.close_rate):>7}{_pct(u.satisfaction):>9}"
                         f"{_pct(u.rework_rate):>8}"
                         f"{'—' if u.overtime_factor is None else f'{u.overtime_factor:.2f}x':>10}{u.overdue:>9}"
                         + (f"  ⚑ {'; '.join(u.flags)}" if u.flags else ""))
        lines.append("红榜 red list:   " + (", ".join(f"{u.unit} {u.name}" for u in r.red) or "—"))
        lines.append("黑榜 black list: " + (", ".join(f"{u.unit} {u.name}" for u in r.black) or "—"))
        return "\n".join(lines)

    _echo(out, as_json, text)


# ---- API keys ------------------------------------------------------------------------------------
@main.group()
def apikey():
    """Integrators' API keys (the Open311 ``api_key``; each files calls as one user)."""


def _as_admin(state: AppState, session, username: str):
    ctx = _context(state, session, username)
    if ctx.user.role != "admin":
        raise Forbidden(f"{username} is not an admin")
    return ctx


def _key_dict(row) -> dict:
    return {"id": row.id, "name": row.name, "prefix": row.prefix, "user": row.user.username,
            "created_at": _iso(row.created_at), "created_by": row.created_by, "revoked_at": _iso(row.revoked_at)}


@apikey.command("create")
@click.option("--name", required=True, help="Who the key is for (unique), e.g. the app's name.")
@click.option("--user", "username", default=None,
              help="The user it files calls as (default: the district's hotline user).")
@click.option("--as", "admin", default="admin", show_default=True, help="The admin issuing it.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def apikey_create(state: AppState, name, username, admin, as_json):
    """Issue a key; it is printed once (only its hash is stored)."""
    from workflows.auth import create_api_key

    with transaction(state) as session:
        ctx = _as_admin(state, session, admin)
        issued = create_api_key(session, name, username=username, now=ctx.clock.now(), actor=admin)
        out = {**_key_dict(issued.row), "key": issued.key}
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    click.echo(out["key"])
    click.echo(f"API key {out['id']} '{out['name']}' files calls as {out['user']}. It is shown only this once: "
               "give it to the integrator now (revoke with `huying apikey revoke ID`).", err=True)


@apikey.command("list")
@click.option("--as", "admin", default="admin", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_state
def apikey_list(state: AppState, admin, as_json):
    """Every key: name, prefix, the user it files as, when created, whether revoked (never the key)."""
    from workflows.auth import list_api_keys

    with transaction(state) as session:
        _as_admin(state, session, admin)
        out = [_key_dict(row) for row in list_api_keys(session)]

    def text():
        if not out:
            return "no API keys"
        return "\n".join(f"{k['id']:<4} {k['name']:<24} {k['prefix']}…  files as {k['user']:<18} "
                         f"created {k['created_at']} by {k['created_by']}  "
                         + (f"REVOKED {k['revoked_at']}" if k["revoked_at"] else "active") for k in out)

    _echo(out, as_json, text)


@apikey.command("revoke")
@click.argument("key_id", type=int)
@click.option("--as", "admin", default="admin", show_default=True)
@pass_state
def apikey_revoke(state: AppState, key_id, admin):
    """Revoke key KEY_ID (from `huying apikey list`): requests with it are refused from now on."""
    from workflows.auth import revoke_api_key

    with transaction(state) as session:
        ctx = _as_admin(state, session, admin)
        row = revoke_api_key(session, key_id, now=ctx.clock.now(), actor=admin)
        out = _key_dict(row)
    click.echo(f"API key {out['id']} '{out['name']}' revoked at {out['revoked_at']}")
