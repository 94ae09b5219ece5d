"""Health, the live status, and the event stream that keeps every open page current."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent

from gateway.api.deps import ActorDep, DeskDep, SiteDep, errors
from gateway.api.desk import Desk
from gateway.api.live import duty_until
from gateway.api.models import HealthPublic, StatusPublic
from gateway.timeutil import iso

router = APIRouter(tags=["board"])

HEARTBEAT_FRESH_SECONDS = 15.0
STREAM_QUEUE = 256  # events a slow page may fall behind before it is sent the board again
RECENT_SCANS = 20


@router.get("/health")
def health(desk: DeskDep, site: SiteDep) -> HealthPublic:
    """No token needed: is the gateway's worker running, is the broker connected."""
    beat: dict[str, Any] = {}
    with contextlib.suppress(ValueError, TypeError):
        beat = json.loads(desk.reads.meta("heartbeat") or "{}")
    at = beat.get("at")
    fresh = isinstance(at, int | float) and time.time() - at < HEARTBEAT_FRESH_SECONDS
    connected = beat.get("connected")
    return HealthPublic(
        status="ok",
        site=site.id,
        worker_running=fresh,
        broker_connected=connected if isinstance(connected, bool) else None,
    )


def board(desk: Desk) -> dict[str, Any]:
    """Everything the page shows, as of now."""
    site = desk.site()
    _, patrol = desk.status()
    return {
        "now": iso(desk.clock(), site.tz),
        "site": site.id,
        "site_name": site.name,
        "patrol": patrol,
        "duty_until": duty_until(site, patrol),
        "posts": [{"id": p.id, "name": p.name, "key": p.key} for p in site.posts.values()],
        "alerts": desk.reads.alerts(state="active"),
        "plant": desk.reads.plant(site),
        "devices": desk.reads.devices(site),
        "scans": desk.reads.recent_scans(site, RECENT_SCANS),
    }


@router.get("/status", responses=errors(401))
def live_status(desk: DeskDep, actor: ActorDep) -> StatusPublic:
    """The patrol status (§3), open alerts, latest plant-room values and devices."""
    return StatusPublic.model_validate(board(desk))


@router.get("/events", response_class=EventSourceResponse, responses=errors(401))
async def events(desk: DeskDep, actor: ActorDep) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events: `board` first (everything), then `status`, `alert` (one
    transition), `scans` (the newest, newest first), `plant` and `devices` as they happen;
    `board` again after falling behind."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, str | None]] = asyncio.Queue(STREAM_QUEUE)

    def put(kind: str, data: str | None) -> None:
        if queue.full():  # bounded: drop the backlog, send the whole board instead
            while not queue.empty():
                queue.get_nowait()
            kind, data = "resync", None
        queue.put_nowait((kind, data))

    def offer(kind: str, data: str | None) -> None:  # the hub's thread
        with contextlib.suppress(RuntimeError):  # the stream's loop has closed
            loop.call_soon_threadsafe(put, kind, data)

    sub = desk.hub.subscribe(offer)
    try:
        yield ServerSentEvent(event="board", data=await run_in_threadpool(board, desk))
        while True:
            kind, data = await queue.get()
            if kind == "end":
                return
            if kind == "resync":
                yield ServerSentEvent(event="board", data=await run_in_threadpool(board, desk))
            else:
                yield ServerSentEvent(event=kind, raw_data=data)
    finally:
        desk.hub.unsubscribe(sub)
