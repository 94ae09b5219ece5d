"""The reports as one self-contained HTML page (no script, no outside file): the page embeds
it, `report weekly --format html` writes it."""

from __future__ import annotations

import html

from gateway.config.site import Site
from gateway.records.chart import svg
from gateway.records.sections import (
    Section,
    weekly_sections,
    weekly_title,
    worklog_sections,
    worklog_title,
)
from gateway.records.weekly import WeeklyPack
from gateway.records.worklog import WorkLog

STYLE = """
body{font-family:"Noto Sans CJK SC","Noto Sans SC",sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.4em}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0}.note{color:#555;font-size:.9em}.empty{color:#777}
.chart{max-width:640px;width:100%}
"""


def section(s: Section) -> str:
    """One section as a heading and a table (or a line saying there is nothing)."""
    out = [f'<h2 data-section="{s.key}">{html.escape(s.title)}</h2>']
    if s.rows:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in s.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in s.rows
        )
        out.append(f'<table data-table="{s.key}"><thead><tr>{head}</tr></thead>')
        out.append(f"<tbody>{body}</tbody></table>")
    else:
        out.append('<p class="empty">无 / none</p>')
    if s.note:
        out.append(f'<p class="note">{html.escape(s.note)}</p>')
    return "".join(out)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def weekly_fragment(pack: WeeklyPack, site: Site) -> str:
    """The pack's body: the chart, then every section."""
    chart = f"<h2>巡检时长 / Patrol time per day</h2>{svg(pack)}"
    return chart + "".join(section(s) for s in weekly_sections(pack, site))


def weekly_page(pack: WeeklyPack, site: Site) -> str:
    """The whole pack as a page."""
    return _page(weekly_title(pack, site), weekly_fragment(pack, site))


def worklog_page(log: WorkLog, site: Site) -> str:
    """The work log as a page."""
    return _page(worklog_title(log, site), "".join(section(s) for s in worklog_sections(log, site)))
