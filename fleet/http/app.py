"""The analyst API: a FastAPI app (OpenAPI at ``/docs``) over a fleet store.

The routers are listed in :func:`routers`, one module of this package per endpoint family:
a new endpoint family is a new module and a line there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgetally.fleet.errors import FleetError
from edgetally.fleet.http.bodies import BoundedBodies
from edgetally.fleet.http.context import RETRY_AFTER_S, Busy, FleetContext
from edgetally.fleet.store.base import QueryTimeout, StoreError
from edgetally.fleet.store.queries import QueryTooLarge
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse


def routers() -> tuple[APIRouter, ...]:
    """Every router the app serves, by module name (rollouts come as a hook: they exist
    only when the fleet runs them)."""
    from edgetally.fleet.http import audio, dashboard, devices, energy, events, shelf, traffic

    return (
        audio.router,
        dashboard.router,
        devices.router,
        energy.router,
        events.router,
        shelf.router,
        traffic.router,
    )


def create_app(ctx: FleetContext, hooks: Sequence[Callable[[FastAPI], None]] = ()) -> FastAPI:
    """The app over ``ctx``; each hook may add routers or middleware (auth, rollouts)."""
    app = FastAPI(
        title="edgetally fleet",
        summary="Footfall, occupancy and dwell aggregates from edge devices (no pixels, no audio).",
        version="1",
    )
    app.state.fleet = ctx
    for router in routers():
        app.include_router(router)
    for hook in hooks:
        hook(app)
    app.add_middleware(BoundedBodies)  # added last: outermost, before anything reads a body

    @app.exception_handler(QueryTooLarge)
    async def _too_large(_r: Request, exc: QueryTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(Busy)
    async def _busy(_r: Request, exc: Busy) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)}
        return JSONResponse({"detail": str(exc)}, status_code=503, headers=headers)

    @app.exception_handler(QueryTimeout)
    async def _timeout(_r: Request, exc: QueryTimeout) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=504)

    @app.exception_handler(StoreError)
    async def _store(_r: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(FleetError)
    async def _fleet(_r: Request, exc: FleetError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    return app
