"""督查: the supervisors' dashboard — overdue work, today's deadlines, the month's rates, the 30-day trend,
the monthly 红黑榜, 催办 / 督办 and the exports.

Everything renders server-side from the service layer (``workflows.metrics``, ``workflows.supervision``);
the headline numbers and the overdue list are fragments reloaded in place (``data-refresh``), and
``supervision.js`` draws ECharts charts from a JSON script tag whose data tables are the no-JS version.
"""
from __future__ import annotations

import re
from datetime import date

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from engine.errors import EngineError
from engine.sla import remaining_time
from workflows.metrics import LATE_FACTOR, monthly_ranking
from workflows.metrics import dashboard as build_dashboard
from workflows.models import OrgUnit
from workflows.supervision import OVERSIGHT_ROLES, SUPERVISE_ROLES, URGE_KINDS, overdue_items, urge

from .core import login_required, refresh_seconds, register_nav, ui_clock, ui_ctx, ui_user
from .errors import error_text
from .labels import STAGE, unit_name

bp = Blueprint("ui_supervision", __name__)

register_nav("ui_supervision.dashboard", _l("Supervision"), {"supervisor"}, order=10)
register_nav("ui_supervision.dashboard", _l("Supervision"), {"district_dispatcher", "admin"}, order=35)

PER_PAGE = 50
TOP_DEPARTMENTS = 10  # bars in the "overdue by department" chart
RANKING_TOP = 3  # units on each of the red and black lists
MONTHS_BACK = 12  # months offered by the ranking's selector
UNIT_KINDS = (("department", _l("Departments")), ("street", _l("Streets")), ("community", _l("Communities")),
              ("district", _l("District")))
ROLES = tuple(sorted(OVERSIGHT_ROLES))


# ---- small helpers ------------------------------------------------------------------------------

def pct(value) -> str:
    """A rate (0-1) as a percentage; a dash when there was nothing to count."""
    return "—" if value is None else f"{value * 100:.1f}%"


def _pct_number(value):
    return None if value is None else round(value * 100, 1)


def _flag_label(flag: str) -> str:
    if flag.startswith("over "):
        return _("Over %(factor)s× its time limit", factor=f"{LATE_FACTOR:g}")
    return flag


def _filters() -> dict[str, str]:
    """The overdue list's filters from the query string (empty ones left out)."""
    out = {}
    for key in ("street", "unit", "stage"):
        value = (request.args.get(key) or "").strip()[:64]
        if value:
            out[key] = value
    return out


def _page() -> int:
    try:
        return max(1, min(int(request.args.get("page", "1")), 100000))
    except ValueError:
        return 1


def _units() -> dict[str, list[OrgUnit]]:
    units = g.db.scalars(select(OrgUnit).where(OrgUnit.active).order_by(OrgUnit.code)).all()
    grouped: dict[str, list[OrgUnit]] = {kind: [] for kind, _label in UNIT_KINDS}
    for u in units:
        grouped.setdefault(u.kind, []).append(u)
    for kind in grouped:
        grouped[kind].sort(key=lambda u: unit_name(u.code))
    return grouped


def _month_options(current: str) -> list[str]:
    year, month = map(int, current.split("-"))
    out = []
    for _i in range(MONTHS_BACK):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out


def _fragment_user(*roles: str):
    """Fragments answer a lapsed session with 401 (the page keeps what it shows) instead of the sign-in page."""
    user = ui_user()
    if user is None:
        abort(401)
    if user.role not in roles:
        abort(403)
    return user


# ---- what the page shows --------------------------------------------------------------------------

