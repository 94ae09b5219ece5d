"""NTAG 424 DNA Secure Unique NFC (SUN) messages, verified as NXP AN12196 describes.

The tag mirrors into its NDEF message the PICC data encrypted with its SDM meta read key
(`PICCDataTag ‖ UID ‖ SDMReadCtr ‖ padding`, AES-128-CBC, zero IV) and the SDM MAC: an
AES-CMAC (NIST SP 800-38B) with a session key derived from the SDM file read key, the UID and
the read counter (AN12196 §3.3: SV2 = 3CC3 0001 0080 ‖ UID ‖ SDMReadCtr), over the MAC input
(empty here: the reader forwards `picc` and `cmac` only, so SDMMACInputOffset = SDMMACOffset),
truncated to its odd-numbered bytes (S1, S3, … S15).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

UID_MIRRORED = 0x80
COUNTER_MIRRORED = 0x40
SV2_PREFIX = bytes.fromhex("3CC300010080")


class SunError(ValueError):
    """The SUN message cannot be read (wrong key, not a 7-byte UID, nothing mirrored)."""


@dataclass(frozen=True)
class Picc:
    """What the tag's encrypted PICC data holds."""

    uid: bytes
    counter: int


def cmac(key: bytes, data: bytes) -> bytes:
    """AES-CMAC (RFC 4493) of `data`."""
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def decrypt_picc(meta_read_key: bytes, picc: bytes) -> Picc:
    """Decrypt the 16-byte PICCENCData with the SDM meta read key (AN12196 §3.4.2.1)."""
    if len(picc) != 16:
        raise SunError("picc must be 16 bytes (32 hex digits)")
    decryptor = Cipher(algorithms.AES(meta_read_key), modes.CBC(bytes(16))).decryptor()
    plain = decryptor.update(picc) + decryptor.finalize()
    tag = plain[0]
    uid_len = tag & 0x0F
    if not tag & UID_MIRRORED or not tag & COUNTER_MIRRORED or uid_len != 7:
        raise SunError("PICC data holds no 7-byte UID and read counter (wrong key?)")
    uid = plain[1:8]
    counter = int.from_bytes(plain[8:11], "little")
    return Picc(uid, counter)


def session_mac_key(file_read_key: bytes, uid: bytes, counter: int) -> bytes:
    """SesSDMFileReadMACKey = CMAC(K_SDMFileRead, SV2) (AN12196 §3.3)."""
    sv2 = SV2_PREFIX + uid + counter.to_bytes(3, "little")
    return cmac(file_read_key, sv2.ljust(16, b"\x00"))


def sdm_mac(file_read_key: bytes, uid: bytes, counter: int, mac_input: bytes = b"") -> bytes:
    """The 8-byte SDMMAC the tag mirrors: the odd-numbered bytes of the full CMAC."""
    full = cmac(session_mac_key(file_read_key, uid, counter), mac_input)
    return full[1::2]


def verify(meta_read_key: bytes, file_read_key: bytes, picc: bytes, mac: bytes) -> Picc:
    """The tag's UID and read counter if the SUN MAC is genuine; SunError otherwise."""
    data = decrypt_picc(meta_read_key, picc)
    if len(mac) != 8 or not hmac.compare_digest(
        sdm_mac(file_read_key, data.uid, data.counter), mac
    ):
        raise SunError("wrong SUN MAC")
    return data


def encrypt_picc(meta_read_key: bytes, uid: bytes, counter: int, padding: bytes) -> bytes:
    """What a tag mirrors for (uid, counter): for tests and the simulator."""
    plain = bytes([UID_MIRRORED | COUNTER_MIRRORED | len(uid)]) + uid
    plain += counter.to_bytes(3, "little") + padding
    encryptor = Cipher(algorithms.AES(meta_read_key), modes.CBC(bytes(16))).encryptor()
    return encryptor.update(plain[:16].ljust(16, b"\x00")) + encryptor.finalize()
