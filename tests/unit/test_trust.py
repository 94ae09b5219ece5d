"""Signatures that cannot be copied and timestamps that cannot be backdated (issue 13, §1/§3/§5).

The SUN vectors are NXP AN12196's published example (all-zero keys, UID 04DE5F1EACC040, read
counter 61), the same the open-source SDM back-ends test against.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import pathlib
import sqlite3
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, Site, load_site, parse_site
from gateway.events import Message, Scan
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.store.sqlite import SqliteStore
from gateway.trust import bridge, qr, sun
from gateway.trust.secrets import (
    Secrets,
    SecretsError,
    SecretsFile,
    add_qr_secret,
    load_secrets,
    secrets_path,
)

SITES = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "sites"
TOPICS = Topics("estate", "zcity")
ZERO = bytes(16)
AN_PICC = "EF963FF7828658A599F3041510671E88"
AN_CMAC = "94EED9EE65337086"
AN_UID = "04DE5F1EACC040"
QR_KEY = bytes(range(32))
BRIDGE_KEY = b"k" * 32
# Friday 2026-11-27, 09:30 Shanghai: li-na's duty day, clear of the morning deadlines.
T0 = dt.datetime(2026, 11, 27, 1, 30, tzinfo=dt.UTC)


def trust_site(**duty: Any) -> Site:
    """zcity with the AN12196 tag and a QR code for wang-fang, and a post requiring signatures."""
    data = yaml.safe_load((SITES / "zcity.yaml").read_text(encoding="utf-8"))
    for person in data["people"]:
        if person["id"] == "wang-fang":
            person["credentials"].append(f"nfc:{AN_UID}")
    for post in data["posts"]:
        if post["id"] == "model-home":
            post["require"] = "signed"
    data["duty"].update(duty)
    return parse_site(data)


SECRETS = Secrets.model_validate(
    {
        "people": {"wang-fang": {"qr": QR_KEY.hex()}},
        "tags": {AN_UID: {"meta_read_key": ZERO.hex(), "file_read_key": ZERO.hex()}},
        "readers": {"fd-1": {"bridge": BRIDGE_KEY.hex()}},
    }
)


def pipeline(
    site: Site | None = None, start: dt.datetime = T0, store: SqliteStore | None = None
) -> Pipeline:
    store = store or SqliteStore()
    return Pipeline(site or trust_site(), TOPICS, store, start, secrets=lambda: SECRETS)


def stored_scans(p: Pipeline) -> list[tuple[Any, ...]]:
    """(credential, assurance, sun_counter) of every stored scan, read from the file."""
    p.store.commit()
    with contextlib.closing(sqlite3.connect(p.store.path)) as db:
        return list(db.execute("SELECT credential, assurance, sun_counter FROM scans"))


def scan_msg(body: dict[str, Any], at: dt.datetime = T0, reader: str = "fd-1") -> Message:
    topic = f"estate/zcity/reader/{reader}/scan"
    return Message(topic, json.dumps(body).encode(), at, qos=1)


def sun_body(picc: str, cmac: str, seq: int, ts: dt.datetime = T0) -> dict[str, Any]:
    return {
        "credential": AN_UID,
        "method": "nfc",
        "seq": seq,
        "ts": ts.isoformat(),
        "auth": {"sun": {"picc": picc, "cmac": cmac}},
    }


def tap(uid: bytes, counter: int, key: bytes = ZERO) -> tuple[str, str]:
    """What a tag with `key` as both SDM keys mirrors for one read."""
    picc = sun.encrypt_picc(key, uid, counter, b"\x11" * 5)
    return picc.hex(), sun.sdm_mac(key, uid, counter).hex()


# -- AN12196 ------------------------------------------------------------------------------------


def test_an12196_encrypted_picc_example_verifies() -> None:
    """Prevents a wrong CBC mode, byte order of the counter, or key derivation passing our own
    round trips while failing every real tag: NXP's example must decode and verify."""
    picc = sun.verify(ZERO, ZERO, bytes.fromhex(AN_PICC), bytes.fromhex(AN_CMAC))
    assert picc.uid.hex().upper() == AN_UID and picc.counter == 61
    assert sun.session_mac_key(ZERO, picc.uid, 61).hex() == "3fb5f6e3a807a03d5e3570ace393776f"


