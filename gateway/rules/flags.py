"""Suspicious scans are flagged, not refused (contract §5, last paragraph)."""

from __future__ import annotations

import datetime as dt

from gateway.config.site import Site
from gateway.events import DUPLICATE_TAP, IMPOSSIBLE_TRAVEL, Scan

DUPLICATE_TAP_WINDOW = dt.timedelta(seconds=60)


class Flagger:
    """Remembers each credential's last scan; `flag` is pure, `remember` updates."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._last: dict[str, Scan] = {}

    def flag(self, scan: Scan) -> Scan:
        """The scan with `duplicate_tap` / `impossible_travel` added where they apply."""
        return self._flag(scan, self._last.get(self._key(scan)))

    def note(self, scan: Scan) -> Scan:
        """`flag`, then `remember` the flagged scan, with one look-up (a counted scan)."""
        key = self._key(scan)
        previous = self._last.get(key)
        flagged = self._flag(scan, previous)
        if previous is None or flagged.time >= previous.time:
            self._last[key] = flagged
        return flagged

    def _flag(self, scan: Scan, previous: Scan | None) -> Scan:
        if previous is None:
            return scan
        gap = abs(scan.time - previous.time)
        if previous.reader == scan.reader and gap <= DUPLICATE_TAP_WINDOW:
            return scan.with_flags((*scan.flags, DUPLICATE_TAP))
        if previous.post != scan.post and gap < self.site.walking_time(previous.post, scan.post):
            return scan.with_flags((*scan.flags, IMPOSSIBLE_TRAVEL))
        return scan

    def remember(self, scan: Scan) -> None:
        """Keep the scan as its credential's latest (a late scan does not replace a newer one)."""
        key = self._key(scan)
        previous = self._last.get(key)
        if previous is None or scan.time >= previous.time:
            self._last[key] = scan

    @staticmethod
    def _key(scan: Scan) -> str:
        return scan.person or f"{scan.method}:{scan.credential}"
