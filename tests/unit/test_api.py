"""The duty desk's API (§10) against the real store, a real worker and the in-memory link:
tokens, sessions, the 401/403 matrix, 404 and 422, every command through the single writer."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway.api.acklinks import make_ack_link, sign
from gateway.api.app import create_app
from gateway.api.desk import Desk
from gateway.api.live import StatusTap
from gateway.api.tokens import TokenBook
from gateway.commands import Command
from gateway.config.loader import parse_site
from gateway.config.site import Site
from gateway.ingest.memory import MemoryLink
from gateway.ingest.topics import Topics
from gateway.store.sqlite import SqliteStore
from gateway.worker import Submitted, Worker

T0 = dt.datetime(2026, 11, 28, 1, 30, tzinfo=dt.UTC)  # Saturday 09:30 in Shanghai: li-na's day
TOPICS = Topics("estate", "zcity")
KEY = b"k" * 32
ZCITY = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "sites" / "zcity.yaml"
PEOPLE = {
    "li-na": "duty_manager",
    "chen-jie": "project_head",
    "sun-hao": "general_manager",
    "ada": "admin",
    "guo-jun": "security",
    "liu-qiang": "engineer_strong",
}


def site_with_admin() -> Site:
    """The demo site plus one admin (the demo site has none)."""
    data = yaml.safe_load(ZCITY.read_text(encoding="utf-8"))
    data["people"].append({"id": "ada", "name": "行政 Ada", "roles": ["admin"], "credentials": []})
    return parse_site(data, "zcity+admin")


@dataclass
class Desked:
    app: FastAPI
    client: TestClient
    desk: Desk
    worker: Worker
    link: MemoryLink
    store: pathlib.Path
    tokens: dict[str, str]
    now: list[dt.datetime]

    def auth(self, person: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[person]}"}

    def as_(self, person: str, method: str, url: str, **kw: Any) -> Any:
        return self.client.request(method, url, headers=self.auth(person), **kw)


@pytest.fixture
def desk(tmp_path: pathlib.Path) -> Iterator[Desked]:
    site = site_with_admin()
    path = tmp_path / "zcity.sqlite"
    now = [T0]
    link = MemoryLink()
    tap = StatusTap(link, TOPICS.patrol_status)
    worker = Worker(site, SqliteStore(path), tap, TOPICS, lambda: now[0], T0)
    worker.step([])  # the first patrol status

    def submit(command: Command) -> Submitted:
        item = Submitted(command)
        worker.step([], [item])  # inline: the test's thread is the single writer
        return item

    the_desk = Desk(
        store_path=path,
        site=lambda: site,
        clock=lambda: now[0],
        submit=submit,
        status=lambda: (tap.version, tap.latest()),
        link_key=KEY,
    )
    with TokenBook(path) as book:
        tokens = {p: book.issue(p, T0)[1] for p in PEOPLE}
    app = create_app(the_desk)
    with TestClient(app) as client:
        yield Desked(app, client, the_desk, worker, link, path, tokens, now)
    the_desk.close()
    worker.store.close()


def major_incident(d: Desked, by: str = "guo-jun") -> str:
    answer = d.as_(by, "POST", "/api/v1/incidents", json={"title": "水管爆裂", "major": True})
    assert answer.status_code == 201, answer.text
    (record,) = answer.json()["alerts"]
    assert record["rule"] == "incident.major"
    return str(record["id"])


# -- who: 401 ------------------------------------------------------------------------------------

# Every route that needs a token, with a request that would otherwise be served.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/api/v1/me", None),
    ("GET", "/api/v1/status", None),
    ("GET", "/api/v1/alerts", None),
    ("GET", "/api/v1/alerts/ALERT", None),
    ("POST", "/api/v1/alerts/ALERT/ack", {"comment": ""}),
    ("POST", "/api/v1/alerts/ALERT/comment", {"comment": "看过了"}),
    ("POST", "/api/v1/alerts/ALERT/shelve", {"until": "2026-11-28T12:00:00+08:00"}),
    ("GET", "/api/v1/scans", None),
    ("GET", "/api/v1/readings?equipment=tx-1&metric=load_pct", None),
    ("GET", "/api/v1/devices", None),
    ("GET", "/api/v1/roster", None),
    ("POST", "/api/v1/roster/swaps", {"date": "2026-11-30", "manager": "wang-fang"}),
    ("DELETE", "/api/v1/roster/swaps/2026-11-30", None),
    ("GET", "/api/v1/handovers/2026-11-28", None),
    ("POST", "/api/v1/handovers/2026-11-28/confirm", {"notes": "无"}),
    ("GET", "/api/v1/incidents", None),
    ("POST", "/api/v1/incidents", {"title": "小事"}),
    ("POST", "/api/v1/signoffs", {"post": "front-desk", "time": "2026-11-28T09:20", "reason": "x"}),
    ("GET", "/api/v1/events", None),
    # The records (§11, tests/unit/test_api_records.py).
    ("GET", "/api/v1/worklog/2026-11-28", None),
    ("POST", "/api/v1/worklog/entries", {"kind": "call", "text": "业主来电"}),
    ("GET", "/api/v1/reports/weekly", None),
    ("GET", "/api/v1/workorders", None),
    ("POST", "/api/v1/workorders", {"title": "修灯"}),
    ("POST", "/api/v1/workorders/{ident}/close", {"comment": "已修"}),
    ("GET", "/api/v1/complaints", None),
    ("POST", "/api/v1/complaints", {"what": "噪音"}),
    ("POST", "/api/v1/complaints/{ident}/callback", {"comment": "满意"}),
    (
        "POST",
        "/api/v1/violations/waive",
        {"rule": "duty.absent", "subject": "li-na", "date": "2026-11-28", "reason": "病假"},
    ),
    ("POST", "/api/v1/reviews", {"week": "2026-W48", "text": "好"}),
    ("POST", "/api/v1/photos", {}),
    ("GET", "/api/v1/photos/{name}", None),
]


def test_every_route_lists_in_the_401_matrix(desk: Desked) -> None:
    """A route added without being put in the matrix below would escape the token check test."""
    served = {
        (method.upper(), path)
        for path, operations in desk.app.openapi()["paths"].items()
        for method in operations
    }
    public = {
        ("GET", "/api/v1/health"),
        ("POST", "/api/v1/session"),
        ("DELETE", "/api/v1/session"),
        ("GET", "/api/v1/ack-link"),
        ("POST", "/api/v1/ack-link"),
    }
    listed = {(m, u.split("?")[0]) for m, u, _ in ROUTES}
    templates = {
        (m, p.replace("{alert_id}", "ALERT").replace("{date}", d))
        for m, p in served - public
        for d in (("2026-11-30" if "swaps" in p else "2026-11-28"),)
    }
    assert templates == listed


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
def test_no_token_bad_token_and_revoked_token_are_401(
    desk: Desked, method: str, url: str, body: dict[str, Any] | None
) -> None:
    """A route that served anyone without a valid token would leak the site or let anyone act."""
    ident = major_incident(desk)
    url = url.replace("ALERT", ident)
    assert desk.client.request(method, url, json=body).status_code == 401
    bad = {"Authorization": "Bearer pg_not-a-token"}
    assert desk.client.request(method, url, json=body, headers=bad).status_code == 401
    with TokenBook(desk.store) as book:
        row = next(r for r in book.all() if r.person == "chen-jie")
        book.revoke(row.id, T0)
    answer = desk.as_("chen-jie", method, url, json=body)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"


def test_health_needs_no_token(desk: Desked) -> None:
    """A monitoring probe has no token: health must answer it."""
    answer = desk.client.get("/api/v1/health")
    assert answer.status_code == 200 and answer.json()["site"] == "zcity"


# -- roles: 403 ----------------------------------------------------------------------------------

ACT_ANY = {"li-na", "chen-jie", "sun-hao"}
# (method, url, body, the people allowed past the role check)
ROLE_ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("POST", "/api/v1/alerts/ALERT/comment", {"comment": "看过了"}, ACT_ANY),
    ("POST", "/api/v1/alerts/ALERT/shelve", {"until": "2026-11-28T12:00:00+08:00"}, ACT_ANY),
    ("POST", "/api/v1/alerts/ALERT/ack", {"comment": "处理中"}, ACT_ANY),
    ("POST", "/api/v1/roster/swaps", {"date": "2026-11-30", "manager": "wang-fang"}, {"ada"}),
    ("DELETE", "/api/v1/roster/swaps/2026-11-30", None, {"ada"}),
    ("POST", "/api/v1/handovers/2026-11-28/confirm", {"notes": "钥匙已交"}, {"li-na"}),
    (
        "POST",
        "/api/v1/signoffs",
        {"post": "front-desk", "time": "2026-11-28T09:20", "reason": "读卡器坏"},
        {"li-na"},
    ),
]


@pytest.mark.parametrize(("method", "url", "body", "allowed"), ROLE_ROUTES)
@pytest.mark.parametrize("person", sorted(PEOPLE))
def test_roles_decide_who_may_act(
    desk: Desked,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    allowed: set[str],
    person: str,
) -> None:
    """§10: a guard acknowledging alerts, a duty manager registering swaps, or an engineer
    signing off posts by hand would break the rules' accountability."""
    url = url.replace("ALERT", major_incident(desk))
    answer = desk.as_(person, method, url, json=body)
    if person in allowed:
        assert answer.status_code != 403, answer.text
        assert answer.status_code < 500
    else:
        assert answer.status_code == 403, answer.text


