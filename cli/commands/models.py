"""`edgetally models list|show|verify`: the model zoo."""

from __future__ import annotations

import json
from typing import Any

import typer
from edgetally.models.errors import ModelFileError
from edgetally.models.zoo import locate, model_dirs, resolve_model, sha256_of, zoo

models_app = typer.Typer(help="The model zoo: list, show and verify models.", no_args_is_help=True)


def _status(name: str) -> dict[str, Any]:
    manifest = zoo()[name]
    path = locate(manifest)
    if path is None:
        return {"name": name, "status": "missing", "path": None}
    ok = manifest.sha256 is None or sha256_of(path) == manifest.sha256
    return {"name": name, "status": "ok" if ok else "mismatch", "path": str(path)}


def _where() -> str:
    """Where a missing zoo file goes, in one line."""
    return ", ".join(str(d) for d in model_dirs())


@models_app.command("list")
def list_models(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Every zoo model, its format and family, and whether its file is on this machine."""
    rows = []
    for name, m in zoo().items():
        path = locate(m)
        rows.append(
            {
                "name": name,
                "format": m.format,
                "family": m.family,
                "license": m.license,
                "available": path is not None,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows))
        return
    typer.echo(f"{'MODEL':<30} {'FORMAT':<10} {'FAMILY':<11} {'LICENSE':<11} FILE")
    for r, m in zip(rows, zoo().values(), strict=True):
        mark = "on this machine" if r["available"] else f"missing ({m.file})"
        typer.echo(f"{r['name']:<30} {r['format']:<10} {r['family']:<11} {r['license']:<11} {mark}")
    if not all(r["available"] for r in rows):
        typer.echo(
            f"a missing file goes in a model directory: {_where()} (EDGETALLY_MODEL_DIRS adds "
            "more); edgetally models show MODEL says where it comes from"
        )


@models_app.command("show")
def show(
    model: str = typer.Argument(..., metavar="MODEL", help="A zoo name or a model file."),
    family: str | None = typer.Option(
        None,
        "--family",
        metavar="FAMILY",
        help="Processing family of an unknown model file: yolox | tf-ssd | tflite-ssd.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """A model's manifest (what it is, how it is run, where it comes from)."""
    if model in zoo():
        manifest = zoo()[model]
        path = locate(manifest)
    else:
        resolved = resolve_model(model, family)
        manifest, path = resolved.manifest, resolved.path
    data = manifest.model_dump()
    data["path"] = str(path) if path else None
    if as_json:
        typer.echo(json.dumps(data))
        return
    if path is None:
        data["path"] = f"not on this machine: put {manifest.file} in one of {_where()}"
    for key, value in data.items():
        if value is None:
            continue  # nothing to say (no package ships it, no sha256 to check)
        if key == "labels":
            more = ", ..." if len(value) > 3 else ""
            noun = "class" if len(value) == 1 else "classes"
            value = f"{len(value)} {noun} ({', '.join(value[:3])}{more})"
        elif key == "input":
            value = (
                f"{value['width']}x{value['height']} {value['layout']} {value['dtype']} "
                f"{value['color']}, {value['resize']}"
                + (f" (pad {value['pad_value']})" if value["resize"] == "letterbox" else "")
            )
        typer.echo(f"{key:>13}: {value}")


@models_app.command("verify")
def verify(
    model: list[str] = typer.Argument(None, metavar="MODEL", help="Zoo names (default: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Check the sha256 of zoo model files; exit 1 on a mismatch or a named model missing."""
    names = model or list(zoo())
    unknown = [n for n in names if n not in zoo()]
    if unknown:
        raise ModelFileError(f"not zoo models: {', '.join(unknown)}")
    rows = [_status(n) for n in names]
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        for r in rows:
            typer.echo(f"{r['name']:<30} {r['status']:<9} {r['path'] or ''}")
    bad = [r for r in rows if r["status"] == "mismatch" or (model and r["status"] == "missing")]
    if bad:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
