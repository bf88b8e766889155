"""`edgetally device run` and `edgetally validate-config`: the device side end to end."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer
from edgetally.progress import progress
from edgetally.runtime.errors import ConfigError

device_app = typer.Typer(
    help="Run the device: count, aggregate into buckets, publish over MQTT.",
    no_args_is_help=True,
)

EXIT_UNDELIVERED = 3

MQTT_PASSWORD_ENV = "EDGETALLY_MQTT_PASSWORD"
FLEET_TOKEN_ENV = "EDGETALLY_FLEET_TOKEN"

_MQTT_PASSWORD = typer.Option(
    None,
    "--mqtt-password",
    metavar="PASSWORD",
    help="Broker password of user SITE/DEVICE (publisher and update agent); ps shows it: "
    f"prefer --mqtt-password-file or {MQTT_PASSWORD_ENV}.",
)
_MQTT_PASSWORD_FILE = typer.Option(
    None,
    "--mqtt-password-file",
    metavar="FILE",
    help="A file whose first line is the broker password.",
)
_CA = typer.Option(
    None,
    "--ca",
    metavar="FILE",
    help="CA certificate an mqtts:// broker's certificate must be signed by.",
)
_FLEET_URL = typer.Option(
    None,
    "--fleet-url",
    metavar="URL",
    help="Download bundles from this fleet URL only (default: only from the broker's host).",
)
_MAX_BUNDLE_MB = typer.Option(
    None,
    "--max-bundle-mb",
    min=1,
    metavar="MIB",
    help="Largest bundle this device downloads, in MiB (512); a larger one is refused.",
)
_MAX_COMMAND_AGE = typer.Option(
    None,
    "--max-command-age",
    min=1.0,
    metavar="SECONDS",
    help="A fleet command issued longer ago than this is refused as stale (600).",
)
_FLEET_TOKEN = typer.Option(
    None,
    "--fleet-token",
    metavar="TOKEN",
    help="Bearer token (role device) for bundle downloads; ps shows it: prefer "
    f"--fleet-token-file or {FLEET_TOKEN_ENV}.",
)
_FLEET_TOKEN_FILE = typer.Option(
    None,
    "--fleet-token-file",
    metavar="FILE",
    help="A file whose first line is the device token (role device) for bundle downloads.",
)
_SITE = typer.Option(None, "--site", metavar="SITE", help="Site (shop) id.")
_DEVICE_ID = typer.Option(None, "--device-id", metavar="ID", help="This device's id.")
_MODELS_DIR_HELP = "Signed bundles installed here (A/B slots, current, previous)."
_PUBKEY_HELP = "The fleet's public key (fleet.pub) bundles and fleet commands must verify with."
_CLASS_HELP = "This device's class in bundle targets (e.g. rpi5)."


def _camera_id(source: str) -> str:
    stem = Path(source).stem if not source.isdigit() else f"camera{source}"
    cleaned = re.sub(r"[^A-Za-z0-9_.:-]+", "-", stem).strip("-_.:")[:64]
    return cleaned or "camera"


def _named(text: str, what: str, default_id: str) -> tuple[str, list[float]]:
    """``[ID=]n,n,...`` -> (id, numbers)."""
    name, sep, numbers = text.partition("=")
    if not sep:
        name, numbers = default_id, text
    try:
        values = [float(v) for v in numbers.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if not values:
        form = "[ID=]x1,y1,x2,y2" if what == "--line" else "[ID=]x1,y1,x2,y2,x3,y3,..."
        raise ConfigError(f"{what} {text!r}: expected {form}")
    return name.strip(), values


def _cli_config(
    source: str | None,
    lines: list[str],
    zones: list[str],
    overrides: dict[str, Any],
    camera_overrides: dict[str, Any],
    config_file: Path | None,
    power_overrides: dict[str, Any] | None = None,
) -> Any:
    from edgetally.runtime.config import load_config, parse_config

    given = {k: v for k, v in overrides.items() if v is not None}
    cam_given = {k: v for k, v in camera_overrides.items() if v is not None}
    power_given = {k: v for k, v in (power_overrides or {}).items() if v is not None}
    if config_file is not None:
        if source is not None or lines or zones:
            raise ConfigError("give either --config FILE or SOURCE with --line/--zone, not both")
        config = load_config(config_file)
        data = config.model_dump()
        data.update(given)
        if power_given:
            data["power"] = {**data["power"], **power_given}
        if cam_given:
            data["cameras"] = [{**c, **cam_given} for c in data["cameras"]]
        return parse_config(data, origin=f"{config_file} with command-line options")
    if source is None:
        raise ConfigError("give a SOURCE (video file, folder, camera index or URL) or --config")
    if not lines and not zones:
        raise ConfigError("give at least one --line [ID=]x1,y1,x2,y2 (or a --zone)")
    for key, flag in (("site", "--site"), ("device", "--device-id")):
        if key not in given:
            raise ConfigError(f"{flag} is required (or put it in a --config file)")
    line_items = []
    for i, text in enumerate(lines):
        name, values = _named(text, "--line", f"line{i + 1}")
        line_items.append({"id": name, "points": values})
    zone_items = []
    for i, text in enumerate(zones):
        name, values = _named(text, "--zone", f"zone{i + 1}")
        if len(values) % 2:
            raise ConfigError(f"--zone {text!r}: expected pairs of numbers x,y")
        polygon = [values[j : j + 2] for j in range(0, len(values), 2)]
        zone_items.append({"id": name, "polygon": polygon})
    camera = {"id": _camera_id(source), "source": source, "lines": line_items, "zones": zone_items}
    camera.update(cam_given)
    if power_given:
        given["power"] = power_given
    return parse_config({**given, "cameras": [camera]}, origin="command line")


@device_app.command("run")
def run(
    source: str | None = typer.Argument(
        None, metavar="SOURCE", help="Video file, image folder, MOT folder, camera index or URL."
    ),
    line: list[str] = typer.Option(
        [], "--line", metavar="[ID=]X1,Y1,X2,Y2", help="Counting line in pixels (repeatable)."
    ),
    zone: list[str] = typer.Option(
        [], "--zone", metavar="[ID=]X1,Y1,X2,Y2,X3,Y3,...", help="Zone polygon (repeatable)."
    ),
    site: str | None = _SITE,
    device_id: str | None = _DEVICE_ID,
    broker: str | None = typer.Option(
        None,
        "--broker",
        metavar="URL",
        help="MQTT broker, mqtt://HOST:PORT (default mqtt://127.0.0.1:1883), or "
        "mqtts://HOST:8883 for TLS.",
    ),
    mqtt_password: str | None = _MQTT_PASSWORD,
    mqtt_password_file: Path | None = _MQTT_PASSWORD_FILE,
    ca: Path | None = _CA,
    outbox: Path | None = typer.Option(
        None, "--outbox", metavar="FILE", help="SQLite outbox file (default ./edgetally-outbox.db)."
    ),
    outbox_max: int | None = typer.Option(
        None,
        "--outbox-max",
        metavar="N",
        help="Most messages the outbox holds before collection stops.",
    ),
    bucket_seconds: int | None = typer.Option(
        None, "--bucket-seconds", metavar="SECONDS", help="Aggregate bucket length (default 60)."
    ),
    drain_timeout: float | None = typer.Option(
        None,
        "--drain-timeout",
        metavar="SECONDS",
        help="Seconds to wait for the broker after a file ends (30).",
    ),
    model: str | None = typer.Option(
        None, "--model", metavar="MODEL", help="A zoo name or a model file."
    ),
    backend: str | None = typer.Option(
        None, "--backend", metavar="BACKEND", help="auto | onnxruntime | openvino | litert"
    ),
    accelerator: str | None = typer.Option(
        None,
        "--accelerator",
        metavar="DEVICE",
        help="OpenVINO device, onnxruntime provider or LiteRT delegate.",
    ),
    camera_id: str | None = typer.Option(
        None, "--camera-id", metavar="ID", help="Id of SOURCE's camera."
    ),
    stride: int | None = typer.Option(
        None, "--stride", min=1, metavar="N", help="Keep every n-th frame of a file."
    ),
    max_frames: int | None = typer.Option(
        None, "--max-frames", min=1, metavar="N", help="Stop a file after this many frames."
    ),
    realtime: bool | None = typer.Option(
        None,
        "--realtime/--as-fast-as-possible",
        help="Play a file at its own frame rate, as a camera would (default: as fast as possible).",
    ),
    power_source: str | None = typer.Option(
        None,
        "--power-source",
        metavar="SOURCE",
        help="Power telemetry: auto|rapl|hwmon|pi5|plug|serial|estimate|none (default none).",
    ),
    power_profile: str | None = typer.Option(
        None,
        "--power-profile",
        metavar="PROFILE",
        help="Device profile of the estimate (e.g. rpi4, n100).",
    ),
    power_serial_port: str | None = typer.Option(
        None,
        "--power-serial-port",
        metavar="PORT",
        help="Serial power monitor (for --power-source serial).",
    ),
    power_plug_topic: str | None = typer.Option(
        None,
        "--power-plug-topic",
        metavar="TOPIC",
        help="Smart plug's SENSOR topic (for --power-source plug).",
    ),
    models_dir: Path | None = typer.Option(
        None, "--models-dir", metavar="DIR", help=f"Model updates on: {_MODELS_DIR_HELP}"
    ),
    fleet_pubkey: Path | None = typer.Option(
        None, "--fleet-pubkey", metavar="FILE", help=_PUBKEY_HELP
    ),
    device_class: str | None = typer.Option(
        None, "--device-class", metavar="CLASS", help=_CLASS_HELP
    ),
    fleet_url: str | None = _FLEET_URL,
    fleet_token: str | None = _FLEET_TOKEN,
    fleet_token_file: Path | None = _FLEET_TOKEN_FILE,
    max_bundle_mb: int | None = _MAX_BUNDLE_MB,
    max_command_age: float | None = _MAX_COMMAND_AGE,
    confirm_frames: int | None = typer.Option(
        None,
        "--confirm-frames",
        metavar="N",
        help="Inferred frames a new model must run without error before it is kept (300).",
    ),
    reference_clip: Path | None = typer.Option(
        None,
        "--reference-clip",
        metavar="FILE",
        help="Health check: a new model must count this clip like the current one.",
    ),
    reference_line: list[str] = typer.Option(
        [],
        "--reference-line",
        metavar="X1,Y1,X2,Y2",
        help="A line of the reference clip (repeatable).",
    ),
    config: Path | None = typer.Option(
        None, "--config", metavar="FILE", help="A device config file (YAML)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object at the end (and no progress)."
    ),
) -> None:
    """Count on SOURCE (or every camera of --config), bucket, store in the outbox, publish.

    A file source ends after its last frame once the outbox is drained (exit 3 and a count
    of what remains when the broker did not acknowledge everything in --drain-timeout); on
    a terminal a bar per file shows how far it is.
    A live source runs until SIGTERM or Ctrl-C. With --power-source, the device's power is
    read about once a second and one power message per bucket goes through the same outbox.
    With --models-dir (and --fleet-pubkey, --device-class), an update agent takes part in
    the fleet's rollouts: new models are verified, checked, swapped in between two frames
    and kept once they ran --confirm-frames frames without error.
    """
    import threading

    from edgetally.models.broker_url import redact_url
    from edgetally.runtime.device import Device, install_stop_signals

    cfg = _cli_config(
        source,
        line,
        zone,
        {
            "site": site,
            "device": device_id,
            "broker": broker,
            "mqtt_password": mqtt_password,
            "mqtt_password_file": mqtt_password_file,
            "mqtt_ca": ca,
            "outbox": outbox,
            "outbox_max": outbox_max,
            "bucket_seconds": bucket_seconds,
            "drain_timeout_s": drain_timeout,
            "model": model,
            "backend": backend,
            "accelerator": accelerator,
        },
        {"id": camera_id, "stride": stride, "max_frames": max_frames, "realtime": realtime},
        config,
        {
            "source": power_source,
            "profile": power_profile,
            "serial_port": power_serial_port,
            "plug_topic": power_plug_topic,
        },
    )
    env_password = _env_password(
        cfg.broker,
        cfg.mqtt_password,
        cfg.mqtt_password_file,
        cfg.updates.mqtt_password if cfg.updates is not None else None,
    )
    if env_password is not None:
        cfg = cfg.model_copy(update={"mqtt_password": env_password})
    updates = _update_options(
        cfg,
        config,
        {
            "models_dir": models_dir,
            "fleet_pubkey": fleet_pubkey,
            "device_class": device_class,
            "fleet_url": fleet_url,
            "fleet_token": fleet_token,
            "fleet_token_file": fleet_token_file,
            "max_bundle_mb": max_bundle_mb,
            "max_command_age_s": max_command_age,
            "confirm_frames": confirm_frames,
            "reference_clip": reference_clip,
            "reference_lines": tuple(reference_line) or None,
        },
    )
    stop = threading.Event()
    came: list[int] = []
    restore = install_stop_signals(stop, came)
    summary = None
    try:
        with progress("frames", quiet=as_json) as told:
            if updates is None:
                report = Device(cfg, stop=stop, progress=told).run()
            else:
                from edgetally.runtime.updates.device import run_with_updates

                report, summary = run_with_updates(cfg, updates, stop, progress=told)
    finally:
        restore()
    if as_json:
        out = report.as_json()
        out["published"], out["waiting"] = report.published, report.remaining
        out["refused"] = report.refused  # of waiting: refused by the broker, kept
        if summary is not None:
            out["updates"] = summary.as_json()
        typer.echo(json.dumps(out))
    else:
        if summary is not None:
            recovered = f"; rolled back at start: {summary.recovered}" if summary.recovered else ""
            typer.echo(
                f"model {summary.model}: {summary.swaps} updates kept, "
                f"{len(summary.failures)} rolled back{recovered}"
            )
        for cam in report.cameras:
            resumed = f", resumed at frame {cam.resumed_at}" if cam.resumed_at is not None else ""
            typer.echo(
                f"camera {cam.camera}: {cam.frames} frames{resumed}, {cam.aggregates} aggregates"
            )
        for item in report.lines():
            typer.echo(f"  line {item['line']}: in {item['in']}, out {item['out']}")
        if report.power is not None:
            p = report.power
            kind = "measured" if p.measured else "estimated"
            typer.echo(f"power: {p.source} ({kind}), {p.buckets} buckets, {p.wh:.4f} Wh")
        waiting = (
            f"{report.remaining} still wait in the outbox {cfg.outbox}"
            + (f", {report.refused} of them refused by the broker" if report.refused else "")
            if report.remaining
            else f"none waits in the outbox {cfg.outbox}"
        )
        typer.echo(
            f"{report.published} messages published to {redact_url(cfg.broker)}, {waiting} "
            f"(next sequence {report.next_seq})"
        )
    if report.remaining:
        why = report.broker_problem or (
            f"the broker {redact_url(cfg.broker)} did not acknowledge them in time"
        )
        print(
            f"edgetally: warning: {report.remaining} messages still wait in the outbox "
            f"{cfg.outbox} ({why}); the next run sends them",
            file=sys.stderr,
        )
    if came:  # stopped by a signal: 130 for Ctrl-C, 143 for SIGTERM, as a shell says
        raise typer.Exit(128 + came[0])
    if report.remaining:
        raise typer.Exit(EXIT_UNDELIVERED)


def _env_password(
    broker: str, password: str | None, password_file: Path | None, *others: str | None
) -> str | None:
    """The broker password from EDGETALLY_MQTT_PASSWORD, when nothing else gives one (no
    flag, no file, no config key, none in the URL): the lowest of its sources."""
    import os

    from edgetally.models.broker_url import BrokerUrlError, parse_broker_url

    env = os.environ.get(MQTT_PASSWORD_ENV, "").strip()
    if (
        not env
        or password is not None
        or password_file is not None
        or any(o is not None for o in others)
    ):
        return None
    try:
        in_url = parse_broker_url(broker).password
    except BrokerUrlError:
        return None  # the login says what is wrong with the URL
    return env if in_url is None else None


def _update_options(cfg: Any, config_file: Path | None, flags: dict[str, Any]) -> Any:
    """The config file's ``updates`` section with the flags given on top, or None (off).
    The device token: ``--fleet-token``/``--fleet-token-file`` (a flag replaces the file's
    key), the file's ``fleet_token``/``fleet_token_file``, or EDGETALLY_FLEET_TOKEN."""
    import os

    from edgetally.runtime.config import UpdatesConfig, describe_error
    from edgetally.runtime.updates.device import UpdateOptions
    from pydantic import ValidationError

    data = cfg.updates.model_dump() if cfg is not None and cfg.updates is not None else {}
    if config_file is not None:  # paths in a file are relative to the file
        for key in ("models_dir", "fleet_pubkey", "reference_clip", "fleet_token_file"):
            if data.get(key) is not None and not Path(data[key]).is_absolute():
                data[key] = config_file.parent / data[key]
    given = {k: v for k, v in flags.items() if v is not None}
    if "fleet_token" in given or "fleet_token_file" in given:
        data.pop("fleet_token", None)
        data.pop("fleet_token_file", None)
    data.update(given)
    if not data:
        return None
    if data.get("fleet_token") is None and data.get("fleet_token_file") is None:
        env = os.environ.get(FLEET_TOKEN_ENV, "").strip()
        if env:
            data["fleet_token"] = env
    if "models_dir" not in data:
        raise ConfigError("update options need --models-dir (or updates.models_dir)")
    try:
        u = UpdatesConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"updates.{describe_error(exc, UpdatesConfig)}") from None
    reference = None
    if u.reference_clip is not None or u.reference_lines:
        from edgetally.runtime.updates.model_slot import ReferenceClip

        if u.reference_clip is None:
            raise ConfigError("--reference-line needs --reference-clip (or updates.reference_clip)")
        reference = ReferenceClip(u.reference_clip, u.reference_lines, u.reference_frames)
    return UpdateOptions(
        models_dir=u.models_dir,
        fleet_pubkey=u.fleet_pubkey,
        device_class=u.device_class,
        fleet_url=u.fleet_url,
        fleet_token=u.token(),
        confirm_frames=u.confirm_frames,
        precision=u.precision,
        reference=reference,
        max_bundle_bytes=u.max_bundle_mb << 20,
        max_command_age_s=u.max_command_age_s,
    )


