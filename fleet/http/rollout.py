"""HTTP routes of rollouts and bundles, as a router another app can mount.

- ``PUT  /bundles``                    upload a bundle (operator); verified with the fleet key
- ``GET  /bundles/{sha256}``           download (device and up), with HTTP Range: resumable
- ``POST /rollouts``                   start one (operator)
- ``GET  /rollouts``, ``/rollouts/{id}`` read (analyst)
- ``POST /rollouts/{id}/pause|resume|abort`` (operator)

Tokens come from :func:`edgetally.fleet.http.auth.install_auth` on the app. An upload goes to a
file as it arrives (never whole in memory), and one larger than ``max_bundle_bytes`` is
refused (413) as soon as it says so or passes it. The app's
:class:`~edgetally.fleet.http.bodies.BoundedBodies` refuses a body without a known token
(401) before it is read, and bounds the other routes' JSON bodies.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from edgetally.fleet.http.auth import Authenticator, install_auth, require_role
from edgetally.fleet.http.bodies import BUNDLE_UPLOAD_PATH, BoundedBodies
from edgetally.fleet.rollout.plan import BundleRef, Rollout, RolloutError
from edgetally.fleet.rollout.records import RolloutRecords
from edgetally.fleet.rollout.service import RolloutNotFound, RolloutService, load_record
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MAX_BUNDLE_BYTES = 1 << 30  # 1 GiB
_WRITE_BYTES = 1 << 20  # what is gathered from the request before each write to disk


class CreateRollout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    selector: str = Field(min_length=1, max_length=1000)
    stages: str = Field(default="5%,25%,100%", max_length=200)
    success_ratio: float = Field(default=1.0, gt=0, le=1)
    failure_ratio: float = Field(default=0.0, ge=0, lt=1)
    report_timeout_s: float = Field(default=900.0, gt=0)


def _http_error(exc: RolloutError) -> HTTPException:
    if isinstance(exc, RolloutNotFound):
        return HTTPException(status_code=404, detail=str(exc))
    return HTTPException(status_code=409, detail=str(exc))


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status_code=413,
        detail=f"the bundle is larger than {limit} bytes, the most this fleet takes "
        "(fleet serve --max-bundle-mb)",
    )


async def receive_to_file(request: Request, directory: Path | None, limit: int) -> Path:
    """The request body, written to a new file in ``directory`` (the system's temporary
    folder when None) a megabyte at a time; 413 past ``limit`` bytes, and no file left."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    fd, name = await run_in_threadpool(
        tempfile.mkstemp, ".upload", ".bundle-", str(directory) if directory else None
    )
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            size = 0
            pending = bytearray()
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                pending += chunk
                if len(pending) >= _WRITE_BYTES:
                    await run_in_threadpool(fh.write, pending)
                    pending = bytearray()
            await run_in_threadpool(fh.write, pending)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def build_rollout_router(
    service: RolloutService,
    *,
    upload_dir: Path | None = None,
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> APIRouter:
    """The routes over ``service``; uploads are written to ``upload_dir`` as they arrive
    (best on the disk of the bundles, which they are copied to)."""
    router = APIRouter(tags=["rollouts"])
    operator = [Depends(require_role("operator"))]
    analyst = [Depends(require_role("analyst"))]

    @router.put(
        BUNDLE_UPLOAD_PATH,
        dependencies=operator,
        response_model=BundleRef,
        responses={413: {"description": "larger than the fleet takes"}},
    )
    async def upload_bundle(request: Request) -> BundleRef:
        path = await receive_to_file(request, upload_dir, max_bundle_bytes)
        try:
            return await run_in_threadpool(service.add_bundle, path)
        except RolloutError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        finally:
            path.unlink(missing_ok=True)

    @router.get("/bundles/{sha256}", dependencies=[Depends(require_role("device"))])
    def download_bundle(sha256: str) -> FileResponse:
        try:
            path = service.bundle_path(sha256)
        except RolloutError as exc:
            raise _http_error(exc) from None
        return FileResponse(path, media_type="application/x-tar", filename=f"{sha256}.bundle")

    @router.post("/rollouts", dependencies=operator, response_model=Rollout)
    def create_rollout(body: CreateRollout) -> Rollout:
        try:
            return service.create(
                body.bundle_sha256,
                body.selector,
                body.stages,
                success_ratio=body.success_ratio,
                failure_ratio=body.failure_ratio,
                report_timeout_s=body.report_timeout_s,
            )
        except RolloutError as exc:
            raise _http_error(exc) from None

    @router.get("/rollouts", dependencies=analyst)
    def list_rollouts() -> list[dict[str, Any]]:
        return [summary(r) for r in service.all()]

    @router.get("/rollouts/{rollout_id}", dependencies=analyst, response_model=Rollout)
    def get_rollout(rollout_id: str) -> Rollout:
        try:
            return service.get(rollout_id)
        except RolloutError as exc:
            raise _http_error(exc) from None

    for verb in ("pause", "resume", "abort"):
        router.add_api_route(
            f"/rollouts/{{rollout_id}}/{verb}",
            _verb_route(service, verb),
            methods=["POST"],
            dependencies=operator,
            response_model=Rollout,
            name=f"{verb}_rollout",
        )
    return router


def build_rollout_read_router(records: RolloutRecords) -> APIRouter:
    """``GET /rollouts`` and ``/rollouts/{id}`` from the records alone: what an api process
    that does not run the rollouts answers (they are in the shared database)."""
    router = APIRouter(tags=["rollouts"])
    analyst = [Depends(require_role("analyst"))]

    @router.get("/rollouts", dependencies=analyst)
    def list_rollouts() -> list[dict[str, Any]]:
        try:
            return [summary(load_record(records, i)) for i in records.ids()]
        except RolloutError as exc:
            raise _http_error(exc) from None

    @router.get("/rollouts/{rollout_id}", dependencies=analyst, response_model=Rollout)
    def get_rollout(rollout_id: str) -> Rollout:
        try:
            return load_record(records, rollout_id)
        except RolloutError as exc:
            raise _http_error(exc) from None

    return router


def _verb_route(service: RolloutService, verb: str) -> Any:
    def route(rollout_id: str) -> Rollout:
        try:
            result: Rollout = getattr(service, verb)(rollout_id)
        except RolloutError as exc:
            raise _http_error(exc) from None
        return result

    return route


def summary(r: Rollout) -> dict[str, Any]:
    return {
        "id": r.id,
        "bundle": f"{r.bundle.name} {r.bundle.version}",
        "state": r.state,
        "stage": f"{r.stage + 1}/{len(r.stages)}",
        "devices": len(r.devices),
        "healthy": sum(1 for p in r.devices.values() if p.state == "healthy"),
        "failed": sum(1 for p in r.devices.values() if p.state in ("failed", "rolled_back")),
    }


def create_rollout_app(
    service: RolloutService,
    tokens: Authenticator,
    *,
    upload_dir: Path | None = None,
    max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
) -> FastAPI:
    """A stand-alone app with only the rollout routes (the fleet API mounts the router)."""
    app = FastAPI(title="edgetally rollouts")
    install_auth(app, tokens)
    app.include_router(
        build_rollout_router(service, upload_dir=upload_dir, max_bundle_bytes=max_bundle_bytes)
    )
    app.add_middleware(BoundedBodies)
    return app
