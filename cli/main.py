"""Entry point of the `edgetally` command.

Each module of edgetally.commands adds its commands through ``register(app)``; the modules
are listed in :func:`build_app`. Heavy
imports (inference runtimes, databases, brokers) happen inside the commands, so
``edgetally --help`` stays fast.
"""

from __future__ import annotations

import logging
import sys

import typer
from edgetally.models.errors import EdgetallyError

app = typer.Typer(
    name="edgetally",
    help="Edge analytics for shops: count on the device, send only aggregates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what happens (stderr)."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_app() -> typer.Typer:
    """The command with every subcommand: each module listed here adds its own."""
    from edgetally.commands import (
        audio,
        bundle,
        count,
        demo,
        device,
        doctor,
        energy,
        fleet,
        models,
        power,
        quantize,
        rollout,
        shelf,
    )

    for module in (
        audio, bundle, count, demo, device, doctor, energy, fleet, models, power, quantize,
        rollout, shelf,
    ):
        module.register(app)
    return app


def main() -> None:
    build_app()
    try:
        app()
    except EdgetallyError as exc:
        print(f"edgetally: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("edgetally: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