def _summary() -> dict:
    """Headline numbers, today's deadlines and the charts' data (one dashboard() per request)."""
    ctx = ui_ctx()
    now = ctx.clock.now()
    calendar = ctx.sla.calendars.get(g.db)
    d = build_dashboard(g.db, now=now, calendar=calendar)
    departments = monthly_ranking(g.db, d.month, "department", now=now, calendar=calendar)
    totals = d.month_totals
    streets = sorted(d.overdue_by_street.items(), key=lambda kv: (-kv[1], unit_name(kv[0])))
    depts = sorted(d.overdue_by_department.items(), key=lambda kv: (-kv[1], unit_name(kv[0])))[:TOP_DEPARTMENTS]
    rated = [u for u in departments.units if u.should_sign or u.should_resolve]
    trend = d.trend
    filed, closed, breached = ([t[k] for t in trend] for k in ("filed", "closed", "breached"))

    def bar(title, rows):
        labels = [unit_name(code) for code, _n in rows]
        values = [n for _code, n in rows]
        summary = (title + ": " + ", ".join(f"{label} {n}" for label, n in zip(labels, values, strict=True))
                   if rows else title + ": " + _("none"))
        return {"title": title, "labels": labels, "values": values, "summary": summary}

    rates_title = _("On-time rates by department, %(month)s", month=d.month)
    charts = {
        "street": bar(_("Overdue items by street"), streets),
        "department": bar(_("Overdue items by department (top %(n)s)", n=TOP_DEPARTMENTS), depts),
        "trend": {"title": _("The last %(days)s days", days=len(trend)), "days": [t["day"][5:] for t in trend], "filed": filed, "closed": closed, "breached": breached,
                  "summary": _("Last %(days)s days: %(filed)s filed, %(closed)s closed, %(breached)s deadlines "
                               "breached", days=len(trend), filed=sum(filed), closed=sum(closed),
                               breached=sum(breached))},
        "rates": {"title": rates_title, "labels": [unit_name(u.unit) for u in rated],
                  "sign": [_pct_number(u.on_time_sign) for u in rated],
                  "resolve": [_pct_number(u.on_time_resolve) for u in rated],
                  "summary": rates_title + ": " + ("; ".join(
                      _("%(unit)s: sign %(sign)s, resolve %(resolve)s", unit=unit_name(u.unit),
                        sign=pct(u.on_time_sign), resolve=pct(u.on_time_resolve)) for u in rated)
                      if rated else _("none"))},
        "names": {"overdue": _("Overdue items"), "filed": _("Filed"), "closed": _("Closed"),
                  "breached": _("Deadlines breached"), "sign": _("On-time sign rate"),
                  "resolve": _("On-time resolve rate"), "empty": _("No data"),
                  "live": _("Updated: %(overdue)s overdue, %(warnings)s due later today")},
    }
    warnings = [{**w, "overdue_level": "warning" if w["warned"] else "normal"} for w in d.warnings_today]
    headline = {"overdue": d.overdue_total, "warnings": len(warnings),
                "on_time_sign": pct(totals.get("on_time_sign")), "on_time_resolve": pct(totals.get("on_time_resolve")),
                "satisfaction": pct(totals.get("satisfaction"))}
    return {"d": d, "now": now, "headline": headline, "totals": totals, "warnings": warnings, "charts": charts}


