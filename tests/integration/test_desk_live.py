"""The duty desk against the real gateway and Mosquitto: an acknowledgement from the API clears
the retained alert, and the page in a real browser (Debian's Chromium driven by Playwright)
shows the day, follows scans without a reload and changes on every open page at once."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.api.server import HttpServer, serve_gateway
from gateway.api.tokens import issue_token
from gateway.app import Gateway
from gateway.roster import Roster
from tests.support.demo import demo_page
from tests.support.gateway import (
    REPO_ROOT,
    GatewayProcess,
    gateway_command,
    running_gateway,
    unique_root,
)
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "build" / "test-artifacts"
WAIT_MS = 10_000


@dataclass
class Desk:
    gateway: Gateway
    server: HttpServer
    mqtt: MqttClient

    def token(self, person: str) -> str:
        return issue_token(self.gateway.store_path, person)

    def call(self, token: str, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.server.url}/api/v1{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def topic(self, suffix: str) -> str:
        return f"{self.gateway.topics.base}/{suffix}"


@pytest.fixture
def desk(mosquitto: Mosquitto, tmp_path: pathlib.Path) -> Iterator[Desk]:
    data = tmp_path / "data"
    with running_gateway(mosquitto.url, data, root=unique_root()) as gateway:
        server = serve_gateway(gateway, data, "127.0.0.1", 0)
        try:
            with MqttClient(mosquitto.url) as client:
                client.connect()
                yield Desk(gateway, server, client)
        finally:
            server.stop()


def test_acknowledge_from_the_api_clears_the_retained_alert(desk: Desk) -> None:
    """§2, §6: an acknowledgement through the API must reach the worker, be stored as a
    transition, and close the retained alert topic, as one from the command line does."""
    head = desk.token("chen-jie")
    answer = desk.call(head, "POST", "/incidents", {"title": "电梯困人", "major": True})
    ident = answer["alerts"][0]["id"]
    desk.mqtt.subscribe(desk.topic(f"alert/{ident}"))
    desk.mqtt.wait_for(lambda m: m.payload != b"", what="the retained incident.major")
    done = desk.call(head, "POST", f"/alerts/{ident}/ack", {"comment": "已处理"})
    assert [a["change"] for a in done["alerts"]] == ["closed"]
    desk.mqtt.wait_for(lambda m: m.payload == b"", what="the empty retained message")
    history = desk.call(head, "GET", f"/alerts/{ident}")["history"]
    assert [(h["change"], h["actor"]) for h in history] == [
        ("open", "gateway"),
        ("closed", "chen-jie"),
    ]


def _duty_manager(gateway: Gateway) -> str:
    site = gateway.site
    now = gateway.clock()
    manager = Roster(site).manager(site.calendar.day_of(now), now)
    assert manager is not None
    return manager


def test_the_page_in_a_real_browser(desk: Desk) -> None:
    """The board must load with the demo site's duty manager and patrol time, show a scan sent
    over MQTT without a reload, show an acknowledgement made on one page on the other, and
    take a manual sign-off that every page then counts for the key posts."""
    if not pathlib.Path(CHROMIUM).exists():  # make test installs it: never skip silently
        pytest.fail("chromium 未安装：请运行 `make browser` / chromium is missing: `make browser`")
    from playwright.sync_api import expect, sync_playwright

    site = desk.gateway.site
    manager = _duty_manager(desk.gateway)
    person = site.people[manager]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            phone = browser.new_context(viewport={"width": 390, "height": 844})
            first = phone.new_page()
            first.goto(f"{desk.server.url}/#token={desk.token(manager)}")
            expect(first.get_by_test_id("manager")).to_have_text(person.name, timeout=WAIT_MS)
            expect(first.get_by_test_id("patrol-time")).to_contain_text("4小时", timeout=WAIT_MS)
            assert "#token" not in first.url  # the token does not stay in the address bar

            # A second person logs in through the form, in a browser context of their own.
            other = browser.new_context(viewport={"width": 1280, "height": 900})
            second = other.new_page()
            second.goto(desk.server.url)
            second.fill("#token", desk.token("chen-jie"))
            second.click("#login-form button")
            expect(second.get_by_test_id("manager")).to_have_text(person.name, timeout=WAIT_MS)

            uid = next(c for c in person.credentials if c.startswith("nfc:")).removeprefix("nfc:")
            desk.mqtt.publish(
                desk.topic("reader/fd-1/scan"),
                json.dumps({"credential": uid, "method": "nfc", "seq": 1}),
            )
            expect(first.get_by_test_id("scans")).to_contain_text(
                f"前台 · {person.name}", timeout=WAIT_MS
            )
            expect(first.get_by_test_id("key-posts")).to_contain_text("✓ 前台", timeout=WAIT_MS)

            desk.mqtt.publish(
                desk.topic("equipment/chiller-1/reading"), json.dumps({"values": {"leak": True}})
            )
            leak = "[data-state] .tag:text('equipment.out_of_range')"
            expect(first.locator(leak)).to_have_count(1, timeout=WAIT_MS)
            expect(second.locator(leak)).to_have_count(1, timeout=WAIT_MS)
            first.get_by_test_id("ack").first.click()
            expect(second.locator("[data-state=acknowledged]")).to_have_count(1, timeout=WAIT_MS)
            expect(first.locator("[data-state=acknowledged]")).to_have_count(1, timeout=WAIT_MS)
            expect(second.get_by_test_id("acknowledged")).to_contain_text(manager)

            # The duty manager signs off a post by hand (its reader is broken, §10).
            first.select_option("#signoff-post", "model-home")
            first.fill("#signoff-reason", "读卡器损坏")
            first.click("#signoff-form button")
            expect(first.locator("#signoff-result")).to_contain_text("已补签", timeout=WAIT_MS)
            expect(first.get_by_test_id("scans")).to_contain_text("手工", timeout=WAIT_MS)
            expect(second.get_by_test_id("key-posts")).to_contain_text("✓ 样板房", timeout=WAIT_MS)

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            second.screenshot(path=str(ARTIFACTS / "board.png"), full_page=True)
            second.click("#lang")
            expect(second.get_by_test_id("patrol-time")).to_contain_text("h", timeout=WAIT_MS)
            expect(second.locator("#alerts-card h2")).to_contain_text("Open alerts")

            first.screenshot(path=str(ARTIFACTS / "board-phone.png"), full_page=True)
            second.screenshot(path=str(ARTIFACTS / "board-en.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "board.png").stat().st_size > 10_000


def test_run_serves_the_page_on_http(mosquitto: Mosquitto, tmp_path: pathlib.Path) -> None:
    """`patrol-gateway run --http` must serve the API and the page from the gateway process,
    say where, and refuse an address it cannot read."""
    data = tmp_path / "data"
    with GatewayProcess(
        mosquitto.url, data, root=unique_root(), extra_args=["--http", "127.0.0.1:0"]
    ) as process:
        found = re.search(r"duty desk: (http://127\.0\.0\.1:\d+)", process.log_tail())
        assert found, process.log_tail()
        with urllib.request.urlopen(f"{found[1]}/api/v1/health", timeout=5) as answer:
            assert json.loads(answer.read())["site"] == "zcity"
        with urllib.request.urlopen(f"{found[1]}/", timeout=5) as answer:
            assert "值班台" in answer.read().decode()
    config = str(REPO_ROOT / "gateway" / "sites" / "zcity.yaml")
    bad = subprocess.run(
        [*gateway_command(), "run", "--config", config, "--data", str(data), "--http", "localhost"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr, bad.stderr


def test_the_demo_prints_a_login_link_for_the_duty_manager(tmp_path: pathlib.Path) -> None:
    """`make run` must show the product in a browser: the demo serves the page and prints its
    address with a token for the day's duty manager, which the API accepts as that person."""
    with demo_page(tmp_path, speed=30) as page:
        named = re.search(r"值班经理 (\S+)（([a-z-]+)）", page.printed)
        assert named, page.printed
        me = page.get("/me")
        assert (me["person"], me["name"]) == (named[2], named[1])
        assert me["roles"] == ["duty_manager"]
