"""`edgetally shelf`: empty facings and shelf events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from edgetally.progress import progress

if TYPE_CHECKING:
    from edgetally.runtime.shelf.config import ScorerSpec

# `shelf train`'s defaults (the figures in the README were measured with them).
DEFAULT_EPOCHS = 8
DEFAULT_SIZE = 416

shelf_app = typer.Typer(help="Empty facings and shelf events (facing_empty, restocked, taken).")

# The scorer options of `eval` and `demo`: the keys of a camera's shelf: block.
Scorer = Annotated[
    str,
    typer.Option(
        "--scorer", metavar="SCORER", help="classical (no trained model) or detector (--model)."
    ),
]
Model = Annotated[
    str | None,
    typer.Option(
        "--model", metavar="MODEL", help="Gap or product detector: a zoo name or a model file."
    ),
]
Family = Annotated[
    str | None, typer.Option("--family", metavar="FAMILY", help="The model file's family.")
]
Products = Annotated[
    bool,
    typer.Option(
        "--products", help="The model detects products: what no product box covers is empty."
    ),
]
GapClass = Annotated[
    int | None,
    typer.Option("--gap-class", metavar="N", help="The class of an empty gap (default 0)."),
]
MinScore = Annotated[
    float | None,
    typer.Option(
        "--min-score", metavar="SCORE", help="Keep boxes scored this or more (default 0.3)."
    ),
]
Backend = Annotated[
    str, typer.Option("--backend", metavar="BACKEND", help="Runtime backend for --model.")
]
Accelerator = Annotated[
    str | None,
    typer.Option(
        "--accelerator",
        metavar="DEVICE",
        help="OpenVINO device, onnxruntime provider or LiteRT delegate.",
    ),
]


def _scorer_spec(
    scorer: str,
    model: str | None,
    family: str | None,
    products: bool,
    gap_class: int | None,
    min_score: float | None,
) -> ScorerSpec:
    """The options as a shelf block's scorer keys, checked the same way."""
    from edgetally.runtime.shelf.config import parse_scorer
    from edgetally.runtime.shelf.errors import ShelfError

    given = {
        "model": model,
        "family": family,
        "products": products or None,
        "gap_class": gap_class,
        "min_score": min_score,
    }
    try:
        keys = {k: v for k, v in given.items() if v is not None}
        return parse_scorer({"scorer": scorer, **keys})
    except ShelfError as exc:  # name the option, not the config key
        key, _, rest = str(exc).partition(": ")
        raise ShelfError(f"--{key.replace('_', '-')}: {rest}") from None


@shelf_app.command("eval")
def eval_cmd(
    folder: Path = typer.Argument(
        ..., metavar="FOLDER", help="Folder with images/ and labels/ (YOLO gap boxes)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list, one per method (and no progress)."
    ),
    iou: float = typer.Option(0.3, "--iou", metavar="IOU", help="IoU that makes a match."),
    method: list[str] = typer.Option(
        [],
        "--method",
        metavar="METHOD",
        help="Classical methods to score (default: all): dark-blob, texture-bands.",
    ),
    scorer: Scorer = "classical",
    model: Model = None,
    family: Family = None,
    products: Products = False,
    gap_class: GapClass = None,
    min_score: MinScore = None,
    backend: Backend = "auto",
    accelerator: Accelerator = None,
) -> None:
    """Precision, recall and F1 of empty-gap detection on single photos, per method.

    With --scorer detector, the detector's gap boxes (or, with --products, the stretches of
    each shelf band no product box covers) are scored as method "detector"."""
    from edgetally.runtime.scoring.shelf import evaluate
    from edgetally.runtime.shelf.errors import ShelfError
    from edgetally.runtime.shelf.proposer import (
        DarkBlobGapProposer,
        DetectorGapProposer,
        GapProposer,
        TextureGapProposer,
    )
    from edgetally.runtime.shelf.scorers import load_shelf_detector

    spec = _scorer_spec(scorer, model, family, products, gap_class, min_score)
    methods: dict[str, GapProposer] = {
        "dark-blob": DarkBlobGapProposer(),
        "texture-bands": TextureGapProposer(),
    }
    if spec.kind == "detector":
        if method:
            raise ShelfError("--method picks classical methods: not with --scorer detector")
        detect = load_shelf_detector(spec, backend, accelerator)
        methods = {"detector": DetectorGapProposer(detect, spec.gap_class, spec.products)}
    unknown = [m for m in method if m not in methods]
    if unknown:
        raise ShelfError(f"unknown method(s) {unknown}: choose from {sorted(methods)}")
    if not 0.0 < iou <= 1.0:
        raise ShelfError(f"--iou must be in (0, 1], got {iou}")
    chosen = {k: v for k, v in methods.items() if not method or k in method}
    with progress("images", quiet=as_json) as told:
        scores = evaluate(folder, chosen, iou=iou, progress=told)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in scores]))
        return
    n = scores[0].images
    typer.echo(f"{'method':<14} {'P':>6} {'R':>6} {'F1':>6}  (IoU {iou:g}, {n} images)")
    for s in scores:
        typer.echo(f"{s.method:<14} {s.precision:6.3f} {s.recall:6.3f} {s.f1:6.3f}")


@shelf_app.command("validate-config")
def validate_config(
    path: Path = typer.Argument(..., metavar="FILE", help="Shelf config (YAML or JSON)."),
) -> None:
    """Check a shelf config: regions, facings, debounce settings."""
    from edgetally.runtime.shelf.config import load_config

    cfg = load_config(path)
    typer.echo(f"ok: {len(cfg.regions)} region(s), {len(cfg.facings)} facing(s)")


