"""The patrol-time chart (4.3): one bar per duty day against the quota line.

`bars` lays the chart out in abstract units once; the SVG (HTML pack, page) and the PDF draw the
same geometry, so both show the same picture.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from gateway.records import words as w
from gateway.records.weekly import WeeklyPack

WIDTH, HEIGHT = 580.0, 220.0
LEFT, BOTTOM, TOP = 40.0, 30.0, 14.0


@dataclass(frozen=True)
class Bar:
    """One day's bar: position, height, label, and whether it is short of the quota."""

    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    short: bool


@dataclass(frozen=True)
class Chart:
    """Bars, the quota line's height, the vertical scale in hours."""

    bars: list[Bar]
    quota_y: float
    top_hours: int
    hour_y: list[tuple[int, float]]


def layout(pack: WeeklyPack) -> Chart:
    """The chart's geometry in a WIDTH × HEIGHT box, y growing downwards (SVG's way)."""
    quota = pack.days[0].required_minutes if pack.days else 240
    most = max([d.patrol_minutes for d in pack.days] + [quota])
    top_hours = max(1, -(-most // 60) + 1)
    plot = HEIGHT - BOTTOM - TOP

    def y(minutes: float) -> float:
        return HEIGHT - BOTTOM - plot * minutes / (top_hours * 60)

    slot = (WIDTH - LEFT - 30) / max(1, len(pack.days))
    bars = [
        Bar(
            x=LEFT + i * slot + slot * 0.2,
            y=y(d.patrol_minutes),
            width=slot * 0.6,
            height=HEIGHT - BOTTOM - y(d.patrol_minutes),
            label=w.day_label(d.day),
            value=w.minutes(d.patrol_minutes),
            short=d.short,
        )
        for i, d in enumerate(pack.days)
    ]
    return Chart(bars, y(quota), top_hours, [(h, y(h * 60)) for h in range(top_hours + 1)])


def svg(pack: WeeklyPack) -> str:
    """The chart as inline SVG."""
    chart = layout(pack)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH:g} {HEIGHT:g}"'
        ' class="chart" role="img" aria-label="巡检时长 / patrol time per day">'
    ]
    for hours, y in chart.hour_y:
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 30}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">{hours}h</text>'
        )
    for bar in chart.bars:
        colour = "#c0392b" if bar.short else "#2e7d32"
        parts.append(
            f'<rect x="{bar.x:.1f}" y="{bar.y:.1f}" width="{bar.width:.1f}"'
            f' height="{bar.height:.1f}" fill="{colour}">'
            f"<title>{html.escape(bar.value)}</title></rect>"
            f'<text x="{bar.x + bar.width / 2:.1f}" y="{bar.y - 3:.1f}" text-anchor="middle"'
            f' font-size="11">{html.escape(bar.value)}</text>'
            f'<text x="{bar.x + bar.width / 2:.1f}" y="{HEIGHT - BOTTOM + 16:.1f}"'
            f' text-anchor="middle" font-size="11">{html.escape(bar.label)}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" y1="{chart.quota_y:.1f}" x2="{WIDTH - 30}" y2="{chart.quota_y:.1f}"'
        ' stroke="#1565c0" stroke-width="2" stroke-dasharray="6 4"/>'
        f'<text x="{WIDTH - 26}" y="{chart.quota_y + 4:.1f}" font-size="11"'
        ' fill="#1565c0">4h</text></svg>'
    )
    return "".join(parts)