def test_reading_is_open_to_every_role(desk: Desked) -> None:
    """§10: everyone may read; a role check on a read route would hide the board from guards."""
    for person in PEOPLE:
        for url in ("/api/v1/status", "/api/v1/alerts", "/api/v1/roster", "/api/v1/me"):
            assert desk.as_(person, "GET", url).status_code == 200


def test_only_the_two_managers_confirm_a_handover(desk: Desked) -> None:
    """4.8: a duty manager who is not party to the handover must not complete it for others."""
    # Into Saturday 2026-11-28: zhang-wei (Friday) hands over to li-na (Saturday).
    with TokenBook(desk.store) as book:
        wang = book.issue("wang-fang", T0)[1]
    answer = desk.client.post(
        "/api/v1/handovers/2026-11-28/confirm",
        json={"notes": ""},
        headers={"Authorization": f"Bearer {wang}"},
    )
    assert answer.status_code == 403
    answer = desk.as_("li-na", "POST", "/api/v1/handovers/2026-11-28/confirm", json={"notes": "交"})
    assert answer.status_code == 200, answer.text
    shown = desk.as_("li-na", "GET", "/api/v1/handovers/2026-11-28").json()
    assert (shown["outgoing"], shown["incoming"]) == ("zhang-wei", "li-na")
    assert [c["by"] for c in shown["confirmations"]] == ["li-na"]
    assert shown["confirmations"][0]["notes"] == "交"


