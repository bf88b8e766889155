"""The README's command examples run as written.

Every command line of the README's ```sh blocks that starts with ``edgetally`` (an
``VAR=value`` prefix allowed; ``\\`` continuations joined, trailing ``# comments`` dropped)
must match one rule of :data:`RULES`: RUN (with the setup it needs) or SKIP (with the
reason). A README command that no rule matches fails the test, so a new example has to be
classified here. The RUN commands run in README order in one prepared working directory,
so that earlier ones (``bundle keygen``, ``bundle create``, ``fleet token add``...) make
what later ones read; each must exit 0, and a ``--json`` one must print JSON.

The working directory sits beside a link ``shared`` to the development data, so the
README's ``../shared/...`` paths resolve as they do from the repository root. What the
test changes in a command, it says in the rule: a fixed loopback address (a broker on
``127.0.0.1:1883``, an API on ``127.0.0.1:8080``) becomes a free port of the test's own
Mosquitto or fleet; a placeholder (``FILE``, ``DIR``, ``VIDEO``, ``ID``) becomes a small
real one; ``[optional parts]`` are all given; ``a|b|c`` runs each.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from edgetally import ports
from edgetally.ports import free_port

from tests.conftest import REPO, SHARED, VTEST, Broker

README = REPO / "README.md"
START = re.compile(r"(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*edgetally\s")


# --------------------------------------------------------------------------- parsing


def strip_comment(line: str) -> str:
    """``line`` without a trailing shell comment (a ``#`` after a blank, outside quotes)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def readme_commands(text: str) -> list[str]:
    """The ``edgetally ...`` command lines of the ```sh blocks of ``text``, in order."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M):
        pending = ""
        for raw in block.splitlines():
            line = strip_comment(pending + raw.strip() if pending else raw.strip())
            if line.endswith("\\"):
                pending = line[:-1].rstrip() + " "
                continue
            pending = ""
            if START.match(line):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


# --------------------------------------------------------------------------- the setup


@dataclass
class Workdir:
    """The prepared working directory, and the services some commands talk to."""

    root: Path
    work: Path  # the commands' working directory; ../shared is the development data
    aux: Path  # the test's own files, outside the working directory
    broker: Broker
    stack: ExitStack
    env: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)  # what earlier commands printed
    fleets: dict[str, Any] = field(default_factory=dict)

    def has(self, need: str) -> str | None:
        """Why ``need`` is missing here, or None."""
        paths = {
            "vtest": VTEST,
            "models": SHARED / "models" / "yolox_nano.onnx",
            "footfall": SHARED / "data" / "footfall" / "tud_stadtmitte",
            "coco20": SHARED / "data" / "calibration" / "coco20",
            "esc10": SHARED / "data" / "audio" / "esc10" / "audio",
            "shelf": SHARED / "data" / "shelf" / "void_dev",
        }
        path = paths[need]
        return None if path.exists() else f"missing {path.name} (development data)"

    # Two fleets run in this process, each on its own copy of the fleet data: the README
    # also runs `fleet serve` and `fleet query --db` on fleet.duckdb itself, which a
    # serving fleet would lock.
    def fleet(self, name: str) -> Any:
        """``open``: an API without tokens (as `fleet serve --http 127.0.0.1:8080`);
        ``rollouts``: tokens and rollouts, pinned to the key the README's `bundle keygen`
        wrote, its operator and analyst tokens in :attr:`values`."""
        if name in self.fleets:
            return self.fleets[name]
        from edgetally.fleet.config import FleetConfig
        from edgetally.fleet.http.auth import add_token
        from edgetally.fleet.server import FleetServer

        db = self.aux / f"{name}.duckdb"
        fill_fleet(db)
        options: dict[str, Any] = {}
        if name == "rollouts":
            tokens = self.aux / "rollout-tokens.json"
            self.values["operator"] = add_token(tokens, "ops", "operator")
            self.values["analyst"] = add_token(tokens, "ana", "analyst")
            key = self.work / "keys" / "fleet.key"
            assert key.is_file(), "the README's `bundle keygen` should have written it"
            options = {
                "tokens_file": str(tokens),
                "rollouts_dir": str(self.aux / "rollouts"),
                "fleet_key": str(key),
            }
        config = FleetConfig.of(
            self.broker.url, str(db), "127.0.0.1:0", client_id=f"readme-{name}", **options
        )
        server = self.stack.enter_context(FleetServer(config))
        self.fleets[name] = server
        return server


HOUR = timedelta(hours=1)
FLEET_DAYS = (datetime(2025, 3, 17, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))


def fill_fleet(db: Path) -> None:
    """A small fleet in a DuckDB store: site shop-1, device box-1 (line door, zone till,
    power) hourly over 2025-03-16..18 and 2026-11-01..03, the days the README asks about,
    plus shop1/cam1 and shop1/cam2 for the rollouts, and one dead letter."""
    from edgetally.fleet.store.connect import open_store
    from edgetally.fleet.store.records import DeadLetter, IngestBatch, Seen
    from edgetally.models.wire import Aggregate, DeviceStatus, PowerReading

    aggs: list[Aggregate] = []
    power: list[PowerReading] = []
    seq = 0
    for day in FLEET_DAYS:
        for h in range(-24, 48):
            start = day + h * HOUR
            busy = 0 if start.hour < 8 or start.hour > 20 else 5 + (start.hour * 7) % 11
            common = {
                "site": "shop-1",
                "device": "box-1",
                "source": "door",
                "start": start,
                "seconds": 3600,
            }
            seq += 1
            aggs.append(
                Aggregate.model_validate(
                    {**common, "seq": seq, "line": "door", "in_count": busy, "out_count": busy}
                )
            )
            seq += 1
            dwell = {"count": busy, "median_s": 300.0, "p90_s": 900.0} if busy else None
            aggs.append(
                Aggregate.model_validate(
                    {
                        **common,
                        "seq": seq,
                        "line": "till",
                        "occupancy_mean": busy / 4,
                        "occupancy_peak": busy // 2,
                        "dwell": dwell,
                    }
                )
            )
            power.append(
                PowerReading.model_validate(
                    {
                        "site": "shop-1",
                        "device": "box-1",
                        "seq": seq,
                        "source": "estimate",
                        "start": start,
                        "seconds": 3600,
                        "wh": 6.0 + busy / 10,
                        "mean_w": 6.0 + busy / 10,
                        "measured": False,
                    }
                )
            )
    now = datetime.now(UTC)
    devices = [("shop-1", "box-1"), ("shop1", "cam1"), ("shop1", "cam2")]
    statuses = tuple(
        DeviceStatus.model_validate(
            {
                "site": s,
                "device": d,
                "at": now,
                "state": "online",
                "model": "yolox-nano",
                "backend": "onnxruntime",
            }
        )
        for s, d in devices
    )
    dead = DeadLetter(now, "edgetally/v1/shop-1/box-1/agg", "invalid JSON", 3, "{{{")
    store = open_store(str(db))
    try:
        store.write(
            IngestBatch(
                aggregates=tuple(aggs),
                statuses=statuses,
                power=tuple(power),
                seen=tuple(Seen(s, d, now) for s, d in devices),
                dead=(dead,),
                received_at=now,
            )
        )
    finally:
        store.close()


def write_clip(path: Path, frames: int) -> None:
    """The first ``frames`` frames of vtest.avi as an mp4 (a short camera clip)."""
    import cv2

    cap = cv2.VideoCapture(str(VTEST))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    writer: Any = None
    try:
        for _ in range(frames):
            ok, frame = cap.read()
            if not ok:
                break
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
            writer.write(frame)
    finally:
        cap.release()
        if writer is not None:
            writer.release()


def prepare(wd: Workdir) -> None:
    """What the README takes for granted in its working directory."""
    work = wd.work
    fill_fleet(work / "fleet.duckdb")
    # the model a bundle ships, and the older one signed again as a rollback: YOLOX-Nano,
    # or stand-in bytes without the development data (signing reads any file)
    model = SHARED / "models" / "yolox_nano.onnx"
    for name in ("det.onnx", "det-v1.onnx"):
        if model.is_file():
            shutil.copy(model, work / name)
        else:
            (work / name).write_bytes(b"a stand-in model" * 64)
    coco = SHARED / "data" / "calibration" / "coco20"
    if coco.is_dir():
        shutil.copytree(coco, work / "images")
    if VTEST.exists():
        write_clip(work / "shop.mp4", 40)


# --------------------------------------------------------------------------- the rules


Forms = Callable[[str, Workdir], list[str]]


@dataclass(frozen=True)
class Rule:
    pattern: str  # re.match against the command line
    skip: str | None = None  # SKIP: why
    setup: str = ""  # RUN: what the test prepares or changes, in words
    needs: tuple[str, ...] = ()  # development data it reads (Workdir.has)
    forms: Forms | None = None  # the command lines to run (default: the line itself)
    serve: bool = False  # a server: start it, see it listen, stop it with SIGTERM
    after: Callable[[Workdir, str], None] | None = None  # checks, or values for later rules


def skip(pattern: str, reason: str) -> Rule:
    return Rule(pattern, skip=reason)


def run(pattern: str, setup: str = "", **kw: Any) -> Rule:
    return Rule(pattern, setup=setup, **kw)


def optional_given(cmd: str) -> str:
    """``cmd`` with every ``[optional part]`` given."""
    return re.sub(r"\[([^\]|]*)\]", r"\1", cmd)


def sub(*pairs: tuple[str, Callable[[Workdir], str]]) -> Forms:
    """The command with ``[optional parts]`` given and each literal replaced."""

    def forms(cmd: str, wd: Workdir) -> list[str]:
        cmd = optional_given(cmd)
        for old, new in pairs:
            assert old in cmd, f"{old!r} is no longer in the README command {cmd!r}"
            cmd = cmd.replace(old, new(wd))
        return [cmd]

    return forms


def broker(wd: Workdir) -> str:
    return f"127.0.0.1:{wd.broker.port}"


def fleet_url(name: str) -> Callable[[Workdir], str]:
    return lambda wd: str(wd.fleet(name).http_url)


def rollout_env(wd: Workdir, cmd: str) -> str:
    """``cmd`` with the fleet in EDGETALLY_FLEET_URL and an operator token in
    EDGETALLY_TOKEN, where the README's rollout commands take them from."""
    url, token = wd.fleet("rollouts").http_url, wd.values["operator"]
    return f"EDGETALLY_FLEET_URL={url} EDGETALLY_TOKEN={token} {cmd}"


def rollout_create(cmd: str, wd: Workdir) -> list[str]:
    return [rollout_env(wd, cmd)]


def rollout_id(wd: Workdir, out: str) -> None:
    """`rollout create` prints ``rollout ID: ...``; later rules use the newest ID."""
    found = re.match(r"rollout (\S+):", out)
    assert found, f"no rollout id in {out!r}"
    wd.values["rollout"] = found.group(1)


def rollout_status(cmd: str, wd: Workdir) -> list[str]:
    forms = [cmd.replace(" [ID]", ""), cmd.replace("[ID]", wd.values["rollout"])]
    return [rollout_env(wd, form) for form in forms]


def rollout_actions(cmd: str, wd: Workdir) -> list[str]:
    head, actions, _id = cmd.rsplit(" ", 2)
    return [
        rollout_env(wd, f"{head} {action} {wd.values['rollout']}") for action in actions.split("|")
    ]


def energy_yaml(cmd: str, wd: Workdir) -> list[str]:
    """``cmd`` with an energy.yaml in the working directory."""
    (wd.work / "energy.yaml").write_text(
        "accounting: both\n"
        "defaults:\n  hours_per_day: 12\n"
        "  cameras: [{id: door, bitrate_mbps: 4.0}, {bitrate_mbps: 2.0}]\n"
    )
    return [cmd]


def analyst_token_file(cmd: str, wd: Workdir) -> list[str]:
    """``cmd`` against the fleet with tokens, its analyst token in analyst.token."""
    url = wd.fleet("rollouts").http_url
    (wd.work / "analyst.token").write_text(wd.values["analyst"] + "\n")
    return [cmd.replace("http://127.0.0.1:8080", str(url))]


def file_form(placeholder: str, make: Callable[[Workdir], str]) -> Forms:
    def forms(cmd: str, wd: Workdir) -> list[str]:
        return [optional_given(cmd).replace(placeholder, make(wd))]

    return forms


def an_esc10_clip(wd: Workdir) -> str:
    return str(sorted((SHARED / "data" / "audio" / "esc10" / "audio").glob("*.wav"))[0])


def a_few_shelf_photos(wd: Workdir) -> str:
    """DIR: 12 photos of the development shelf set with their YOLO labels."""
    src, dst = SHARED / "data" / "shelf" / "void_dev", wd.work / "shelf-photos"
    (dst / "images").mkdir(parents=True)
    (dst / "labels").mkdir()
    for image in sorted((src / "images").iterdir())[:12]:
        shutil.copy(image, dst / "images" / image.name)
        label = src / "labels" / f"{image.stem}.txt"
        if label.is_file():
            shutil.copy(label, dst / "labels" / label.name)
    return "shelf-photos"


def serve_forms(cmd: str, wd: Workdir) -> list[str]:
    """`fleet serve` on a free port and the test's broker. With every optional part given,
    `--broker-password-file` needs the broker user in the URL (as the closed-fleet example
    has it, `mqtts://fleet@...`): the test's anonymous Mosquitto takes `fleet@`. fleet.pw
    is made as the README makes it: `jq -r .fleet.password broker/credentials.json`."""
    cmd = optional_given(cmd).replace("127.0.0.1:8080", f"127.0.0.1:{free_port()}")
    if "--broker-password-file fleet.pw" in cmd:
        creds = json.loads((wd.work / "broker" / "credentials.json").read_text())
        (wd.work / "fleet.pw").write_text(creds["fleet"]["password"] + "\n")
        cmd = cmd.replace("mqtt://127.0.0.1:1883", f"mqtt://fleet@{broker(wd)}")
    return [cmd.replace("127.0.0.1:1883", broker(wd))]


def exists(*paths: str) -> Callable[[Workdir, str], None]:
    def check(wd: Workdir, _out: str) -> None:
        for p in paths:
            assert (wd.work / p).exists(), f"the README says this writes {p}"

    return check


ZONE_KEYS = {
    "zone",
    "zone_id",
    "visits",
    "occupancy_mean",
    "occupancy_max",
    "dwell_p50_s",
    "dwell_p90_s",
}


def zones_reported(wd: Workdir, out: str) -> None:
    (zone,) = json.loads(out)["zones"]
    assert set(zone) == ZONE_KEYS, zone
    assert zone["zone"] == [300, 200, 500, 200, 500, 350, 300, 350]


def zone_events_written(wd: Workdir, _out: str) -> None:
    rows = [json.loads(r) for r in (wd.work / "visits.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "enter" for r in rows), "no zone entry in 40 frames"


def review_written(wd: Workdir, _out: str) -> None:
    strips = sorted((wd.work / "review").glob("strips-*.png"))
    assert strips, "no space-time strips written"
    reference = json.loads((wd.work / "review" / "reference.json").read_text())
    assert reference == {"line": [200, 140, 200, 300], "events": []}


def zone_visits_scored(wd: Workdir, out: str) -> None:
    scored = json.loads(out)
    assert scored["zone_visits"]["f1"] == 1.0  # the same clip and model: its own truth
    assert scored["zone_count_accuracy"] == 1.0


CLOSED_FLEET = "tests/runtime/test_closed_fleet.py"
RULES: list[Rule] = [
    # ---- counting footfall
    run(
        r"edgetally snapshot /usr/share/doc/opencv-doc/examples/data/vtest\.avi ",
        needs=("vtest",),
        after=exists("frame.png"),
    ),
    run(
        r"edgetally count /usr/share/doc/opencv-doc/examples/data/vtest\.avi --zone ",
        "shop.mp4 (40 frames of vtest.avi) for the whole clip; the zone's keys checked",
        needs=("vtest",),
        forms=sub(("/usr/share/doc/opencv-doc/examples/data/vtest.avi", lambda wd: "shop.mp4")),
        after=zones_reported,
    ),
    skip(
        r"edgetally count /usr/share/doc/opencv-doc/examples/data/vtest\.avi ",
        "all 795 frames of vtest.avi take 15-30 s here; the same clip and lines are counted "
        "in tests/test_cli_footfall.py::test_the_default_model_counts_the_long_clip_right_"
        "event_by_event and the JSON's keys checked by "
        "test_count_prints_exactly_the_documented_json",
    ),
    skip(
        r"edgetally eval /usr/share/doc/opencv-doc/examples/data/vtest\.avi --no-gate "
        r"--reference benchmarks/data/vtest/",
        "all 795 frames of vtest.avi: tests/test_cli_footfall.py::test_the_default_model_"
        "counts_the_long_clip_right_event_by_event runs eval with all eight references",
    ),
    run(
        r"edgetally review VIDEO --line 200,140,200,300 --out review/( --at 184 --at 310)?$",
        "VIDEO: shop.mp4 (40 frames of vtest.avi; the --at frames are past its end, so no crop "
        "grid: tests/test_cli_review.py draws one)",
        needs=("vtest",),
        forms=sub(("VIDEO", lambda wd: "shop.mp4")),
        after=review_written,
    ),
    skip(
        r"edgetally count VIDEO --line 200,140,200,300 --events crossings\.jsonl ",
        "placeholders the user fills in (VIDEO); --events and eval --reference on what it "
        "wrote run in tests/test_cli_footfall.py::test_count_events_round_trip_through_eval",
    ),
    run(
        r"edgetally count VIDEO --zone 300,200,500,200,500,350,300,350 --events visits\.jsonl$",
        "VIDEO: shop.mp4 (40 frames of vtest.avi)",
        needs=("vtest",),
        forms=sub(("VIDEO", lambda wd: "shop.mp4")),
        after=zone_events_written,
    ),
    run(
        r"edgetally eval VIDEO --zone-reference visits\.jsonl --json$",
        "VIDEO: shop.mp4, scored against what the count before wrote",
        needs=("vtest",),
        forms=sub(("VIDEO", lambda wd: "shop.mp4")),
        after=zone_visits_scored,
    ),
    skip(
        r"edgetally count VIDEO --line \.\.\. --annotate ",
        "placeholders the user fills in (VIDEO, --line ...); --annotate runs in "
        "tests/test_cli_footfall.py::test_annotate_writes_a_video_and_snapshot_a_png",
    ),
    run(
        r"edgetally models (list|show yolox-nano|verify)$",
        "EDGETALLY_MODEL_DIRS names the development models",
    ),
    run(r"edgetally eval \.\./shared/data/footfall/", needs=("footfall",)),
    # ---- shelf
    run(r"edgetally shelf demo$"),
    run(
        r"edgetally shelf eval DIR --json$",
        "DIR: 12 development shelf photos and labels",
        needs=("shelf",),
        forms=file_form("DIR", a_few_shelf_photos),
    ),
    skip(
        r"edgetally shelf eval DIR --json --scorer detector --model (gaps|products)\.onnx",
        "needs a trained gap or product detector, which does not ship (the README says "
        "so); the detector scorer's CLI runs in tests/runtime/shelf/test_shelf_detector.py"
        "::test_the_cli_scores_a_zoo_detector_on_a_labelled_folder",
    ),
    skip(
        r"edgetally shelf train \.\./shared/data/shelf/void_train/images ",
        "trains for about 30 minutes on the development photos; tests/quantize/"
        "test_shelf_train.py trains through the same code on rendered shelves",
    ),
    skip(
        r"edgetally (shelf eval \.\./shared/data/shelf/void_dev --scorer detector --model|"
        r"quantize) gaps/shelf-gaps\.onnx|edgetally shelf eval \.\./shared/data/shelf/void_dev "
        r"--scorer detector --model gaps/",
        "needs the model shelf train writes (no trained gap model ships: the photos' license "
        "is unknown); tests/quantize/test_shelf_train.py scores one through the zoo",
    ),
    # ---- audio
    run(
        r"edgetally audio analyze FILE \[--bucket-seconds 60\] --json$",
        "FILE: one ESC-10 clip of the development data",
        needs=("esc10",),
        forms=file_form("FILE", an_esc10_clip),
    ),
    skip(r"edgetally audio live ", "needs a microphone (and placeholders N, S)"),
    # ---- quantize
    run(
        r"edgetally quantize yolox-nano --calib images/ --format openvino --out int8/ --json$",
        "images/: the 20 development COCO calibration images",
        needs=("models", "coco20"),
        after=exists("int8/yolox_nano-int8.xml", "int8/yolox_nano-int8.xml.model.json"),
    ),
    skip(
        r"edgetally quantize yolox-nano --calib images/ --format onnx --out int8/ --eval ",
        "about 50 s here (NNCF's ONNX model, then FP32 and INT8 counting all 179 frames); "
        "the ONNX quantizer runs in tests/quantize/test_onnx_int8.py, the gate in "
        "tests/quantize/test_gate_units.py and the --eval/--line arguments in "
        "tests/quantize/test_quantize.py::test_cli_bad_input_is_one_line_without_traceback",
    ),
    skip(
        r"edgetally quantize yolox-nano --calib store_cam\.mp4 --calib-stride 10 ",
        "the user's own footage (store_cam.mp4), and a second 15-30 s quantization; video "
        "calibration with a stride runs in tests/quantize/test_data.py"
        "::test_calibration_from_a_sequence_takes_every_nth_frame",
    ),
    run(
        r"edgetally count VIDEO --model int8/yolox_nano-int8\.xml --line \.\.\.$",
        "the model the quantize example wrote; VIDEO: 40 frames of vtest.avi, --line ...: one line",
        needs=("vtest", "models", "coco20"),
        forms=sub(
            ("VIDEO", lambda wd: "shop.mp4"), ("--line ...", lambda wd: "--line 200,140,200,300")
        ),
    ),
    # ---- doctor
    run(r"edgetally doctor( --json| --no-load-delegates)?$"),
    # ---- bundles and rollouts
    run(
        r"edgetally bundle keygen --out keys/ *$", after=exists("keys/fleet.key", "keys/fleet.pub")
    ),
    run(
        r"edgetally bundle create det(-v1)?\.onnx --key keys/fleet\.key ",
        "det.onnx and det-v1.onnx: copies of yolox_nano.onnx (stand-in bytes without the "
        "development data)",
    ),
    run(
        r"edgetally bundle verify det-2\.bundle --pubkey keys/fleet\.pub "
        r"\[--target onnxruntime:int8:rpi5\]$",
        "with its optional --target",
        forms=sub(),
    ),
    run(
        r"edgetally fleet rollout create det-(1-back|2)\.bundle --to 'shop1/\*'",
        "a fleet of the test with --rollouts (its address in EDGETALLY_FLEET_URL, an "
        "operator token in EDGETALLY_TOKEN) that knows shop1/cam1 and shop1/cam2",
        forms=rollout_create,
        after=lambda wd, out: rollout_id(wd, out),
    ),
    run(
        r"edgetally fleet rollout status \[ID\]$",
        "both forms, ID: the rollout the last create made",
        forms=rollout_status,
    ),
    run(
        r"edgetally fleet rollout pause\|resume\|abort ID$",
        "each action in turn on the rollout the last create made",
        forms=rollout_actions,
    ),
    # ---- a closed fleet
    run(
        r"edgetally fleet broker-config --out broker/ --devices shop1/cam1,shop1/cam2 ",
        after=exists("broker/mosquitto.conf", "broker/credentials.json", "broker/ca.crt"),
    ),
    run(
        r"edgetally fleet token add --file tokens\.json --name alice --role analyst$",
        after=exists("tokens.json"),
    ),
    skip(
        r"edgetally fleet serve --broker mqtts://fleet@fleet\.lan:8883 ",
        f"a TLS broker at fleet.lan:8883 (its certificate names that host); {CLOSED_FLEET} "
        "runs a fleet against the broker broker-config writes",
    ),
    skip(
        r"edgetally device run door\.mp4 .*--broker mqtts://fleet\.lan:8883 ",
        f"a TLS broker at fleet.lan:8883 and the user's door.mp4; {CLOSED_FLEET}"
        "::test_device_publishes_with_its_own_login_every_bucket_once runs this command "
        "against the broker broker-config writes",
    ),
    skip(
        r"edgetally device run --config device\.yaml --models-dir /var/lib/",
        "placeholders the user fills in (device.yaml, DEVICE_TOKEN, /var/lib/..., "
        "https://fleet.example); a device in rollouts runs in "
        "tests/runtime/updates/test_device_updates.py",
    ),
    # ---- the device
    run(
        r"edgetally device run shop\.mp4 .*--broker mqtt://127\.0\.0\.1:1883 ",
        "shop.mp4: 40 frames of vtest.avi; the broker: the test's Mosquitto on a free port",
        needs=("vtest",),
        forms=sub(("127.0.0.1:1883", broker)),
        after=exists("outbox.db"),
    ),
    # ---- the fleet manager
    run(
        r"edgetally fleet serve --broker mqtt://127\.0\.0\.1:1883 --db fleet\.duckdb "
        r"--http 127\.0\.0\.1:8080( \[.*\])?$",
        "the test's Mosquitto and a free port; every optional part given (fleet.pw from "
        "broker/credentials.json as the README's jq line makes it; the broker URL gains the "
        "user fleet@, which --broker-password-file needs); started, seen listening, stopped "
        "with SIGTERM",
        serve=True,
        forms=serve_forms,
    ),
    run(
        r"edgetally fleet query (traffic|dead-letters|events|shelf|audio|energy) --db "
        r"fleet\.duckdb ",
        "fleet.duckdb: site shop-1, device box-1 on the README's days",
    ),
    run(
        r"edgetally fleet query dwell --db fleet\.duckdb --format parquet --output dwell\.parquet$",
        after=exists("dwell.parquet"),
    ),
    run(
        r"edgetally fleet query (occupancy|devices) --api http://127\.0\.0\.1:8080( |$)",
        "the API: a fleet of the test without tokens on a free port",
        forms=sub(("http://127.0.0.1:8080", fleet_url("open"))),
    ),
    skip(
        r"edgetally fleet query traffic --db postgresql://fleet@db\.example:5432/",
        "a PostgreSQL server at a placeholder host (db.example); the store's queries run on "
        "PostgreSQL in tests/fleet/store/test_fleet_store.py and the query command in "
        "tests/fleet/http/test_fleet_api.py",
    ),
    skip(
        r"edgetally fleet serve --role (api|ingest) (--workers 4 )?--db postgresql://fleet@db\.example:5432/",
        "a PostgreSQL server at a placeholder host (db.example); tests/fleet/test_scale_out.py "
        "runs the api role and ingest workers (a pool of worker processes too) on a test "
        "PostgreSQL and Mosquitto, tests/fleet/rollout/test_rollout_records.py two api "
        "processes with rollouts in the database, tests/fleet/test_read_replica.py the api "
        "with --read-url on a streaming standby",
    ),
    run(
        r"EDGETALLY_TOKEN=\.\.\. edgetally fleet query traffic --api http://fleet\.lan:8080 ",
        "the fleet: the test's fleet with tokens on a free port; ...: an analyst token",
        forms=sub(
            ("http://fleet.lan:8080", fleet_url("rollouts")),
            ("EDGETALLY_TOKEN=...", lambda wd: f"EDGETALLY_TOKEN={wd.values['analyst']}"),
        ),
    ),
    # ---- power and energy
    run(r"edgetally power read --seconds 5 --json$"),
    run(r"edgetally energy (baseline|regions)( |$)"),
    run(
        r"edgetally energy report --db fleet\.duckdb --site shop-1 ",
        "fleet.duckdb: box-1's estimated power in November 2026",
    ),
    run(
        r"edgetally energy report --db fleet\.duckdb --energy-config energy\.yaml ",
        "energy.yaml: an energy config (12 h a day, two cameras, one of them named)",
        forms=energy_yaml,
    ),
    run(
        r"EDGETALLY_TOKEN=\.\.\. edgetally energy report --api http://127\.0\.0\.1:8080 ",
        "the fleet: the test's fleet with tokens on a free port; ...: an analyst token",
        forms=sub(
            ("http://127.0.0.1:8080", fleet_url("rollouts")),
            ("EDGETALLY_TOKEN=...", lambda wd: f"EDGETALLY_TOKEN={wd.values['analyst']}"),
        ),
    ),
    run(
        r"edgetally fleet query energy --api http://127\.0\.0\.1:8080 --token-file "
        r"analyst\.token$",
        "the fleet: the test's fleet with tokens on a free port; analyst.token: its analyst token",
        forms=analyst_token_file,
    ),
    # ---- ARM boards
    skip(
        r"edgetally quantize yolox-nano --calib images/ --format tflite --out int8/$",
        "needs TensorFlow and onnx2tf (edgetally[tflite], about 2 GB), not installed here; "
        "tests/quantize/test_tflite.py::test_full_integer_tflite_runs_in_litert_through_the_"
        "detector runs it where they are, and test_without_the_extra_tflite_is_a_one_line_"
        "error_naming_it where not",
    ),
    skip(
        r"edgetally count VIDEO --model yolox_nano-int8_vela\.tflite --backend litert "
        r"--device /usr/lib/libethosu_delegate\.so ",
        "an i.MX 93 with NXP's Ethos-U delegate and a Vela-compiled model; a model through a "
        "delegate library runs in tests/runtime/test_arm_boards.py::test_a_model_runs_"
        "through_a_stand_in_delegate_with_the_same_outputs and the missing library's one "
        "line in test_a_missing_delegate_library_is_one_line_naming_what_installs_it",
    ),
]


def rule_for(cmd: str) -> Rule | None:
    for rule in RULES:
        if re.match(rule.pattern, cmd):
            return rule
    return None


# --------------------------------------------------------------------------- running


def split(cmd: str) -> tuple[dict[str, str], list[str]]:
    """(VAR=value prefixes, argv after ``edgetally``)."""
    words = shlex.split(cmd)
    env = {}
    while "=" in words[0] and words[0] != "edgetally":
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[0] == "edgetally", cmd
    return env, words[1:]


def run_once(wd: Workdir, cmd: str, rule: Rule) -> str:
    extra, args = split(cmd)
    argv = [sys.executable, "-m", "edgetally", *args]
    env = {**wd.env, **extra}
    if rule.serve:
        return serve_once(wd, cmd, argv, env)
    done = subprocess.run(
        argv, cwd=wd.work, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, (
        f"README command failed (exit {done.returncode}): {cmd}\n{done.stderr[-3000:]}"
    )
    if "--json" in args:
        try:
            json.loads(done.stdout)
        except ValueError as exc:
            raise AssertionError(f"{cmd}: --json printed no JSON: {done.stdout[:500]!r}") from exc
    return done.stdout


def serve_once(wd: Workdir, cmd: str, argv: list[str], env: dict[str, str]) -> str:
    port = int(argv[argv.index("--http") + 1].rsplit(":", 1)[1])
    log = wd.aux / f"serve-{port}.log"
    with log.open("w") as err:
        proc = subprocess.Popen(argv, cwd=wd.work, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if ports.wait_for_port(port, 0.2):
                break
        assert proc.poll() is None, f"README command ended at once: {cmd}\n{log.read_text()}"
        assert ports.wait_for_port(port, 0.1), f"nothing listens on {port}: {cmd}"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, f"README server did not stop cleanly (exit {rc}): {cmd}\n{log.read_text()}"
    return ""


@pytest.fixture
def workdir(tmp_path: Path, mosquitto: Broker) -> Iterator[Workdir]:
    root = tmp_path / "root"
    work, aux = root / "work", tmp_path / "aux"
    work.mkdir(parents=True)
    aux.mkdir()
    if SHARED.is_dir():
        (root / "shared").symlink_to(SHARED, target_is_directory=True)
    env = dict(os.environ)
    env.pop("EDGETALLY_TOKEN", None)
    env.pop("EDGETALLY_FLEET_URL", None)
    if (SHARED / "models").is_dir():
        env["EDGETALLY_MODEL_DIRS"] = str(SHARED / "models")
    with ExitStack() as stack:
        wd = Workdir(root, work, aux, mosquitto, stack, env)
        prepare(wd)
        yield wd


def test_every_readme_command_is_classified() -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 20
    unmatched = [c for c in commands if rule_for(c) is None]
    assert not unmatched, (
        "README commands no rule of tests/test_readme_commands.py classifies (add a RUN or a "
        "SKIP rule):\n" + "\n".join(unmatched)
    )
    used = {id(rule_for(c)) for c in commands}
    stale = [r.pattern for r in RULES if id(r) not in used]
    assert not stale, f"rules that match no README command any more: {stale}"


@pytest.mark.slow
def test_readme_commands_run_as_written(workdir: Workdir) -> None:
    commands = readme_commands(README.read_text(encoding="utf-8"))
    ran, skipped, failures = [], [], []
    for cmd in commands:
        rule = rule_for(cmd)
        if rule is None:
            continue  # test_every_readme_command_is_classified names it
        if rule.skip is not None:
            skipped.append((cmd, rule.skip))
            continue
        missing = [why for need in rule.needs if (why := workdir.has(need))]
        if missing:
            skipped.append((cmd, "; ".join(missing)))
            continue
        forms = rule.forms(cmd, workdir) if rule.forms else [cmd]
        for form in forms:
            started = time.monotonic()
            try:
                out = run_once(workdir, form, rule)
                if rule.after is not None:
                    rule.after(workdir, out)
            except AssertionError as exc:
                failures.append(str(exc))
            ran.append((form, time.monotonic() - started))
    report = (
        "\n".join(f"  ran {t:5.1f} s  {c}" for c, t in ran)
        + "\n"
        + "\n".join(f"  skipped  {c}\n           ({why})" for c, why in skipped)
    )
    print(f"{len(ran)} command lines ran, {len(skipped)} skipped:\n{report}")
    assert not failures, "\n\n".join(failures)
    assert ran


def test_the_parser_joins_continuations_and_drops_comments() -> None:
    text = (
        "```sh\n"
        "edgetally count VIDEO --line 1,2,3,4 \\\n"
        "    --json   # prints JSON\n"
        "curl 'http://x/#y'\n"
        "EDGETALLY_TOKEN=... edgetally fleet query devices --api 'http://a/#b'  # a comment\n"
        "```\n"
        "```yaml\nedgetally: not a command\n```\n"
        "```\nedgetally not-sh\n```\n"
    )
    assert readme_commands(text) == [
        "edgetally count VIDEO --line 1,2,3,4 --json",
        "EDGETALLY_TOKEN=... edgetally fleet query devices --api 'http://a/#b'",
    ]
