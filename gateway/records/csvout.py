"""The reports as CSV: every section one after another, each row led by the section's key, so a
spreadsheet can filter one table (UTF-8 with a byte-order mark, which Excel needs for Chinese)."""

from __future__ import annotations

import csv
import io

from gateway.records.sections import Section


def render(title: str, sections: list[Section]) -> str:
    """`section,…columns` rows: a title row, then per section its header row and its rows."""
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\r\n")
    out.writerow(["title", title])
    for s in sections:
        out.writerow([s.key, "#", s.title])
        out.writerow([s.key, *s.headers])
        for row in s.rows:
            out.writerow([s.key, *row])
        if s.note:
            out.writerow([s.key, "#", s.note])
    return "\ufeff" + buffer.getvalue()
