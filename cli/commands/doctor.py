"""`edgetally doctor`: the device's CPU, NPUs and runtimes, and what to run on it."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("doctor")
    def doctor(
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        root: Path = typer.Option(
            Path("/"),
            "--root",
            hidden=True,
            metavar="DIR",
            help="Read the system files under this root.",
        ),
        no_delegates: bool = typer.Option(
            False, "--no-load-delegates", help="Do not try to load the LiteRT delegates found."
        ),
    ) -> None:
        """What this device has (CPU features, SoC, NPUs), what each runtime sees, and the
        backend, device and precision to use."""
        from edgetally.runtime.doctor import describe, run_doctor
        from edgetally.runtime.hardware import RootFS

        report = run_doctor(RootFS(root), load_delegates=not no_delegates)
        if as_json:
            typer.echo(json.dumps(report.to_dict(), indent=2))
        else:
            for line in describe(report):
                typer.echo(line)
