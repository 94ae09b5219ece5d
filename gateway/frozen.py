"""A faster constructor for the frozen dataclasses the gateway builds once or more per message.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__` (its own
`__setattr__` refuses), which makes building a seven-field message cost three times what a
plain class does. `quick_init` gives such a class an `__init__` with the same signature,
defaults and default factories that fills the instance's `__dict__` directly; the class stays
frozen (assignment still raises), compares and hashes as before.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, TypeVar

T = TypeVar("T")

_FACTORY = object()  # the default of a parameter whose field has a default factory


def quick_init(cls: type[T]) -> type[T]:
    """Replace the frozen dataclass `cls`'s `__init__` (see the module's docstring)."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__}: quick_init is for frozen dataclasses")
    if "__slots__" in cls.__dict__ or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: quick_init needs a __dict__ and no __post_init__")
    scope: dict[str, Any] = {"_FACTORY": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    fields: tuple[dataclasses.Field[Any], ...] = dataclasses.fields(cls)  # type: ignore[arg-type]
    for f in fields:
        default = f"_default_{f.name}"
        if f.default is not dataclasses.MISSING:
            scope[default] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
        if not f.init:  # not a parameter: its default (or a new one from its factory)
            value = default if default in scope else f"_factory_{f.name}()"
            body.append(f"    d[{f.name!r}] = {value}")
            continue
        param = f.name
        if default in scope:
            param += f"={default}"
        elif f.default_factory is not dataclasses.MISSING:
            param += "=_FACTORY"
            body.append(f"    if {f.name} is _FACTORY: {f.name} = _factory_{f.name}()")
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    d[{f.name!r}] = {f.name}")
    signature = ", ".join(["self", *positional, *(["*", *keyword] if keyword else [])])
    source = f"def __init__({signature}):\n    d = self.__dict__\n" + "\n".join(body) + "\n"
    exec(source, scope)
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    init.__signature__ = inspect.signature(cls.__init__)  # annotations and all, for tools
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses an assigned method
    return cls
