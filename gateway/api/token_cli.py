"""`patrol-gateway token issue|revoke|list` (§7, §10): API tokens for the people of a site.

The token is printed once; the store keeps only its SHA-256. Tokens are written to the store
directly (they are not part of the record the rules replay), so a running gateway sees a new
or revoked token on the next request.
"""

from __future__ import annotations

import datetime as dt
import pathlib
from typing import Annotated

import typer

from gateway.api.tokens import TokenBook
from gateway.cli_ops import ByOpt, DataOpt, fail, open_store
from gateway.timeutil import iso

token_app = typer.Typer(
    no_args_is_help=True, help="令牌 · API tokens for the duty desk: issue, revoke, list."
)


@token_app.command("issue")
def issue(by: ByOpt, data: DataOpt = pathlib.Path("./data")) -> None:
    """签发令牌 · Issue a token for a person of the site; it is printed once, never stored."""
    opened = open_store(data)
    opened.store.close()
    if by not in opened.site.people:
        raise fail(f"未知人员 / unknown person {by!r}: not in the site file's people")
    with TokenBook(opened.path) as book:
        row, token = book.issue(by, dt.datetime.now(dt.UTC))
    person = opened.site.people[by]
    roles = ", ".join(str(r) for r in person.roles) or "-"
    typer.echo(
        f"已为 {person.name} 签发令牌 {row.id}（角色 {roles}）；只显示这一次，请妥善保存。 / "
        f"Token {row.id} issued for {by} (roles {roles}); it is shown this once, keep it safe:",
        err=True,
    )
    typer.echo(token)


@token_app.command("revoke")
def revoke(
    ident: Annotated[str, typer.Argument(metavar="ID", help="令牌编号 / the token's id")],
    data: DataOpt = pathlib.Path("./data"),
) -> None:
    """撤销令牌 · Revoke a token at once (its page sessions end too)."""
    opened = open_store(data)
    opened.store.close()
    with TokenBook(opened.path) as book:
        row = book.revoke(ident, dt.datetime.now(dt.UTC))
    if row is None:
        raise fail(f"未知令牌 / no token with id {ident!r} (see `patrol-gateway token list`)")
    typer.echo(f"已撤销 / revoked: token {row.id} of {row.person}")


@token_app.command("list")
def list_tokens(data: DataOpt = pathlib.Path("./data")) -> None:
    """列出令牌 · Every token: id, person, issued, revoked."""
    opened = open_store(data)
    opened.store.close()
    tz = opened.site.tz
    with TokenBook(opened.path) as book:
        rows = book.all()
    for row in rows:
        revoked = "-" if row.revoked_at is None else iso(row.revoked_at, tz)
        issued = iso(row.created_at, tz)
        typer.echo(f"{row.id}  {row.person:<16} issued {issued}  revoked {revoked}")
