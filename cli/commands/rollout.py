"""`edgetally fleet rollout ...`, `edgetally fleet broker-config`, `edgetally fleet token`.

The rollout commands talk to a running fleet's HTTP API (``--url``, ``--token`` or the
environment variables ``EDGETALLY_FLEET_URL`` / ``EDGETALLY_TOKEN``). They are attached under
the ``fleet`` group with :func:`attach`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import typer
from edgetally.commands import CommandError

rollout_app = typer.Typer(help="Staged rollouts of signed model bundles.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens (roles: device, analyst, operator).", no_args_is_help=True)

_URL = typer.Option(
    "http://127.0.0.1:8080",
    "--url",
    envvar="EDGETALLY_FLEET_URL",
    metavar="URL",
    help="Fleet API.",
)
_TOKEN = typer.Option(
    None,
    "--token",
    envvar="EDGETALLY_TOKEN",
    metavar="TOKEN",
    help="Operator/analyst token; EDGETALLY_TOKEN or --token-file keeps it out of ps.",
)
_TOKEN_FILE = typer.Option(
    None, "--token-file", metavar="FILE", help="A file whose first line is the token."
)
_ROLLOUT_ID = typer.Argument(..., metavar="ROLLOUT_ID", help="The rollout.")


def _token(token: str | None, token_file: Path | None) -> str:
    from edgetally.commands.energy import token_from

    found = token_from(token, token_file)
    if not found:
        raise CommandError(
            "the fleet API wants a token: pass --token-file FILE or set EDGETALLY_TOKEN "
            "(or --token TOKEN, which ps shows)"
        )
    return found


def _call(method: str, url: str, token: str, path: str, **kw: Any) -> Any:
    import httpx
    from edgetally.models.redact import redact_url

    try:
        resp = httpx.request(
            method,
            url.rstrip("/") + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120.0,
            **kw,
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach the fleet API at {redact_url(url)}: {exc}") from None
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise CommandError(f"fleet API said {resp.status_code}: {str(detail)[:300]}")
    return resp.json()


@rollout_app.command("create")
def create(
    bundle: Path = typer.Argument(..., metavar="BUNDLE", help="Signed bundle file."),
    to: str = typer.Option(
        ..., "--to", metavar="DEVICES", help="Devices: site/device globs, comma-separated, or *."
    ),
    stages: str = typer.Option(
        "5%,25%,100%", "--stages", metavar="STAGES", help="Cumulative stages."
    ),
    success_ratio: float = typer.Option(
        1.0, "--success-ratio", metavar="SHARE", help="Healthy share to advance."
    ),
    failure_ratio: float = typer.Option(
        0.0, "--failure-ratio", metavar="SHARE", help="Failed share that halts."
    ),
    url: str = _URL,
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
) -> None:
    """Upload BUNDLE (the fleet verifies it) and start a staged rollout."""
    token = _token(token, token_file)
    try:
        data = bundle.read_bytes()
    except OSError as exc:
        raise CommandError(f"cannot read bundle {bundle}: {exc.strerror or exc}") from None
    ref = _call("PUT", url, token, "/bundles", content=data)
    body = {
        "bundle_sha256": ref["sha256"],
        "selector": to,
        "stages": stages,
        "success_ratio": success_ratio,
        "failure_ratio": failure_ratio,
    }
    r = _call("POST", url, token, "/rollouts", json=body)
    back = f" (a rollback from {ref['rollback_of']})" if ref.get("rollback_of") else ""
    typer.echo(
        f"rollout {r['id']}: {ref['name']} {ref['version']}{back} to {len(r['devices'])} devices"
    )


@rollout_app.command("status")
def status(
    rollout_id: str | None = typer.Argument(
        None, metavar="ROLLOUT_ID", help="One rollout (default: list all)."
    ),
    url: str = _URL,
    token: str | None = _TOKEN,
    token_file: Path | None = _TOKEN_FILE,
    as_json: bool = typer.Option(False, "--json", help="Print the full record as JSON."),
) -> None:
    """List rollouts, or show one with its stages and history."""
    token = _token(token, token_file)
    if rollout_id is None:
        for s in _call("GET", url, token, "/rollouts"):
            typer.echo(
                f"{s['id']}  {s['state']:<9} stage {s['stage']}  {s['bundle']}  "
                f"{s['healthy']}/{s['devices']} healthy, {s['failed']} failed"
            )
        return
    r = _call("GET", url, token, f"/rollouts/{rollout_id}")
    if as_json:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"{r['id']}: {r['state']}, stage {r['stage'] + 1} of {len(r['stages'])}")
    for e in r["history"]:
        typer.echo(f"  {e['at']}  {e['event']}: {e['detail']}")


def _verb(verb: str) -> None:
    @rollout_app.command(verb)
    def command(
        rollout_id: str = _ROLLOUT_ID,
        url: str = _URL,
        token: str | None = _TOKEN,
        token_file: Path | None = _TOKEN_FILE,
    ) -> None:
        r = _call("POST", url, _token(token, token_file), f"/rollouts/{rollout_id}/{verb}")
        typer.echo(f"{r['id']}: {r['state']}")

    command.__doc__ = f"{verb.capitalize()} a rollout."


for _v in ("pause", "resume", "abort"):
    _verb(_v)


def broker_config(
    out: Path = typer.Option(
        ..., "--out", metavar="DIR", help="Directory to write the configuration into."
    ),
    devices: str = typer.Option(
        ..., "--devices", metavar="SITE/DEVICE,...", help="The devices that may log in."
    ),
    port: int = typer.Option(8883, "--port", metavar="PORT", help="TLS listener port."),
    bind: str = typer.Option("0.0.0.0", "--bind", metavar="ADDRESS", help="Listener address."),
    hostname: list[str] = typer.Option(
        ["localhost"], "--hostname", metavar="HOST", help="Broker host names (repeatable)."
    ),
    run_as: str | None = typer.Option(
        None, "--run-as", metavar="USER", help="Mosquitto's `user` option."
    ),
    fleet_users: str = typer.Option(
        "fleet",
        "--fleet-users",
        metavar="USER,...",
        help="The fleet's users, one per fleet host: each gets USER, USER-status, "
        "USER-rollouts and USER-0 ... (one account per connection, one password).",
    ),
    fleet_workers: int = typer.Option(
        8,
        "--fleet-workers",
        metavar="N",
        help="Ingest worker accounts per fleet user: USER-0 ... USER-(N-1).",
    ),
) -> None:
    """Mosquitto config for a fleet: per-device passwords, ACL, demo CA and TLS; every
    client's id is its user name."""
    from edgetally.fleet.broker_config import generate_broker_config, parse_devices

    cfg = generate_broker_config(
        out,
        parse_devices(devices),
        port=port,
        bind=bind,
        hostnames=hostname,
        run_as=run_as,
        fleet_users=[u.strip() for u in fleet_users.split(",") if u.strip()],
        fleet_workers=fleet_workers,
    )
    typer.echo(f"wrote {cfg.config} ({len(cfg.device_passwords)} devices)")
    typer.echo(f"run: mosquitto -c {cfg.config}")
    typer.echo(f"passwords for provisioning: {cfg.directory / 'credentials.json'}")


