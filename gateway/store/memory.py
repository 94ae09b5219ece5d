"""The store's in-memory twin for `replay` without `--store` (contract §7: it stores nothing).

The pipeline asks the store whether a scan or reading was stored before (redeliveries, restarted
counters, §3) and whether a tag's SUN counter was seen (§5): the twin answers from compact
dictionaries instead of SQLite rows and keeps nothing else of the messages, nor the alert
transitions (nothing reads them back in a replay). Everything else (the alerts' latest records,
commands, refusals, notifications, meta) stays in SQLite `:memory:`, as before: it is written a
few times per thousand messages.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, NoReturn

from gateway.alerts.book import Transition
from gateway.events import DeviceStatus, Reading, Scan
from gateway.store.sqlite import SqliteStore, _t

Instants = tuple[dt.datetime | None, dt.datetime]
ScanEntry = tuple[str, dt.datetime | None, tuple[str, ...]]  # credential, sent ts, flags


def _values(values: dict[str, float | bool]) -> dict[str, float | bool]:
    """Values as the store keeps them: numbers as floats, booleans as booleans."""
    return {m: (v if isinstance(v, bool) else float(v)) for m, v in values.items()}


class MemoryStore(SqliteStore):
    """`SqliteStore(":memory:")` for the pipeline's writes and look-ups, messages kept apart."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        # (reader, seq) → (credential, sent ts, flags) of each scan stored, in order
        self._scans: dict[tuple[str, int], list[ScanEntry]] = {}
        self._scan_count = 0
        self._transition_count = 0
        self._sun: dict[str, list[tuple[int, float]]] = {}  # uid → (counter, time) accepted
        # (equipment, seq) → (sent ts, time) → the values stored with them: the store's rows
        # grouped as `same_reading` groups them (values compared as it compares them)
        self._readings: dict[tuple[str, int], dict[Instants, dict[str, float | bool]]] = {}

    def stored_scan(self, scan: Scan) -> tuple[str, ...] | bool | None:
        """As `SqliteStore.stored_scan`."""
        if scan.seq is None:
            return None
        rows = self._scans.get((scan.reader, scan.seq))
        if not rows:
            return None
        sent = scan.sent_ts
        for credential, sent_ts, flags in rows:
            if credential == scan.credential and sent_ts == sent:
                return flags
        return True

    def add_scan(self, scan: Scan) -> int:
        """Remember what the look-ups need; returns a row id as the store's would be."""
        self._scan_count += 1
        if scan.seq is not None:
            entry = (scan.credential, scan.sent_ts, scan.flags)
            self._scans.setdefault((scan.reader, scan.seq), []).append(entry)
        if scan.sun_counter is not None and scan.method == "nfc":
            self._sun.setdefault(scan.credential, []).append((scan.sun_counter, _t(scan.time)))
        return self._scan_count

    def sun_conflict(
        self, uid: str, counter: int, time: dt.datetime
    ) -> Literal["seen", "order"] | None:
        """As `SqliteStore.sun_conflict`."""
        t = _t(time)
        found: Literal["seen", "order"] | None = None
        for c, at in self._sun.get(uid, ()):
            if c == counter:
                return "seen"
            if (c < counter and at > t) or (c > counter and at < t):
                found = "order"
        return found

    def scan_flags(self, reader: str, seq: int) -> list[tuple[str, ...]]:
        """As `SqliteStore.scan_flags`."""
        return [flags for _, _, flags in self._scans.get((reader, seq), ())]

    def stored_reading(self, reading: Reading) -> bool | None:
        """As `SqliteStore.stored_reading`."""
        if reading.seq is None:
            return None
        groups = self._readings.get((reading.equipment, reading.seq))
        if not groups:
            return None
        sent, wanted = reading.sent_ts, _values(reading.values)
        return any(k[0] == sent and _values(v) == wanted for k, v in groups.items())

    def add_reading(self, reading: Reading) -> None:
        """Remember the values of a reading with a seq (the only ones a look-up can find)."""
        if reading.seq is None:
            return
        key, at = (reading.equipment, reading.seq), (reading.sent_ts, reading.time)
        groups = self._readings.get(key)
        if groups is None:  # the common case: a seq not seen before
            self._readings[key] = {at: reading.values}
            return
        before = groups.get(at)
        groups[at] = reading.values if before is None else {**before, **reading.values}

    def add_transition(self, transition: Transition, tz: dt.tzinfo) -> int:
        """Keep the alert's latest record (commands and the records look alerts up), not the
        transition: nothing in a replay reads transitions back."""
        self._keep_alert(transition.alert, tz)
        self._transition_count += 1
        return self._transition_count

    def add_status(self, status: DeviceStatus) -> None:
        """Nothing to remember: no look-up asks for statuses."""

    def _absent(self, *_: Any, **__: Any) -> NoReturn:
        raise NotImplementedError("the in-memory store keeps no messages to read back")

    events_between = scan_keys = _absent
