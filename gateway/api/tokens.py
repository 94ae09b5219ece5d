"""API tokens (§10): issued for a person, printed once, stored as a SHA-256, revocable.

Tokens are not part of the record of the rules, so the command line writes them to the store's
`tokens` table directly (the worker never reads them); the API only reads them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import pathlib
import secrets
import sqlite3
from dataclasses import dataclass

from gateway.store.sqlite import SqliteStore

TOKEN_BYTES = 32
PREFIX = "pg_"  # recognisable in a log or a leaked file


def hash_token(token: str) -> str:
    """What the store keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class TokenRow:
    """One issued token (never the token itself)."""

    id: str
    person: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def valid(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def _row(row: tuple[str, str, float, float | None]) -> TokenRow:
    ident, person, created, revoked = row
    return TokenRow(
        str(ident),
        str(person),
        dt.datetime.fromtimestamp(created, dt.UTC),
        None if revoked is None else dt.datetime.fromtimestamp(revoked, dt.UTC),
    )


_COLUMNS = "id, person, created_at, revoked_at"


def find_token(db: sqlite3.Connection, token: str) -> TokenRow | None:
    """The row of a presented token, revoked or not, or None (read side)."""
    row = db.execute(f"SELECT {_COLUMNS} FROM tokens WHERE hash = ?", (hash_token(token),))
    found = row.fetchone()
    return None if found is None else _row(found)


def token_by_id(db: sqlite3.Connection, ident: str) -> TokenRow | None:
    """A token's row by its public id (the session cookie names it)."""
    found = db.execute(f"SELECT {_COLUMNS} FROM tokens WHERE id = ?", (ident,)).fetchone()
    return None if found is None else _row(found)


class TokenBook:
    """Issue, revoke and list tokens in a store (the command line's side)."""

    def __init__(self, path: pathlib.Path) -> None:
        SqliteStore(path).close()  # brings the schema forward (the tokens table)
        self._db = sqlite3.connect(path, timeout=10)
        self._db.execute("PRAGMA busy_timeout=10000")

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> TokenBook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def issue(self, person: str, now: dt.datetime) -> tuple[TokenRow, str]:
        """A new token for `person`: its row, and the token (shown once, never stored)."""
        token = PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        ident = secrets.token_hex(4)
        with self._db:
            self._db.execute(
                "INSERT INTO tokens (id, person, hash, created_at) VALUES (?,?,?,?)",
                (ident, person, hash_token(token), now.timestamp()),
            )
        return TokenRow(ident, person, now, None), token

    def revoke(self, ident: str, now: dt.datetime) -> TokenRow | None:
        """Revoke a token by id (at once: its sessions end too); None for an unknown id."""
        with self._db:
            self._db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now.timestamp(), ident),
            )
        return token_by_id(self._db, ident)

    def all(self) -> list[TokenRow]:
        """Every token, oldest first."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM tokens ORDER BY created_at, id")
        return [_row(r) for r in rows]


def issue_token(path: pathlib.Path, person: str, now: dt.datetime | None = None) -> str:
    """Issue one token (the demo's login link); returns the token."""
    with contextlib.closing(TokenBook(path)) as book:
        return book.issue(person, now or dt.datetime.now(dt.UTC))[1]
