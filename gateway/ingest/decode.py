"""Turns one raw message into a typed event, or into a refusal a person can act on (§2–§3)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
from typing import Any, Protocol

import orjson

from gateway.config.models import Metric, normalize_uid
from gateway.config.site import Site
from gateway.events import (
    CLOCK_SKEW,
    Decoded,
    DeviceStatus,
    Event,
    Message,
    Reading,
    Rejection,
    Scan,
)
from gateway.ingest.topics import Topics
from gateway.timeutil import BadTime, parse_instant
from gateway.trust import bridge, qr
from gateway.trust.proof import PLAIN_UID, Proof

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 64 * 1024  # the default of --max-payload-bytes (contract §7)
MAX_REASON_CHARS = 300  # a refusal's reason stays readable whatever the payload held
MAX_CREDENTIAL_CHARS = 256
# A JSON text re-encoded by `json.dumps` is at most this many bytes per character it had (an
# astral character written raw becomes a 12-byte surrogate pair escape): a bound on the size.
SIZE_BOUND_PER_CHAR = 12


class Parsed(Protocol):
    """A payload already read as a JSON object (replay reads each line once)."""

    @property
    def body(self) -> dict[str, Any] | None:
        """The object read."""

    @property
    def size_bound(self) -> int:
        """At least the size of `payload`, known without making it."""

    @property
    def payload(self) -> bytes:
        """The bytes, made when a refusal needs to quote them."""


# Chinese first, English second, for operators reading gateway/rejected (contract §2).
REASONS_ZH = {
    "bad_topic": "未知主题",
    "unknown_reader": "未知读卡器",
    "unknown_equipment": "未知设备",
    "unknown_device": "未知设备",
    "unknown_metric": "未声明的测点",
    "too_large": "消息过大",
    "empty": "空消息",
    "not_utf8": "不是 UTF-8 文本",
    "bad_json": "JSON 无法解析",
    "bad_field": "字段错误",
    "retained": "保留消息",
}

TOPICS_KEPT = 50_000  # inbound topics remembered by a decoder (a bound, far above any site)

# The last text read, its zone and its instant (one tuple: a reader never sees parts of two).
_last_instant: list[tuple[str, dt.tzinfo | None, dt.datetime | None]] = [("", None, None)]


def read_instant(value: object, tz: dt.tzinfo) -> dt.datetime:
    """`parse_instant`, remembering the last text read: replay reads a line's `ts` for its
    receive time, then the decoder reads the same text again."""
    if type(value) is not str:
        return parse_instant(value, tz)
    text, zone, instant = _last_instant[0]
    if text == value and zone is tz and instant is not None:
        return instant
    instant = parse_instant(value, tz)
    _last_instant[0] = (value, tz, instant)
    return instant


def storable(text: str) -> str:
    """`text` itself, or with each lone UTF-16 surrogate written as its escape (`\\ud800`): a JSON
    string may carry one (`json` reads it), and neither SQLite nor an MQTT payload (UTF-8)
    can hold it, so a refusal that quotes one would fail to be stored."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def reason_text(rejection: Rejection) -> str:
    """The reason published on gateway/rejected: Chinese, then English."""
    return f"{REASONS_ZH.get(rejection.code, '已拒绝')} / {rejection.detail}"


class _Refused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# What decoding one message found: its event (None if refused whole) and its refusals (a
# reading may have both). `Decoded` to the callers; a tuple inside, made per message.
_Found = tuple[Event | None, tuple[Rejection, ...]]
_INF, _NEG_INF = math.inf, -math.inf  # the limits of a finite number, read as constants


