"""Reads a site file, validates it whole, and lists every error with its key path (§4)."""

from __future__ import annotations

import difflib
import pathlib
import re
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config.models import (
    ID_PATTERN,
    ID_RE,
    Duty,
    Invalid,
    Role,
    SiteConfig,
    _clock,
    normalize_uid,
)
from gateway.config.site import Site
from gateway.messages import bilingual, count

Loc = tuple[int | str, ...]


@dataclass(frozen=True)
class ConfigProblem:
    """One error: where in the file (ids in place of list indexes), and what is wrong, in
    English (`message`) and, when there is one, in Chinese (`zh`)."""

    path: str
    message: str
    zh: str = ""

    def text(self, locale: str = "zh-CN") -> str:
        """What is wrong, in the site's language and English."""
        return bilingual(locale, self.zh, self.message)

    def __str__(self) -> str:
        return f"{self.path or '(top)'}: {self.text()}"


class ConfigError(Exception):
    """The site file is refused; `problems` lists every error found."""

    def __init__(self, source: str, problems: list[ConfigProblem], locale: str = "zh-CN") -> None:
        self.source = source
        self.problems = problems
        self.locale = locale
        super().__init__(self.render())

    def render(self) -> str:
        """Every problem on its own line; a problem with the whole file is one line alone."""
        problems, locale = self.problems, self.locale
        if len(problems) == 1 and not problems[0].path:
            return problems[0].text(locale)
        n = len(problems)
        head = bilingual(locale, f"站点配置有 {n} 处错误", count(n, "error", "errors"))
        lines = [f"{self.source}: {p.path or '(top)'}: {p.text(locale)}" for p in problems]
        return f"{head}:\n" + "\n".join(lines)


# libyaml's loader where PyYAML has it: a large site file (10,000 readers) loads in a fraction of
# the time and memory of the pure-Python one (docs/benchmarks.md).
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SafeLoader):  # type: ignore[valid-type,misc]
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


