"""A scan's `auth` as parsed from its payload (contract §3), checked later by `verify.py`."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.trust.qr import SignedQr

# Assurance levels: what vouches for the credential (stored with every scan, shown, reported).
PLAIN_UID = "plain_uid"
SIGNED_QR = "signed_qr"
SUN = "sun"


@dataclass(frozen=True)
class Proof:
    """Signatures a scan carries; each part is None when absent."""

    qr: SignedQr | None = None
    sun_picc: bytes | None = None
    sun_cmac: bytes | None = None
    bridge_text: bytes | None = None  # what the bridge MAC covers, as sent
    bridge_mac: str | None = None