class Decoder:
    """Decodes messages for one site; holds no state between messages."""

    def __init__(
        self, site: Site, topics: Topics, max_payload_bytes: int = MAX_PAYLOAD_BYTES
    ) -> None:
        self.site = site
        self.topics = topics
        self.max_payload_bytes = max_payload_bytes
        self._devices = site.devices  # a set built from the site on every call: keep one
        # Inbound topics already read (kind, id); a site has a few thousand at most.
        self._kinds: dict[str, tuple[str, str]] = {}
        # Each equipment's numeric metrics (no `expect`) and boolean ones (an `expect`): a
        # finite number for the first, true or false for the second, is taken as it is.
        self._numeric = {
            e: frozenset(m for m, metric in eq.metrics.items() if metric.expect is None)
            for e, eq in site.equipment.items()
        }
        self._boolean = {
            e: frozenset(m for m, metric in eq.metrics.items() if metric.expect is not None)
            for e, eq in site.equipment.items()
        }

    def decode(self, msg: Message) -> Decoded:
        """Never raises: every failure becomes a `Rejection`."""
        try:
            return Decoded(*self._decode(msg))
        except _Refused as exc:
            return Decoded(rejections=(self._reject(msg, exc.code, exc.detail),))
        except Exception as exc:
            # A bug here, not a bad message: refuse it so the site goes on, and say so loudly.
            log.exception("decoder bug on %s (payload %r)", msg.topic, msg.payload[:120])
            detail = f"internal error while decoding ({type(exc).__name__}); please report it"
            return Decoded(rejections=(self._reject(msg, "bad_field", detail),))

    def decode_parsed(self, msg: Message, parsed: Parsed) -> Event | None:
        """The event `decode` finds in a payload already read as a JSON object, when it is
        accepted as a whole; None when the answer needs the bytes (a refusal quotes them, a
        status is text, the size is not known to be under the limit): then `decode` the
        message with its bytes."""
        if parsed.body is None or parsed.size_bound > self.max_payload_bytes:
            return None
        try:
            event, rejections = self._decode(msg, parsed.body)
        except Exception:  # a refusal or a bug: the bytes' way says which, with the payload
            return None
        return None if rejections else event

    def _reject(self, msg: Message, code: str, detail: str) -> Rejection:
        if len(detail) > MAX_REASON_CHARS:
            detail = detail[: MAX_REASON_CHARS - 1] + "…"
        return Rejection(code, storable(detail), storable(msg.topic), msg.payload[:512])

    def _decode(self, msg: Message, body: dict[str, Any] | None = None) -> _Found:
        if msg.oversize or len(msg.payload) > self.max_payload_bytes:
            # The link cut it before queueing (msg.oversize): only its first bytes are here.
            size = msg.oversize or len(msg.payload)
            raise _Refused(
                "too_large",
                f"payload is {size} bytes; the limit is "
                f"{'--max-payload-bytes' if msg.oversize else self.max_payload_bytes}: "
                "devices send small JSON",
            )
        known = self._kinds.get(msg.topic)
        if known is None:
            parsed = self.topics.parse(msg.topic)
            if isinstance(parsed, str):
                raise _Refused("bad_topic", parsed)
            if len(self._kinds) >= TOPICS_KEPT:
                self._kinds.clear()
            known = self._kinds[msg.topic] = parsed
        kind, ident = known
        if msg.retain and kind in ("scan", "reading"):
            # A retained input comes back with every new subscription, so it would be stored
            # again at every reconnect; only statuses are retained by design (§2).
            raise _Refused(
                "retained",
                f"a {kind} must not be retained (it would be stored again at every reconnect):"
                " publish it with retain=false, and clear this one with an empty retained"
                " message on the topic",
            )
        if kind == "scan":
            if ident not in self.site.reader_post:
                raise _Refused(
                    "unknown_reader",
                    f"reader {ident!r} is not declared: add it to a post's readers in the site",
                )
            return self._scan(ident, _json_object(msg) if body is None else body, msg), ()
        if kind == "reading":
            if ident not in self.site.equipment:
                raise _Refused(
                    "unknown_equipment",
                    f"equipment {ident!r} is not declared: add it under equipment in the site file",
                )
            return self._reading(ident, _json_object(msg) if body is None else body, msg)
        if ident not in self._devices:
            raise _Refused(
                "unknown_device", f"device {ident!r} is neither a declared reader nor equipment"
            )
        return self._status(ident, msg), ()

    def _event_time(
        self, body: dict[str, Any], msg: Message
    ) -> tuple[dt.datetime, tuple[str, ...], dt.datetime | None]:
        """Event time per §1 (ts, or receive time; a ts too far ahead is not trusted), its
        flags, and the `ts` as sent (None without one), which tells duplicates apart (§3)."""
        if body.get("ts") is None:
            return msg.received_at, (), None
        try:
            ts = read_instant(body["ts"], self.site.tz)
        except BadTime as exc:
            raise _Refused("bad_field", f"ts: {exc}") from exc
        if ts - msg.received_at > self.site.max_clock_skew:
            return msg.received_at, (CLOCK_SKEW,), ts
        return ts, (), ts

    def _scan(self, reader: str, body: dict[str, Any], msg: Message) -> Scan:
        credential, method = body.get("credential"), body.get("method")
        if method not in ("nfc", "qr"):
            raise _Refused("bad_field", f'method must be "nfc" or "qr", not {_show(method)}')
        if not isinstance(credential, str) or not credential.strip():
            raise _Refused("bad_field", "credential is required: the card UID or the QR text")
        if len(credential) > MAX_CREDENTIAL_CHARS:
            raise _Refused("bad_field", f"credential is longer than {MAX_CREDENTIAL_CHARS} chars")
        sent_credential = credential
        signed_qr = None
        if method == "nfc":
            uid = normalize_uid(credential)
            if uid is None:
                raise _Refused("bad_field", f"nfc credential {credential[:40]!r} is not hex")
            credential = uid
        else:
            if storable(credential) is not credential:
                raise _Refused(
                    "bad_field",
                    "credential is not text: it holds a lone UTF-16 surrogate (\\ud800–\\udfff)",
                )
            signed_qr = qr.parse(credential)  # credential~step~mac (§3 `auth`)
            if signed_qr is not None:
                credential = signed_qr.credential
        # `credential` is normalised (§3) by now: the site's key, as `Site.person_for` makes it.
        person = self.site.credentials.get(f"{method}:{credential}")
        time, flags, sent = self._event_time(body, msg)
        proof = _proof(body.get("auth"), signed_qr)
        if proof is not None and proof.bridge_mac is not None:
            text = bridge.signed_text(sent_credential, method, body.get("ts"), body.get("seq"))
            proof = dataclasses.replace(proof, bridge_text=text)
        # In the fields' order: named arguments would double the cost of building the scan.
        return Scan(
            reader,
            self.site.reader_post[reader].id,  # post
            credential,
            method,
            None if person is None else person.id,  # person
            time,
            msg.received_at,
            _seq(body),
            flags,
            sent,  # sent_ts
            PLAIN_UID,  # assurance: the verifier decides it
            None,  # sun_counter: the verifier's too
            proof,
        )

    def _reading(self, equipment: str, body: dict[str, Any], msg: Message) -> _Found:
        values = body.get("values")
        if not isinstance(values, dict) or not values:
            raise _Refused("bad_field", "values is required: an object of metric → number/boolean")
        time, flags, sent = self._event_time(body, msg)
        seq = _seq(body)
        kept: dict[str, float | bool] = {}
        refused: list[str] = []
        declared = self.site.equipment[equipment].metrics
        numeric, boolean = self._numeric[equipment], self._boolean[equipment]
        for name, value in values.items():
            if type(value) is float:
                if _NEG_INF < value < _INF and name in numeric:
                    kept[name] = value  # the common case: a finite number for a numeric metric
                    continue
            elif type(value) is bool and name in boolean:
                kept[name] = value
                continue
            metric = declared.get(name)
            if metric is not None and metric.expect is not None and value in (0, 1):
                value = bool(value)  # meters often report a contact as 0/1
            problem = _metric_problem(metric, equipment, str(name), value)
            if problem:
                refused.append(problem)
            else:
                kept[str(name)] = value if isinstance(value, bool) else float(value)
        rejections: tuple[Rejection, ...] = ()
        if refused:
            code = "unknown_metric" if all("not declared" in r for r in refused) else "bad_field"
            rejections = (self._reject(msg, code, "; ".join(refused)),)
        if not kept:
            return None, rejections
        return Reading(equipment, kept, time, msg.received_at, seq, flags, sent), rejections

    def _status(self, device: str, msg: Message) -> DeviceStatus:
        text = _text(msg).strip()
        state: object = text
        ts: object = None
        if text.startswith("{"):
            body = _json_object(msg)
            state, ts = body.get("state"), body.get("ts")
        elif text.startswith('"'):
            try:
                state = json.loads(text)  # a JSON string: "offline"
            except ValueError as exc:
                raise _Refused("bad_json", f"not a JSON string: {str(exc)[:120]}") from exc
        if isinstance(state, str):
            state = state.strip().lower()  # any letter case, in every form (§2)
        if state not in ("online", "offline"):
            raise _Refused("bad_field", f'status must be "online" or "offline", not {_show(state)}')
        time = msg.received_at
        if ts is not None:
            time, _, _ = self._event_time({"ts": ts}, msg)
        return DeviceStatus(
            device, "online" if state == "online" else "offline", time, msg.received_at
        )


