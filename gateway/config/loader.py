"""Reads a site file, validates it whole, and lists every error with its key path (§4)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from gateway.config.models import Role, SiteConfig, normalize_uid
from gateway.config.site import Site


@dataclass(frozen=True)
class ConfigProblem:
    """One error: where in the file, and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(top)'}: {self.message}"


class ConfigError(Exception):
    """The site file is refused; `problems` lists every error found."""

    def __init__(self, source: str, problems: list[ConfigProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems]
        super().__init__(
            f"站点配置有 {len(problems)} 处错误 / {len(problems)} error(s):\n" + "\n".join(lines)
        )


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key written twice instead of keeping the last one."""


def _mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    """Safe YAML that refuses a key written twice (plain YAML keeps the last one silently)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _hint(err: dict[str, Any]) -> str:
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        return "unknown key: remove it or check its spelling (see docs/site-file.md)"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        return f"{value!r} is not a valid id: use [a-z0-9][a-z0-9_-]{{0,63}} (lower case)"
    if kind == "string_type" and isinstance(value, int) and not isinstance(value, bool):
        return f'{value!r} is a number: quote clock times and ids, e.g. "08:30"'
    text = str(msg)
    return text.removeprefix("Value error, ")


def parse_site(data: object, source: str = "<site>") -> Site:
    """Validate already-parsed YAML data; raise ConfigError listing every problem."""
    problems: list[ConfigProblem] = []
    config: SiteConfig | None = None
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        problems += [ConfigProblem(_path(e["loc"]), _hint(dict(e))) for e in exc.errors()]
    if isinstance(data, dict):
        problems += list(cross_check(data))
    if problems or config is None:
        raise ConfigError(source, _dedupe(problems))
    return Site(config)


def load_site(path: str | pathlib.Path) -> Site:
    """Read and validate a site file."""
    source = str(path)
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            source, [ConfigProblem("", f"cannot read the file: {exc.strerror}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [ConfigProblem("", "the file is not UTF-8 text")]) from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigProblem(where, f"not valid YAML: {problem}")]) from exc
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigProblem("", "the file must be a mapping with `site:`")])
    return parse_site(data, source)


def _dedupe(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    seen: set[ConfigProblem] = set()
    out = []
    for p in problems:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _items(data: dict[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    value = data.get(key)
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def _ids(data: dict[str, Any], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, item in _items(data, key):
        if isinstance(item.get("id"), str):
            out.setdefault(item["id"], i)
    return out


def cross_check(data: dict[str, Any]) -> Iterator[ConfigProblem]:
    """References and uniqueness that one key alone cannot check; tolerant of a broken file."""
    for section in ("people", "posts", "equipment"):
        seen: dict[str, int] = {}
        for i, item in _items(data, section):
            ident = item.get("id")
            if isinstance(ident, str):
                if ident in seen:
                    yield ConfigProblem(
                        f"{section}[{i}].id",
                        f"duplicate id {ident!r} (also {section}[{seen[ident]}])",
                    )
                seen.setdefault(ident, i)
    people, posts = _ids(data, "people"), _ids(data, "posts")

    credentials: dict[str, str] = {}
    for i, person in _items(data, "people"):
        creds = person.get("credentials")
        for j, cred in enumerate(creds if isinstance(creds, list) else []):
            if not isinstance(cred, str):
                continue
            method, _, value = cred.partition(":")
            uid = normalize_uid(value) if method == "nfc" else value
            key = f"{method}:{uid}"
            where = f"people[{i}].credentials[{j}]"
            if key in credentials:
                yield ConfigProblem(
                    where, f"credential {cred!r} already belongs to {credentials[key]}"
                )
            credentials.setdefault(key, where)

    readers: dict[str, str] = {}
    for i, post_item in _items(data, "posts"):
        rlist = post_item.get("readers")
        for j, reader in enumerate(rlist if isinstance(rlist, list) else []):
            if not isinstance(reader, str):
                continue
            where = f"posts[{i}].readers[{j}]"
            if reader in readers:
                yield ConfigProblem(
                    where,
                    f"reader {reader!r} is already at {readers[reader]}; a reader has one post",
                )
            readers.setdefault(reader, where)

    for i, equipment in _items(data, "equipment"):
        where_at = equipment.get("post")
        if isinstance(where_at, str) and where_at not in posts:
            yield ConfigProblem(f"equipment[{i}].post", f"no post with id {where_at!r} is declared")
        ident = equipment.get("id")
        if isinstance(ident, str) and ident in readers:
            yield ConfigProblem(
                f"equipment[{i}].id",
                f"{ident!r} is also a reader id; device ids share one status topic: rename one",
            )

    duty_raw = data.get("duty")
    if isinstance(duty_raw, dict):
        hp = duty_raw.get("handover_post", "monitoring-center")
        if isinstance(hp, str) and posts and hp not in posts:
            yield ConfigProblem("duty.handover_post", f"no post with id {hp!r} is declared")
    elif posts and "monitoring-center" not in posts:
        yield ConfigProblem(
            "duty.handover_post",
            "the default handover post 'monitoring-center' is not declared: declare it or set it",
        )

    roles = {
        p["id"]: p.get("roles") for _, p in _items(data, "people") if isinstance(p.get("id"), str)
    }

    def manager(where: str, who: object) -> Iterator[ConfigProblem]:
        if not isinstance(who, str):
            return
        if who not in people:
            yield ConfigProblem(where, f"no person with id {who!r}")
        elif Role.duty_manager.value not in (roles.get(who) or []):
            yield ConfigProblem(
                where, f"{who!r} lacks the duty_manager role; add it to their roles"
            )

    roster_raw = data.get("roster")
    if isinstance(roster_raw, dict):
        weekly = roster_raw.get("weekly")
        if isinstance(weekly, dict):
            for day, who in weekly.items():
                yield from manager(f"roster.weekly.{day}", who)
        for i, swap in _items(roster_raw, "swaps"):
            yield from manager(f"roster.swaps[{i}].manager", swap.get("manager"))

    walking_raw = data.get("walking")
    if isinstance(walking_raw, dict):
        for i, leg in _items(walking_raw, "legs"):
            pair = leg.get("between")
            for j, post_id in enumerate(pair if isinstance(pair, list) else []):
                if isinstance(post_id, str) and post_id not in posts:
                    yield ConfigProblem(
                        f"walking.legs[{i}].between[{j}]", f"no post with id {post_id!r}"
                    )

    notify_raw = data.get("notify")
    role_ids = {r.value for r in Role}
    if isinstance(notify_raw, dict):
        for i, step in _items(notify_raw, "escalation"):
            targets = step.get("to")
            for j, target in enumerate(targets if isinstance(targets, list) else []):
                if (
                    isinstance(target, str)
                    and target != "on_duty"
                    and target not in role_ids | set(people)
                ):
                    yield ConfigProblem(
                        f"notify.escalation[{i}].to[{j}]",
                        f"{target!r} is neither on_duty, a role id nor a person id",
                    )