def test_an12196_plain_mirroring_example_mac() -> None:
    """Prevents a wrong truncation (odd bytes S1, S3 … S15): AN12196's plain SUN example,
    uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3."""
    assert sun.sdm_mac(ZERO, bytes.fromhex("041E3C8A2D6B80"), 6).hex().upper() == (
        "4B00064004B0B3D3"
    )


def test_a_wrong_sun_mac_or_key_is_refused() -> None:
    """Prevents a tampered MAC or another tag's key verifying."""
    with pytest.raises(sun.SunError):
        sun.verify(ZERO, ZERO, bytes.fromhex(AN_PICC), bytes.fromhex("94EED9EE65337087"))
    with pytest.raises(sun.SunError):
        sun.verify(b"\x01" * 16, ZERO, bytes.fromhex(AN_PICC), bytes.fromhex(AN_CMAC))


# -- SUN through the pipeline -------------------------------------------------------------------


def test_a_genuine_sun_tap_counts_with_assurance_sun(tmp_path: pathlib.Path) -> None:
    """Prevents a genuine NTAG 424 tap being stored as a plain UID (or refused)."""
    p = pipeline(store=SqliteStore(tmp_path / "s.sqlite"))
    (answer,) = p.handle(scan_msg(sun_body(AN_PICC, AN_CMAC, 1))).answers
    assert answer.ok and answer.flags == ()
    assert stored_scans(p) == [(AN_UID, "sun", 61)]


def test_a_replayed_sun_message_is_flagged_and_not_counted() -> None:
    """Prevents a recorded tap (sniffed or copied off the tag's URL) signing in again."""
    p = pipeline()
    p.handle(scan_msg(sun_body(AN_PICC, AN_CMAC, 1)))
    later = T0 + dt.timedelta(minutes=10)
    out = p.handle(scan_msg(sun_body(AN_PICC, AN_CMAC, 2, later), later))
    (answer,) = out.answers
    assert not answer.ok and "bad_signature" in answer.flags
    assert "already seen" in answer.message
    assert p.store.count("scans") == 2  # stored and shown, not thrown away


def test_a_sun_counter_out_of_order_by_time_is_flagged() -> None:
    """Prevents a skimmed read (counter 9, replayed later) passing once the real card has
    tapped with counter 10: counters must rise with time."""
    p = pipeline()
    uid = bytes.fromhex(AN_UID)
    p.handle(scan_msg(sun_body(*tap(uid, 10), 1)))
    later = T0 + dt.timedelta(minutes=5)
    (answer,) = p.handle(scan_msg(sun_body(*tap(uid, 9), 2, later), later)).answers
    assert not answer.ok and "out of order" in answer.message
    after = T0 + dt.timedelta(minutes=6)
    (fine,) = p.handle(scan_msg(sun_body(*tap(uid, 11), 3, after), after)).answers
    assert fine.ok


def test_a_wrong_sun_mac_and_a_cloned_uid_are_flagged() -> None:
    """Prevents a forged MAC, or a genuine SUN of another tag presented with this UID."""
    p = pipeline()
    (bad,) = p.handle(scan_msg(sun_body(AN_PICC, "94EED9EE65337087", 1))).answers
    assert not bad.ok and "bad_signature" in bad.flags
    other = tap(bytes.fromhex("04AABBCCDDEEFF"), 3)
    (cloned,) = p.handle(scan_msg(sun_body(*other, 2))).answers
    assert not cloned.ok and "cloned" in cloned.message


