"""The weekly pack as PDF, HTML and CSV: rendered, turned into page images with `pdftoppm`,
its text extracted with `pdftotext` and read back (the Chinese included, so the CJK font is
really embedded), and the CSV parsed."""

from __future__ import annotations

import csv
import datetime as dt
import io
import pathlib
import shutil
import subprocess

import pytest

from gateway.config import Site
from gateway.records import csvout, html, sections, weekly
from gateway.records.pdf import find_font, weekly_pdf, worklog_pdf
from gateway.records.source import Source
from gateway.records.worklog import build as build_log
from tests.support.week import week_w48

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts"
MADE = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def built(
    zcity: Site, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Source, weekly.WeeklyPack]:
    store = week_w48().run(zcity, tmp_path_factory.mktemp("pdf") / "zcity.sqlite")
    source = Source(store.connection, zcity)
    return source, weekly.build(source, "2026-W48")


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: apt-get install poppler-utils (make test installs it)"
    return found


def test_pdf_pages_render_and_carry_the_figures(
    built: tuple[Source, weekly.WeeklyPack], zcity: Site, tmp_path: pathlib.Path
) -> None:
    """A PDF without the embedded CJK font shows boxes (pdftotext reads nothing Chinese); a
    layout bug loses rows. Every page must turn into an image, and the text must hold the
    week's figures: each day's patrol time, the fines and their total, the waiver, the open
    work order and complaint, the forms' numbers and last week's review."""
    _, pack = built
    pdf = tmp_path / "weekly.pdf"
    pdf.write_bytes(weekly_pdf(pack, zcity, MADE))
    subprocess.run(
        [_tool("pdftoppm"), "-r", "50", "-png", str(pdf), str(tmp_path / "page")], check=True
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    for page in pages:
        assert page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and page.stat().st_size > 5000
    text = subprocess.run(
        [_tool("pdftotext"), "-layout", str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    for expected in (
        "值班周报",
        "2026-W48",
        "巡检时长",
        "1:40",  # Wednesday, short
        "4:20",
        "样板房",
        "合计 / total 200 元",
        "家中急事，已事先电话告知",
        "WO-2",
        "西门监控摄像头画面模糊",
        "TS-2",
        "ZJWY/KF/BG-024",
        "ZJWY/KF/BG-026",
        "ZJWY/KF/BG-027",
        "上周巡检记录完整，继续保持。",
        "duplicate_tap",
        "样板房读卡器故障",
    ):
        assert expected in text, expected
    fonts = subprocess.run(
        [_tool("pdffonts"), str(pdf)], check=True, capture_output=True, text=True
    ).stdout
    assert "NotoSansCJK" in fonts and " yes " in fonts  # embedded
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(pdf, ARTIFACTS / "weekly.pdf")


def test_work_log_pdf(
    built: tuple[Source, weekly.WeeklyPack], zcity: Site, tmp_path: pathlib.Path
) -> None:
    """The work log exports too, with the handover's two names and the call it logged."""
    source, _ = built
    pdf = tmp_path / "log.pdf"
    pdf.write_bytes(worklog_pdf(build_log(source, dt.date(2026, 11, 23)), zcity, MADE))
    text = subprocess.run(
        [_tool("pdftotext"), str(pdf), "-"], check=True, capture_output=True, text=True
    ).stdout
    for expected in ("值班经理工作日志", "王芳", "张伟", "3栋业主来电：电梯异响", "WO-1"):
        assert expected in text, expected


def test_csv_and_html_carry_the_same_figures(
    built: tuple[Source, weekly.WeeklyPack], zcity: Site
) -> None:
    """The three formats come from the same sections: the CSV's day rows and the HTML's must
    say what the PDF says."""
    _, pack = built
    body = csvout.render(sections.weekly_title(pack, zcity), sections.weekly_sections(pack, zcity))
    assert body.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(body.lstrip("\ufeff"))))
    days = [r for r in rows if r[0] == "days" and r[1] != "#"][1:]
    assert [(r[1], r[3], r[7]) for r in days] == [
        ("11-23 周一", "4:00", "0"),
        ("11-24 周二", "4:20", "0"),
        ("11-25 周三", "1:40", "0"),
        ("11-26 周四", "4:20", "0"),
        ("11-27 周五", "4:20", "100"),
        ("11-28 周六", "4:20", "100"),
        ("11-29 周日", "4:00", "0"),
    ]
    page = html.weekly_page(pack, zcity)
    assert page.count("<rect ") == 7 and "家中急事" in page and "ZJWY/KF/BG-024" in page


def test_the_font_is_the_simplified_chinese_face() -> None:
    """Debian's collection holds JP, KR, SC, TC and HK faces; the wrong one draws some common
    characters in another country's form."""
    path, index = find_font()
    assert path.name == "NotoSansCJK-Regular.ttc"
    from fontTools.ttLib import TTCollection

    with path.open("rb") as file:
        face = TTCollection(file, lazy=True).fonts[index]
        assert face["name"].getDebugName(1).endswith(" SC")
