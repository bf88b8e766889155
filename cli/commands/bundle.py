"""`edgetally bundle keygen|create|verify`: signed model bundles."""

from __future__ import annotations

from pathlib import Path

import typer
from edgetally.models.bundle import (
    BundleError,
    BundleTarget,
    HealthBudget,
    create_bundle,
    describe,
    generate_keypair,
    load_private_key,
    load_public_key,
    verify_bundle,
)

bundle_app = typer.Typer(
    help="Signed model bundles: key pair, create, verify.", no_args_is_help=True
)


@bundle_app.command("keygen")
def keygen(
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Directory for fleet.key and fleet.pub."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing key pair."),
) -> None:
    """Generate the fleet's Ed25519 signing key pair (fleet.key is written mode 0600)."""
    priv, pub = generate_keypair(out, overwrite=force)
    typer.echo(f"private key: {priv}\npublic key:  {pub}  (pin this one on the devices)")


@bundle_app.command("create")
def create(
    models: list[Path] = typer.Argument(
        ..., metavar="MODEL_FILE", help="Model files to put in the bundle."
    ),
    key: Path = typer.Option(
        ..., "--key", metavar="FILE", help="The fleet's private key (fleet.key)."
    ),
    out: Path = typer.Option(..., "--out", metavar="FILE", help="Bundle file to write."),
    target: list[str] = typer.Option(
        ...,
        "--target",
        metavar="BACKEND:PRECISION:CLASS",
        help="Where it may run, e.g. onnxruntime:int8:rpi5 (repeatable).",
    ),
    name: str | None = typer.Option(
        None, "--name", metavar="NAME", help="Bundle name (default: the first file's stem)."
    ),
    version: str = typer.Option("1", "--version", metavar="VERSION", help="Bundle version."),
    latency_ms: float = typer.Option(
        500.0, "--latency-ms", metavar="MS", help="Health check latency budget."
    ),
    max_count_delta: float = typer.Option(
        0.25,
        "--max-count-delta",
        metavar="SHARE",
        help="Largest relative change of counts vs the old model.",
    ),
    max_power_increase: float = typer.Option(
        0.30,
        "--max-power-increase",
        metavar="SHARE",
        help="Largest relative increase of mean power.",
    ),
    rollback_of: str | None = typer.Option(
        None,
        "--rollback-of",
        metavar="VERSION",
        help="A deliberate rollback: devices running up to this (newer) version may take this "
        "older bundle; signed into the manifest.",
    ),
) -> None:
    """Hash MODEL files, sign the manifest and write a bundle."""
    targets = [BundleTarget.parse(t) for t in target]
    if latency_ms <= 0 or max_count_delta < 0 or max_power_increase < 0:
        raise BundleError("--latency-ms must be > 0; the other budgets must be >= 0")
    manifest = create_bundle(
        models,
        private_key=load_private_key(key),
        out=out,
        name=name or models[0].stem,
        version=version,
        targets=targets,
        health=HealthBudget(
            latency_ms=latency_ms,
            max_count_delta=max_count_delta,
            max_power_increase=max_power_increase,
        ),
        rollback_of=rollback_of,
    )
    typer.echo(f"wrote {out}")
    for line in describe(manifest):
        typer.echo(line)


@bundle_app.command("verify")
def verify(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Bundle file."),
    pubkey: Path = typer.Option(
        ..., "--pubkey", metavar="FILE", help="The fleet's public key (fleet.pub)."
    ),
    target: str | None = typer.Option(
        None,
        "--target",
        metavar="BACKEND:PRECISION:CLASS",
        help="Also require the bundle to be meant for this target.",
    ),
) -> None:
    """Exit 0 only when the signature and every file's sha256 hold (and the target fits)."""
    wanted = BundleTarget.parse(target) if target else None
    verified = verify_bundle(bundle, load_public_key(pubkey), target=wanted)
    typer.echo(f"OK {bundle} sha256 {verified.sha256}")
    for line in describe(verified.manifest):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.add_typer(bundle_app, name="bundle")
