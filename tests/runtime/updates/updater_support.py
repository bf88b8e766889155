"""Helpers (no tests): tiny real ONNX models, bundles and a real HTTP server for them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypedDict

import httpx
import onnx
import uvicorn
from edgetally.models.bundle import (
    BundleTarget,
    HealthBudget,
    create_bundle,
    load_private_key,
)
from edgetally.ports import free_port
from edgetally.runtime.updates.updater import TrialRun
from fastapi import FastAPI
from onnx import TensorProto, helper

from tests.conftest import wait_for_port

TARGET = BundleTarget.parse("onnxruntime:fp32:sim")


class UpdaterOptions(TypedDict, total=False):
    """The :class:`Updater` keywords a test may set (its defaults apply to the others)."""

    http: httpx.Client | None
    trial_run: TrialRun | None
    fleet_url: str | None
    fleet_host: str | None
    max_bundle_bytes: int


def write_model(path: Path, *, scale: float = 1.0, broken: bool = False) -> Path:
    """y = x * scale on a [1, 4] float input. ``broken``: loads, then fails at run time (a
    Reshape to an impossible shape)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    s = helper.make_tensor("s", TensorProto.FLOAT, [1], [scale])
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"])]
    inits = [s]
    if broken:
        inits.append(helper.make_tensor("shape", TensorProto.INT64, [2], [3, 5]))
        nodes.append(helper.make_node("Reshape", ["m", "shape"], ["y"]))
    else:
        nodes.append(helper.make_node("Identity", ["m"], ["y"]))
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def make_bundle(
    tmp: Path,
    key: Path,
    name: str,
    *,
    scale: float = 1.0,
    broken: bool = False,
    target: str = "onnxruntime:fp32:sim",
    latency_ms: float = 2000.0,
    version: str = "1",
    rollback_of: str | None = None,
) -> Path:
    """A signed bundle of a tiny model (a device takes only versions newer than its own, or a
    signed rollback: ``rollback_of``)."""
    src = tmp / f"src-{name}"
    src.mkdir(parents=True, exist_ok=True)
    model = write_model(src / "model.onnx", scale=scale, broken=broken)
    out = tmp / f"{name}.bundle"
    create_bundle(
        [model],
        private_key=load_private_key(key),
        out=out,
        name=name,
        version=version,
        targets=[BundleTarget.parse(target)],
        health=HealthBudget(latency_ms=latency_ms),
        rollback_of=rollback_of,
    )
    return out


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for_port(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        while thread.is_alive():
            time.sleep(0.05)