@token_app.command("add")
def token_add(
    file: Path = typer.Option(
        ..., "--file", metavar="FILE", help="Token file (created mode 0600)."
    ),
    name: str = typer.Option(..., "--name", metavar="NAME", help="Who or what uses the token."),
    role: str = typer.Option(..., "--role", metavar="ROLE", help="device, analyst or operator."),
) -> None:
    """Create a token; it is printed once, the file keeps only its hash."""
    from edgetally.fleet.http.auth import ROLE_RANK, AuthError, add_token

    if role not in ROLE_RANK:
        raise AuthError(f"unknown role {role!r}: use device, analyst or operator")
    typer.echo(add_token(file, name, role))  # type: ignore[arg-type]  # checked against ROLE_RANK above


def attach(fleet_app: typer.Typer) -> None:
    """Put these commands under the ``fleet`` group."""
    fleet_app.add_typer(rollout_app, name="rollout")
    fleet_app.add_typer(token_app, name="token")
    fleet_app.command("broker-config")(broker_config)


def register(app: typer.Typer) -> None:
    # The `fleet` group belongs to commands/fleet.py, which calls attach(). Until that
    # module exists, provide the group here so the commands are reachable.
    if importlib.util.find_spec("edgetally.commands.fleet") is None:
        fleet_app = typer.Typer(help="The fleet manager.", no_args_is_help=True)
        attach(fleet_app)
        app.add_typer(fleet_app, name="fleet")