def _where(data: object, loc: Sequence[int | str]) -> str:
    """The key path of `loc` in `data`, naming a list item by its id where it has a unique,
    valid one (`posts[monitoring-center].readers[1]`), by its index otherwise."""
    out = ""
    node: object = data
    for part in loc:
        if isinstance(part, int):
            label: str = str(part)
            item: object = None
            if isinstance(node, list) and 0 <= part < len(node):
                item = node[part]
                ident = item.get("id") if isinstance(item, dict) else None
                twins = [x for x in node if isinstance(x, dict) and x.get("id") == ident]
                if isinstance(ident, str) and ID_RE.match(ident) and len(twins) == 1:
                    label = ident
            out += f"[{label}]"
            node = item
        elif part != "[key]":  # pydantic's marker for a bad mapping key, named just before
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _unwrap(annotation: Any) -> Any:
    """`X` out of `Annotated[X, …]` and `X | None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def _keys_at(loc: Loc) -> list[str]:
    """The keys the site file allows in the mapping at `loc` (empty if it is not a model)."""
    annotation: Any = SiteConfig
    for part in loc:
        annotation = _unwrap(annotation)
        origin = get_origin(annotation)
        if origin in (list, tuple) and isinstance(part, int):
            annotation = get_args(annotation)[0]
        elif origin is dict and isinstance(part, str):
            annotation = get_args(annotation)[1]
        elif (
            isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
            and isinstance(part, str)
            and part in annotation.model_fields
        ):
            annotation = annotation.model_fields[part].annotation
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _nearest(word: object, choices: Iterable[str]) -> str | None:
    """The choice a typo most likely meant, if one is close enough."""
    if not isinstance(word, str):
        return None
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _suggest(best: str | None) -> tuple[str, str]:
    """The " did you mean" tail of a message, English and Chinese."""
    if best is None:
        return "", ""
    return f": did you mean `{best}`?", f"，是否应为 `{best}`？"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_CLOCK_KEYS = frozenset(
    name
    for name, field in Duty.model_fields.items()
    if any(getattr(m, "func", None) is _clock for m in field.metadata)
)

_TYPE_WORDS: dict[str, tuple[str, str]] = {
    "int": ("a whole number", "整数"),
    "float": ("a number", "数字"),
    "bool": ("true or false", " true 或 false"),
    "list": ("a list, e.g. [a, b]", "列表，如 [a, b]"),
    "tuple": ("a list, e.g. [a, b]", "列表，如 [a, b]"),
    "dict": ("a mapping of keys to values", "键值映射"),
    "model": ("a mapping of keys to values", "键值映射"),
    "date": ("a date like 2026-11-28", "日期，如 2026-11-28"),
    "string": ("text", "文本"),
}

_BOUNDS: dict[str, tuple[str, str, str]] = {
    "greater_than": ("gt", "must be more than {}", "必须大于 {}"),
    "greater_than_equal": ("ge", "must be at least {}", "不能小于 {}"),
    "less_than": ("lt", "must be less than {}", "必须小于 {}"),
    "less_than_equal": ("le", "must be at most {}", "不能大于 {}"),
}


def _hint(err: Mapping[str, Any]) -> tuple[str, str]:
    """A pydantic error in plain words: (English, Chinese)."""
    kind: str = err["type"]
    loc: Loc = tuple(err["loc"])
    value = err.get("input")
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    if kind == "extra_forbidden":
        en, zh = _suggest(_nearest(loc[-1] if loc else None, _keys_at(loc[:-1])))
        if not en:
            en = ": remove it or check its spelling (see docs/site-file.md)"
            zh = "：请删除或检查拼写（见 docs/site-file.md）"
        return f"unknown key{en}", f"未知的键{zh}"
    if kind == "missing":
        if loc and isinstance(loc[-1], int):
            return "this item is missing", "缺少此项"
        return "required key is missing", "缺少必填的键"
    if kind == "string_pattern_mismatch":
        if ctx.get("pattern") == ID_PATTERN:
            return (
                f"{_show(value)} is not a valid id: use [a-z0-9][a-z0-9_-]{{0,63}} (lower case)",
                f"{_show(value)} 不是有效的 id：只能用小写字母、数字、_ 和 -，以字母或数字开头",
            )
        return (
            f"{_show(value)} is not allowed here: use letters, digits and _",
            f"{_show(value)} 不可用：只能用字母、数字和 _",
        )
    if kind == "string_type" and isinstance(value, int) and not isinstance(value, bool):
        if loc and loc[-1] in _CLOCK_KEYS and value >= 0:
            # YAML 1.1 reads an unquoted 18:00 (no leading zero) as 18 * 60 + 0 = 1080.
            clock = f"{value // 60:02d}:{value % 60:02d}"
            return (
                f"{value} is a number: YAML reads an unquoted time like {value // 60}:"
                f'{value % 60:02d} as base 60; quote it: "{clock}"',
                f'{value} 是数字：不加引号的时刻会被 YAML 读成六十进制数，请加引号写成 "{clock}"',
            )
        return (
            f'{value} is a number: quote ids and names, e.g. "{value}"',
            f'{value} 是数字：id 和名称请加引号，如 "{value}"',
        )
    if kind in _BOUNDS:
        key, en, zh = _BOUNDS[kind]
        bound = ctx.get(key)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return en.format(bound), zh.format(bound)
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        en, zh = _suggest(_nearest(value, choices))
        listed = ", ".join(choices)
        return (
            f"{_show(value)} is not one of {listed}{en}",
            f"{_show(value)} 不是可选值（{listed}）之一{zh}",
        )
    if kind in ("too_short", "too_long"):
        n = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        if kind == "too_short":
            return f"needs at least {n} item{'s' if n != 1 else ''}", f"至少需要 {n} 项"
        return f"takes at most {n} item{'s' if n != 1 else ''}", f"最多 {n} 项"
    if kind == "value_error":
        error = ctx.get("error")
        if isinstance(error, Invalid):
            return str(error), error.zh
        return str(err["msg"]).removeprefix("Value error, "), "取值无效"
    head = kind.partition("_")[0]
    if head in _TYPE_WORDS:
        en, zh = _TYPE_WORDS[head]
        return f"{_show(value)} is not {en}", f"{_show(value)} 不是{zh}"
    return f"{_show(value)} is not valid here", f"{_show(value)} 在此处无效"


def _locale(data: object) -> str:
    """The site file's own language, as far as it can be read (zh-CN if not)."""
    site = data.get("site") if isinstance(data, dict) else None
    locale = site.get("locale") if isinstance(site, dict) else None
    return locale if locale in ("zh-CN", "en") else "zh-CN"


