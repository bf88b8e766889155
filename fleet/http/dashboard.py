"""The dashboard: one page for analysts and operators, served by the fleet itself.

``/`` redirects to ``/dashboard/``; the page, its script, chart code and style are files of
:mod:`edgetally.fleet.dashboard` (no CDN, no build step), so it works offline. The page needs
no token; its data calls go to the API with the token the user gives it.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, HTTPException
from fastapi.responses import RedirectResponse, Response

router = APIRouter(include_in_schema=False)

PACKAGE = "edgetally.fleet.dashboard"
FILES: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def read_asset(name: str) -> bytes:
    """The bytes of one of :data:`FILES`; anything else is 404."""
    if name not in FILES:
        raise HTTPException(status_code=404, detail=f"no dashboard file {name[:80]!r}")
    try:
        return resources.files(PACKAGE).joinpath(name).read_bytes()
    except OSError:
        raise HTTPException(status_code=404, detail=f"no dashboard file {name!r}") from None


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("dashboard/", status_code=307)


@router.get("/dashboard")
def dashboard_slash() -> RedirectResponse:
    return RedirectResponse("dashboard/", status_code=307)


@router.get("/dashboard/")
def dashboard_page() -> Response:
    return asset("index.html")


@router.get("/dashboard/{name}")
def asset(name: str) -> Response:
    return Response(read_asset(name), media_type=FILES[name], headers=_HEADERS)
