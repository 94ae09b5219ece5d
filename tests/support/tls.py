"""Throwaway certificates for TLS tests, made with the `openssl` command (no Python deps).

Each `TestPki` is a CA, a server certificate for 127.0.0.1 and a client certificate signed by
it, in a folder of their own; short-lived EC keys, so making them takes milliseconds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise RuntimeError(
            "openssl is not installed: the TLS tests make their certificates with it"
        )
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class TestPki:
    """A CA with a server certificate (SAN IP 127.0.0.1) and a client certificate."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, name: str = "ca") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.ca = folder / f"{name}.pem"
        self.server_cert, self.server_key = folder / "server.pem", folder / "server.key"
        self.client_cert, self.client_key = folder / "client.pem", folder / "client.key"
        curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            "req", "-x509", *curve, "-keyout", f"{name}.key", "-out", self.ca.name,
            "-days", "2", "-subj", f"/CN=patrol test {name}", cwd=folder,
        )  # fmt: skip
        (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n", encoding="utf-8")
        (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n", encoding="utf-8")
        for who in ("server", "client"):
            _openssl(
                "req", *curve, "-keyout", f"{who}.key", "-out", f"{who}.csr",
                "-subj", f"/CN=patrol test {who}", cwd=folder,
            )  # fmt: skip
            _openssl(
                "x509", "-req", "-in", f"{who}.csr", "-CA", self.ca.name, "-CAkey",
                f"{name}.key", "-CAcreateserial", "-out", f"{who}.pem", "-days", "2",
                "-extfile", f"{who}.ext", cwd=folder,
            )  # fmt: skip

    def mosquitto_listener(self, port: int) -> str:
        """mosquitto.conf lines for a TLS listener that requires a client certificate."""
        return (
            f"listener {port} 127.0.0.1\n"
            f"cafile {self.ca}\ncertfile {self.server_cert}\nkeyfile {self.server_key}\n"
            "require_certificate true\n"
        )
