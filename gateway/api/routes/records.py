"""The records (§11): the work log of a duty day and its entries, work orders, complaints,
waivers, the project head's review, and the weekly pack as JSON, HTML, CSV or PDF.

Reads go through the API's read-only connection; every change is a command through the single
writer, like the command line's and a replay's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.auth import Actor
from gateway.api.deps import (
    ActorDep,
    DeskDep,
    SiteDep,
    aware,
    errors,
    field_error,
    not_found,
    role,
    run_command,
)
from gateway.api.desk import Desk
from gateway.api.models import CommandPublic
from gateway.commands import PHOTO, Command
from gateway.config.models import Role
from gateway.config.site import Site
from gateway.records import files, ledger, sections, weekly, worklog
from gateway.records.chart import svg
from gateway.records.source import Source
from gateway.timeutil import iso

router = APIRouter(tags=["records"])

Format = Literal["json", "html", "csv", "pdf"]
ManagerDep = Annotated[
    Actor, Depends(role(Role.duty_manager, Role.project_head, Role.general_manager))
]
HeadDep = Annotated[Actor, Depends(role(Role.project_head))]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SectionPublic(BaseModel):
    key: str
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


class ReportPublic(BaseModel):
    """A report as titled tables (the page lays them out); `chart` is an SVG for the pack."""

    title: str
    sections: list[SectionPublic]
    chart: str | None = None


class EntryCreate(_Body):
    kind: Literal["call", "handover", "caution", "finding", "note"] = Field(
        description="call (3.4), handover item or caution (4.8), patrol finding (4.5), note"
    )
    text: str = Field(min_length=1, max_length=2000)
    follow_up: str | None = Field(None, max_length=2000, description="what was done about it")
    post: str | None = Field(None, max_length=64, description="the post, for a finding")
    date: dt.date | None = Field(None, description="the duty day (default: now's)")
    photo: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}\.(jpg|png|webp)$", description="a name POST /photos gave"
    )


class WorkOrderCreate(_Body):
    title: str = Field(min_length=1, max_length=200, description="what is to be done")
    department: str | None = Field(None, max_length=100)
    where: str | None = Field(None, max_length=200)
    due: dt.datetime | None = Field(None, description="workorder.overdue after this")
    alert: str | None = Field(None, max_length=64, description="the alert it was opened from")


class CloseCreate(_Body):
    comment: str = Field("", max_length=2000, description="what was done")


class WorkOrderPublic(BaseModel):
    id: str
    title: str
    department: str
    where: str
    due: str | None
    alert: str | None
    opened_at: str
    opened_by: str
    closed_at: str | None
    closed_by: str | None
    result: str
    overdue: bool


class ComplaintCreate(_Body):
    what: str = Field(min_length=1, max_length=2000)
    who: str | None = Field(None, max_length=200, description="the owner or caller")
    how: str | None = Field(None, max_length=50, description="phone, visit, letter …")
    where: str | None = Field(None, max_length=200)


class CallbackCreate(_Body):
    comment: str = Field(min_length=1, max_length=2000, description="what the owner said")


class ComplaintPublic(BaseModel):
    id: str
    what: str
    who: str
    how: str
    where: str
    owner: str
    received_at: str
    callback_at: str | None
    callback_by: str | None
    result: str


class WaiverCreate(_Body):
    rule: Literal[
        "duty.absent",
        "duty.unregistered_swap",
        "patrol.hours_short",
        "patrol.key_post_missed",
        "handover.overdue",
    ]
    subject: str = Field(min_length=1, max_length=64)
    date: dt.date = Field(description="the duty day of the violation")
    reason: str = Field(min_length=1, max_length=2000)


class ReviewCreate(_Body):
    week: str = Field(pattern=r"^\d{4}-W\d{2}$", description="2026-W48")
    text: str = Field(min_length=1, max_length=8000)


@contextmanager
def _source(desk: Desk, site: Site) -> Iterator[Source]:
    with desk.reads.lock:
        yield Source(desk.reads.connection, site)


def _sections(items: list[sections.Section]) -> list[SectionPublic]:
    return [
        SectionPublic(
            key=s.key,
            title=s.title,
            headers=list(s.headers),
            rows=[list(r) for r in s.rows],
            note=s.note,
        )
        for s in items
    ]


def _render(make: Callable[[], str | bytes]) -> str | bytes:
    """A report file, or 501 saying what to install for a PDF (the `reports` extra, the CJK
    font)."""
    try:
        return make()
    except SystemExit as exc:  # requires_extra: fpdf2 is not installed
        raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, str(exc)) from None
    except files.FontMissing as exc:
        raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, str(exc)) from None


def _file(body: str | bytes, format: str, name: str) -> Response:
    return Response(
        body,
        media_type=files.MEDIA[format],
        headers={"Content-Disposition": f'inline; filename="{name}.{format}"'},
    )


_FORMAT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {m: {} for m in files.MEDIA.values()}, "description": "JSON, or the file"},
    **errors(401, 501),
}


@router.get("/worklog/{date}", response_model=ReportPublic, responses=_FORMAT_RESPONSES)
def work_log(
    date: dt.date,
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    format: Annotated[Format, Query()] = "json",
) -> Any:
    """The work log of duty day `date` (值班经理工作日志): generated and written entries."""
    with _source(desk, site) as source:
        log = worklog.build(source, date, desk.clock())
    if format != "json":
        body = _render(lambda: files.worklog_file(log, site, format, desk.clock()))
        return _file(body, format, f"worklog-{date}")
    parts = sections.worklog_sections(log, site)
    return ReportPublic(title=sections.worklog_title(log, site), sections=_sections(parts))


@router.post(
    "/worklog/entries", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409)
)
def add_entry(body: EntryCreate, desk: DeskDep, site: SiteDep, actor: ManagerDep) -> CommandPublic:
    """Write in the work log: a call and its follow-up (3.4), a handover item or caution
    (4.8), a patrol finding at a post (4.5), a note."""
    if body.post is not None and body.post not in site.posts:
        field_error("body", "post", "未知岗位 / no such post in the site file")
    if body.photo is not None and not (_photos(desk) / body.photo).exists():
        field_error("body", "photo", "没有此照片 / no such photo: upload it with POST /photos")
    args: dict[str, object] = {"kind": body.kind, "text": body.text}
    for name in ("follow_up", "post", "photo"):
        value = getattr(body, name)
        if value:
            args[name] = value
    if body.date is not None:
        args["date"] = body.date.isoformat()
    return run_command(desk, site, Command("log.add", actor.person, args))


@router.get("/reports/weekly", response_model=ReportPublic, responses=_FORMAT_RESPONSES)
def weekly_pack(
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    week: Annotated[str | None, Query(pattern=r"^\d{4}-W\d{2}$", description="2026-W48")] = None,
    format: Annotated[Format, Query()] = "json",
) -> Any:
    """The weekly review pack (3.7) of an ISO week, default this one (by the gateway's clock)."""
    now = desk.clock()
    name = week or weekly.week_of(site.calendar.day_of(now))
    try:
        with _source(desk, site) as source:
            pack = weekly.build(source, name, now)
    except weekly.BadWeek as exc:
        field_error("query", "week", str(exc))
    if format != "json":
        body = _render(lambda: files.weekly_file(pack, site, format, now))
        return _file(body, format, f"weekly-{name}")
    title, parts = sections.weekly_title(pack, site), sections.weekly_sections(pack, site)
    return ReportPublic(title=title, sections=_sections(parts), chart=svg(pack))


def _order(o: ledger.WorkOrder, site: Site, now: dt.datetime) -> WorkOrderPublic:
    def t(at: dt.datetime | None) -> str | None:
        return None if at is None else iso(at, site.tz)

    return WorkOrderPublic(
        id=o.id,
        title=o.title,
        department=o.department,
        where=o.where,
        due=t(o.due),
        alert=o.alert,
        opened_at=iso(o.opened_at, site.tz),
        opened_by=o.opened_by,
        closed_at=t(o.closed_at),
        closed_by=o.closed_by,
        result=o.result,
        overdue=o.closed_at is None and o.due is not None and o.due < now,
    )


@router.get("/workorders", responses=errors(401))
def work_orders(
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    state: Annotated[Literal["open", "all"], Query()] = "open",
) -> list[WorkOrderPublic]:
    """Work orders (工作任务单 ZJWY/KF/BG-024), newest first."""
    with desk.reads.lock:
        records = ledger.load(desk.reads.connection)
    now = desk.clock()
    orders = [o for o in records.workorders.values() if state == "all" or o.closed_at is None]
    return [_order(o, site, now) for o in reversed(orders)]


@router.post("/workorders", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409))
def open_work_order(
    body: WorkOrderCreate, desk: DeskDep, site: SiteDep, actor: ManagerDep
) -> CommandPublic:
    """Open a work order, by hand or from an alert (`alert`)."""
    args: dict[str, object] = {"title": body.title}
    for name in ("department", "where", "alert"):
        value = getattr(body, name)
        if value:
            args[name] = value
    if body.due is not None:
        args["due"] = aware(body.due, site).isoformat()
    return run_command(desk, site, Command("workorder.open", actor.person, args))


