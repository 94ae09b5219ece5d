"""Writes the §8 Grafana dashboards as the JSON Grafana loads: `python dashboards/generate.py`.

One place builds every panel, so the datasource, the `site` variable, ids and styles stay the
same across the three dashboards. Titles and panel names are Chinese; descriptions English.
Queries are InfluxQL (1.8, 2.x through the bucket's DBRP mapping, 3.x). The committed JSON is
what this script writes (tests/integration/test_dashboards.py checks both, and runs every
query against a real InfluxDB).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "influxdb", "uid": "patrol-influxdb"}
SITE = '"site" =~ /^$site$/'
WHERE = f"WHERE {SITE} AND $timeFilter"

Panel = dict[str, Any]


def target(query: str, ref: str = "A", fmt: str = "time_series") -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "refId": ref,
        "rawQuery": True,
        "resultFormat": fmt,
        "query": query,
    }


def panel(
    kind: str,
    title: str,
    description: str,
    queries: list[str],
    x: int,
    y: int,
    w: int = 12,
    h: int = 8,
    fmt: str = "time_series",
    unit: str | None = None,
    extra: dict[str, Any] | None = None,
) -> Panel:
    defaults: dict[str, Any] = {}
    if unit:
        defaults["unit"] = unit
    out: Panel = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(q, chr(ord("A") + i), fmt) for i, q in enumerate(queries)],
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
    }
    out.update(extra or {})
    return out


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    for ident, p in enumerate(panels, start=1):
        p["id"] = ident
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["patrol"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "1m",
        "time": {"from": "now-2d", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "site",
                    "label": "站点 Site",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "query": 'SHOW TAG VALUES FROM "scan" WITH KEY = "site"',
                    "refresh": 1,
                    "includeAll": False,
                    "multi": False,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": panels,
    }


def patrol() -> dict[str, Any]:
    return dashboard(
        "patrol-compliance",
        "巡检合规",
        "Patrol compliance: the duty manager's patrol time against min_patrol_hours per duty day, "
        "key posts signed, scans per post, rounds and flagged scans.",
        [
            panel(
                "timeseries",
                "巡检时长（分钟）",
                "Patrol minutes of the duty day so far, per duty manager (from the `patrol` "
                "measurement, written on change and every 5 minutes).",
                [
                    f'SELECT last("minutes") FROM "patrol" {WHERE} '
                    'GROUP BY time($__interval), "manager" fill(none)'
                ],
                0,
                0,
                unit="m",
            ),
            panel(
                "stat",
                "关键岗位签到",
                "Key posts signed in the current duty day, against the key posts of the site.",
                [
                    f'SELECT last("key_signed") AS "signed", last("key_total") AS "total" '
                    f'FROM "patrol" {WHERE}'
                ],
                12,
                0,
                w=6,
            ),
            panel(
                "stat",
                "交接班完成",
                "1 once the handover of the duty day is confirmed, 0 before.",
                [f'SELECT last("handover_done") FROM "patrol" {WHERE}'],
                18,
                0,
                w=6,
            ),
            panel(
                "barchart",
                "各岗位扫码次数",
                "Scans per post in the time range (every scan, on duty or not).",
                [f'SELECT count("ok") AS "scans" FROM "scan" {WHERE} GROUP BY "post"'],
                0,
                8,
                fmt="table",
            ),
            panel(
                "timeseries",
                "巡更轮次（值班经理扫码）",
                "Rounds: the duty manager's scans per post per hour.",
                [
                    f'SELECT count("ok") FROM "scan" {WHERE} AND "on_duty" = \'true\' '
                    'GROUP BY time(1h), "post" fill(none)'
                ],
                12,
                8,
            ),
            panel(
                "table",
                "异常扫码",
                "Flagged scans (clock skew, too fast between posts, seq reset…), per post and "
                "flags.",
                [
                    f'SELECT count("ok") AS "scans" FROM "scan" {WHERE} AND "flags" != \'\' '
                    'GROUP BY "post", "person"'
                ],
                0,
                16,
                w=24,
                fmt="table",
            ),
        ],
    )


def plant() -> dict[str, Any]:
    limits = (
        'SELECT last("min") AS "min", last("max") AS "max", last("expect") AS "expect" '
        f'FROM "limit" WHERE {SITE} GROUP BY "equipment", "metric"'
    )
    return dashboard(
        "plant-room",
        "机房监控",
        "Plant room: every metric with its limits (from the `limit` measurement), device "
        "status and staleness.",
        [
            panel(
                "timeseries",
                "设备指标",
                "Every metric of every equipment (mean per interval). Query B reads the site "
                "file's limits from the `limit` measurement; the transformation turns them into "
                "thresholds.",
                [
                    f'SELECT mean("value") FROM "reading" {WHERE} '
                    'GROUP BY time($__interval), "equipment", "metric" fill(none)',
                    limits,
                ],
                0,
                0,
                w=24,
                h=10,
                extra={
                    "transformations": [
                        {
                            "id": "configFromData",
                            "options": {
                                "configRefId": "B",
                                "mappings": [
                                    {"fieldName": "min", "handlerKey": "threshold1"},
                                    {"fieldName": "max", "handlerKey": "threshold1"},
                                ],
                            },
                        }
                    ]
                },
            ),
            panel(
                "table",
                "上下限",
                "The limits of each metric as the site file sets them (min, max, or the expected "
                "value of a boolean metric).",
                [limits],
                0,
                10,
                fmt="table",
            ),
            panel(
                "table",
                "设备在线状态",
                "The last status of each reader and equipment: 1 online, 0 offline.",
                [
                    f'SELECT last("online") AS "online" FROM "device_status" {WHERE} '
                    'GROUP BY "device", "kind"'
                ],
                12,
                10,
                fmt="table",
            ),
            panel(
                "table",
                "数据新鲜度",
                "Staleness: the time of each metric's newest reading (compare with "
                "stale_after_seconds).",
                [
                    f'SELECT last("value") AS "value" FROM "reading" {WHERE} '
                    'GROUP BY "equipment", "metric"'
                ],
                0,
                18,
                w=24,
                fmt="table",
            ),
        ],
    )


def alerts() -> dict[str, Any]:
    return dashboard(
        "patrol-alerts",
        "告警",
        "Alerts: open now, raised per rule per day, time to acknowledge and to close.",
        [
            panel(
                "stat",
                "当前未关闭告警",
                "Alerts open now: the last transition of each (rule, subject) in the range "
                "says open = 1.",
                [
                    'SELECT sum("open") FROM (SELECT last("open") AS "open" FROM "alert" '
                    f'{WHERE} GROUP BY "rule", "subject")'
                ],
                0,
                0,
                w=6,
            ),
            panel(
                "barchart",
                "每日各规则告警",
                "Alerts raised per rule per day.",
                [
                    f'SELECT count("id") FROM "alert" {WHERE} AND "change" = \'opened\' '
                    'GROUP BY time(1d), "rule" fill(none)'
                ],
                6,
                0,
                w=18,
            ),
            panel(
                "table",
                "确认耗时",
                "Time to acknowledge: minutes from raised to acknowledged (a violation is closed "
                "by its acknowledgement: change 'closed'), per rule.",
                [
                    'SELECT mean("age_s") / 60 AS "minutes" FROM "alert" '
                    f"{WHERE} AND (\"change\" = 'acknowledged' OR \"change\" = 'closed') "
                    'GROUP BY "rule"'
                ],
                0,
                8,
                fmt="table",
            ),
            panel(
                "table",
                "关闭耗时",
                "Time to close: minutes from raised to cleared by the rule or closed by "
                "acknowledgement, per rule.",
                [
                    'SELECT mean("age_s") / 60 AS "minutes" FROM "alert" '
                    f"{WHERE} AND (\"change\" = 'cleared' OR \"change\" = 'closed') "
                    'GROUP BY "rule"'
                ],
                12,
                8,
                fmt="table",
            ),
            panel(
                "table",
                "告警记录",
                "Every transition in the range: alert id, change and state after it.",
                [
                    'SELECT "id", "change", "state", "age_s" FROM "alert" '
                    f'{WHERE} GROUP BY "rule", "subject", "severity"'
                ],
                0,
                16,
                w=24,
                fmt="table",
            ),
            panel(
                "timeseries",
                "网关转发积压",
                "Rows not yet in InfluxDB and the age of the oldest (rule 12 "
                "gateway.forward_lagging warns above 10 minutes).",
                [
                    'SELECT last("forward_backlog") AS "backlog", last("forward_age_s") AS '
                    f'"age_s" FROM "gateway" {WHERE} GROUP BY time($__interval) fill(none)'
                ],
                0,
                24,
                w=24,
            ),
        ],
    )


DASHBOARDS = {"patrol-compliance.json": patrol, "plant-room.json": plant, "alerts.json": alerts}


def render() -> dict[str, str]:
    """File name → the JSON text Grafana loads."""
    return {
        name: json.dumps(build(), ensure_ascii=False, indent=2) + "\n"
        for name, build in DASHBOARDS.items()
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / "json" / name).write_text(text, encoding="utf-8")
        print(f"wrote dashboards/json/{name}")
