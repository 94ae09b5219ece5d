"""The store's read side: `Queries` over a read-only connection, answering in typed rows.

`rows` holds the rows, `queries` the queries; the writer is `gateway/store/sqlite.py`.
"""

from gateway.store.read.queries import AlertFilter, Queries, StoreTooOld, connect_readonly
from gateway.store.read.rows import (
    AlertRow,
    Bucket,
    CommandRow,
    DeviceStateRow,
    Heartbeat,
    LatestValue,
    Marks,
    ScanRow,
    TransitionRow,
)

__all__ = [
    "AlertFilter",
    "AlertRow",
    "Bucket",
    "CommandRow",
    "DeviceStateRow",
    "Heartbeat",
    "LatestValue",
    "Marks",
    "Queries",
    "ScanRow",
    "StoreTooOld",
    "TransitionRow",
    "connect_readonly",
]
