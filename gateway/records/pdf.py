"""The reports as PDF (fpdf2, the `reports` extra), with the Noto CJK font embedded (subset).

Debian's `fonts-noto-cjk` ships the font as an OpenType collection (`NotoSansCJK-Regular.ttc`,
CFF outlines); fpdf2 reads it, picks the Simplified Chinese face and embeds only the glyphs
used. The chart is drawn with the PDF's own lines and rectangles from `chart.layout`.
"""

from __future__ import annotations

import datetime as dt
import functools
import pathlib

from gateway.config.site import Site
from gateway.extras import requires_extra
from gateway.records import chart
from gateway.records.files import FontMissing
from gateway.records.sections import (
    Section,
    weekly_sections,
    weekly_title,
    worklog_sections,
    worklog_title,
)
from gateway.records.weekly import WeeklyPack
from gateway.records.worklog import WorkLog

with requires_extra("reports"):
    from fontTools.ttLib import TTCollection
    from fpdf import FPDF

FONT_PATHS = (
    pathlib.Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    pathlib.Path("/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc"),
    pathlib.Path("/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc"),
)
FAMILY = "noto-cjk"


@functools.cache
def find_font(candidates: tuple[pathlib.Path, ...] = FONT_PATHS) -> tuple[pathlib.Path, int]:
    """The Noto Sans CJK collection and the index of its Simplified Chinese face."""
    for path in candidates:
        if not path.exists():
            continue
        with path.open("rb") as file:
            collection = TTCollection(file, lazy=True)
            families = [str(f["name"].getDebugName(1) or "") for f in collection.fonts]
        sc = [i for i, family in enumerate(families) if family.endswith(" SC")]
        return path, sc[0] if sc else 0
    raise FontMissing(
        "找不到中文字体 / no CJK font: install Debian's fonts-noto-cjk "
        "(apt-get install fonts-noto-cjk)"
    )


class _Doc(FPDF):
    def __init__(self, title: str, footer: str, font: tuple[pathlib.Path, int]) -> None:
        super().__init__(orientation="landscape", format="A4")
        self.title_text, self.footer_text = title, footer
        self.add_font(FAMILY, fname=str(font[0]), collection_font_number=font[1])
        self.set_margins(12, 12, 12)
        self.set_auto_page_break(True, margin=14)
        self.set_title(title)
        self.set_creator("patrol-gateway")

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FAMILY, size=7)
        self.set_text_color(110)
        self.cell(0, 5, f"{self.footer_text}    {self.page_no()}/{{nb}}", align="C")
        self.set_text_color(0)


def _section(doc: _Doc, s: Section) -> None:
    if doc.will_page_break(20):
        doc.add_page()
    doc.set_font(FAMILY, size=11)
    doc.ln(2)
    doc.multi_cell(0, 6, s.title, new_x="LMARGIN", new_y="NEXT")
    doc.set_font(FAMILY, size=8)
    if not s.rows:
        doc.set_text_color(110)
        doc.cell(0, 5, "无 / none", new_x="LMARGIN", new_y="NEXT")
        doc.set_text_color(0)
    else:
        with doc.table(
            headings_style=_heading(),
            line_height=4.6,
            text_align="LEFT",
            first_row_as_headings=True,
        ) as table:
            table.row(s.headers)
            for row in s.rows:
                table.row(row)
    if s.note:
        doc.set_text_color(90)
        doc.cell(0, 5, s.note, new_x="LMARGIN", new_y="NEXT")
        doc.set_text_color(0)


def _heading() -> object:
    from fpdf.fonts import FontFace

    return FontFace(emphasis=None, fill_color=(235, 235, 235))


def _chart(doc: _Doc, pack: WeeklyPack) -> None:
    shape = chart.layout(pack)
    scale = 0.42  # chart units → mm: 580 × 220 → 244 × 92
    x0, y0 = doc.l_margin, doc.get_y() + 2

    def xy(x: float, y: float) -> tuple[float, float]:
        return x0 + x * scale, y0 + y * scale

    doc.set_font(FAMILY, size=7)
    doc.set_draw_color(220)
    for hours, y in shape.hour_y:
        a, b = xy(chart.LEFT, y)
        c, _ = xy(chart.WIDTH - 30, y)
        doc.line(a, b, c, b)
        doc.text(a - 6, b + 1, f"{hours}h")
    for bar in shape.bars:
        doc.set_fill_color(*((192, 57, 43) if bar.short else (46, 125, 50)))
        x, y = xy(bar.x, bar.y)
        doc.rect(x, y, bar.width * scale, bar.height * scale, style="F")
        doc.text(x + 1, y - 1, bar.value)
        lx, ly = xy(bar.x, chart.HEIGHT - chart.BOTTOM + 14)
        doc.text(lx, ly, bar.label)
    doc.set_draw_color(21, 101, 192)
    doc.set_line_width(0.6)
    a, b = xy(chart.LEFT, shape.quota_y)
    c, _ = xy(chart.WIDTH - 30, shape.quota_y)
    doc.set_dash_pattern(dash=2, gap=1.5)
    doc.line(a, b, c, b)
    doc.set_dash_pattern()
    doc.set_text_color(21, 101, 192)
    doc.text(c + 1, b + 1, "4h")
    doc.set_text_color(0)
    doc.set_line_width(0.2)
    doc.set_draw_color(0)
    doc.set_fill_color(255)
    doc.set_y(y0 + chart.HEIGHT * scale + 2)


def _render(title: str, footer: str, sections: list[Section], pack: WeeklyPack | None) -> bytes:
    doc = _Doc(title, footer, find_font())
    doc.alias_nb_pages()
    doc.add_page()
    doc.set_font(FAMILY, size=15)
    doc.multi_cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    if pack is not None:
        doc.set_font(FAMILY, size=11)
        doc.cell(0, 6, "巡检时长 / Patrol time per day", new_x="LMARGIN", new_y="NEXT")
        _chart(doc, pack)
    for s in sections:
        _section(doc, s)
    return bytes(doc.output())


def weekly_pdf(pack: WeeklyPack, site: Site, made: dt.datetime) -> bytes:
    """The weekly pack as PDF."""
    footer = (
        f"{site.name} · {pack.week} · 生成 / made {made.astimezone(site.tz):%Y-%m-%d %H:%M}"
        " · 表单 / forms ZJWY/KF/BG-024, BG-026, BG-027"
    )
    return _render(weekly_title(pack, site), footer, weekly_sections(pack, site), pack)


def worklog_pdf(log: WorkLog, site: Site, made: dt.datetime) -> bytes:
    """The work log of a duty day as PDF."""
    made_at = made.astimezone(site.tz)
    footer = f"{site.name} · 值班经理工作日志 · {log.day} · 生成 / made {made_at:%Y-%m-%d %H:%M}"
    return _render(worklog_title(log, site), footer, worklog_sections(log, site), None)
