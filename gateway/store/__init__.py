"""The embedded store: SQLite in WAL mode, one writer (`sqlite.SqliteStore`, batched commits),
and a read-only query side answering in typed rows (`read.Queries`)."""

from gateway.store.sqlite import SqliteStore

__all__ = ["SqliteStore"]
