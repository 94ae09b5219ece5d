"""Judges a scan's signatures and time (contract §1 backdating, §3 `auth`, §5 flags).

Pure but for one look-up: whether a tag's SUN read counter was seen already or is out of order
by time (`CounterHistory`, answered by the store so it holds across restarts).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.config.site import Site
from gateway.events import Scan
from gateway.frozen import quick_init
from gateway.messages import bilingual
from gateway.trust import bridge, qr, sun
from gateway.trust.proof import PLAIN_UID, SIGNED_QR, SUN
from gateway.trust.secrets import Secrets

BACKDATED = "backdated"
BAD_SIGNATURE = "bad_signature"
UNSIGNED = "unsigned"
# A scan with one of these is stored, shown and reported, but counts for no rule (§5).
EXCLUDING = frozenset({BACKDATED, BAD_SIGNATURE})

Conflict = Literal["seen", "order"]

_REASONS: dict[str, tuple[str, str]] = {
    "wrong_mac": ("二维码签名无效", "the QR code's signature is wrong"),
    "qr_step": (
        "二维码不是此时生成的（截图？）",
        "the QR code is more than one step from the scan's time (a screenshot?)",
    ),
    "sun_mac": ("NFC 卡签名无效", "the tag's SUN message does not verify"),
    "sun_uid": (
        "NFC 卡号与签名不符（克隆卡？）",
        "the UID inside the SUN message is not the card's (a cloned card?)",
    ),
    "seen": (
        "NFC 读数计数器已用过（重放？）",
        "the tag's read counter was already seen (a replay?)",
    ),
    "order": (
        "NFC 读数计数器与时间顺序不符",
        "the tag's read counter is out of order with its other taps by time",
    ),
    "bridge_mac": ("读卡器转发签名无效", "the reader bridge's MAC is wrong"),
}


class CounterHistory(Protocol):
    """The SUN read counters already accepted, per tag."""

    def sun_conflict(self, uid: str, counter: int, time: dt.datetime) -> Conflict | None:
        """ "seen" if the tag's counter was accepted before, "order" if an accepted tap with a
        lower counter is later by time (or a higher one earlier), else None."""
        ...


class MemoryCounters:
    """The in-memory twin of the store's counter history (tests, replay without a store)."""

    def __init__(self) -> None:
        self.taps: dict[str, list[tuple[int, dt.datetime]]] = {}

    def sun_conflict(self, uid: str, counter: int, time: dt.datetime) -> Conflict | None:
        """As `CounterHistory`."""
        taps = self.taps.get(uid, [])
        if any(c == counter for c, _ in taps):
            return "seen"
        if any((c < counter and t > time) or (c > counter and t < time) for c, t in taps):
            return "order"
        return None

    def add(self, uid: str, counter: int, time: dt.datetime) -> None:
        """Remember an accepted tap."""
        self.taps.setdefault(uid, []).append((counter, time))


@quick_init
@dataclass(frozen=True)
class Verdict:
    """What the signatures and the time say about one scan."""

    scan: Scan  # with assurance, flags and the accepted SUN counter set
    reason: str | None = None  # for people: why the scan counts for no rule


class Verifier:
    """Checks scans against the secrets file and the site's `require` and backdating limit."""

    def __init__(self, site: Site, secrets: Callable[[], Secrets], history: CounterHistory) -> None:
        self.site = site
        self.secrets = secrets
        self.history = history
        self.max_backdate = dt.timedelta(hours=site.config.duty.max_backdate_hours)  # §1
        self._signed_posts = {p.id for p in site.config.posts if p.require == "signed"}

    def check(self, scan: Scan) -> Verdict:
        """The scan with its assurance level and the trust flags of §5 added."""
        proof = scan.proof
        if (
            proof is None
            and scan.assurance == PLAIN_UID
            and scan.sun_counter is None
            and scan.received_at - scan.time <= self.max_backdate
            and scan.post not in self._signed_posts
        ):
            return Verdict(scan)  # the common case: nothing to check, nothing to add
        secrets = self.secrets()
        assurance, time_signed, problem, counter = PLAIN_UID, False, None, None
        if proof is not None and proof.qr is not None and scan.person is not None:
            key = secrets.qr_key(scan.person)
            if key is not None:
                problem = qr.verify(key, proof.qr, scan.time)
                if problem is None:
                    assurance, time_signed = SIGNED_QR, True
        if proof is not None and proof.sun_picc is not None and proof.sun_cmac is not None:
            keys = secrets.tag_keys(scan.credential) if scan.method == "nfc" else None
            if keys is not None:
                problem, counter = self._sun(scan, keys, proof.sun_picc, proof.sun_cmac)
                if problem is None:
                    assurance, time_signed = SUN, True
        if problem is None and proof is not None and proof.bridge_mac is not None:
            key = secrets.bridge_key(scan.reader)
            if key is not None and proof.bridge_text is not None:
                if bridge.verify(key, proof.bridge_text, proof.bridge_mac):
                    time_signed = True
                else:
                    problem = "bridge_mac"
        flags = list(scan.flags)
        reason = None
        locale = self.site.config.site.locale
        if problem is not None:
            flags.append(BAD_SIGNATURE)
            zh, en = _REASONS[problem]
            reason = bilingual(
                locale, f"签名无效，不计入：{zh}", f"bad signature, not counted: {en}"
            )
            counter = None
        elif not time_signed and scan.received_at - scan.time > self.max_backdate:
            flags.append(BACKDATED)
            hours = f"{self.max_backdate.total_seconds() / 3600:g}"
            reason = bilingual(
                locale,
                f"时间早于接收前 {hours} 小时且无时间签名，不计入",
                f"stamped more than {hours} h before it arrived, with no signature of its "
                "time: not counted",
            )
        if assurance == PLAIN_UID and scan.post in self._signed_posts:
            flags.append(UNSIGNED)
        if (
            assurance == scan.assurance
            and counter == scan.sun_counter
            and len(flags) == len(scan.flags)
        ):
            return Verdict(scan, reason)  # a plain scan, nothing to add: the common case
        checked = dataclasses.replace(
            scan, assurance=assurance, sun_counter=counter, flags=tuple(flags)
        )
        return Verdict(checked, reason)

    def _sun(
        self, scan: Scan, keys: tuple[bytes, bytes], picc: bytes, mac: bytes
    ) -> tuple[str | None, int | None]:
        try:
            data = sun.verify(keys[0], keys[1], picc, mac)
        except sun.SunError:
            return "sun_mac", None
        if data.uid.hex().upper() != scan.credential:
            return "sun_uid", None
        conflict = self.history.sun_conflict(scan.credential, data.counter, scan.time)
        if conflict is not None:
            return conflict, None
        return None, data.counter