def parse_site(data: object, source: str = "<site>") -> Site:
    """Validate already-parsed YAML data; raise ConfigError listing every problem."""
    problems: list[ConfigProblem] = []
    config: SiteConfig | None = None
    try:
        config = SiteConfig.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            en, zh = _hint(e)
            problems.append(ConfigProblem(_where(data, e["loc"]), en, zh))
    if isinstance(data, dict):
        for c in cross_check(data):
            ref = "" if c.ref is None else _where(data, c.ref)
            problems.append(
                ConfigProblem(
                    _where(data, c.loc), c.en.replace("{ref}", ref), c.zh.replace("{ref}", ref)
                )
            )
    if problems or config is None:
        raise ConfigError(source, _dedupe(problems), _locale(data))
    return Site(config)


def load_site(path: str | pathlib.Path) -> Site:
    """Read and validate a site file."""
    source = str(path)
    try:
        text = pathlib.Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(
            source, [ConfigProblem("", f"no such file: {source}", "文件不存在")]
        ) from exc
    except OSError as exc:
        raise ConfigError(
            source,
            [ConfigProblem("", f"cannot read {source}: {exc.strerror}", "无法读取文件")],
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, [ConfigProblem("", f"{source} is not UTF-8 text", "文件不是 UTF-8 文本")]
        ) from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            source, [ConfigProblem(where or "(top)", f"not valid YAML: {problem}", "YAML 格式错误")]
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            [
                ConfigProblem(
                    "(top)",
                    "the file must be a mapping that starts with `site:`",
                    "文件应为以 `site:` 开头的键值映射",
                )
            ],
        )
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


@dataclass(frozen=True)
class CrossProblem:
    """A problem between keys: at `loc`; `{ref}` in the texts stands for the key path `ref`."""

    loc: Loc
    en: str
    zh: str
    ref: Loc | None = None


def _undeclared(loc: Loc, kind: tuple[str, str], ident: str, known: Iterable[str]) -> CrossProblem:
    en, zh = _suggest(_nearest(ident, known))
    return CrossProblem(
        loc,
        f"no {kind[0]} with id {ident!r} is declared{en}",
        f"未声明 id 为 {ident!r} 的{kind[1]}{zh}",
    )


POST, PERSON = ("post", "岗位"), ("person", "人员")