def _overdue() -> dict:
    ctx = ui_ctx()
    now = ctx.clock.now()
    calendar = ctx.sla.calendars.get(g.db)
    filters, page = _filters(), _page()
    total, entries = overdue_items(g.db, now=now, street=filters.get("street"), unit=filters.get("unit"),
                                   stage=filters.get("stage"), limit=PER_PAGE, offset=(page - 1) * PER_PAGE)
    rows = [{"e": e, "late_by": -remaining_time(e.clock, calendar, now)} for e in entries]
    pages = max(1, (total + PER_PAGE - 1) // PER_PAGE)
    user = ui_user()
    return {"rows": rows, "total": total, "page": page, "pages": pages, "filters": filters,
            "may_urge": user is not None and user.role in SUPERVISE_ROLES,
            "refresh_url": url_for("ui_supervision.live_overdue", **filters, **({"page": page} if page > 1 else {})),
            "urge_url": url_for("ui_supervision.urge_item", **filters, **({"page": page} if page > 1 else {}))}


def _ranking(month: str) -> dict:
    ctx = ui_ctx()
    now = ctx.clock.now()
    calendar = ctx.sla.calendars.get(g.db)
    out = {}
    for kind in ("department", "street"):
        r = monthly_ranking(g.db, month, kind, now=now, calendar=calendar, top=RANKING_TOP)
        red, black = [u.unit for u in r.red], [u.unit for u in r.black]
        shown = [u for u in r.units if u.score is not None or u.overdue]
        out[kind] = {"units": shown, "hidden": len(r.units) - len(shown), "red": red, "black": black,
                     "csv": url_for("reports.ranking", month=month, kind=kind, format="csv"),
                     "xlsx": url_for("reports.ranking", month=month, kind=kind, format="xlsx")}
    return out


def _common() -> dict:
    return {"pct": pct, "flag_label": _flag_label, "refresh_seconds": refresh_seconds(), "call_url": call_url}


def call_url(number: str) -> str:
    return f"/calls/{number}"


# ---- routes -------------------------------------------------------------------------------------

@bp.route("/dashboard", endpoint="dashboard")
@login_required(*ROLES)
def dashboard_page():
    current = f"{ui_clock().now():%Y-%m}"
    month = request.args.get("month") or current
    month_error = None
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
        month_error = _("Choose a month from the list.")
        month = current
    months = _month_options(current)
    if month not in months and date.fromisoformat(month + "-01") <= date.fromisoformat(current + "-01"):
        months.append(month)
    overdue = _overdue()
    exports = {fmt: url_for("supervision.overdue", format=fmt, **overdue["filters"]) for fmt in ("csv", "xlsx")}
    return render_template("supervision/dashboard.html", **_common(), **_summary(), overdue=overdue,
                           ranking=_ranking(month), month=month, months=months, month_error=month_error,
                           units=_units(), unit_kinds=UNIT_KINDS, stages=STAGE, exports=exports)


@bp.route("/dashboard/live/summary")
def live_summary():
    _fragment_user(*ROLES)
    return render_template("supervision/_summary.html", **_common(), **_summary())


@bp.route("/dashboard/live/overdue")
def live_overdue():
    _fragment_user(*ROLES)
    return render_template("supervision/_overdue.html", **_common(), overdue=_overdue())


@bp.route("/dashboard/urges", methods=["POST"])
@login_required(*sorted(SUPERVISE_ROLES))
def urge_item():
    """催办 (kind=urge) or 督办 (kind=supervise) from a row of the overdue list; back to the list."""
    back = url_for("ui_supervision.dashboard", **_filters(), **({"page": _page()} if _page() > 1 else {}))
    kind = request.form.get("kind", "")
    try:
        item_id = int(request.form.get("work_item", ""))
    except ValueError:
        flash(_("That work item does not exist."), "error")
        return redirect(back)
    if kind not in URGE_KINDS:
        flash(_("Choose to urge or to supervise."), "error")
        return redirect(back)
    try:
        out = urge(ui_ctx(), item_id, {"kind": kind, "note": request.form.get("note", "")[:1000]})
        g.db.commit()
    except EngineError as err:
        g.db.rollback()
        flash(_("Nothing was sent: %(reason)s", reason=error_text(err)), "error")
        return redirect(back)
    unit, number = unit_name(out.event.unit), out.call.number
    if kind == "urge":
        flash(_("Urged %(unit)s on call %(number)s.", unit=unit, number=number), "info")
    elif out.escalated:
        flash(_("Supervision order issued to %(unit)s on call %(number)s: it was past its deadline, so the call "
                "went up to the district at once.", unit=unit, number=number), "info")
    else:
        flash(_("Supervision order issued to %(unit)s on call %(number)s.", unit=unit, number=number), "info")
    return redirect(back)