@shelf_app.command("demo")
def demo(
    as_json: bool = typer.Option(False, "--json", help="Print events as JSON lines."),
    scorer: Scorer = "classical",
    model: Model = None,
    family: Family = None,
    products: Products = False,
    gap_class: GapClass = None,
    min_score: MinScore = None,
    backend: Backend = "auto",
    accelerator: Accelerator = None,
) -> None:
    """Run the shelf logic on the rendered scene and print the events it finds."""
    from datetime import UTC, datetime, timedelta

    import numpy as np
    from edgetally.runtime.shelf.monitor import ShelfMonitor
    from edgetally.runtime.shelf.scorers import load_shelf_detector, make_scorer
    from edgetally.runtime.shelf.synthetic import PRODUCTS, ShelfScene, default_script, scene_config

    spec = _scorer_spec(scorer, model, family, products, gap_class, min_score)
    scene, cfg = ShelfScene(), scene_config().model_copy(update={"scorer": spec})
    reference = scene.render(np.full(8, PRODUCTS))
    monitor = ShelfMonitor(
        cfg, make_scorer(cfg, reference, lambda s: load_shelf_detector(s, backend, accelerator))
    )
    t0 = datetime.now(UTC)
    for i, step in enumerate(default_script()):
        boxes = np.array([p.box for p in step.people], np.float32).reshape(-1, 4)
        out = monitor.update(
            scene.render(np.array(step.stock), step.people), boxes, i, t0 + timedelta(seconds=i / 5)
        )
        for e in out.events:
            if as_json:
                typer.echo(
                    json.dumps(
                        {
                            "frame": i,
                            "kind": e.kind,
                            "region": e.region_id,
                            "facing": e.facing_id,
                            "at": e.timestamp.isoformat(),
                        }
                    )
                )
            else:
                typer.echo(f"frame {i:4d}  {e.kind:<14} {e.region_id}/{e.facing_id}")


@shelf_app.command("train")
def train_cmd(
    images: Path = typer.Argument(..., metavar="IMAGES_DIR", help="Shelf photos to learn from."),
    labels: Path = typer.Option(
        ...,
        "--labels",
        metavar="LABELS_DIR",
        help="YOLO label files (class 0 = empty gap), one NAME.txt per image NAME.",
    ),
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Folder for the ONNX model and its manifest."
    ),
    epochs: int = typer.Option(
        DEFAULT_EPOCHS, "--epochs", metavar="N", help="Passes over the photos."
    ),
    val: Path | None = typer.Option(
        None,
        "--val",
        metavar="DIR",
        help="A folder with images/ and labels/ to report F1 on after each epoch.",
    ),
    backbone: Path | None = typer.Option(
        None,
        "--backbone",
        metavar="FILE",
        help="The pretrained YOLOX ONNX to build on (default: the zoo's yolox-nano).",
    ),
    size: int = typer.Option(
        DEFAULT_SIZE, "--size", metavar="PX", help="Input side of the model (multiple of 32)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the result as JSON (and no progress)."
    ),
) -> None:
    """Train an empty-gap detector on labelled photos (CPU; needs the train extra).

    Writes DIR/shelf-gaps.onnx with its manifest: a YOLOX-family model that shelf eval,
    shelf demo, a shelf block's scorer: detector and quantize take like any model."""
    import sys

    from edgetally.commands import CommandError

    try:
        import torch  # noqa: F401  # only to say which extra is missing
    except ImportError:
        raise CommandError("shelf train needs PyTorch: pip install 'edgetally[train]'") from None
    from edgetally.quantize.shelf_train.backbone import default_backbone
    from edgetally.quantize.shelf_train.train import EpochReport, TrainOptions, train

    chosen = backbone or default_backbone()
    if chosen is None:
        raise CommandError(
            "no backbone: the zoo's yolox-nano is not on this machine; pass --backbone FILE "
            "(yolox_nano.onnx)"
        )
    if not chosen.is_file():
        raise CommandError(f"--backbone {chosen}: no such file")

    def said(r: EpochReport) -> None:
        if as_json:
            return
        f1 = (
            ""
            if r.val_f1 is None
            else (f"  val P {r.val_precision:.3f} R {r.val_recall:.3f} F1 {r.val_f1:.3f}")
        )
        print(
            f"epoch {r.epoch:>3}/{r.epochs}  loss {r.loss:.3f} (obj {r.obj_loss:.3f}, "
            f"box {r.box_loss:.3f}){f1}  {r.seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    with progress("batches", quiet=as_json) as told:
        result = train(
            images,
            labels,
            out,
            chosen,
            val_dir=val,
            options=TrainOptions(epochs=epochs, size=size),
            on_epoch=said,
            progress=told,
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "model": str(result.model),
                    "manifest": str(result.manifest),
                    "images": result.images,
                    "boxes": result.boxes,
                    "seconds": round(result.seconds, 1),
                    "epochs": [r.to_json() for r in result.epochs],
                }
            )
        )
        return
    minutes, seconds = divmod(round(result.seconds), 60)
    typer.echo(
        f"wrote {result.model} (manifest {result.manifest.name}): {result.images} "
        f"photos, {result.boxes} gaps, {len(result.epochs)} epochs in {minutes} min "
        f"{seconds} s"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(shelf_app, name="shelf")