# -- acting on alerts through the single writer --------------------------------------------------


def test_acknowledge_is_a_stored_transition_by_the_token_person(desk: Desked) -> None:
    """An acknowledgement that bypassed the worker, or acted as someone else, would break the
    record (§6): it must be stored as the token's person's transition and close incident.major."""
    ident = major_incident(desk)
    answer = desk.as_("chen-jie", "POST", f"/api/v1/alerts/{ident}/ack", json={"comment": "已派人"})
    assert answer.status_code == 200, answer.text
    assert [a["change"] for a in answer.json()["alerts"]] == ["closed"]
    detail = desk.as_("guo-jun", "GET", f"/api/v1/alerts/{ident}").json()
    assert detail["state"] == "closed" and detail["acknowledged_by"] == "chen-jie"
    assert [(h["change"], h["actor"], h["comment"]) for h in detail["history"]] == [
        ("open", "gateway", ""),
        ("closed", "chen-jie", "已派人"),
    ]
    again = desk.as_("chen-jie", "POST", f"/api/v1/alerts/{ident}/ack", json={})
    assert again.status_code == 409 and "closed" in again.json()["detail"]


def test_unknown_alert_is_404(desk: Desked) -> None:
    """An unknown id must say so rather than 409 or 500."""
    for url in ("/api/v1/alerts/nope", "/api/v1/alerts/nope/ack"):
        method = "GET" if url.endswith("nope") else "POST"
        assert desk.as_("li-na", method, url, json={}).status_code == 404


def test_bad_bodies_are_422_naming_the_field(desk: Desked) -> None:
    """A 422 that does not name the field leaves the person guessing what to fix."""
    ident = major_incident(desk)

    def field(answer: Any) -> list[str]:
        assert answer.status_code == 422, answer.text
        return [e["loc"][-1] for e in answer.json()["detail"]]

    shelve = f"/api/v1/alerts/{ident}/shelve"
    far = {"until": "2026-11-30T12:00:00+08:00"}
    assert field(desk.as_("li-na", "POST", shelve, json=far)) == ["until"]
    signoff = {"post": "nowhere", "time": "2026-11-28T09:20", "reason": "坏"}
    assert field(desk.as_("li-na", "POST", "/api/v1/signoffs", json=signoff)) == ["post"]
    old = {"post": "front-desk", "time": "2026-11-28T07:00", "reason": "坏"}
    assert field(desk.as_("li-na", "POST", "/api/v1/signoffs", json=old)) == ["time"]
    assert field(desk.as_("li-na", "POST", "/api/v1/incidents", json={"major": True})) == ["title"]
    swap = {"date": "2026-11-30", "manager": "guo-jun"}
    assert field(desk.as_("ada", "POST", "/api/v1/roster/swaps", json=swap)) == ["manager"]


