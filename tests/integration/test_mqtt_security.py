"""Reaching the broker: TLS, passwords kept secret, and `run` telling why it cannot connect
(issue 8 items 6 and 17), against real Mosquitto brokers."""

from __future__ import annotations

import datetime as dt
import logging
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from gateway.ingest.inbox import Inbox
from gateway.ingest.mqtt import BrokerUrl, MqttLink, broker_from_options
from gateway.ingest.topics import Topics
from tests.support.gateway import ZCITY, gateway_command
from tests.support.mosquitto import Mosquitto, find_mosquitto, free_port
from tests.support.tls import TestPki

TOPICS = Topics("tls-test", "s1")
SECRET = "S3cret-pw"


def link(broker: BrokerUrl, client_id: str) -> MqttLink:
    return MqttLink(broker, client_id, TOPICS, Inbox(10), lambda: dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: TestPki) -> Iterator[tuple[Mosquitto, int]]:
    port = free_port()
    with Mosquitto(extra_config=pki.mosquitto_listener(port)) as broker:
        yield broker, port


def test_mqtts_with_a_ca_file_and_a_client_certificate(
    pki: TestPki, tls_broker: tuple[Mosquitto, int]
) -> None:
    """Prevents an mqtts:// link that cannot trust a private CA or present a client cert."""
    _, port = tls_broker
    broker = broker_from_options(
        f"mqtts://127.0.0.1:{port}", ca_file=pki.ca, cert=pki.client_cert, key=pki.client_key
    )
    tls = link(broker, "tls-good")
    tls.start()
    try:
        assert tls.connected.wait(10), tls.health()
    finally:
        tls.stop()


def test_a_failed_tls_handshake_is_reported_with_its_reason(
    tmp_path: pathlib.Path,
    pki: TestPki,
    tls_broker: tuple[Mosquitto, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Prevents a silent TLS failure (issue 8 item 17): a wrong CA is said at once, with why."""
    _, port = tls_broker
    other = TestPki(tmp_path / "other", name="other-ca")
    broker = broker_from_options(
        f"mqtts://127.0.0.1:{port}", ca_file=other.ca, cert=pki.client_cert, key=pki.client_key
    )
    caplog.set_level(logging.INFO, logger="gateway.ingest.mqtt")
    tls = link(broker, "tls-bad")
    tls.start()
    try:
        deadline = time.monotonic() + 5
        while tls.health().attempts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        health = tls.health()
    finally:
        tls.stop()
    assert not health.connected and health.attempts >= 1
    assert health.last_error is not None
    assert "TLS handshake failed" in health.last_error
    assert "CERTIFICATE_VERIFY_FAILED" in health.last_error
    assert "certificate verify failed" in health.last_error
    assert "first connection" in caplog.text and "CERTIFICATE_VERIFY_FAILED" in caplog.text


# -- `patrol-gateway run` as a user starts it --------------------------------------------------


def run_until(
    args: list[str], env: dict[str, str], tmp_path: pathlib.Path, needle: str, timeout: float = 10
) -> tuple[str, float]:
    """Start `patrol-gateway run`, stop it once `needle` is in its output; (output, seconds)."""
    log = tmp_path / "run.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*gateway_command(), "run", "--config", str(ZCITY), "--data", str(tmp_path), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        try:
            while time.monotonic() - started < timeout and proc.poll() is None:
                if needle in log.read_text(encoding="utf-8", errors="replace"):
                    break
                time.sleep(0.05)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    return log.read_text(encoding="utf-8", errors="replace"), took


def test_run_says_at_once_that_the_broker_cannot_be_reached(tmp_path: pathlib.Path) -> None:
    """Prevents `run` logging "running" and nothing else for ever against a wrong port
    (issue 8 item 6); the password in the URL never shows while it says so."""
    url = f"mqtt://alice:{SECRET}@127.0.0.1:{free_port()}"
    output, took = run_until(["--broker", url], {}, tmp_path, "retrying in 2 s")
    assert "first connection to mqtt://alice@127.0.0.1" in output, output
    assert "Connection refused" in output and "retrying in 1 s" in output
    assert "retrying in 2 s" in output and took < 8
    assert SECRET not in output


def test_a_bad_broker_url_does_not_show_its_password(tmp_path: pathlib.Path) -> None:
    """Prevents `--broker mqtt://alice:S3cret@host:notaport` printing the password (item 17)."""
    output, _ = run_until(
        ["--broker", f"mqtt://alice:{SECRET}@host:notaport"], {}, tmp_path, "port is not"
    )
    assert "port is not a number" in output, output
    assert SECRET not in output


@pytest.fixture(scope="module")
def password_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    folder = tmp_path_factory.mktemp("passwd")
    passwords = folder / "passwords"
    tool = pathlib.Path(find_mosquitto() or "mosquitto").with_name("mosquitto_passwd")
    command = str(tool) if tool.exists() else "mosquitto_passwd"
    subprocess.run(
        [command, "-b", "-c", str(passwords), "alice", SECRET],
        check=True,
        capture_output=True,
    )
    with Mosquitto(extra_config=f"password_file {passwords}\n") as broker:
        yield broker


@pytest.mark.parametrize("source", ["PATROL_BROKER_PASSWORD", "PATROL_BROKER_PASSWORD_FILE"])
def test_run_takes_the_password_from_the_environment(
    tmp_path: pathlib.Path, password_broker: Mosquitto, source: str
) -> None:
    """Prevents a password that can only be given on the command line, visible in `ps`."""
    env = {source: SECRET}
    if source.endswith("_FILE"):
        secret = tmp_path / "secret"
        secret.write_text(SECRET + "\n", encoding="utf-8")
        env = {source: str(secret)}
    url = f"mqtt://alice@127.0.0.1:{password_broker.port}"
    output, _ = run_until(["--broker", url, "--root", "pw"], env, tmp_path, "已连接")
    assert "connected to mqtt://alice@127.0.0.1" in output, output
    assert SECRET not in output


def test_a_wrong_password_is_reported_without_showing_it(
    tmp_path: pathlib.Path, password_broker: Mosquitto
) -> None:
    """Prevents a refused login going unsaid, and the password that failed being logged."""
    url = f"mqtt://alice@127.0.0.1:{password_broker.port}"
    env = {"PATROL_BROKER_PASSWORD": "not-" + SECRET}
    output, _ = run_until(["--broker", url, "--root", "pw"], env, tmp_path, "refused")
    assert "the broker refused the connection: Not authorized" in output, output
    assert SECRET not in output