def cross_check(data: dict[str, Any]) -> Iterator[CrossProblem]:
    """References and uniqueness that one key alone cannot check; tolerant of a broken file."""
    for section in ("people", "posts", "equipment"):
        seen: dict[str, int] = {}
        for i, item in _items(data, section):
            ident = item.get("id")
            if isinstance(ident, str):
                if ident in seen:
                    yield CrossProblem(
                        (section, i, "id"),
                        f"duplicate id {ident!r} (also {{ref}})",
                        f"id {ident!r} 重复（另见 {{ref}}）",
                        (section, seen[ident]),
                    )
                seen.setdefault(ident, i)
    people, posts = _ids(data, "people"), _ids(data, "posts")

    credentials: dict[str, Loc] = {}
    for i, person in _items(data, "people"):
        creds = person.get("credentials")
        for j, cred in enumerate(creds if isinstance(creds, list) else []):
            if not isinstance(cred, str):
                continue
            method, _, value = cred.partition(":")
            uid = normalize_uid(value) if method == "nfc" else value
            key = f"{method}:{uid}"
            where: Loc = ("people", i, "credentials", j)
            if key in credentials:
                yield CrossProblem(
                    where,
                    f"credential {cred!r} already belongs to {{ref}}",
                    f"凭证 {cred!r} 已属于 {{ref}}",
                    credentials[key],
                )
            credentials.setdefault(key, where)

    readers: dict[str, Loc] = {}
    for i, post_item in _items(data, "posts"):
        rlist = post_item.get("readers")
        for j, reader in enumerate(rlist if isinstance(rlist, list) else []):
            if not isinstance(reader, str):
                continue
            where = ("posts", i, "readers", j)
            if reader in readers:
                yield CrossProblem(
                    where,
                    f"reader {reader!r} is already at {{ref}}; a reader has one post",
                    f"读卡器 {reader!r} 已在 {{ref}}；一个读卡器只属于一个岗位",
                    readers[reader],
                )
            readers.setdefault(reader, where)

    for i, equipment in _items(data, "equipment"):
        where_at = equipment.get("post")
        if isinstance(where_at, str) and where_at not in posts:
            yield _undeclared(("equipment", i, "post"), POST, where_at, posts)
        ident = equipment.get("id")
        if isinstance(ident, str) and ident in readers:
            yield CrossProblem(
                ("equipment", i, "id"),
                f"{ident!r} is also a reader id; device ids share one status topic: rename one",
                f"{ident!r} 也是读卡器的 id；设备共用状态主题，请改名其中一个",
            )

    duty_raw = data.get("duty")
    if isinstance(duty_raw, dict):
        hp = duty_raw.get("handover_post", "monitoring-center")
        if isinstance(hp, str) and posts and hp not in posts:
            yield _undeclared(("duty", "handover_post"), POST, hp, posts)
    elif posts and "monitoring-center" not in posts:
        yield CrossProblem(
            ("duty", "handover_post"),
            "the default handover post 'monitoring-center' is not declared: declare it or set it",
            "默认的交接岗 'monitoring-center' 未声明：请声明该岗位或设置 handover_post",
        )

    roles = {
        p["id"]: p.get("roles") for _, p in _items(data, "people") if isinstance(p.get("id"), str)
    }

    def manager(where: Loc, who: object) -> Iterator[CrossProblem]:
        if not isinstance(who, str):
            return
        if who not in people:
            yield _undeclared(where, PERSON, who, people)
        elif Role.duty_manager.value not in (roles.get(who) or []):
            yield CrossProblem(
                where,
                f"{who!r} lacks the duty_manager role; add it to their roles",
                f"{who!r} 没有 duty_manager（值班经理）角色；请加到其 roles 中",
            )

    roster_raw = data.get("roster")
    if isinstance(roster_raw, dict):
        weekly = roster_raw.get("weekly")
        if isinstance(weekly, dict):
            for day, who in weekly.items():
                yield from manager(("roster", "weekly", str(day)), who)
        for i, swap in _items(roster_raw, "swaps"):
            yield from manager(("roster", "swaps", i, "manager"), swap.get("manager"))

    walking_raw = data.get("walking")
    if isinstance(walking_raw, dict):
        for i, leg in _items(walking_raw, "legs"):
            pair = leg.get("between")
            for j, post_id in enumerate(pair if isinstance(pair, list) else []):
                if isinstance(post_id, str) and post_id not in posts:
                    yield _undeclared(("walking", "legs", i, "between", j), POST, post_id, posts)

    notify_raw = data.get("notify")
    role_ids = {r.value for r in Role}
    if isinstance(notify_raw, dict):
        stages: list[tuple[Loc, dict[str, Any]]] = [
            (("notify", "escalation", i), step) for i, step in _items(notify_raw, "escalation")
        ]
        for r, route in _items(notify_raw, "routes"):
            stages += [
                (("notify", "routes", r, "escalation", i), step)
                for i, step in _items(route, "escalation")
            ]
        targets_known = {"on_duty", "post_roles"} | role_ids | set(people)
        for loc, step in stages:
            targets = step.get("to")
            for j, target in enumerate(targets if isinstance(targets, list) else []):
                if isinstance(target, str) and target not in targets_known:
                    en, zh = _suggest(_nearest(target, targets_known))
                    yield CrossProblem(
                        (*loc, "to", j),
                        f"{target!r} is neither on_duty, post_roles, a role id nor a person id{en}",
                        f"{target!r} 不是 on_duty、post_roles、角色 id 或人员 id{zh}",
                    )
