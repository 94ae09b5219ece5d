"""`quick_init`: the same objects as the dataclass's own constructor, only built faster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.alerts.record import Alert
from gateway.events import Message, Scan
from gateway.frozen import evolve, quick_init


@dataclass(frozen=True)
class Plain:
    a: str
    b: int = 3
    c: list[int] = field(default_factory=list)
    d: int = field(default=7, init=False)
    e: tuple[str, ...] = field(default=(), compare=False)
    f: int = field(default=0, kw_only=True)


@quick_init
@dataclass(frozen=True)
class Quick:
    a: str
    b: int = 3
    c: list[int] = field(default_factory=list)
    d: int = field(default=7, init=False)
    e: tuple[str, ...] = field(default=(), compare=False)
    f: int = field(default=0, kw_only=True)


def fields_of(obj: object) -> dict[str, object]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [(("x",), {}), (("x", 5), {}), (("x", 5, [1]), {"e": ("k",), "f": 9}), ((), {"a": "y"})],
)
def test_the_same_fields_as_the_generated_constructor(
    args: tuple[object, ...], kwargs: dict[str, object]
) -> None:
    """A default, a factory, a field outside __init__ or a keyword-only one set wrongly would
    change what a message carries."""
    assert fields_of(Quick(*args, **kwargs)) == fields_of(Plain(*args, **kwargs))  # type: ignore[arg-type]


def test_same_signature_and_errors() -> None:
    """A caller's mistake (a missing or extra argument) still fails as it would."""
    assert str(inspect.signature(Quick)) == str(inspect.signature(Plain))
    with pytest.raises(TypeError):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick("x", g=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick("x", 1, [], (), 5)  # type: ignore[call-arg]  # f is keyword-only


def test_still_frozen_equal_and_hashable() -> None:
    """The objects stay immutable values: rules share them, the dedup compares them."""
    one, two = Quick("x", e=("a",)), Quick("x", e=("b",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = "y"  # type: ignore[misc]
    assert one == two  # e is not compared
    assert Quick("x").c is not Quick("x").c  # a new list from the factory each time
    at = dt.datetime(2026, 11, 27, 1, tzinfo=dt.UTC)
    assert hash(Message("t", b"p", at)) == hash(Message("t", b"p", at))
    scan = Scan("r", "p", "04AA", "nfc", None, at, at, seq=1)
    assert dataclasses.replace(scan, seq=2).seq == 2
    assert scan.with_flags(("duplicate_tap",)).flags == ("duplicate_tap",)


def test_refuses_what_it_cannot_speed_up() -> None:
    """Applied to a class that is not a frozen dataclass with a __dict__, it would break it."""

    class NotADataclass:
        pass

    @dataclass
    class Mutable:
        a: int

    @dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    @dataclass(frozen=True)
    class Checked:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (NotADataclass, Mutable, Slotted, Checked):
        with pytest.raises(TypeError):
            quick_init(cls)


def test_alert_replace_is_dataclasses_replace() -> None:
    """`Alert.replace` copies without the dataclass machinery: the copy must be what
    `dataclasses.replace` makes, leave the original alone, and refuse a misspelt field."""
    at = dt.datetime(2026, 11, 27, 1, tzinfo=dt.UTC)
    alert = Alert("a1", "zcity", "device.offline", "gn-1", "warning", "open", at, "离线")
    changes: dict[str, Any] = {"state": "closed", "cleared_at": at, "details": {"n": 1}}
    copy = alert.replace(**changes)
    assert copy == dataclasses.replace(alert, **changes)
    assert fields_of(copy) == fields_of(dataclasses.replace(alert, **changes))
    assert alert.state == "open" and alert.cleared_at is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.state = "open"  # type: ignore[misc]
    with pytest.raises(TypeError):
        alert.replace(stat="closed")


def test_evolve_copies_with_changes_and_shares_nothing_it_may_change() -> None:
    """`evolve` (behind `Scan.with_flags`) must be what `dataclasses.replace` makes, and the copy
    must own its attributes: a copy sharing the original's dict would change both."""
    at = dt.datetime(2026, 11, 27, 1, tzinfo=dt.UTC)
    scan = Scan("r", "p", "04AA", "nfc", "ann", at, at, seq=1, flags=("clock_skew",))
    copy = evolve(scan, flags=("clock_skew", "duplicate_tap"), seq=2)
    assert fields_of(copy) == fields_of(
        dataclasses.replace(scan, flags=("clock_skew", "duplicate_tap"), seq=2)
    )
    assert (scan.seq, scan.flags) == (1, ("clock_skew",))
    assert vars(copy) is not vars(scan)
    assert list(vars(Quick("x"))) == [f.name for f in dataclasses.fields(Quick)]