@device_app.command("update-agent")
def update_agent(
    site: str = typer.Option(..., "--site", metavar="SITE", help="Site (shop) id."),
    device_id: str = typer.Option(..., "--device-id", metavar="ID", help="This device's id."),
    broker: str = typer.Option(
        "mqtt://127.0.0.1:1883",
        "--broker",
        metavar="URL",
        help="MQTT broker, mqtt://HOST:PORT or mqtts://.",
    ),
    mqtt_password: str | None = _MQTT_PASSWORD,
    mqtt_password_file: Path | None = _MQTT_PASSWORD_FILE,
    ca: Path | None = _CA,
    models_dir: Path = typer.Option(..., "--models-dir", metavar="DIR", help=_MODELS_DIR_HELP),
    fleet_pubkey: Path = typer.Option(..., "--fleet-pubkey", metavar="FILE", help=_PUBKEY_HELP),
    device_class: str = typer.Option(..., "--device-class", metavar="CLASS", help=_CLASS_HELP),
    backend: str = typer.Option(
        "onnxruntime",
        "--backend",
        metavar="BACKEND",
        help="The backend in bundle targets (and health checks).",
    ),
    precision: str = typer.Option(
        "fp32", "--precision", metavar="PRECISION", help="fp32 | fp16 | int8."
    ),
    fleet_url: str | None = _FLEET_URL,
    fleet_token: str | None = _FLEET_TOKEN,
    fleet_token_file: Path | None = _FLEET_TOKEN_FILE,
    max_bundle_mb: int | None = _MAX_BUNDLE_MB,
    max_command_age: float | None = _MAX_COMMAND_AGE,
) -> None:
    """Only the update agent, for a device whose counting runs elsewhere: take part in the
    fleet's rollouts, keeping MODELS_DIR/current on the newest healthy model, until SIGTERM
    or Ctrl-C."""
    import threading

    from edgetally.models.topics import check_id
    from edgetally.runtime.device import install_stop_signals
    from edgetally.runtime.updates.device import run_agent
    from edgetally.runtime.uplink.broker import broker_login

    check_id(site, "site")
    check_id(device_id, "device")
    mqtt_password = mqtt_password or _env_password(broker, mqtt_password, mqtt_password_file)
    login = broker_login(
        broker,
        site=site,
        device=device_id,
        password=mqtt_password,
        password_file=mqtt_password_file,
        ca_file=ca,
    )
    options = _update_options(
        None,
        None,
        {
            "models_dir": models_dir,
            "fleet_pubkey": fleet_pubkey,
            "device_class": device_class,
            "fleet_url": fleet_url,
            "fleet_token": fleet_token,
            "fleet_token_file": fleet_token_file,
            "precision": precision,
            "max_bundle_mb": max_bundle_mb,
            "max_command_age_s": max_command_age,
        },
    )
    stop = threading.Event()
    restore = install_stop_signals(stop)
    try:
        model = run_agent(
            login,
            site,
            device_id,
            options,
            stop,
            backend=backend,
            on_ready=lambda: typer.echo(
                f"update agent {site}/{device_id}: listening for rollouts on {login}"
            ),
        )
    finally:
        restore()
    typer.echo(f"update agent {site}/{device_id} stopped; model in use: {model or 'none'}")


def validate_config(
    file: Path = typer.Argument(..., metavar="FILE", help="A device config file (YAML)."),
) -> None:
    """Check a device config file; print what it describes or the key that is wrong."""
    from edgetally.models.broker_url import redact_url
    from edgetally.runtime.config import load_config

    cfg = load_config(file)
    cfg.broker_login()  # the password file and the CA are there
    lines = sum(len(c.lines) for c in cfg.cameras)
    zones = sum(len(c.zones) for c in cfg.cameras)
    typer.echo(
        f"OK {file}: site {cfg.site}, device {cfg.device}, {len(cfg.cameras)} cameras, "
        f"{lines} lines, {zones} zones, {cfg.bucket_seconds} s buckets, "
        f"broker {redact_url(cfg.broker)}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")
    app.command("validate-config")(validate_config)
