"""`patrol-gateway broker-config` and `patrol-gateway qr` (contract §7; docs/trust.md)."""

from __future__ import annotations

import datetime as dt
import html
import pathlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated

import typer

from gateway.cli_ops import DataOpt, open_store
from gateway.config import ConfigError, Site, load_site
from gateway.extras import requires_extra
from gateway.trust import qr
from gateway.trust.broker import Listeners, write_broker_config
from gateway.trust.secrets import add_qr_secret, secrets_path

ConfigFile = Annotated[
    pathlib.Path,
    typer.Option("--config", "-c", metavar="FILE", help="站点配置 / the site file (YAML)"),
]
PAGE_REFRESH_SECONDS = 5


def _site(path: pathlib.Path) -> Site:
    try:
        return load_site(path)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def broker_config_command(
    config: ConfigFile,
    out: Annotated[
        pathlib.Path, typer.Option(metavar="DIR", help="写入此目录 / the folder to write")
    ],
    root: Annotated[str, typer.Option(envvar="PATROL_ROOT", help="topic root")] = "estate",
    port: Annotated[int, typer.Option(help="MQTT listener port")] = 1883,
    bind: Annotated[str, typer.Option(help="listen on this address only (default: all)")] = "",
    tls_port: Annotated[int, typer.Option(help="the TLS listener's port")] = 8883,
    certfile: Annotated[
        str | None, typer.Option(metavar="FILE", help="TLS: the broker's certificate (PEM)")
    ] = None,
    keyfile: Annotated[
        str | None, typer.Option(metavar="FILE", help="TLS: the certificate's key (PEM)")
    ] = None,
    cafile: Annotated[
        str | None, typer.Option(metavar="FILE", help="TLS: the CA devices are checked with")
    ] = None,
    paths_as: Annotated[
        str | None,
        typer.Option(
            metavar="DIR", help="the folder as the broker sees it (/mosquitto/config in Docker)"
        ),
    ] = None,
    persistence: Annotated[
        str, typer.Option(metavar="DIR", help="the broker's persistence folder")
    ] = "/mosquitto/data/",
) -> None:
    """代理配置 · Mosquitto password file, ACL and mosquitto.conf for the site's devices.

    Writes DIR/mosquitto.conf, DIR/passwd, DIR/acl, DIR/credentials.csv (one secret per
    reader, equipment, the gateway and displays; a rerun keeps them) and DIR/gateway.password.
    """
    if (certfile is None) != (keyfile is None):
        typer.echo(
            "--certfile 与 --keyfile 须同时给出 / give both --certfile and --keyfile", err=True
        )
        raise typer.Exit(2)
    site = _site(config)
    listeners = Listeners(port, bind, tls_port, certfile, keyfile, cafile, persistence)
    users = write_broker_config(site, out, root, listeners, paths_as)
    typer.echo(
        f"已写入 / wrote {out}/mosquitto.conf, passwd, acl, credentials.csv, gateway.password: "
        f"{len(users)} identities; give each device its line of credentials.csv"
    )


def qr_command(
    by: Annotated[str, typer.Option("--by", metavar="PERSON", help="the person's id")],
    config: Annotated[
        pathlib.Path | None,
        typer.Option("--config", "-c", metavar="FILE", help="the site file (else the store's)"),
    ] = None,
    data: DataOpt = pathlib.Path("./data"),
    serve: Annotated[
        str | None,
        typer.Option(metavar="HOST:PORT", help="serve the code as a page for the phone"),
    ] = None,
    at: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """签名二维码 · The person's current signed QR code (§3 `auth`), or a page showing it.

    The secret is kept in PATROL_SECRETS (default DATA/secrets.yaml), created on first use.
    """
    if config is not None:
        site = _site(config)
    else:
        opened = open_store(data)
        site = opened.site
        opened.store.close()
    person = site.people.get(by)
    if person is None:
        typer.echo(f"未知人员 / unknown person {by!r}", err=True)
        raise typer.Exit(1)
    texts = [c.partition(":")[2] for c in person.credentials if c.startswith("qr:")]
    if not texts:
        typer.echo(
            f"{by} 没有二维码凭证 / {by} has no qr: credential in the site file: add one",
            err=True,
        )
        raise typer.Exit(1)
    key = add_qr_secret(secrets_path(data), by)
    credential, name = texts[0], html.escape(person.name)
    if serve is None:
        when = dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC)
        typer.echo(qr.code(key, credential, when))
        return
    with requires_extra("qr"):
        import segno
    host, _, port = serve.rpartition(":")

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            text = qr.code(key, credential, dt.datetime.now(dt.UTC))
            svg = segno.make(text, error="m").svg_inline(scale=8)
            body = (
                f'<!doctype html><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width"><meta http-equiv="refresh" '
                f'content="{PAGE_REFRESH_SECONDS}"><title>{name}</title>'
                f'<body style="text-align:center;font-family:sans-serif">'
                f"<h1>{name}</h1>{svg}<p><code>{html.escape(text)}</code>"
                "<p>每 30 秒更新 / changes every 30 s</body>"
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the page is fetched every few seconds."""

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Page)
    typer.echo(f"二维码页面 / the QR page: http://{host or '127.0.0.1'}:{server.server_port}/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