def test_a_replayed_sun_is_refused_after_a_restart() -> None:
    """Prevents the counter history living only in memory: a restart must not make an old tap
    new again (the store answers)."""
    store = SqliteStore()
    first = Pipeline(trust_site(), TOPICS, store, T0, secrets=lambda: SECRETS)
    first.handle(scan_msg(sun_body(AN_PICC, AN_CMAC, 1)))
    store.commit()
    again = Pipeline(trust_site(), TOPICS, store, T0, secrets=lambda: SECRETS)
    later = T0 + dt.timedelta(minutes=1)
    (answer,) = again.handle(scan_msg(sun_body(AN_PICC, AN_CMAC, 7, later), later)).answers
    assert not answer.ok


# -- signed QR ------------------------------------------------------------------------------------


def qr_body(text: str, seq: int, ts: dt.datetime = T0) -> dict[str, Any]:
    return {"credential": text, "method": "qr", "seq": seq, "ts": ts.isoformat()}


def test_the_current_signed_qr_counts(tmp_path: pathlib.Path) -> None:
    """Prevents a genuine rotating code being refused, or kept as an unknown credential."""
    p = pipeline(store=SqliteStore(tmp_path / "s.sqlite"))
    code = qr.code(QR_KEY, "WF-2026", T0)
    (answer,) = p.handle(scan_msg(qr_body(code, 1), reader="mh-1")).answers
    assert answer.ok and answer.person == "王芳" and answer.flags == ()
    assert stored_scans(p) == [("WF-2026", "signed_qr", None)]


def test_a_qr_code_90_seconds_old_is_flagged() -> None:
    """Prevents a screenshot of a code signing in a minute and a half later."""
    p = pipeline()
    code = qr.code(QR_KEY, "WF-2026", T0 - dt.timedelta(seconds=90))
    (answer,) = p.handle(scan_msg(qr_body(code, 1))).answers
    assert not answer.ok and "bad_signature" in answer.flags
    assert "screenshot" in answer.message


def test_a_qr_code_with_a_forged_mac_is_flagged() -> None:
    """Prevents someone who knows the credential text inventing the MAC."""
    p = pipeline()
    step = qr.step_of(T0)
    (answer,) = p.handle(scan_msg(qr_body(f"WF-2026~{step}~{'0' * 32}", 1))).answers
    assert not answer.ok and "bad_signature" in answer.flags


def test_a_signed_qr_is_accepted_one_step_either_side() -> None:
    """Prevents a phone whose code changed a second before the scan being refused (±1 step)."""
    for offset in (-30, 0, 30):
        signed = qr.parse(qr.code(QR_KEY, "X", T0 + dt.timedelta(seconds=offset)))
        assert signed is not None and qr.verify(QR_KEY, signed, T0) is None
    stale = qr.parse(qr.code(QR_KEY, "X", T0 - dt.timedelta(seconds=61)))
    assert stale is not None and qr.verify(QR_KEY, stale, T0) == "qr_step"


# -- require: signed ----------------------------------------------------------------------------


def test_a_plain_uid_at_a_post_that_requires_signatures_is_flagged_unsigned() -> None:
    """Prevents `require: signed` being silent about a plain card, or refusing it outright
    (it still counts as presence, §4)."""
    p = pipeline()
    body = {"credential": "04A224B1C23380", "method": "nfc", "seq": 1}
    (answer,) = p.handle(scan_msg(body, reader="mh-1")).answers
    assert answer.ok and answer.flags == ("unsigned",)
    later = T0 + dt.timedelta(minutes=30)
    (plain,) = p.handle(scan_msg({**body, "seq": 2}, later, reader="fd-1")).answers
    assert plain.flags == ()
    last = T0 + dt.timedelta(minutes=60)
    (signed,) = p.handle(scan_msg(sun_body(AN_PICC, AN_CMAC, 3, last), last, "mh-1")).answers
    assert signed.ok and signed.flags == ()


# -- backdating -----------------------------------------------------------------------------------


