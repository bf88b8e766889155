"""The analyst API: a FastAPI app (OpenAPI at ``/docs``) over a fleet store.

Routers are discovered: every module of ``edgetally.fleet`` whose name ends in ``_api``
and that has a ``router`` is included, so a new endpoint is a new module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence

from edgetally import fleet
from edgetally.fleet.api_context import RETRY_AFTER_S, Busy, FleetContext
from edgetally.fleet.errors import FleetError
from edgetally.fleet.queries import QueryTooLarge
from edgetally.fleet.store import QueryTimeout, StoreError
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse


def router_modules() -> list[str]:
    """Names of the modules that carry routers, sorted."""
    return sorted(
        f"{fleet.__name__}.{m.name}"
        for m in pkgutil.iter_modules(fleet.__path__)
        if m.name.endswith("_api")
    )


def create_app(ctx: FleetContext, hooks: Sequence[Callable[[FastAPI], None]] = ()) -> FastAPI:
    """The app over ``ctx``; each hook may add routers or middleware (auth, rollouts)."""
    app = FastAPI(
        title="edgetally fleet",
        summary="Footfall, occupancy and dwell aggregates from edge devices (no pixels, no audio).",
        version="1",
    )
    app.state.fleet = ctx
    for name in router_modules():
        router = getattr(importlib.import_module(name), "router", None)
        if isinstance(router, APIRouter):
            app.include_router(router)
    for hook in hooks:
        hook(app)

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
