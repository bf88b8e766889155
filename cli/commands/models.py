"""`edgetally models list|show|verify`: the model zoo."""

from __future__ import annotations

import json
from typing import Any

import typer
from edgetally.models.errors import ModelFileError
from edgetally.models.zoo import locate, resolve_model, sha256_of, zoo

models_app = typer.Typer(help="The model zoo: list, show and verify models.", no_args_is_help=True)


def _status(name: str) -> dict[str, Any]:
    manifest = zoo()[name]
    path = locate(manifest)
    if path is None:
        return {"name": name, "status": "missing", "path": None}
    ok = manifest.sha256 is None or sha256_of(path) == manifest.sha256
    return {"name": name, "status": "ok" if ok else "mismatch", "path": str(path)}


@models_app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json")) -> None:
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
    for r in rows:
        mark = "available" if r["available"] else "not on this machine"
        typer.echo(f"{r['name']:<30} {r['format']:<10} {r['family']:<11} {r['license']:<11} {mark}")


@models_app.command("show")
def show(
    model: str = typer.Argument(..., help="A zoo name or a model file."),
    family: str | None = typer.Option(None, "--family"),
    as_json: bool = typer.Option(False, "--json"),
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
    for key, value in data.items():
        if key == "labels":
            value = (
                f"{len(value)} classes ({', '.join(value[:3])}{', ...' if len(value) > 3 else ''})"
            )
        typer.echo(f"{key:>13}: {value}")


@models_app.command("verify")
def verify(
    model: list[str] = typer.Argument(None, help="Zoo names (default: all)."),
    as_json: bool = typer.Option(False, "--json"),
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
