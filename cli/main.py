"""Entry point of the `edgetally` command.

Each file named in COMMAND_MODULES adds its commands through ``register(app)``. Heavy
imports (inference runtimes, databases, brokers) happen inside the commands, so
``edgetally --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from edgetally.models.errors import EdgetallyError

COMMAND_MODULES: tuple[str, ...] = (
    "edgetally.cli.count",
)

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
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)
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