def test_filters_by_state_rule_and_time(desk: Desked) -> None:
    """The alert list's filters must select, not just pass through."""
    closed = major_incident(desk)
    desk.as_("li-na", "POST", f"/api/v1/alerts/{closed}/ack", json={})
    desk.now[0] = T0 + dt.timedelta(minutes=5)
    kept = major_incident(desk)

    def ids(query: str) -> list[str]:
        return [a["id"] for a in desk.as_("li-na", "GET", f"/api/v1/alerts?{query}").json()]

    assert ids("state=closed&rule=incident.major") == [closed]
    assert ids("state=active&rule=incident.major") == [kept]
    assert ids("rule=incident.major&since=2026-11-28T09:33") == [kept]
    assert ids("rule=incident.major&until=2026-11-28T09:33") == [closed]
    assert ids("rule=patrol.hours_short") == []


def test_manual_signoff_is_a_scan_flagged_manual(desk: Desked) -> None:
    """§10: a sign-off by hand is stored as a manual scan with the flag, and counts for the
    key posts of the patrol status."""
    body = {"post": "front-desk", "time": "2026-11-28T09:20", "reason": "读卡器坏了"}
    answer = desk.as_("li-na", "POST", "/api/v1/signoffs", json=body)
    assert answer.status_code == 201, answer.text
    (scan,) = desk.as_("li-na", "GET", "/api/v1/scans").json()
    assert (scan["method"], scan["reader"], scan["person"], scan["flags"]) == (
        "manual",
        "manual",
        "li-na",
        ["manual"],
    )
    assert scan["time"] == "2026-11-28T09:20:00+08:00"
    assert scan["assurance"] == "plain_uid"  # issue 13: every scan says how it was proven
    status = desk.as_("li-na", "GET", "/api/v1/status").json()
    assert [p["post"] for p in status["patrol"]["key_posts"]["signed"]] == ["front-desk"]


def test_swap_registered_through_the_api_changes_the_roster(desk: Desked) -> None:
    """4.4: a swap the admin registers takes effect from its registration and shows at once."""
    answer = desk.as_(
        "ada", "POST", "/api/v1/roster/swaps", json={"date": "2026-11-30", "manager": "wang-fang"}
    )
    assert answer.status_code == 200, answer.text
    week = desk.as_("guo-jun", "GET", "/api/v1/roster?week=2026-W49").json()
    monday = week["days"][0]
    assert (monday["date"], monday["rostered"], monday["manager"]) == (
        "2026-11-30",
        "zhang-wei",
        "wang-fang",
    )
    assert monday["swap"]["late"] is False
    cancel = desk.as_("ada", "DELETE", "/api/v1/roster/swaps/2026-11-30")
    assert cancel.status_code == 200, cancel.text
    week = desk.as_("guo-jun", "GET", "/api/v1/roster?week=2026-W49").json()
    assert week["days"][0]["manager"] == "zhang-wei"


def test_readings_are_bucketed_min_mean_max(desk: Desked) -> None:
    """Dashboards need downsampled series; unknown metrics are 404, not an empty list."""
    from gateway.events import Message

    for minute, value in ((0, 60.0), (1, 70.0), (6, 80.0)):
        body = f'{{"ts": "2026-11-28T09:{minute:02d}:00+08:00", "values": {{"load_pct": {value}}}}}'
        desk.worker.step([Message("estate/zcity/equipment/tx-1/reading", body.encode(), T0)])
    answer = desk.as_(
        "guo-jun",
        "GET",
        "/api/v1/readings?equipment=tx-1&metric=load_pct&since=2026-11-28T09:00"
        "&until=2026-11-28T09:10&bucket_seconds=300",
    )
    assert answer.status_code == 200, answer.text
    buckets = [(b["min"], b["mean"], b["max"], b["count"]) for b in answer.json()["buckets"]]
    assert buckets == [(60.0, 65.0, 70.0, 2), (80.0, 80.0, 80.0, 1)]
    missing = desk.as_("guo-jun", "GET", "/api/v1/readings?equipment=tx-1&metric=nope")
    assert missing.status_code == 404


# -- the page's session, acknowledge links -------------------------------------------------------


