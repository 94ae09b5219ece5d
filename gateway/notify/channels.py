"""Notify URLs through apprise: is a URL usable, what it looks like with its secret masked, and
one send. Nothing else in the gateway imports apprise."""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import apprise

# apprise's e-mail plugin imports `imghdr`, deprecated since Python 3.11: a warning the gateway
# cannot act on (and pytest turns into an error). Loading its plugins is done under this.
_APPRISE_NOISE = "'imghdr' is deprecated"


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _APPRISE_NOISE, DeprecationWarning)
        yield


# Query parameters apprise adds to every URL it prints; they say nothing to a person.
_NOISE = frozenset({"overflow", "retry", "wait", "optional", "format", "method", "cto", "rto"})
# Channels that render Markdown (contract §9: Markdown where the channel renders it). apprise
# sends a WeCom robot plain text (msgtype "text"), where Markdown would show as asterisks.
MARKDOWN_SCHEMES = frozenset({"dingtalk"})


class BadUrl(ValueError):
    """No apprise channel understands the URL."""


@lru_cache(maxsize=1024)
def _plugin(url: str) -> Any:
    with _quiet():
        return apprise.Apprise.instantiate(url, suppress_exceptions=True)


def check(url: str) -> None:
    """Raise `BadUrl` unless apprise can send to `url` (check-config, §9)."""
    if _plugin(url) is None:
        scheme = url.partition("://")[0] if "://" in url else url[:20]
        raise BadUrl(f"no notification channel understands {scheme!r} URLs like {mask(url)}")


def mask(url: str) -> str:
    """The URL with its secrets hidden, for logs, replay lines and check-config output."""
    plugin = _plugin(url)
    if plugin is None:
        # Not a channel URL at all: show the scheme only, never what follows it.
        scheme, sep, _ = url.partition("://")
        return f"{scheme}://…" if sep else "…"
    shown = str(plugin.url(privacy=True))
    parts = urllib.parse.urlsplit(shown)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query, True) if k not in _NOISE]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def scheme(url: str) -> str:
    """The URL's scheme, lower case."""
    return url.partition("://")[0].lower()


def markdown(url: str) -> bool:
    """Whether the channel renders Markdown through apprise (DingTalk robots)."""
    return scheme(url) in MARKDOWN_SCHEMES


@dataclass(frozen=True)
class SendResult:
    """What the channel said: `ok`, and a short reason when it did not take the message."""

    ok: bool
    detail: str


def send(url: str, title: str, body: str, timeout: float = 10.0) -> SendResult:
    """Send one message to one URL; never raises for a channel's failure."""
    with _quiet():
        plugin: Any = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return SendResult(False, "unusable URL")
    plugin.socket_connect_timeout = timeout
    plugin.socket_read_timeout = timeout
    fmt = apprise.NotifyFormat.MARKDOWN if markdown(url) else apprise.NotifyFormat.TEXT
    capture: Any = apprise.LogCapture
    with capture(level=logging.WARNING, fmt="%(message)s") as captured:
        try:
            ok = bool(plugin.notify(body=body, title=title, body_format=fmt))
        except Exception as exc:  # a plugin bug must not stop the other channels
            return SendResult(False, f"{type(exc).__name__}: {exc}"[:300])
        said = captured.getvalue().strip().splitlines()
    return SendResult(ok, "sent" if ok else (said[-1] if said else "refused")[:300])