def forged_patrol(bridge_key: bytes | None) -> list[Message]:
    """zhang-wei (on duty) at every key post, 09:00–13:30 local, all sent at 17:00 at once."""
    posts = ["fd-1", "mc-1", "ge-1", "gw-1", "mh-1"]
    start = dt.datetime(2026, 11, 27, 1, 0, tzinfo=dt.UTC)
    arrive = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.UTC)
    out = []
    for i in range(19):
        ts = (start + dt.timedelta(minutes=15 * i)).isoformat()
        body: dict[str, Any] = {"credential": "04A224B1C23380", "method": "nfc", "ts": ts}
        body["seq"] = i
        if bridge_key is not None:
            body["auth"] = {"bridge": {"mac": bridge.mac(bridge_key, *body.values())}}
        out.append(scan_msg(body, arrive, reader=posts[i % len(posts)]))
    return out


def run_day(messages: list[Message], bridge_readers: dict[str, str]) -> list[str]:
    """The rules opened from the duty day's start to 18:01, with these bridge keys."""
    site = trust_site(max_backdate_hours=1)
    secrets = Secrets.model_validate(
        {"readers": {r: {"bridge": k} for r, k in bridge_readers.items()}}
    )
    p = Pipeline(site, TOPICS, SqliteStore(), T0 - dt.timedelta(hours=1), secrets=lambda: secrets)
    opened = []
    for m in messages:
        opened += [t.alert.rule for t in p.handle(m).transitions if t.change == "open"]
    end = dt.datetime(2026, 11, 27, 10, 1, tzinfo=dt.UTC)  # 18:01 local
    opened += [t.alert.rule for t in p.tick(end).transitions if t.change == "open"]
    return opened


def test_a_forged_patrol_after_the_fact_counts_for_nothing() -> None:
    """The attack of issue 13: knowing a card's UID, post a whole morning's patrol at 17:00
    with past timestamps. Without the backdating limit it would save the day's quota and key
    posts; it must be stored, flagged `backdated` and leave the 18:00 alerts to fire."""
    messages = forged_patrol(bridge_key=None)
    p = pipeline(trust_site(max_backdate_hours=1), T0 - dt.timedelta(hours=1))
    (answer,) = p.handle(messages[0]).answers
    assert not answer.ok and "backdated" in answer.flags
    opened = run_day(messages, {})
    assert "patrol.hours_short" in opened and "patrol.key_post_missed" in opened


def test_a_bridge_signed_store_and_forward_counts_however_late() -> None:
    """Prevents the backdating limit throwing away a genuine reader bridge's buffered scans:
    with the bridge's MAC over their own time they count (and the same forged without the
    key does not)."""
    keys = {r: BRIDGE_KEY.hex() for r in ("fd-1", "mc-1", "ge-1", "gw-1", "mh-1")}
    opened = run_day(forged_patrol(BRIDGE_KEY), keys)
    assert "patrol.hours_short" not in opened and "patrol.key_post_missed" not in opened
    forged = run_day(forged_patrol(b"x" * 32), keys)
    assert "patrol.hours_short" in forged


def test_a_recent_late_scan_is_still_trusted() -> None:
    """Prevents the limit catching a reader that buffered for a few minutes (§1: trusted up to
    max_backdate_hours)."""
    p = pipeline()
    body = {"credential": "04A224B1C23380", "method": "nfc", "seq": 1}
    body["ts"] = (T0 - dt.timedelta(hours=23)).isoformat()
    (answer,) = p.handle(scan_msg(body)).answers
    assert answer.ok and "backdated" not in answer.flags
    body = {**body, "seq": 2, "ts": (T0 - dt.timedelta(hours=25)).isoformat()}
    (old,) = p.handle(scan_msg(body)).answers
    assert not old.ok and old.flags == ("backdated",)


