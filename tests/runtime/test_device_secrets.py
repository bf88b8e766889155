"""The device's secrets (its broker password and its fleet token) come from a file or the
environment as well as from a flag, and never show: not in a config's or the update
options' repr, not in the process's command line as the README starts the update agent.
End to end against a closed fleet (TLS broker with logins, a rollout): the password from
EDGETALLY_MQTT_PASSWORD logs the agent in, the token from a file or EDGETALLY_FLEET_TOKEN
downloads the bundle."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from edgetally.commands.device import _update_options
from edgetally.runtime.config import load_config, parse_config
from edgetally.runtime.errors import ConfigError
from edgetally.runtime.updates.device import UpdateOptions

from tests.runtime.test_closed_fleet import (  # noqa: F401 (closed: a fixture)
    CLI,
    ClosedFleet,
    _announce,
    closed,
)
from tests.runtime.updates.updater_support import make_bundle
from tests.runtime.uplink.test_publisher import wait_until

SECRETS = ("brokerpw-in-url", "mqtt-pw-key", "plug-pw", "token-in-config", "updates-mqtt-pw")
CAMERA = {"id": "door", "source": "door.mp4", "lines": [{"id": "in", "points": [0, 0, 9, 9]}]}


def test_no_secret_in_a_device_config_or_the_update_options_repr() -> None:
    cfg = parse_config(
        {
            "site": "shop1",
            "device": "cam1",
            "broker": "mqtts://:brokerpw-in-url@fleet.lan:8883",
            "mqtt_password": "mqtt-pw-key",
            "power": {"source": "plug", "plug_broker": "mqtt://plug:plug-pw@plug.lan"},
            "updates": {
                "models_dir": "m",
                "fleet_pubkey": "k.pub",
                "device_class": "rpi5",
                "fleet_token": "token-in-config",
                "mqtt_password": "updates-mqtt-pw",
            },
            "cameras": [CAMERA],
        }
    )
    options = UpdateOptions(Path("m"), Path("k.pub"), "rpi5", fleet_token="token-in-config")
    shown = [repr(cfg), str(cfg), repr(cfg.updates), repr(cfg.power), repr(options)]
    for text in shown:
        for secret in SECRETS:
            assert secret not in text, (secret, text)
    assert "mqtts://:***@fleet.lan:8883" in repr(cfg) and "plug:***@plug.lan" in repr(cfg)
    assert options.fleet_token == "token-in-config"


def test_the_fleet_token_from_a_flag_a_file_a_config_key_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EDGETALLY_FLEET_TOKEN", raising=False)
    base = {"models_dir": tmp_path / "m", "fleet_pubkey": tmp_path / "k", "device_class": "x"}
    token_file = tmp_path / "device.token"
    token_file.write_text("from-the-file\n")
    assert _update_options(None, None, {**base, "fleet_token_file": token_file}).fleet_token == (
        "from-the-file"
    )
    monkeypatch.setenv("EDGETALLY_FLEET_TOKEN", "from-the-env")
    assert _update_options(None, None, dict(base)).fleet_token == "from-the-env"
    assert _update_options(None, None, {**base, "fleet_token": "flag"}).fleet_token == "flag"
    assert _update_options(None, None, {"fleet_token": None}) is None  # updates off: unread
    # in a config file, relative to it; a flag replaces it
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "cam.token").write_text("in-the-config-dir\n")
    yaml = tmp_path / "conf" / "device.yaml"
    yaml.write_text(
        "site: shop1\ndevice: cam1\ncameras:\n  - {id: door, source: door.mp4, lines: "
        "[{id: in, points: [0, 0, 9, 9]}]}\nupdates: {models_dir: m, fleet_pubkey: k.pub, "
        "device_class: x, fleet_token_file: cam.token}\n"
    )
    cfg = load_config(yaml)
    assert _update_options(cfg, yaml, {}).fleet_token == "in-the-config-dir"
    assert _update_options(cfg, yaml, {"fleet_token": "flag"}).fleet_token == "flag"
    with pytest.raises(ConfigError, match="give the fleet token once"):
        _update_options(None, None, {**base, "fleet_token": "a", "fleet_token_file": token_file})
    with pytest.raises(ConfigError, match=r"^updates\.fleet_token_file: cannot read the token"):
        _update_options(None, None, {**base, "fleet_token_file": tmp_path / "none"})


@pytest.mark.slow
@pytest.mark.parametrize("way", ["files", "environment"])
def test_an_update_agent_started_as_the_readme_shows_keeps_its_secrets_out_of_ps(
    way: str,
    closed: ClosedFleet,  # noqa: F811
) -> None:
    cf = closed
    password = cf.password("shop1/cam3")
    models = cf.tmp / f"cam3-{way}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGETALLY_")}
    args = [
        *CLI,
        "device",
        "update-agent",
        "--site",
        "shop1",
        "--device-id",
        "cam3",
        "--broker",
        f"mqtts://127.0.0.1:{cf.port}",
        "--ca",
        str(cf.ca),
        "--models-dir",
        str(models),
        "--fleet-pubkey",
        str(cf.pubkey),
        "--device-class",
        "sim",
    ]
    if way == "files":
        token_file = cf.tmp / "device.token"
        token_file.write_text(cf.device_token + "\n")
        args += [
            "--mqtt-password-file",
            str(cf.password_file("shop1/cam3")),
            "--fleet-token-file",
            str(token_file),
        ]
    else:
        env |= {"EDGETALLY_MQTT_PASSWORD": password, "EDGETALLY_FLEET_TOKEN": cf.device_token}
    agent = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert agent.stdout is not None
        assert "listening for rollouts" in agent.stdout.readline()  # logged in
        cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        assert password not in cmdline and cf.device_token not in cmdline, cmdline
        _announce(cf, "cam3")
        assert wait_until(lambda: "shop1/cam3" in cf.fleet._device_ids(), 30)
        service = cf.fleet.rollouts
        assert service is not None
        sha = service.add_bundle(make_bundle(cf.tmp, cf.key, f"model-{way}")).sha256
        rollout = service.create(sha, "shop1/cam3", "100%").id
        # completed: the bundle was downloaded with the device token
        assert wait_until(lambda: service.get(rollout).state == "completed", 120), service.get(
            rollout
        ).devices
        agent.send_signal(signal.SIGTERM)
        out, err = agent.communicate(timeout=60)
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert agent.returncode == 0, err
    assert password not in out + err and cf.device_token not in out + err
