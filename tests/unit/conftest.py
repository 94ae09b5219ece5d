"""Unit-test helpers: the example site, loaded once."""

from __future__ import annotations

import pathlib

import pytest

from gateway.config import Site, load_site

SITES = pathlib.Path(__file__).resolve().parents[2] / "gateway" / "sites"


@pytest.fixture(scope="session")
def zcity() -> Site:
    return load_site(SITES / "zcity.yaml")
