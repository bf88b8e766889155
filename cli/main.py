"""Entry point of the `edgetally` command.

Each module of edgetally.commands adds its commands through ``register(app)``. Heavy
imports (inference runtimes, databases, brokers) happen inside the commands, so
``edgetally --help`` stays fast.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys

import typer
from edgetally import commands
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
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
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
