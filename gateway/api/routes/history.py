"""Scans and readings by time range (readings bucketed min/mean/max), devices."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from gateway.api.deps import ActorDep, DeskDep, SiteDep, aware, errors, field_error, not_found
from gateway.api.models import DevicePublic, ScanPublic, SeriesPublic
from gateway.config.site import Site

router = APIRouter(tags=["history"])

DEFAULT_SPAN = dt.timedelta(hours=24)
MAX_BUCKETS = 10_000


def _range(
    site: Site, now: dt.datetime, since: dt.datetime | None, until: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    end = now if until is None else aware(until, site)
    start = end - DEFAULT_SPAN if since is None else aware(since, site)
    if start >= end:
        field_error("query", "since", "须早于 until / must be before until")
    return start, end


Since = Annotated[dt.datetime | None, Query(description="from (default: 24 h before until)")]
Until = Annotated[dt.datetime | None, Query(description="to, excluded (default: now)")]


@router.get("/scans", responses=errors(401))
def scans(
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    since: Since = None,
    until: Until = None,
    post: Annotated[str | None, Query(max_length=64)] = None,
    person: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[ScanPublic]:
    """Scans by event time in [since, until), newest first; manual sign-offs included."""
    start, end = _range(site, desk.clock(), since, until)
    rows = desk.reads.scans(site, start, end, post, person, limit)
    return [ScanPublic.model_validate(r) for r in rows]


@router.get("/readings", responses=errors(401, 404))
def readings(
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    equipment: Annotated[str, Query(max_length=64)],
    metric: Annotated[str, Query(max_length=64)],
    since: Since = None,
    until: Until = None,
    bucket_seconds: Annotated[float, Query(gt=0, le=31 * 86400)] = 300,
) -> SeriesPublic:
    """One metric in [since, until), in buckets of `bucket_seconds` (min, mean, max)."""
    declared = site.metric(equipment, metric)
    if declared is None:
        raise not_found(f"未知设备或指标 / no metric {metric!r} of equipment {equipment!r}")
    start, end = _range(site, desk.clock(), since, until)
    if (end - start).total_seconds() / bucket_seconds > MAX_BUCKETS:
        field_error("query", "bucket_seconds", f"最多 {MAX_BUCKETS} 个区间 / at most that many")
    buckets = desk.reads.series(equipment, metric, start, end, bucket_seconds, site.tz)
    return SeriesPublic.model_validate(
        {
            "equipment": equipment,
            "metric": metric,
            "unit": declared.unit,
            "bucket_seconds": bucket_seconds,
            "buckets": buckets,
        }
    )


@router.get("/devices", responses=errors(401))
def devices(desk: DeskDep, site: SiteDep, actor: ActorDep) -> list[DevicePublic]:
    """Every reader and equipment with its last status."""
    return [DevicePublic.model_validate(d) for d in desk.reads.devices(site)]
