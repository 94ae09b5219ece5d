"""The records through the API (§10, §11): roles, the commands they send, the formats."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

import pytest

from gateway.records import files
from tests.unit.test_api import Desked, desk  # noqa: F401  (the fixture)


def test_work_order_from_an_alert_to_closed(desk: Desked) -> None:  # noqa: F811
    """One click on the page opens a work order from an alert; closing says what was done;
    a person without a managing role may read but not open one (403)."""
    alert = desk.as_("li-na", "GET", "/api/v1/alerts").json()
    assert desk.as_("guo-jun", "POST", "/api/v1/workorders", json={"title": "x"}).status_code == 403
    opened = desk.as_(
        "li-na",
        "POST",
        "/api/v1/workorders",
        json={
            "title": "更换灯管",
            "department": "工程部",
            "due": "2026-11-28T12:00",
            "alert": None,
        },
    )
    assert opened.status_code == 201, opened.text
    (order,) = desk.as_("guo-jun", "GET", "/api/v1/workorders").json()
    assert (order["title"], order["department"], order["opened_by"]) == (
        "更换灯管",
        "工程部",
        "li-na",
    )
    assert order["due"] == "2026-11-28T12:00:00+08:00" and not order["overdue"]
    missing = desk.as_("li-na", "POST", "/api/v1/workorders/WO-none/close", json={"comment": "x"})
    assert missing.status_code == 404
    closed = desk.as_(
        "li-na", "POST", f"/api/v1/workorders/{order['id']}/close", json={"comment": "已更换"}
    )
    assert closed.status_code == 200, closed.text
    assert desk.as_("li-na", "GET", "/api/v1/workorders").json() == []
    (done,) = desk.as_("li-na", "GET", "/api/v1/workorders?state=all").json()
    assert (done["closed_by"], done["result"]) == ("li-na", "已更换")
    again = desk.as_("li-na", "POST", f"/api/v1/workorders/{order['id']}/close", json={})
    assert again.status_code == 409
    assert alert == desk.as_("li-na", "GET", "/api/v1/alerts").json()  # nothing raised


def test_complaint_callback_and_work_log_entries(desk: Desked) -> None:  # noqa: F811
    """A complaint is owned by who took it, closed by the callback; an entry lands in the work
    log of the duty day, shown in the JSON, CSV and HTML work log."""
    got = desk.as_(
        "li-na", "POST", "/api/v1/complaints", json={"what": "车库照明不足", "who": "王先生"}
    )
    assert got.status_code == 201, got.text
    (complaint,) = desk.as_("li-na", "GET", "/api/v1/complaints").json()
    assert complaint["owner"] == "li-na"
    url = f"/api/v1/complaints/{complaint['id']}/callback"
    assert desk.as_("li-na", "POST", url, json={"comment": "已加装照明"}).status_code == 200
    assert desk.as_("li-na", "GET", "/api/v1/complaints").json() == []
    entry = {"kind": "call", "text": "3栋业主来电", "follow_up": "已派工程部"}
    assert desk.as_("li-na", "POST", "/api/v1/worklog/entries", json=entry).status_code == 201
    bad = desk.as_("li-na", "POST", "/api/v1/worklog/entries", json={**entry, "post": "moon"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "post"]
    log = desk.as_("guo-jun", "GET", "/api/v1/worklog/2026-11-28").json()
    entries = next(s for s in log["sections"] if s["key"] == "entries")
    assert [r[2:4] for r in entries["rows"]] == [["3栋业主来电", "已派工程部"]]
    complaints = next(s for s in log["sections"] if s["key"] == "complaints")
    assert complaints["rows"][0][3] == "车库照明不足" and "已加装照明" in complaints["rows"][0][5]
    csv = desk.as_("li-na", "GET", "/api/v1/worklog/2026-11-28?format=csv")
    assert csv.headers["content-type"].startswith("text/csv") and "3栋业主来电" in csv.text
    page = desk.as_("li-na", "GET", "/api/v1/worklog/2026-11-28?format=html")
    assert page.headers["content-type"].startswith("text/html") and "已派工程部" in page.text


def test_waiver_and_review_are_the_project_heads(desk: Desked) -> None:  # noqa: F811
    """§10: project_head writes the review and waives violations; a duty manager is 403."""
    desk.now[0] = desk.now[0] + dt.timedelta(hours=9)
    desk.worker.step([])  # 18:30: li-na patrolled nothing: patrol.hours_short at 18:00
    waive = {
        "rule": "patrol.hours_short",
        "subject": "li-na",
        "date": "2026-11-28",
        "reason": "病假",
    }
    assert desk.as_("li-na", "POST", "/api/v1/violations/waive", json=waive).status_code == 403
    answer = desk.as_("chen-jie", "POST", "/api/v1/violations/waive", json=waive)
    assert answer.status_code == 200, answer.text
    review = {"week": "2026-W48", "text": "本周替班须提前登记"}
    assert desk.as_("li-na", "POST", "/api/v1/reviews", json=review).status_code == 403
    assert desk.as_("chen-jie", "POST", "/api/v1/reviews", json=review).status_code == 201
    pack = desk.as_("li-na", "GET", "/api/v1/reports/weekly?week=2026-W48").json()
    waived = next(s for s in pack["sections"] if s["key"] == "waived")
    assert waived["rows"][0][:4] == ["11-28 周六", "李娜", "巡检不足 / patrol short", "病假"]
    assert pack["chart"].startswith("<svg")
    nxt = desk.as_("li-na", "GET", "/api/v1/reports/weekly?week=2026-W49").json()
    reviews = next(s for s in nxt["sections"] if s["key"] == "reviews")
    assert reviews["rows"][0][:3] == ["2026-W48", "本周替班须提前登记", "陈杰"]


def test_weekly_pack_files(desk: Desked) -> None:  # noqa: F811
    """The pack downloads as PDF, CSV and HTML; a week that does not exist is 422."""
    pdf = desk.as_("li-na", "GET", "/api/v1/reports/weekly?week=2026-W48&format=pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    csv = desk.as_("li-na", "GET", "/api/v1/reports/weekly?week=2026-W48&format=csv")
    assert "ZJWY/KF/BG-024" in csv.text
    assert desk.as_("li-na", "GET", "/api/v1/reports/weekly?week=2026-W60").status_code == 422


def test_a_pdf_without_its_font_is_501_saying_so(
    desk: Desked,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the CJK font every Chinese character would be an empty box: the API says what
    is missing (501) instead of serving that PDF or failing with a 500; the other files
    still come."""
    from gateway.records import pdf

    def no_font() -> tuple[object, int]:
        raise files.FontMissing("找不到中文字体 / no CJK font: install fonts-noto-cjk")

    monkeypatch.setattr(pdf, "find_font", no_font)
    answer = desk.as_("li-na", "GET", "/api/v1/reports/weekly?week=2026-W48&format=pdf")
    assert answer.status_code == 501 and "fonts-noto-cjk" in answer.text
    html = desk.as_("li-na", "GET", "/api/v1/reports/weekly?week=2026-W48&format=html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")


