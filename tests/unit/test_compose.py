"""docker-compose.yml and what it mounts hold together (Docker cannot run here, issue 9)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_services_health_checks_and_order() -> None:
    """The four services, each with a health check, started after what they need is healthy
    (a missing health check or a plain `depends_on` list fails)."""
    services = compose()["services"]
    assert set(services) == {"mosquitto", "influxdb", "grafana", "gateway"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    assert services["gateway"]["healthcheck"]["test"] == [
        "CMD",
        "patrol-gateway",
        "health",
        "--data",
        "/data",
    ]
    assert services["gateway"]["depends_on"] == {
        "mosquitto": {"condition": "service_healthy"},
        "influxdb": {"condition": "service_healthy"},
    }
    assert services["grafana"]["depends_on"] == {"influxdb": {"condition": "service_healthy"}}
    assert services["influxdb"]["image"].startswith("influxdb:2.7")


def test_mounted_files_exist_and_are_never_created_by_docker() -> None:
    """Every bind mount of a repository file points at a file that exists, and no bind lets
    Docker create a missing path (a missing site file must be an error, not an empty dir)."""
    top = compose()
    named = set(top["volumes"])
    for name, service in top["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):
                assert volume.split(":")[0] in named, f"{name}: {volume} is not a named volume"
                continue
            assert volume["type"] == "bind"
            assert volume["bind"]["create_host_path"] is False, f"{name}: {volume['source']}"
            assert volume["read_only"] is True
            source = volume["source"]
            if source.startswith("${"):
                continue  # the user's site folder
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def test_ports_bind_to_configured_addresses_only() -> None:
    """Only MQTT and Grafana are published, each on an address from .env (default loopback);
    a bare `1883:1883` binds all interfaces and fails."""
    services = compose()["services"]
    published = {n: s["ports"] for n, s in services.items() if "ports" in s}
    assert set(published) == {"mosquitto", "grafana"}
    for ports in published.values():
        for port in ports:
            assert re.fullmatch(r"\$\{PATROL_\w+_BIND:-127\.0\.0\.1\}:\d+:\d+", port), port


def test_environment_names_are_what_the_gateway_reads() -> None:
    """Each PATROL_* variable given to the gateway is read by the gateway's code, and each
    secret the compose file needs is in .env.example (a typo in a name fails)."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "gateway").rglob("*.py"))
    gateway_env = compose()["services"]["gateway"]["environment"]
    for name in gateway_env:
        assert f'"{name}"' in source, f"{name} is not read by the gateway"
    text = (ROOT / "docker-compose.yml").read_text()
    example = (ROOT / ".env.example").read_text()
    defined = set(re.findall(r"^(\w+)=", example, re.M))
    for needed in re.findall(r"\$\{(\w+):\?", text):
        assert needed in defined, needed
    provisioning = (ROOT / "dashboards/provisioning/datasources/influxdb.yaml").read_text()
    grafana_env = compose()["services"]["grafana"]["environment"]
    for used in re.findall(r"\$\{(\w+)\}", provisioning):
        assert used in grafana_env, used


def test_dockerfile_runs_as_non_root_with_a_health_check() -> None:
    """The gateway image drops root and checks its health (a root image fails)."""
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert 'patrol-gateway", "health"' in text
    assert "[influx]" in text