def _text(msg: Message) -> str:
    if not msg.payload:
        raise _Refused("empty", "the payload is empty")
    try:
        return msg.payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Refused("not_utf8", "the payload is not UTF-8 text (binary?)") from exc


# orjson reads integers beyond 64 bits as floats where `json` keeps them exact: a payload with a
# run of 19 or more digits takes the standard library's path, so both read the same values.
# Digits map to "0" and the rest to " ", and the run is looked for: a quarter of the time a
# regular expression takes, which was twice what reading the payload takes.
_DIGITS = bytes(ord("0") if ord("0") <= b <= ord("9") else ord(" ") for b in range(256))
_LONG_RUN = b"0" * 19


def long_number(payload: bytes) -> bool:
    """Whether `payload` has a run of 19 digits (a number orjson may not read exactly)."""
    return _LONG_RUN in payload.translate(_DIGITS)


def _json_object(msg: Message) -> dict[str, Any]:
    payload = msg.payload
    if payload and not long_number(payload):
        # The fast path (≈5× the standard library): valid UTF-8 JSON objects, the usual case.
        # Anything it refuses goes the standard library's way, for the same refusal and reason.
        try:
            fast = orjson.loads(payload)
        except orjson.JSONDecodeError:
            pass
        else:
            if isinstance(fast, dict):
                return fast
    text = _text(msg)
    try:
        body = json.loads(text, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise _Refused("bad_json", f"not JSON: {str(exc)[:120]}") from exc
    if not isinstance(body, dict):
        raise _Refused("bad_json", f"expected a JSON object {{…}}, got {type(body).__name__}")
    return body


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _proof(auth: object, signed_qr: qr.SignedQr | None) -> Proof | None:
    """The `auth` object of a scan (§3) and a signed QR's parts; malformed → `bad_field`."""
    if auth is None:
        return None if signed_qr is None else Proof(qr=signed_qr)
    if not isinstance(auth, dict) or not set(auth) <= {"sun", "bridge"}:
        raise _Refused("bad_field", 'auth must be {"sun": {"picc", "cmac"}, "bridge": {"mac"}}')
    picc = cmac = None
    if "sun" in auth:
        sun = auth["sun"]
        if not isinstance(sun, dict):
            raise _Refused("bad_field", 'auth.sun must be {"picc": HEX, "cmac": HEX}')
        picc = _hex(sun.get("picc"), 16, "auth.sun.picc")
        cmac = _hex(sun.get("cmac"), 8, "auth.sun.cmac")
    mac = None
    if "bridge" in auth:
        signed = auth["bridge"]
        if not isinstance(signed, dict):
            raise _Refused("bad_field", 'auth.bridge must be {"mac": HEX}')
        mac = _hex(signed.get("mac"), 32, "auth.bridge.mac").hex()
    return Proof(qr=signed_qr, sun_picc=picc, sun_cmac=cmac, bridge_mac=mac)


def _hex(value: object, size: int, name: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or len(raw) != size:
        raise _Refused("bad_field", f"{name} must be {size * 2} hex digits, not {_show(value)}")
    return raw


def _seq(body: dict[str, Any]) -> int | None:
    seq = body.get("seq")
    if type(seq) is int and 0 <= seq < 2**63:  # the common case
        return seq
    if seq is None:
        return None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise _Refused("bad_field", f"seq must be a non-negative integer, not {_show(seq)}")
    return seq


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False) if value is not None else "missing"
    return text if len(text) <= 40 else text[:37] + "…"


def _metric_problem(metric: Metric | None, equipment: str, name: str, value: object) -> str | None:
    """Why a value of metric `name` (declared as `metric`, None if not) is refused, or None."""
    if metric is None:
        return f"metric {name[:64]!r} is not declared for {equipment!r} in the site file"
    if metric.expect is not None:
        if not isinstance(value, bool):
            return f"metric {name!r} is a boolean (true/false or 1/0), not {_show(value)}"
        return None
    if isinstance(value, bool):
        # A boolean metric that has no `expect` is still fine as a state.
        return None if metric.min is None and metric.max is None else f"{name!r} is numeric"
    if not isinstance(value, int | float) or not _finite(value):
        return f"metric {name!r} must be a finite number, not {_show(value)}"
    return None
