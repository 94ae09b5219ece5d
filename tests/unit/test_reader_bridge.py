"""Reader bridge pieces without a broker: line formats, line splitting, scans, the outbox."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from devices.outbox import Outbox, OutboxFull
from devices.reader_bridge import BridgeOptions, ReaderBridge
from devices.reader_lines import classify_line, parse_line
from devices.reader_port import LineSplitter
from gateway.ingest.mqtt import BrokerUrl

# (line as the reader sends it, default method, expected (method, credential))
ACCEPTED = [
    ("04A224B1C23380", "auto", ("nfc", "04A224B1C23380")),
    ("04a224b1c23380\r\n", "auto", ("nfc", "04A224B1C23380")),
    ("04:A2:24:B1:C2:33:80", "auto", ("nfc", "04A224B1C23380")),
    ("04-a2-24-b1-c2-33-80", "auto", ("nfc", "04A224B1C23380")),
    ("04 A2 24 B1 C2 33 80", "auto", ("nfc", "04A224B1C23380")),
    ("A224B1C2", "auto", ("nfc", "A224B1C2")),  # 4-byte UID
    ("0123456789ABCDEF0123", "auto", ("nfc", "0123456789ABCDEF0123")),  # 10-byte UID
    ("UID:04A224B1C23380", "auto", ("nfc", "04A224B1C23380")),
    ("uid = 04:a2:24:b1", "auto", ("nfc", "04A224B1")),
    ("UID=ABC", "auto", ("nfc", "ABC")),  # prefixed: any length of hex
    ("NFC:04A224B1C23380", "qr", ("nfc", "04A224B1C23380")),  # a prefix beats the default
    ("QR:ZW-7F3K", "auto", ("qr", "ZW-7F3K")),
    ("qr= 04A224B1C23380 ", "auto", ("qr", "04A224B1C23380")),
    ("QR:uid:1", "auto", ("qr", "uid:1")),  # only the first prefix counts
    ("ZW-7F3K", "auto", ("qr", "ZW-7F3K")),  # not hex → QR text
    ("https://例子.cn/p?id=7", "auto", ("qr", "https://例子.cn/p?id=7")),
    ("CAFE", "auto", ("qr", "CAFE")),  # hex but too short for a UID
    ("04A224B1C23", "auto", ("qr", "04A224B1C23")),  # odd number of hex digits
    ("CAFE", "nfc", ("nfc", "CAFE")),
    ("04A224B1C23380", "qr", ("qr", "04A224B1C23380")),
    ("\x0204A224B1C23380\x03", "auto", ("nfc", "04A224B1C23380")),  # STX … ETX framing
    ("\x00\x0004A2\x0024B1C23380", "auto", ("nfc", "04A224B1C23380")),  # NUL bytes
    ("\tQR:\tPOST 7 \x1b", "auto", ("qr", "POST 7")),
]

# (line, default method, a word of the reason)
REFUSED = [
    ("", "auto", "empty"),
    ("\r\n", "auto", "empty"),
    ("\x00\x00\x00", "auto", "empty"),
    ("   \x07 ", "auto", "empty"),
    ("UID:", "auto", "nothing after"),
    ("QR=   ", "auto", "nothing after"),
    ("UID:04G2", "auto", "hexadecimal"),
    ("ZW-7F3K", "nfc", "hexadecimal"),
    ("QR:" + "x" * 257, "auto", "longer than 256"),
]


@pytest.mark.parametrize(("line", "default", "expected"), ACCEPTED)
def test_line_formats(line: str, default: str, expected: tuple[str, str]) -> None:
    assert classify_line(line, default) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("line", "default", "reason"), REFUSED)
def test_noise_is_refused_with_a_reason(
    line: str, default: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = classify_line(line, default)  # type: ignore[arg-type]
    assert isinstance(result, str)
    assert reason in result
    with caplog.at_level(logging.WARNING, logger="devices.reader_bridge"):
        assert parse_line(line, default) is None  # type: ignore[arg-type]
    assert reason in caplog.text


def test_line_splitter_handles_cr_lf_crlf_and_partial_lines() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"04A2\r\nQR:a\rQR:b\nQR:") == [b"04A2", b"QR:a", b"QR:b"]
    assert splitter.feed(b"") == []
    assert splitter.feed(b"c") == []
    assert splitter.feed(b"\r\n\r\n\n") == [b"QR:c"]


def test_line_splitter_drops_an_over_long_line_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    splitter = LineSplitter(max_bytes=16)
    with caplog.at_level(logging.WARNING):
        assert splitter.feed(b"x" * 40) == []
        assert splitter.feed(b"yy\nQR:ok\n") == [b"QR:ok"]  # the long line's tail goes too
    assert "without an end of line" in caplog.text


def test_bridge_refuses_bad_ids_and_encodings(tmp_path: Path) -> None:
    broker = BrokerUrl.parse("mqtt://127.0.0.1:1")
    good = {"port": "loop://", "reader": "fd-1", "site": "zcity", "broker": broker}
    with pytest.raises(ValueError, match="--reader"):
        ReaderBridge(BridgeOptions(**{**good, "reader": "FD 1"}, state=tmp_path))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--encoding"):
        ReaderBridge(BridgeOptions(**good, state=tmp_path, encoding="klingon"))  # type: ignore[arg-type]


# -- the outbox ------------------------------------------------------------------------------


def _body(seq: int) -> bytes:
    return json.dumps({"seq": seq}).encode()


def test_outbox_keeps_order_and_seq_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite3"
    with Outbox(path, first_seq=1000) as box:
        assert [box.put("t", _body) for _ in range(3)] == [1000, 1001, 1002]
        assert [e.seq for e in box.peek()] == [1000, 1001, 1002]
        assert box.peek(after=1000, limit=1)[0].payload == b'{"seq": 1001}'
    with Outbox(path, first_seq=5_000_000) as box:  # first_seq only seeds a new file
        assert len(box) == 3
        assert box.put("t", _body) == 1003
        assert [e.seq for e in box.peek(limit=100)] == [1000, 1001, 1002, 1003]


def test_outbox_seq_is_never_reused_after_entries_are_removed(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        seqs = [box.put("t", _body) for _ in range(5)]
        box.remove(seqs)
        assert len(box) == 0 and box.peek() == []
    with Outbox(path) as box:
        assert box.put("t", _body) == seqs[-1] + 1


def test_outbox_removes_only_what_is_acknowledged(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        for _ in range(5):
            box.put("t", _body)
        box.remove([1, 2, 99])  # an unknown seq is ignored
        assert len(box) == 3
        assert [e.seq for e in box.peek()] == [3, 4, 5]


def test_outbox_when_full_refuses_new_entries_and_keeps_old_ones(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3", max_entries=2) as box:
        box.put("t", _body)
        box.put("t", _body)
        with pytest.raises(OutboxFull):
            box.put("t", _body)
        assert [e.seq for e in box.peek()] == [1, 2]
        box.remove([1])
        assert box.put("t", _body) == 3  # the refused one used no seq


def test_outbox_failed_build_stores_nothing_and_uses_no_seq(tmp_path: Path) -> None:
    def broken(seq: int) -> bytes:
        raise RuntimeError("boom")

    with Outbox(tmp_path / "o.sqlite3") as box:
        with pytest.raises(RuntimeError):
            box.put("t", broken)
        assert len(box) == 0
        assert box.put("t", _body) == 1


def test_outbox_is_a_wal_file_and_survives_a_crash_without_close(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.put("estate/zcity/reader/fd-1/scan", _body)
    # Another connection sees the committed entry before any close: it is on disk.
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert other.execute("SELECT seq, topic FROM outbox").fetchall() == [
            (1, "estate/zcity/reader/fd-1/scan")
        ]
    other.close()
    box.close()


def test_outbox_seq_is_unique_under_concurrent_writers(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        got: list[int] = []
        lock = threading.Lock()

        def write() -> None:
            for _ in range(50):
                seq = box.put("t", _body)
                with lock:
                    got.append(seq)

        threads = [threading.Thread(target=write) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(got) == list(range(1, 201))
        assert [e.seq for e in box.peek(limit=500)] == list(range(1, 201))
