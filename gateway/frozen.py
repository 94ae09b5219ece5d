"""A faster constructor for the frozen dataclasses the gateway builds once or more per message.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__` (its own
`__setattr__` refuses), which makes building a seven-field message cost three times what a
plain class does. `quick_init` gives such a class an `__init__` with the same signature,
defaults and default factories that gives the instance its `__dict__` whole, built at once;
the class stays frozen (assignment still raises), compares and hashes as before.

Why a new dict, not the instance's own filled in: CPython 3.11 keeps a fresh instance's
attributes beside it, and asking for its `__dict__` moves them into a dict the interpreter's
fast attribute look-ups then refuse. Every later read of a field took 20 ns instead of 7, and
these objects are read dozens of times per message. `evolve` copies one the same way.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")

_FACTORY = object()  # the default of a parameter whose field has a default factory
_set = object.__setattr__  # what a frozen dataclass's own __setattr__ refuses to do


def evolve(obj: T, **changes: Any) -> T:
    """A copy of the `quick_init` instance `obj` with some fields changed (no check of the
    names: the callers check them, or pass fixed ones)."""
    copy = object.__new__(type(obj))
    _set(copy, "__dict__", {**obj.__dict__, **changes})
    return copy


def quick_init(cls: type[T]) -> type[T]:
    """Replace the frozen dataclass `cls`'s `__init__` (see the module's docstring)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: quick_init is for frozen dataclasses")
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init needs a __dict__ and no __post_init__")
    scope: dict[str, Any] = {"_FACTORY": _FACTORY, "_set": _set}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    entries: list[str] = []  # the instance's dict, field by field in their order
    fields: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(cls)  # type: ignore[arg-type]
    for f in fields:
        default = f"_default_{f.name}"
        if f.default is not dataclasses.MISSING:
            scope[default] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
        if not f.init:  # not a parameter: its default (or a new one from its factory)
            value = default if default in scope else f"_factory_{f.name}()"
            entries.append(f"{f.name!r}: {value}")
            continue
        param = f.name
        if default in scope:
            param += f"={default}"
        elif f.default_factory is not dataclasses.MISSING:
            param += "=_FACTORY"
            body.append(f"    if {f.name} is _FACTORY: {f.name} = _factory_{f.name}()")
        (keyword if f.kw_only else positional).append(param)
        entries.append(f"{f.name!r}: {f.name}")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    body.append(f"    _set(self, '__dict__', {{{', '.join(entries)}}})")
    source = f"def __init__({signature}):\n" + "\n".join(body) + "\n"
    exec(source, scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__signature__ = inspect.signature(cls.__init__)  # annotations and all, for tools
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses an assigned method
    return cls