@router.post("/workorders/{ident}/close", responses=errors(401, 403, 404, 409))
def close_work_order(
    ident: str, body: CloseCreate, desk: DeskDep, site: SiteDep, actor: ManagerDep
) -> CommandPublic:
    """Close a work order with what was done; clears its workorder.overdue."""
    with desk.reads.lock:
        known = ident in ledger.load(desk.reads.connection).workorders
    if not known:
        raise not_found(f"未知工作任务单 / no work order {ident!r}")
    args = {"id": ident, "comment": body.comment}
    return run_command(desk, site, Command("workorder.close", actor.person, args))


def _complaint(c: ledger.Complaint, site: Site) -> ComplaintPublic:
    return ComplaintPublic(
        id=c.id,
        what=c.what,
        who=c.who,
        how=c.how,
        where=c.where,
        owner=c.owner,
        received_at=iso(c.received_at, site.tz),
        callback_at=None if c.callback_at is None else iso(c.callback_at, site.tz),
        callback_by=c.callback_by,
        result=c.result,
    )


@router.get("/complaints", responses=errors(401))
def complaints(
    desk: DeskDep,
    site: SiteDep,
    actor: ActorDep,
    state: Annotated[Literal["open", "all"], Query()] = "open",
) -> list[ComplaintPublic]:
    """Complaints (投诉处理表 ZJWY/KF/BG-026), newest first."""
    with desk.reads.lock:
        records = ledger.load(desk.reads.connection)
    found = [c for c in records.complaints.values() if state == "all" or c.callback_at is None]
    return [_complaint(c, site) for c in reversed(found)]


