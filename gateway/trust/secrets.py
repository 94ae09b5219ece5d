"""The secrets file (`PATROL_SECRETS`, default `{data}/secrets.yaml`): never in the site file.

```yaml
people:   {zhang-wei: {qr: "64 hex"}}                    # per-person signed-QR secret
tags:     {04DE5F1EACC040: {meta_read_key: "32 hex", file_read_key: "32 hex"}}  # NTAG 424 SUN
readers:  {fd-1: {bridge: "64 hex"}}                      # reader bridge key
```
"""

from __future__ import annotations

import logging
import os
import pathlib
import secrets as _random
import time
from collections.abc import Callable
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway.config.models import normalize_uid

log = logging.getLogger(__name__)

Hex = Annotated[str, Field(pattern=r"^[0-9a-fA-F]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PersonSecret(_Strict):
    qr: Hex = Field(description="HMAC-SHA256 key of the person's rotating QR code (hex)")


class TagKeys(_Strict):
    meta_read_key: Hex = Field(
        min_length=32, max_length=32, description="SDMMetaReadKey: decrypts the PICC data"
    )
    file_read_key: Hex = Field(
        min_length=32, max_length=32, description="SDMFileReadKey: the SUN MAC's session key"
    )


class ReaderSecret(_Strict):
    bridge: Hex = Field(description="HMAC-SHA256 key of the reader bridge's store-and-forward")


class Secrets(_Strict):
    """Every key the gateway checks signatures with."""

    people: dict[str, PersonSecret] = Field(default_factory=dict)
    tags: dict[str, TagKeys] = Field(default_factory=dict)
    readers: dict[str, ReaderSecret] = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _uids(cls, value: dict[str, TagKeys]) -> dict[str, TagKeys]:
        out = {}
        for uid, keys in value.items():
            norm = normalize_uid(str(uid))
            if norm is None:
                raise ValueError(f"tag {uid!r}: a UID is hexadecimal")
            out[norm] = keys
        return out

    def qr_key(self, person: str) -> bytes | None:
        """The person's QR secret, or None."""
        entry = self.people.get(person)
        return None if entry is None else bytes.fromhex(entry.qr)

    def tag_keys(self, uid: str) -> tuple[bytes, bytes] | None:
        """(meta read key, file read key) of a tag by its normalised UID, or None."""
        keys = self.tags.get(uid)
        if keys is None:
            return None
        return bytes.fromhex(keys.meta_read_key), bytes.fromhex(keys.file_read_key)

    def bridge_key(self, reader: str) -> bytes | None:
        """The reader bridge's key, or None."""
        entry = self.readers.get(reader)
        return None if entry is None else bytes.fromhex(entry.bridge)


NO_SECRETS = Secrets()  # no keys at all: every scan is plain (replay, tests)


def no_secrets() -> Secrets:
    """The secrets of a gateway without a secrets file (one object, not one per scan)."""
    return NO_SECRETS


class SecretsError(ValueError):
    """The secrets file cannot be read; the message names the file and the problem."""


def secrets_path(data: pathlib.Path, env: dict[str, str] | None = None) -> pathlib.Path:
    """`PATROL_SECRETS`, or `{data}/secrets.yaml` (contract §7)."""
    env = dict(os.environ) if env is None else env
    value = env.get("PATROL_SECRETS")
    return pathlib.Path(value) if value else data / "secrets.yaml"


def load_secrets(path: pathlib.Path) -> Secrets:
    """The secrets in `path`; an absent file is no secrets at all (every scan is plain)."""
    if not path.exists():
        return Secrets()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Secrets.model_validate(raw)
    except (yaml.YAMLError, ValidationError, ValueError) as exc:
        raise SecretsError(f"密钥文件有误 / {path}: {exc}") from exc


CHECK_SECONDS = 1.0  # how soon a changed secrets file is read again


class SecretsFile:
    """The secrets file, read again within `every` seconds of a change (`qr` adds a person's
    secret while the gateway runs); a file that turns bad keeps the last good secrets and says
    so once."""

    def __init__(
        self,
        path: pathlib.Path,
        every: float = CHECK_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.every = every
        self.clock = clock
        self._stamp: tuple[int, int] | None = None
        self._secrets = load_secrets(path)  # a bad file at start is an error at start
        self._stamp = self._stat()
        self._checked = clock()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime_ns, st.st_size

    def current(self) -> Secrets:
        """The secrets as the file holds them, looked at again once `every` seconds have passed
        (asked for every scan: a system call each time was 7 % of the worker's time)."""
        now = self.clock()
        if now - self._checked < self.every:
            return self._secrets
        self._checked = now
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._secrets = load_secrets(self.path)
            except SecretsError as exc:
                log.error("%s; keeping the secrets read before", exc)
        return self._secrets


def add_qr_secret(path: pathlib.Path, person: str) -> bytes:
    """The person's QR secret, created (32 random bytes) and saved if they had none."""
    raw: dict[str, Any] = {}
    if path.exists():
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    people = raw.setdefault("people", {})
    entry = people.setdefault(person, {})
    if "qr" not in entry:
        entry["qr"] = _random.token_hex(32)
        write_private(path, yaml.safe_dump(raw, allow_unicode=True, sort_keys=True))
    return bytes.fromhex(str(entry["qr"]))


def write_private(path: pathlib.Path, text: str) -> None:
    """Write a file only its owner can read (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(tmp, path)