def test_a_restart_does_not_count_a_backdated_scan() -> None:
    """Prevents the flagged scan sneaking into the rules when a restart reads the record back."""
    store = SqliteStore()
    site = trust_site(max_backdate_hours=1)
    start = T0 - dt.timedelta(hours=1)
    first = Pipeline(site, TOPICS, store, start, secrets=lambda: SECRETS)
    for m in forged_patrol(None):
        first.handle(m)
    store.commit()
    again = Pipeline(site, TOPICS, store, start, secrets=lambda: SECRETS)
    again.restore(first.mark())
    status = again.status()
    assert (
        status is not None
        and status["patrol"]["minutes"] == 0
        and not status["key_posts"]["signed"]
    )


# -- payloads, secrets, config --------------------------------------------------------------------


def test_a_malformed_auth_is_refused_with_the_field_named() -> None:
    """Prevents a device bug (`auth` of the wrong shape) passing as an unsigned scan unseen."""
    p = pipeline()
    body = {"credential": AN_UID, "method": "nfc", "auth": {"sun": {"picc": "zz", "cmac": ""}}}
    out = p.handle(scan_msg(body))
    assert not out.answers and out.refusals[0].rejection.code == "bad_field"
    assert "auth.sun.picc" in out.refusals[0].reason


def test_secrets_file_round_trip_and_errors(tmp_path: pathlib.Path) -> None:
    """Prevents `qr` replacing a person's secret on a second run (every printed code would
    change), a world-readable secrets file, and a broken file being read as empty."""
    path = tmp_path / "secrets.yaml"
    key = add_qr_secret(path, "wang-fang")
    assert add_qr_secret(path, "wang-fang") == key
    assert path.stat().st_mode & 0o077 == 0
    assert load_secrets(path).qr_key("wang-fang") == key
    assert load_secrets(tmp_path / "none.yaml") == Secrets()
    path.write_text("tags: {ZZ: {meta_read_key: 00, file_read_key: 00}}\n", encoding="utf-8")
    with pytest.raises(SecretsError, match=r"secrets\.yaml"):
        load_secrets(path)
    assert secrets_path(tmp_path, {}) == tmp_path / "secrets.yaml"
    assert secrets_path(tmp_path, {"PATROL_SECRETS": "/x/s.yaml"}) == pathlib.Path("/x/s.yaml")


def test_check_config_validates_max_backdate_hours_and_require(tmp_path: pathlib.Path) -> None:
    """Prevents a typo in `require` or a zero backdating limit being accepted silently."""
    site = trust_site(max_backdate_hours=6)
    assert site.config.duty.max_backdate_hours == 6
    assert site.posts["model-home"].require == "signed"
    text = (SITES / "zcity.yaml").read_text(encoding="utf-8")
    bad = text.replace("max_clock_skew_seconds: 300", "max_backdate_hours: 0").replace(
        "readers: [mh-1]}", "readers: [mh-1], require: sgned}"
    )
    path = tmp_path / "site.yaml"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_site(path)
    message = str(caught.value)
    assert "duty.max_backdate_hours" in message and "posts[model-home].require" in message


