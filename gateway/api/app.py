"""The FastAPI application: the API under /api/v1 and the duty desk's page at / (§10)."""

from __future__ import annotations

import pathlib

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from gateway.api.desk import Desk
from gateway.api.routes import acklinks, alerts, board, duty, history, records, session

WEB = pathlib.Path(__file__).resolve().parent.parent / "web"
PREFIX = "/api/v1"


def create_app(desk: Desk) -> FastAPI:
    """The app for one desk; the page's own files need no token."""
    app = FastAPI(
        title="Patrol Gateway · 值班台 API",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,  # Swagger UI loads from a CDN; sites may have no internet
        redoc_url=None,
    )
    app.state.desk = desk
    for module in (board, session, alerts, acklinks, history, duty, records):
        app.include_router(module.router, prefix=PREFIX)
    app.mount("/", StaticFiles(directory=WEB, html=True), name="web")
    return app
