"""A record document as a file: the weekly pack or a duty day's work log in HTML, CSV or PDF.

The one place that chooses how, for the command line (`patrol-gateway report`) and the API
(`?format=`). The PDF renderer (fpdf2 and the CJK font) is imported only for a PDF.
"""

from __future__ import annotations

import datetime as dt

from gateway.config.site import Site
from gateway.records import csvout, html, sections
from gateway.records.weekly import WeeklyPack
from gateway.records.worklog import WorkLog

MEDIA: dict[str, str] = {
    "html": "text/html; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "pdf": "application/pdf",
}


class FontMissing(RuntimeError):
    """No CJK font to embed: the PDF would show empty boxes for every Chinese character."""


def weekly_file(pack: WeeklyPack, site: Site, fmt: str, made: dt.datetime) -> str | bytes:
    """The weekly review pack (3.7) as `fmt`; `made` is printed on a PDF's pages."""
    if fmt == "html":
        return html.weekly_page(pack, site)
    if fmt == "csv":
        return csvout.render(
            sections.weekly_title(pack, site), sections.weekly_sections(pack, site)
        )
    if fmt == "pdf":
        from gateway.records.pdf import weekly_pdf

        return weekly_pdf(pack, site, made)
    raise ValueError(f"not a file format: {fmt!r} (html, csv, pdf)")


def worklog_file(log: WorkLog, site: Site, fmt: str, made: dt.datetime) -> str | bytes:
    """A duty day's work log as `fmt`; `made` is printed on a PDF's pages."""
    if fmt == "html":
        return html.worklog_page(log, site)
    if fmt == "csv":
        return csvout.render(
            sections.worklog_title(log, site), sections.worklog_sections(log, site)
        )
    if fmt == "pdf":
        from gateway.records.pdf import worklog_pdf

        return worklog_pdf(log, site, made)
    raise ValueError(f"not a file format: {fmt!r} (html, csv, pdf)")
