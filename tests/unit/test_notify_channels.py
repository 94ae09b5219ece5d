"""Notify URLs (§9): check-config accepts the channels of the docs and refuses the rest with the
secret masked; DingTalk, WeCom and Feishu payloads as apprise builds them, without the network."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from gateway.config import load_site
from gateway.notify import channels
from gateway.notify.links import sign_ack_link, verify_ack_link
from gateway.notify.message import Item, Writer
from tests.support.scenarios import OWN

# The examples of docs/notifications.md.
DOC_URLS = [
    "dingtalk://ROBOTTOKEN/",
    "dingtalk://SIGNSECRET@ROBOTTOKEN/",
    "wecombot://BOTKEY",
    "feishu://HOOKTOKEN",
    "mailto://duty:MAILPASSWORD@smtp.example.com?to=duty@example.com",
    "json://alerts.example.com/hook",
]
SITE = """
site: {{id: t, name: 测试}}
people:
  - {{id: a, name: A, roles: [duty_manager], notify: {urls}}}
posts:
  - {{id: monitoring-center, name: 监控中心}}
"""


def check_config(tmp_path: pathlib.Path, urls: list[str]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(urls=json.dumps(urls)), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        capture_output=True,
        text=True,
    )


def test_check_config_accepts_the_documented_channels(tmp_path: pathlib.Path) -> None:
    """A DingTalk, WeCom, Feishu, e-mail or JSON URL written as the docs show is accepted."""
    result = check_config(tmp_path, DOC_URLS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_config_refuses_a_url_no_channel_understands_without_its_secret(
    tmp_path: pathlib.Path,
) -> None:
    """A typo in a scheme is refused at start-up, naming where, never printing the secret."""
    result = check_config(tmp_path, ["dingtalk://GOODTOKEN/", "dingtak://TOPSECRET/"])
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "people[a].notify[1]" in out or "people[0].notify[1]" in out
    assert "dingtak://…" in out
    assert "TOPSECRET" not in out and "GOODTOKEN" not in out


@pytest.mark.parametrize("url", DOC_URLS)
def test_masked_urls_keep_no_secret(url: str) -> None:
    """What logs, replay lines and attempts show of a URL hides its token or password."""
    shown = channels.mask(url)
    for secret in ("ROBOTTOKEN", "SIGNSECRET", "BOTKEY", "HOOKTOKEN", "MAILPASSWORD"):
        assert secret not in shown
    assert shown.startswith(channels.scheme(url) + "://")


@dataclass
class FakeResponse:
    status_code: int = 200
    content: bytes = b'{"errcode": 0, "code": 0, "StatusCode": 0}'
    text: str = '{"errcode": 0, "code": 0, "StatusCode": 0}'

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Posts:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def post(self, url: str, data: bytes | None = None, **_: Any) -> FakeResponse:
        self.calls.append((url, json.loads(data or b"{}")))
        return FakeResponse()


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> Posts:
    """apprise's HTTP calls, caught before the network."""
    fake = Posts()
    monkeypatch.setattr(requests, "post", fake.post)
    return fake


def rendered(url: str) -> tuple[str, str]:
    site = load_site(OWN / "notify" / "site.yaml")
    item = Item(
        kind="raised",
        stage=0,
        severity="critical",
        alert_id="abc123",
        message="1号变压器 温度 = 99°C，超出正常范围",
        raised_at=dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC),
        closed_at=None,
        people=("eng1", "eng2"),
    )
    text = Writer(site, b"k" * 32).one(item, item.raised_at, channels.markdown(url))
    return text.title, text.body


def test_dingtalk_gets_markdown_with_the_site_the_time_and_who_acts(posts: Posts) -> None:
    """DingTalk renders Markdown: the robot receives a markdown message with the headline as
    its title, the site, the time in the site's zone, the people asked and the links."""
    url = "dingtalk://ROBOTTOKEN/"
    assert channels.send(url, *rendered(url)).ok
    (target, payload), *_ = posts.calls
    assert "access_token=ROBOTTOKEN" in target
    assert payload["msgtype"] == "markdown"
    text = payload["markdown"]["text"]
    assert "**站点**: 通知测试项目" in text
    assert "2026-11-30 10:00" in text  # 02:00 UTC in Asia/Shanghai
    assert "赵工、钱工" in text
    assert "http://duty.example.com/?ack=abc123&p=eng1&x=" in text
    assert "严重" in payload["markdown"]["title"]


@pytest.mark.parametrize(
    ("url", "host", "content"),
    [
        ("wecombot://BOTKEY", "qyapi.weixin.qq.com", lambda p: p["text"]["content"]),
        ("feishu://HOOKTOKEN", "open.feishu.cn", lambda p: p["content"]["text"]),
    ],
)
def test_wecom_and_feishu_get_plain_text(posts: Posts, url: str, host: str, content: Any) -> None:
    """WeCom and Feishu robots get plain text through apprise: no Markdown asterisks, the
    headline first, then the site, the time, who acts and the link."""
    assert channels.send(url, *rendered(url)).ok
    (target, payload), *_ = posts.calls
    assert host in target
    text = content(payload)
    assert "**" not in text
    assert "站点: 通知测试项目" in text and "请处理: 赵工、钱工" in text
    assert "http://duty.example.com/?ack=abc123&p=eng1&x=" in text


def test_an_ack_link_is_for_one_person_one_alert_and_24_hours() -> None:
    """The signed link acknowledges only its alert for its person, and not after it expires."""
    key = b"s" * 32
    now = dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)
    expires = now + dt.timedelta(hours=24)
    query = dict(part.split("=") for part in sign_ack_link(key, "li", "a1", expires).split("&"))
    stamp, sig = int(query["x"]), query["s"]
    assert verify_ack_link(key, "li", "a1", stamp, sig, now)
    assert not verify_ack_link(key, "zhang", "a1", stamp, sig, now)
    assert not verify_ack_link(key, "li", "a2", stamp, sig, now)
    assert not verify_ack_link(b"x" * 32, "li", "a1", stamp, sig, now)
    assert not verify_ack_link(key, "li", "a1", stamp, sig, expires + dt.timedelta(seconds=1))
