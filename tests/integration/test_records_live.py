"""The records on the duty desk in a real browser (Debian's Chromium through Playwright), against
the real gateway and Mosquitto: the work log and its forms, work orders from an alert, the
complaint to its callback, the weekly pack with its chart and the project head's review."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import time

import pytest

from tests.integration.test_desk_live import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    WAIT_MS,
    Desk,
    _duty_manager,
    desk,  # noqa: F401  (the fixture)
)
from tests.support.demo import demo_page
from tests.unit.test_api_records import PNG

pytestmark = pytest.mark.integration


def test_work_log_and_forms_in_a_real_browser(desk: Desk) -> None:  # noqa: F811
    """The duty manager writes a call in the work log, opens a work order by hand and one from
    an alert with one click, closes it, takes a complaint and calls back; each shows in the
    work log without a reload of the page. The project head sees the week's pack with its
    chart and records the review, which the pack then shows."""
    if not pathlib.Path(CHROMIUM).exists():  # make test installs it: never skip silently
        pytest.fail("chromium 未安装：请运行 `make browser` / chromium is missing: `make browser`")
    from playwright.sync_api import expect, sync_playwright

    manager = _duty_manager(desk.gateway)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.goto(f"{desk.server.url}/#token={desk.token(manager)}")
            log = page.get_by_test_id("worklog")
            name = desk.gateway.site.people[manager].name
            expect(log.locator("table[data-table=summary]")).to_contain_text(name, timeout=WAIT_MS)

            page.select_option("#entry-kind", "call")
            page.fill("#entry-text", "3栋业主来电：电梯异响")
            page.fill("#entry-follow", "已通知维保")
            page.click("#entry-form button")
            expect(page.locator("#entry-result")).to_contain_text("已保存", timeout=WAIT_MS)
            entries = log.locator("table[data-table=entries]")
            expect(entries).to_contain_text("3栋业主来电：电梯异响", timeout=WAIT_MS)
            expect(entries).to_contain_text("已通知维保")

            # A patrol finding at a post, with a photo (4.5).
            page.select_option("#entry-kind", "finding")
            page.fill("#entry-text", "样板房地面有水渍")
            page.select_option("#entry-post", "model-home")
            photo = {"name": "finding.png", "mimeType": "image/png", "buffer": PNG}
            page.set_input_files("#entry-photo", files=[photo])
            page.click("#entry-form button")
            expect(entries.locator("img.thumb")).to_have_count(1, timeout=WAIT_MS)
            assert entries.locator("img.thumb").evaluate("i => i.naturalWidth") == 1

            page.fill("#order-title", "东门道闸不抬杆")
            page.fill("#order-department", "工程部")
            page.click("#order-form button")
            orders = page.get_by_test_id("orders")
            expect(orders).to_contain_text("东门道闸不抬杆", timeout=WAIT_MS)
            expect(log.locator("table[data-table=workorders]")).to_contain_text("东门道闸不抬杆")

            desk.mqtt.publish(
                desk.topic("equipment/chiller-1/reading"), json.dumps({"values": {"leak": True}})
            )
            page.get_by_test_id("to-order").first.click(timeout=WAIT_MS)
            expect(orders.locator("li")).to_have_count(2, timeout=WAIT_MS)
            expect(orders).to_contain_text("1号冷水机组")

            first = orders.locator("li", has_text="东门道闸不抬杆")
            first.locator("input").fill("已更换电机")
            first.locator("button").click()
            expect(orders.locator("li")).to_have_count(1, timeout=WAIT_MS)
            expect(log.locator("table[data-table=workorders]")).to_contain_text("已更换电机")

            page.fill("#complaint-who", "3-1201 王先生")
            page.fill("#complaint-what", "车库照明不足")
            page.click("#complaint-form button")
            complaints = page.get_by_test_id("complaints")
            expect(complaints).to_contain_text("车库照明不足", timeout=WAIT_MS)
            complaints.locator("li input").fill("已加装照明，业主满意")
            complaints.locator("li button").click()
            expect(complaints).not_to_contain_text("车库照明不足", timeout=WAIT_MS)
            expect(log.locator("table[data-table=complaints]")).to_contain_text("业主满意")

            page.fill("#incident-title", "地下车库积水")
            page.fill("#incident-where", "地下车库 B2")
            page.fill("#incident-told", "工程部 何平 05:10")
            page.click("#incident-form button")
            incidents = log.locator("table[data-table=incidents]")
            expect(incidents).to_contain_text("地下车库积水", timeout=WAIT_MS)
            expect(incidents).to_contain_text("工程部 何平 05:10")

            pack = page.get_by_test_id("pack-body")
            expect(pack.locator("svg rect")).to_have_count(7, timeout=WAIT_MS)
            expect(page.locator("#head-forms")).to_be_hidden()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.get_by_test_id("records").screenshot(path=str(ARTIFACTS / "worklog.png"))

            head = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
            head.goto(f"{desk.server.url}/#token={desk.token('chen-jie')}")
            expect(head.locator("#head-forms")).to_be_visible(timeout=WAIT_MS)
            expect(head.locator("#record-forms")).to_be_visible()
            expect(head.get_by_test_id("pack-body").locator("svg rect")).to_have_count(
                7, timeout=WAIT_MS
            )
            head.fill("#review-text", "本周交接须按时完成")
            head.click("#review-form button")
            reviews = head.get_by_test_id("pack-body").locator("table[data-table=reviews]")
            expect(reviews).to_contain_text("本周交接须按时完成", timeout=WAIT_MS)
            expect(reviews).to_contain_text("陈杰")
            href = head.locator("#pack-links a[data-format=pdf]").get_attribute("href")
            pdf = head.request.get(f"{desk.server.url}{href}")
            assert pdf.ok and pdf.body().startswith(b"%PDF")
            head.get_by_test_id("pack").screenshot(path=str(ARTIFACTS / "pack-phone.png"))
        finally:
            browser.close()


def test_the_demo_serves_the_simulated_days_work_log_and_this_weeks_pack(
    tmp_path: pathlib.Path,
) -> None:
    """`make run`: the page's work log is of the simulated duty day (the demo's clock, not the
    wall clock) with its duty manager and sign-offs, and the pack is of that day's week."""
    with demo_page(tmp_path, speed=60) as page:
        get = page.get
        deadline = time.monotonic() + 20
        while True:  # the simulated duty manager's first sign-off after the day starts
            patrol = get("/status")["patrol"]
            day, manager = patrol["duty_day"], patrol["duty_manager"]["name"]
            log = get(f"/worklog/{day}")
            sections = {s["key"]: s for s in log["sections"]}
            if sections["signoffs"]["rows"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert day in log["title"]
        assert ["值班经理 / duty manager", manager] in sections["summary"]["rows"]
        assert sections["signoffs"]["rows"], "no sign-off of the simulated duty manager"

        def week_now() -> str:
            year, week, _ = dt.date.fromisoformat(
                get("/status")["patrol"]["duty_day"]
            ).isocalendar()
            return f"{year}-W{week:02d}"

        # The simulated clock runs a day in 24 s: the week is read just before and just after.
        before, pack, after = week_now(), get("/reports/weekly"), week_now()
        assert any(f"pack {w}（" in pack["title"] for w in (before, after)), pack["title"]
        days = next(s for s in pack["sections"] if s["key"] == "days")
        assert len(days["rows"]) == 7 and pack["chart"].count("<rect") == 7