def test_the_reader_bridge_signs_what_the_gateway_checks() -> None:
    """Prevents the bridge and the gateway disagreeing on what the MAC covers (every buffered
    scan would then be flagged): a scan the bridge kept for 30 hours still counts, and the same
    scan unsigned is `backdated`."""
    from devices.reader_bridge import scan_payload

    read_at = (T0 - dt.timedelta(hours=30)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    topic = "estate/zcity/reader/fd-1/scan"
    signed = scan_payload("04:a2:24:b1:c2:33:80", "nfc", read_at, 41, BRIDGE_KEY)
    plain = scan_payload("04:a2:24:b1:c2:33:80", "nfc", read_at, 42, None)
    p = pipeline()
    (ok,) = p.handle(Message(topic, signed, T0, qos=1)).answers
    assert ok.ok and ok.flags == ()
    (late,) = p.handle(Message(topic, plain, T0, qos=1)).answers
    assert not late.ok and late.flags == ("backdated",)
    other_key = scan_payload("04:a2:24:b1:c2:33:80", "nfc", read_at, 43, b"z" * 32)
    (forged,) = p.handle(Message(topic, other_key, T0, qos=1)).answers
    assert not forged.ok and forged.flags == ("bad_signature",)


def test_the_store_and_the_memory_twin_judge_sun_counters_alike() -> None:
    """Prevents the unit tests' twin and the store's SQL drifting apart on what a replayed or
    out-of-order counter is (the store is what runs)."""
    from gateway.trust.verify import MemoryCounters

    store, twin = SqliteStore(), MemoryCounters()
    for i, (counter, minutes) in enumerate([(10, 0), (12, 10), (20, 30)]):
        at = T0 + dt.timedelta(minutes=minutes)
        twin.add(AN_UID, counter, at)
        base = scan_msg({}, at)
        store.add_scan(
            Scan(
                "fd-1",
                "front-desk",
                AN_UID,
                "nfc",
                None,
                at,
                base.received_at,
                i,
                sun_counter=counter,
            )
        )
    cases = [(10, 5), (12, 40), (11, 5), (11, 20), (13, 20), (21, 31), (21, 29), (9, -1), (15, 30)]
    for counter, minutes in cases:
        at = T0 + dt.timedelta(minutes=minutes)
        assert store.sun_conflict(AN_UID, counter, at) == twin.sun_conflict(AN_UID, counter, at)
    assert twin.sun_conflict(AN_UID, 12, T0) == "seen"
    assert twin.sun_conflict(AN_UID, 11, T0 + dt.timedelta(minutes=20)) == "order"
    assert twin.sun_conflict(AN_UID, 21, T0 + dt.timedelta(minutes=31)) is None
    assert store.sun_conflict("04AABBCCDDEEFF", 10, T0) is None


def test_a_bad_secrets_file_stops_the_start_with_the_reason(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Prevents a gateway running with a secrets file it could not read, where every signed
    scan would silently count as a plain one."""
    from gateway.app import run_gateway

    bad = tmp_path / "keys.yaml"
    bad.write_text("people: {wang-fang: {qr: not-hex}}\n", encoding="utf-8")
    monkeypatch.setenv("PATROL_SECRETS", str(bad))
    assert run_gateway(trust_site(), "mqtt://127.0.0.1:1", tmp_path / "data", "estate") == 2
    assert "keys.yaml" in caplog.text
    assert not (tmp_path / "data").exists()


def test_a_flagged_out_scan_is_not_ok_in_influxdb(tmp_path: pathlib.Path) -> None:
    """Prevents the dashboards counting a backdated scan as a good sign-in while the reader
    was told ok: false (contract §5, §8 `ok`)."""
    from gateway.influx.points import SCANS, Points

    site = trust_site()
    p = pipeline(site, store=SqliteStore(tmp_path / "s.sqlite"))
    body = {"credential": "04A224B1C23380", "method": "nfc", "seq": 1}
    body["ts"] = (T0 - dt.timedelta(hours=30)).isoformat()
    (answer,) = p.handle(scan_msg(body)).answers
    assert not answer.ok
    p.store.commit()
    (row,) = SCANS.fetch(p.store.connection, 0, 10)
    text = Points(site).scan(row)
    assert text is not None and "ok=false" in text and 'flags="backdated"' in text


def test_the_secrets_file_is_looked_at_again_once_a_second(tmp_path: pathlib.Path) -> None:
    """Prevents a system call for every scan (7 % of the worker's time) and a change that is
    never seen: within the second the secrets read before stand, after it the new ones."""
    path = tmp_path / "secrets.yaml"
    now = [100.0]
    watched = SecretsFile(path, every=1.0, clock=lambda: now[0])
    assert watched.current().qr_key("wang-fang") is None
    key = add_qr_secret(path, "wang-fang")  # `patrol-gateway qr` while the gateway runs
    now[0] += 0.5
    assert watched.current().qr_key("wang-fang") is None
    now[0] += 0.6
    assert watched.current().qr_key("wang-fang") == key
