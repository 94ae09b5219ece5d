"""Words people read, in the site's locale (zh-CN first, en second)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config.site import Site

_TEXTS: dict[str, dict[str, str]] = {
    "device.offline": {
        "zh-CN": "设备 {device}（{where}）离线",
        "en": "Device {device} ({where}) is offline",
    },
    "scan.unknown_credential": {
        "zh-CN": "{where} 读卡器 {reader} 刷了未登记的卡 {credential}",
        "en": "Unknown credential {credential} presented at reader {reader} ({where})",
    },
    "duty.absent": {
        "zh-CN": "{date} 值班经理 {name} 未按时签到（缺勤）",
        "en": "Duty manager {name} did not check in on {date} (absent)",
    },
    "duty.unregistered_swap.late": {
        "zh-CN": "{date} {name} 的值班由 {stand_in} 替班，但替班登记晚于当值日开始",
        "en": "{stand_in} covers {name}'s duty on {date}, but the swap was registered late",
    },
    "duty.unregistered_swap.stand_in": {
        "zh-CN": "{date} {name} 未到岗，{stand_in} 在交接岗签到，替班未登记",
        "en": "{name} absent on {date}; {stand_in} signed at the handover post without a swap",
    },
    "handover.overdue": {
        "zh-CN": "{date} 值班交接未按时完成",
        "en": "The handover into {date} is overdue",
    },
    "patrol.hours_short": {
        "zh-CN": "{date} 值班经理 {name} 巡检时长 {hours}，不足规定时长",
        "en": "Duty manager {name} patrolled {hours} on {date}, short of the quota",
    },
    "patrol.key_post_missed": {
        "zh-CN": "{post} 今日未巡检",
        "en": "{post} was not inspected today",
    },
    "patrol.hours_at_risk": {
        "zh-CN": "{name} 今日已巡检 {minutes} 分钟，巡检时长可能不足",
        "en": "{name} has patrolled {minutes} min today; the quota is at risk",
    },
    "patrol.key_post_at_risk": {
        "zh-CN": "{post} 尚未巡检，即将到截止时间",
        "en": "{post} not inspected yet; the deadline is near",
    },
    "round.missed": {
        "zh-CN": "{post} 超过 {minutes} 分钟未巡检（值班工）",
        "en": "No round at {post} for {minutes} minutes",
    },
    "equipment.out_of_range": {
        "zh-CN": "{equipment} {metric} = {value}{unit}，超出正常范围（{limits}）",
        "en": "{equipment} {metric} = {value}{unit}, outside its range ({limits})",
    },
    "equipment.stale": {
        "zh-CN": "{equipment} 已 {seconds} 秒无读数",
        "en": "No reading from {equipment} for {seconds} s",
    },
    "incident.major": {
        "zh-CN": "重大事件：{title}",
        "en": "Major incident: {title}",
    },
    "ack.signed": {"zh-CN": "{post} 已签到 {time}", "en": "{post} signed {time}"},
    "ack.unknown": {
        "zh-CN": "未登记的卡，请联系管理员",
        "en": "Unknown card, please contact the administrator",
    },
}


def text(locale: str, key: str, **values: Any) -> str:
    """The message `key` in `locale` (falling back to zh-CN), filled with `values`."""
    templates = _TEXTS[key]
    return templates.get(locale, templates["zh-CN"]).format(**values)


def for_site(site: Site, key: str, **values: Any) -> str:
    """The message `key` in the site's locale."""
    return text(site.config.site.locale, key, **values)


def person_name(site: Site, person: str | None) -> str:
    """A person's name for messages (the id if unknown)."""
    who = site.people.get(person) if person else None
    return who.name if who else str(person)


def bilingual(locale: str, zh: str, en: str) -> str:
    """A line for people: `中文 / English` on a Chinese site, English alone on an English one."""
    return en if locale == "en" or not zh else f"{zh} / {en}"


def count(n: int, one: str, many: str) -> str:
    """`1 person`, `2 people`: an English count with the right noun."""
    return f"{n} {one if n == 1 else many}"
