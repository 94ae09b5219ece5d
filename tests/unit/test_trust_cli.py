"""`broker-config` and `qr` on the command line, and the files broker-config writes (issue 13)."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import pathlib

from typer.testing import CliRunner

from gateway.cli import app
from gateway.config import load_site
from gateway.trust import qr
from gateway.trust.broker import SETTINGS, Listeners, hash_password, mosquitto_conf
from gateway.trust.secrets import load_secrets

ROOT = pathlib.Path(__file__).resolve().parents[2]
SITE = ROOT / "gateway" / "sites" / "zcity.yaml"
runner = CliRunner()


def test_the_shipped_settings_are_the_generated_ones() -> None:
    """Prevents deploy/mosquitto.conf and the generated config drifting apart: the persistence
    and queue settings that keep scans across a broker crash must be in both."""
    shipped = {
        line
        for line in (ROOT / "deploy" / "mosquitto.conf").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith(("#", "listener", "allow_anonymous", "log_dest"))
    }
    assert shipped == set(SETTINGS.splitlines())
    generated = mosquitto_conf("/cfg", Listeners()).splitlines()
    assert set(SETTINGS.splitlines()) <= set(generated)
    assert "allow_anonymous false" in generated and "password_file /cfg/passwd" in generated


def test_the_password_hash_is_mosquittos_pbkdf2_sha512() -> None:
    """Prevents a hash Mosquitto cannot check (every device refused): `$7$101$salt$hash`."""
    salt = b"0123456789ab"
    text = hash_password("secret", salt)
    _, seven, rounds, salt_b64, digest_b64 = text.split("$")
    assert (seven, rounds) == ("7", "101") and base64.b64decode(salt_b64) == salt
    expected = hashlib.pbkdf2_hmac("sha512", b"secret", salt, 101)
    assert base64.b64decode(digest_b64) == expected


def test_a_tls_listener_is_written_when_a_certificate_is_given() -> None:
    """Prevents devices on the site's network being left with plain text only."""
    conf = mosquitto_conf("/cfg", Listeners(certfile="/c.pem", keyfile="/k.pem", cafile="/ca"))
    assert "listener 8883" in conf and "certfile /c.pem" in conf and "cafile /ca" in conf
    assert "certfile" not in mosquitto_conf("/cfg", Listeners())


def test_broker_config_command_writes_every_file(tmp_path: pathlib.Path) -> None:
    """Prevents the command and the library writing different things, or an ACL missing a
    device of the site."""
    out = tmp_path / "broker"
    result = runner.invoke(
        app,
        [
            "broker-config",
            "--config",
            str(SITE),
            "--out",
            str(out),
            "--paths-as",
            "/mosquitto/config",
        ],
    )
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert names == {"mosquitto.conf", "passwd", "acl", "credentials.csv", "gateway.password"}
    acl = (out / "acl").read_text(encoding="utf-8")
    site = load_site(SITE)
    for reader in site.reader_post:
        assert f"user zcity.reader.{reader}\ntopic write estate/zcity/reader/{reader}/scan" in acl
    assert "password_file /mosquitto/config/passwd" in (out / "mosquitto.conf").read_text()
    half = runner.invoke(
        app, ["broker-config", "-c", str(SITE), "--out", str(out), "--certfile", "x"]
    )
    assert half.exit_code == 2


def test_qr_prints_the_current_code_and_keeps_its_secret(tmp_path: pathlib.Path) -> None:
    """Prevents `qr` printing a code the gateway does not accept, or a new secret each run."""
    at = "2026-11-27T09:12:03+08:00"
    args = ["qr", "--by", "wang-fang", "--config", str(SITE), "--data", str(tmp_path), "--at", at]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    key = load_secrets(tmp_path / "secrets.yaml").qr_key("wang-fang")
    assert key is not None
    code = first.output.strip()
    signed = qr.parse(code)
    assert signed is not None and signed.credential == "WF-2026"
    assert qr.verify(key, signed, dt.datetime.fromisoformat(at)) is None
    assert runner.invoke(app, args).output.strip() == code
    none = runner.invoke(app, ["qr", "--by", "zhang-wei", "-c", str(SITE), "--data", str(tmp_path)])
    assert none.exit_code == 1 and "no qr: credential" in none.output


def test_qr_serves_a_page_with_the_current_code(tmp_path: pathlib.Path) -> None:
    """Prevents the phone's page showing a code the gateway refuses, or no QR image at all."""
    import subprocess
    import sys
    import urllib.request

    command = [sys.executable, "-m", "gateway", "qr", "--by", "wang-fang", "-c", str(SITE)]
    command += ["--data", str(tmp_path), "--serve", "127.0.0.1:0"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as response:
            page = response.read().decode()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
    key = load_secrets(tmp_path / "secrets.yaml").qr_key("wang-fang")
    assert key is not None and "<svg" in page and "王芳" in page
    code = page.split("<code>", 1)[1].split("</code>", 1)[0]
    signed = qr.parse(code)
    assert signed is not None and qr.verify(key, signed, dt.datetime.now(dt.UTC)) is None
