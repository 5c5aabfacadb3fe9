"""Tables as CSV (UTF-8 with BOM, so Excel opens Chinese text right) or Excel (.xlsx, openpyxl)."""
from __future__ import annotations

import csv
import io
from datetime import datetime

from flask import Response

from engine.clock import SHANGHAI

FORMATS = ("json", "csv", "xlsx")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _cell(value):
    if isinstance(value, datetime):
        return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value))
    return value


def table_response(rows: list[dict], columns: list[tuple[str, str]], fmt: str, filename: str) -> Response:
    """``columns``: (key in each row, header shown); ``fmt``: csv or xlsx."""
    headers = [title for _key, title in columns]
    values = [[_cell(row.get(key)) for key, _title in columns] for row in rows]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(headers)
        writer.writerows(["" if v is None else v for v in line] for line in values)
        return Response("\ufeff" + out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = filename[:31]
    sheet.append(headers)
    for line in values:
        sheet.append(line)
    for i, title in enumerate(headers, start=1):
        sheet.column_dimensions[sheet.cell(row=1, column=i).column_letter].width = max(10, len(title) * 2)
    buf = io.BytesIO()
    book.save(buf)
    return Response(buf.getvalue(), mimetype=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'})
