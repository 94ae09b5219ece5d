"""Site changes without a restart (issue 8 item 23): `patrol-gateway reload --data DIR` and
SIGHUP re-read the site file of a running `patrol-gateway run`; validated first, refused whole
with the errors if bad (the gateway runs on with the site it had), applied if good."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.support.gateway import ZCITY, GatewayProcess, unique_root, wait_until
from tests.support.live import cli, scan, wait_healthy
from tests.support.mosquitto import Mosquitto
from tests.support.mqtt import MqttClient, Received

NEW_CARD = "04AABBCCDDEE01"
NEWER_CARD = "04AABBCCDDEE02"


def with_person(text: str, ident: str, name: str, card: str) -> str:
    """The site file with one more person (a security guard with one card)."""
    line = f'  - {{id: {ident}, name: {name}, roles: [security], credentials: ["nfc:{card}"]}}\n'
    head, tail = text.split("people:", 1)
    first_line_end = tail.index("\n") + 1
    return head + "people:" + tail[:first_line_end] + line + tail[first_line_end:]


class Reader:
    """A reader at the front desk that presents cards and waits for each answer."""

    def __init__(self, broker_url: str, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.client = MqttClient(broker_url, timeout=10)
        self.client.connect()
        self.client.subscribe(gateway.topics.ack("fd-1"))
        self.seq = 0

    def present(self, card: str) -> dict[str, object]:
        """The answer to one scan of `card`."""
        self.seq += 1
        seq = self.seq

        def mine(m: Received) -> bool:
            return bool(m.json()["seq"] == seq)

        self.client.publish(self.gateway.topics.scan("fd-1"), scan(card, seq))
        (answer,) = self.client.wait_for(mine, what=f"the answer to scan {seq}")
        body: dict[str, object] = answer.json()
        return body

    def close(self) -> None:
        self.client.close()


def test_reload_applies_a_good_file_and_refuses_a_broken_one(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """A person added to the file is known after `reload` (the message names the change); a
    broken file is refused with its errors, and the gateway runs on the site it had."""
    site_file = tmp_path / "site.yaml"
    original = ZCITY.read_text(encoding="utf-8")
    site_file.write_text(original, encoding="utf-8")
    data = tmp_path / "data"
    with GatewayProcess(mosquitto.url, data, root=unique_root(), site_file=site_file) as gateway:
        wait_healthy(data)
        reader = Reader(mosquitto.url, gateway)
        try:
            assert reader.present(NEW_CARD)["ok"] is False  # nobody's card yet

            good = with_person(original, "xiao-ming", "小明", NEW_CARD)
            site_file.write_text(good, encoding="utf-8")
            result = cli("reload", "--data", str(data))
            assert result.exit_code == 0, result.output
            assert "reloaded" in result.stdout and "+xiao-ming" in result.stdout
            answer = reader.present(NEW_CARD)
            assert answer["ok"] is True and answer["person"] == "小明"

            broken = with_person(good, "bad-guy", "坏", NEWER_CARD).replace(
                "roles: [security]", "roles: [no_such_role]", 1
            )
            site_file.write_text(broken, encoding="utf-8")
            refused = cli("reload", "--data", str(data))
            assert refused.exit_code == 1
            assert "not reloaded" in refused.stderr and "no_such_role" in refused.stderr
            assert gateway.running
            assert reader.present(NEW_CARD)["ok"] is True  # the last good site, still
            assert reader.present(NEWER_CARD)["ok"] is False  # nothing of the broken file
        finally:
            reader.close()
        assert gateway.stop() == 0


def test_sighup_reloads_the_same_way(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """SIGHUP does what `reload` does: a good file applied (and logged with the change), a
    broken one refused and logged with its errors, the gateway running on."""
    site_file = tmp_path / "site.yaml"
    original = ZCITY.read_text(encoding="utf-8")
    site_file.write_text(original, encoding="utf-8")
    with GatewayProcess(
        mosquitto.url, tmp_path / "data", root=unique_root(), site_file=site_file
    ) as gateway:
        reader = Reader(mosquitto.url, gateway)
        try:
            site_file.write_text("people: [oops", encoding="utf-8")
            os.kill(gateway.pid, signal.SIGHUP)
            wait_until(gateway.log_tail, lambda t: "not reloaded" in t, 10, "the refusal")
            assert gateway.running
            assert reader.present("04A224B1C23380")["ok"] is True  # the original site

            site_file.write_text(
                with_person(original, "xiao-ming", "小明", NEW_CARD), encoding="utf-8"
            )
            os.kill(gateway.pid, signal.SIGHUP)
            wait_until(gateway.log_tail, lambda t: "+xiao-ming" in t, 10, "the reload logged")
            answer = reader.present(NEW_CARD)
            assert answer["ok"] is True and answer["person"] == "小明"
        finally:
            reader.close()
        assert gateway.stop() == 0