# A 1×1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)


def test_a_finding_with_its_photo(desk: Desked) -> None:  # noqa: F811
    """4.5: a patrol finding at a post with a photo: the upload is kept once by its SHA-256,
    the entry names it, the work log shows it, anyone of the site may view it; other types,
    names that were never uploaded and people without a managing role are refused."""
    url = "/api/v1/photos"

    def upload(person: str, body: bytes, kind: str = "image/png") -> Any:
        headers = {**desk.auth(person), "Content-Type": kind}
        return desk.client.post(url, content=body, headers=headers)

    assert (
        desk.client.post(url, content=PNG, headers={"Content-Type": "image/png"}).status_code == 401
    )
    assert upload("guo-jun", PNG).status_code == 403
    assert upload("li-na", b"hi", "text/plain").status_code == 415
    first, again = upload("li-na", PNG), upload("li-na", PNG)
    assert first.status_code == again.status_code == 201
    name = first.json()["photo"]
    assert name == again.json()["photo"] == f"{hashlib.sha256(PNG).hexdigest()}.png"
    entry = {"kind": "finding", "text": "样板房地面有水渍", "post": "model-home", "photo": name}
    assert desk.as_("li-na", "POST", "/api/v1/worklog/entries", json=entry).status_code == 201
    unknown = {**entry, "photo": "0" * 64 + ".png"}
    refused = desk.as_("li-na", "POST", "/api/v1/worklog/entries", json=unknown)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "photo"]
    log = desk.as_("guo-jun", "GET", "/api/v1/worklog/2026-11-28").json()
    (row,) = next(s for s in log["sections"] if s["key"] == "entries")["rows"]
    assert row[1:] == ["巡检发现 / finding", "样板房地面有水渍", "", "样板房", "李娜", name]
    viewed = desk.as_("guo-jun", "GET", f"/api/v1/photos/{name}")
    assert viewed.content == PNG and viewed.headers["content-type"] == "image/png"
    assert desk.as_("guo-jun", "GET", "/api/v1/photos/nope.png").status_code == 404


def test_incident_report_with_who_was_told_and_when(desk: Desked) -> None:  # noqa: F811
    """4.2, §11: an incident report says what, where, when, and who was told; the work log's
    incident table (ZJWY/KF/BG-027) shows all of it."""
    body = {
        "title": "地下车库积水",
        "where": "B2",
        "when": "2026-11-28T09:10",
        "told": "工程部 何平",
    }
    assert desk.as_("guo-jun", "POST", "/api/v1/incidents", json=body).status_code == 201
    (listed,) = desk.as_("li-na", "GET", "/api/v1/incidents").json()
    assert (listed["when"], listed["told"]) == ("2026-11-28T09:10:00+08:00", "工程部 何平")
    log = desk.as_("li-na", "GET", "/api/v1/worklog/2026-11-28").json()
    (row,) = next(s for s in log["sections"] if s["key"] == "incidents")["rows"]
    assert row[1:5] == ["地下车库积水", "B2", "11-28 09:10", "工程部 何平"]
