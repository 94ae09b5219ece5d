"""Suspicious scans are flagged, not refused (contract §5, last paragraph)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from gateway.config import Site
from gateway.events import Message, Scan
from gateway.ingest.topics import Topics
from gateway.pipeline import Pipeline
from gateway.rules.flags import Flagger
from gateway.store.sqlite import SqliteStore
from tests.unit.ruleharness import make_site

T0 = dt.datetime(2026, 11, 24, 2, 0, tzinfo=dt.UTC)


def site_with_walking() -> Site:
    return make_site(
        walking={"default_minutes": 1, "legs": [{"between": ["front", "power"], "minutes": 8}]}
    )


class Scanner:
    def __init__(self, site: Site) -> None:
        self.store = SqliteStore()
        self.pipeline = Pipeline(site, Topics("estate", site.id), self.store, T0)
        self.seq = 0

    def scan(self, reader: str, who: str, seconds: float) -> list[str]:
        """Scan and return the flags of the scan answer."""
        self.seq += 1
        t = T0 + dt.timedelta(seconds=seconds)
        body = {"credential": who, "method": "qr", "seq": self.seq, "ts": t.isoformat()}
        msg = Message(f"estate/t/reader/{reader}/scan", json.dumps(body).encode(), t, 1)
        (answer,) = self.pipeline.handle(msg).answers
        return list(answer.flags)


@pytest.mark.parametrize(("gap", "flagged"), [(30, True), (60, True), (61, False)])
def test_duplicate_tap_within_60_seconds(gap: float, flagged: bool) -> None:
    """The same person at the same reader within 60 s (inclusive) is a duplicate tap."""
    s = Scanner(site_with_walking())
    assert s.scan("fd", "ANN", 0) == []
    assert s.scan("fd", "ANN", gap) == (["duplicate_tap"] if flagged else [])


@pytest.mark.parametrize(("gap", "flagged"), [(59, True), (60, False)])
def test_impossible_travel_default_walking_time(gap: float, flagged: bool) -> None:
    """Another post sooner than the default walking minute is impossible; a minute is fine."""
    s = Scanner(site_with_walking())
    s.scan("fd", "ANN", 0)
    assert s.scan("mc", "ANN", gap) == (["impossible_travel"] if flagged else [])


def test_declared_walking_leg_and_counts() -> None:
    """A declared leg (8 min) overrides the default; flags are stored and counted, and count."""
    s = Scanner(site_with_walking())
    s.scan("fd", "ANN", 0)
    assert s.scan("pr", "ANN", 7 * 60) == ["impossible_travel"]
    assert s.scan("fd", "ANN", 7 * 60 + 8 * 60) == []
    assert s.scan("fd", "BOB", 0) == []  # another person: no flag from Ann's scans
    assert s.pipeline.counters["flag_impossible_travel"] == 1
    assert s.store.count("scans") == 4  # flagged scans are kept, not refused


def test_flags_are_stored_and_a_redelivery_answers_the_same() -> None:
    """A duplicate delivery (same seq) gets the first answer's flags, not a duplicate_tap."""
    s = Scanner(site_with_walking())
    s.scan("fd", "ANN", 0)
    assert s.scan("fd", "ANN", 10) == ["duplicate_tap"]
    assert s.store.scan_flags("fd", 2) == [("duplicate_tap",)]
    s.seq -= 1  # deliver seq 2 again
    assert s.scan("fd", "ANN", 10) == ["duplicate_tap"]
    assert s.pipeline.counters["duplicates"] == 1
    assert s.pipeline.counters["flag_duplicate_tap"] == 1


def test_walking_leg_must_name_declared_posts() -> None:
    """A walking leg that names an unknown post is a config error with its key path."""
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as info:
        make_site(walking={"legs": [{"between": ["front", "nowhere"], "minutes": 3}]})
    assert "walking.legs[0].between[1]" in str(info.value)


def test_note_is_flag_then_remember() -> None:
    """The pipeline flags and remembers a counted scan with one look-up (`note`): it must flag
    and keep exactly what `flag` then `remember` would, late scans included (a late scan must
    not replace a newer one as its person's latest)."""
    site = site_with_walking()
    post = {"fd": "front", "mc": "monitoring-center", "pr": "power"}
    plan = [
        ("fd", "ANN", 0),
        ("fd", "ANN", 30),
        ("mc", "ANN", 50),
        ("pr", "ANN", 400),
        ("fd", "ANN", 100),
        ("fd", "BOB", 120),
        ("mc", "ANN", 460),
        ("fd", "BOB", 125),
    ]
    noted, plain = Flagger(site), Flagger(site)
    for reader, who, seconds in plan:
        t = T0 + dt.timedelta(seconds=seconds)
        scan = Scan(reader, post[reader], who, "qr", who, t, t)
        one = noted.note(scan)
        two = plain.flag(scan)
        plain.remember(two)
        assert one == two and one.flags == two.flags, (reader, who, seconds)
    # ANN's latest is the scan at 460 s, not the late one at 100 s: 10 s later at its reader
    # is a duplicate tap.
    at = T0 + dt.timedelta(seconds=470)
    probe = Scan("mc", post["mc"], "ANN", "qr", "ANN", at, at)
    assert noted.flag(probe).flags == plain.flag(probe).flags == ("duplicate_tap",)
