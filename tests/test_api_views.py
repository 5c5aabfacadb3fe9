"""Read models for the UI: the live process diagram, duplicate suggestions, the dashboard, exports."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

from openpyxl import load_workbook


def test_diagram_shows_the_path_taken_and_where_the_call_is(api):
    no = api.file(category="road_flooding")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water", "assists": ["urban"]})
    d = api.as_("water.staff").get(f"/api/v1/calls/{no}/diagram").get_json()
    assert d["process_id"] == "call_dispatch" and d["version"] == 1 and d["xml"].startswith("<?xml")
    assert "street_triage" in d["completed"] and "sign" in d["active"]
    assert "department_dispatch" in d["active"], "the call activity running the departments"
    assert all(f'id="{element}"' in d["xml"] for element in [*d["completed"], *d["active"]])
    api.do(no, "water.staff", "sign")
    d = api.as_("water.staff").get(f"/api/v1/calls/{no}/diagram").get_json()
    assert {"sign", "resolve"} <= set(d["active"]) and d["completed"]["sign"] == 1  # urban has not signed yet
    assert api.as_("luogang.dispatcher").get(f"/api/v1/calls/{no}/diagram").status_code == 403


def test_duplicates_same_category_near_the_same_place_recently(api):
    first = api.file(category="road_flooding", location="港前路12号", latitude=23.10, longitude=113.45)
    near = api.file(category="road_flooding", location="港前路口", latitude=23.1005, longitude=113.4502)
    api.file(category="noise", location="港前路12号", latitude=23.10, longitude=113.45)  # another category
    far = api.file(category="road_flooding", location="青年路8号", latitude=23.2, longitude=113.6)
    same_text = api.file(category="road_flooding", location="港前路12号")  # no coordinates
    r = api.as_("xiagang.dispatcher").get(f"/api/v1/calls/{near}/duplicates").get_json()
    assert [d["call"]["number"] for d in r] == [first]
    assert r[0]["distance_m"] < 100 and "m away" in r[0]["reason"]
    r = api.as_("xiagang.dispatcher").get(f"/api/v1/calls/{same_text}/duplicates").get_json()
    assert [d["call"]["number"] for d in r][:1] == [first] and far not in [d["call"]["number"] for d in r]
    api.advance(timedelta(days=10))
    late = api.file(category="road_flooding", location="港前路12号", latitude=23.10, longitude=113.45)
    assert api.as_("xiagang.dispatcher").get(f"/api/v1/calls/{late}/duplicates").get_json() == [], "too old"


def test_dashboard_and_exports(api):
    no = api.file(category="road_flooding")
    api.do(no, "xiagang.dispatcher", "dispatch", {"lead": "water"})
    api.do(no, "water.staff", "sign")
    api.move_clock(set="2026-10-20T10:00:00+08:00")  # the resolve deadline (Mon 10-19 18:00) has passed
    board = api.as_("huangpu.supervisor").get("/api/v1/reports/dashboard").get_json()
    assert board["overdue_total"] == 1 and board["overdue_by_street"] == {"xiagang": 1}
    assert board["overdue_by_department"] == {"water": 1} and board["units"]["water"]
    assert len(board["trend"]) == 30 and sum(day["filed"] for day in board["trend"]) == 1
    assert sum(day["breached"] for day in board["trend"]) >= 1
    assert board["month"] == "2026-10" and board["month_totals"]["should_sign"] >= 1
    sup = api.as_("huangpu.supervisor")
    r = sup.get("/api/v1/supervision/overdue?format=csv")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert rows[0][0] == "呼叫编号 call" and rows[1][0] == no and rows[1][4] == "water"
    r = sup.get("/api/v1/reports/ranking?month=2026-10&format=xlsx")
    assert r.status_code == 200 and "attachment" in r.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(r.data)).active
    header = [c.value for c in sheet[1]]
    assert header[0] == "单位 unit" and sheet.max_row > 10
    assert api.as_("water.staff").get("/api/v1/reports/dashboard").status_code == 403