def test_login_turns_a_token_into_a_session_cookie(desk: Desked) -> None:
    """An EventSource cannot send a header: the page must work on the cookie alone, and
    revoking the token must end the session."""
    answer = desk.client.post("/api/v1/session", json={"token": desk.tokens["li-na"]})
    assert answer.status_code == 200 and answer.json()["may"]["signoff"] is True
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert desk.client.get("/api/v1/me").json()["person"] == "li-na"
    with TokenBook(desk.store) as book:
        book.revoke(next(r.id for r in book.all() if r.person == "li-na"), T0)
    assert desk.client.get("/api/v1/me").status_code == 401
    assert desk.client.post("/api/v1/session", json={"token": "pg_wrong"}).status_code == 401


def test_a_forged_session_cookie_is_refused(desk: Desked) -> None:
    """A cookie someone wrote by hand must not pass for a session."""
    with TokenBook(desk.store) as book:
        ident = next(r.id for r in book.all() if r.person == "li-na")
    desk.client.cookies.set("patrol_session", f"{ident}.9999999999.{'0' * 64}")
    assert desk.client.get("/api/v1/me").status_code == 401


def test_the_page_needs_no_token(desk: Desked) -> None:
    """The page's own files are served to anyone (it shows the login form itself)."""
    for path in ("/", "/app.js", "/style.css"):
        assert desk.client.get(path).status_code == 200
    assert "值班台" in desk.client.get("/").text


def test_an_ack_link_acts_for_its_person_on_its_alert_only(desk: Desked) -> None:
    """§9: the link acknowledges without a login, for that person and that alert, for 24 h;
    a tampered, expired or reused-for-another-alert link must be refused."""
    first, second = major_incident(desk), major_incident(desk, "liu-qiang")
    link = make_ack_link("http://desk", KEY, "guo-jun", first, T0)
    query = dict(p.split("=") for p in link.split("?")[1].split("&"))
    body = {
        "alert": first,
        "person": "guo-jun",
        "expires": int(query["x"]),
        "sig": query["s"],
        "comment": "收到",
    }
    other = {**body, "alert": second}
    assert desk.client.post("/api/v1/ack-link", json=other).status_code == 401
    tampered = {**body, "person": "chen-jie"}
    assert desk.client.post("/api/v1/ack-link", json=tampered).status_code == 401
    view = desk.client.get(
        "/api/v1/ack-link",
        params={k: v for k, v in body.items() if k != "comment"},
    )
    assert view.status_code == 200 and view.json()["alert"]["id"] == first
    desk.now[0] = T0 + dt.timedelta(hours=25)
    assert desk.client.post("/api/v1/ack-link", json=body).status_code == 401
    desk.now[0] = T0 + dt.timedelta(hours=1)
    answer = desk.client.post("/api/v1/ack-link", json=body)
    assert answer.status_code == 200, answer.text
    assert desk.as_("li-na", "GET", f"/api/v1/alerts/{first}").json()["acknowledged_by"] == (
        "guo-jun"
    )
    assert desk.as_("li-na", "GET", f"/api/v1/alerts/{second}").json()["state"] == "open"
    long_lived = int((T0 + dt.timedelta(days=30)).timestamp())
    forged = {**body, "expires": long_lived, "sig": sign(KEY, "guo-jun", first, long_lived)}
    assert desk.client.post("/api/v1/ack-link", json=forged).status_code == 401


def test_someone_notified_of_an_alert_may_act_on_it(desk: Desked) -> None:
    """§10: anyone may act on an alert they were notified of, and on no other: the desk of a
    running gateway asks the store's notifications (gateway/notify/outbox.py)."""
    from gateway.notify.outbox import was_notified

    desk.desk.notified = lambda alert, person: was_notified(desk.store, alert, person)
    alert = major_incident(desk, by="li-na")
    other = major_incident(desk, by="li-na")
    store = SqliteStore(desk.store)
    store.connection.execute(
        "INSERT INTO notifications (alert_id, rule, subject, severity, stage, repeat, kind, at,"
        " url, masked, people, record) VALUES (?, 'incident.major', 'x', 'critical', 0, 0,"
        " 'raised', 0, 'json://h/', 'json://h/', ?, '{}')",
        (alert, json.dumps(["guo-jun"])),
    )
    store.commit()
    store.close()
    body = {"comment": "已到场"}
    assert desk.as_("guo-jun", "POST", f"/api/v1/alerts/{other}/ack", json=body).status_code == 403
    answer = desk.as_("guo-jun", "POST", f"/api/v1/alerts/{alert}/ack", json=body)
    assert answer.status_code < 300, answer.text
    assert desk.as_("liu-qiang", "POST", f"/api/v1/alerts/{other}/ack", json={}).status_code == 403