@router.post("/complaints", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409))
def receive_complaint(
    body: ComplaintCreate, desk: DeskDep, site: SiteDep, actor: ManagerDep
) -> CommandPublic:
    """Record a complaint; whoever takes it owns it until the callback (3.5)."""
    args: dict[str, object] = {"what": body.what}
    for name in ("who", "how", "where"):
        value = getattr(body, name)
        if value:
            args[name] = value
    return run_command(desk, site, Command("complaint.receive", actor.person, args))


@router.post("/complaints/{ident}/callback", responses=errors(401, 403, 404, 409))
def call_back(
    ident: str, body: CallbackCreate, desk: DeskDep, site: SiteDep, actor: ManagerDep
) -> CommandPublic:
    """The callback to the owner (4.7): closes the complaint."""
    with desk.reads.lock:
        known = ident in ledger.load(desk.reads.connection).complaints
    if not known:
        raise not_found(f"未知投诉 / no complaint {ident!r}")
    args = {"id": ident, "comment": body.comment}
    return run_command(desk, site, Command("complaint.callback", actor.person, args))


@router.post("/violations/waive", responses=errors(401, 403, 409))
def waive(body: WaiverCreate, desk: DeskDep, site: SiteDep, actor: HeadDep) -> CommandPublic:
    """Waive a violation with a reason (project head): the pack shows it waived, not fined."""
    args = {
        "rule": body.rule,
        "subject": body.subject,
        "date": body.date.isoformat(),
        "reason": body.reason,
    }
    return run_command(desk, site, Command("violation.waive", actor.person, args))


@router.post("/reviews", status_code=status.HTTP_201_CREATED, responses=errors(401, 403, 409))
def write_review(body: ReviewCreate, desk: DeskDep, site: SiteDep, actor: HeadDep) -> CommandPublic:
    """The project head's review (批示) of a week (3.7); shown in the next week's pack."""
    args = {"week": body.week, "text": body.text}
    return run_command(desk, site, Command("review.write", actor.person, args))


PHOTO_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}
MAX_PHOTO_BYTES = 8 * 1024 * 1024


class PhotoPublic(BaseModel):
    photo: str = Field(description="the name to give a work-log entry's `photo`")


def _photos(desk: Desk) -> pathlib.Path:
    """Photos live beside the store, named by their SHA-256: the same photo is kept once."""
    return desk.store_path.parent / "photos"


@router.post(
    "/photos",
    status_code=status.HTTP_201_CREATED,
    responses=errors(401, 403, 413, 415),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in PHOTO_TYPES},
        }
    },
)
async def upload_photo(request: Request, desk: DeskDep, actor: ManagerDep) -> PhotoPublic:
    """Upload a photo of a patrol finding (4.5), the image as the request's body (JPEG, PNG,
    WebP, at most 8 MB); then name it in a work-log entry."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in PHOTO_TYPES:
        raise HTTPException(
            status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "照片须为 JPEG、PNG 或 WebP / a photo is image/jpeg, image/png or image/webp",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PHOTO_BYTES:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, "照片超过 8 MB / the photo is over 8 MB"
            )
    if not body:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "空照片 / an empty photo")
    name = f"{hashlib.sha256(body).hexdigest()}.{PHOTO_TYPES[kind]}"
    folder = _photos(desk)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if not target.exists():
        partial = folder / f".{name}.part"
        partial.write_bytes(bytes(body))
        partial.replace(target)  # whole or not at all
    return PhotoPublic(photo=name)


@router.get(
    "/photos/{name}",
    responses={200: {"content": {t: {} for t in PHOTO_TYPES}}, **errors(401, 404)},
    response_class=Response,
)
def photo(name: str, desk: DeskDep, actor: ActorDep) -> Response:
    """A photo of a finding."""
    if not PHOTO.fullmatch(name) or not (_photos(desk) / name).exists():
        raise not_found(f"没有此照片 / no photo {name!r}")
    kind = next(t for t, ext in PHOTO_TYPES.items() if name.endswith(f".{ext}"))
    return Response((_photos(desk) / name).read_bytes(), media_type=kind)
