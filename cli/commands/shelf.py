"""`edgetally shelf`: empty facings and shelf events."""

from __future__ import annotations

import json
from pathlib import Path

import typer

shelf_app = typer.Typer(help="Empty facings and shelf events (facing_empty, restocked, taken).")


@shelf_app.command("eval")
def eval_cmd(
    folder: Path = typer.Argument(..., help="Folder with images/ and labels/ (YOLO gap boxes)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one per method."),
    iou: float = typer.Option(0.3, "--iou", help="IoU that makes a match."),
    method: list[str] = typer.Option(
        [], "--method", help="Methods to score (default: all): dark-blob, texture-bands."
    ),
) -> None:
    """Precision, recall and F1 of empty-gap detection on single photos, per method."""
    from edgetally.runtime.shelf.errors import ShelfError
    from edgetally.runtime.shelf.evaluate import evaluate
    from edgetally.runtime.shelf.proposer import (
        DarkBlobGapProposer,
        GapProposer,
        TextureGapProposer,
    )

    methods: dict[str, GapProposer] = {
        "dark-blob": DarkBlobGapProposer(),
        "texture-bands": TextureGapProposer(),
    }
    unknown = [m for m in method if m not in methods]
    if unknown:
        raise ShelfError(f"unknown method(s) {unknown}: choose from {sorted(methods)}")
    if not 0.0 < iou <= 1.0:
        raise ShelfError(f"--iou must be in (0, 1], got {iou}")
    chosen = {k: v for k, v in methods.items() if not method or k in method}
    scores = evaluate(folder, chosen, iou=iou)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in scores]))
        return
    n = scores[0].images
    typer.echo(f"{'method':<14} {'P':>6} {'R':>6} {'F1':>6}  (IoU {iou}, {n} images)")
    for s in scores:
        typer.echo(f"{s.method:<14} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f}")


@shelf_app.command("validate-config")
def validate_config(path: Path = typer.Argument(..., help="Shelf config (YAML or JSON).")) -> None:
    """Check a shelf config: regions, facings, debounce settings."""
    from edgetally.runtime.shelf.config import load_config

    cfg = load_config(path)
    typer.echo(f"ok: {len(cfg.regions)} region(s), {len(cfg.facings)} facing(s)")


@shelf_app.command("demo")
def demo(as_json: bool = typer.Option(False, "--json", help="Print events as JSON lines.")) -> None:
    """Run the shelf logic on the rendered scene and print the events it finds."""
    from datetime import UTC, datetime, timedelta

    import numpy as np
    from edgetally.runtime.shelf.monitor import ShelfMonitor
    from edgetally.runtime.shelf.scorers import ClassicalScorer
    from edgetally.runtime.shelf.synthetic import PRODUCTS, ShelfScene, default_script, scene_config

    scene, cfg = ShelfScene(), scene_config()
    monitor = ShelfMonitor(cfg, ClassicalScorer(scene.render(np.full(8, PRODUCTS)), cfg.facings))
    t0 = datetime.now(UTC)
    for i, step in enumerate(default_script()):
        boxes = np.array([p.box for p in step.people], np.float32).reshape(-1, 4)
        out = monitor.update(scene.render(np.array(step.stock), step.people), boxes, i,
                             t0 + timedelta(seconds=i / 5))
        for e in out.events:
            if as_json:
                typer.echo(json.dumps({"frame": i, "kind": e.kind, "region": e.region_id,
                                       "facing": e.facing_id, "at": e.timestamp.isoformat()}))
            else:
                typer.echo(f"frame {i:4d}  {e.kind:<14} {e.region_id}/{e.facing_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(shelf_app, name="shelf")
