"""The embedded store: SQLite in WAL mode, one writer, batched commits."""

from gateway.store.sqlite import SqliteStore

__all__ = ["SqliteStore"]
