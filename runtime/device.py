"""The device run loop: cameras -> counting pipeline -> aggregator -> outbox -> broker.

Each camera runs in its own thread with its own detector, pipeline and aggregator; all of
them write closed buckets into one outbox, which one publisher drains to the broker. A
camera with a ``shelf`` block also feeds its frames and its person boxes to the shelf logic
and stores each bucket's shelf messages with that bucket's aggregates; an ``audio`` source
runs in a thread of its own and stores one audio message per bucket. All of them take their
sequence numbers from the one ``agg`` sequence.

A closed bucket's aggregates and the camera's checkpoint (the first frame not yet in a
stored bucket, the file's start time and the running totals) are written in one
transaction. When a run over a file is interrupted (killed, power lost), the next run with
the same outbox resumes that file from the checkpoint with the same timestamps: no bucket is
produced twice and none is skipped. The few seconds before the checkpoint go through the
pipeline again, their results dropped, so its tracker knows who is where and a person
crossing a line at the checkpoint is counted once, as in an uninterrupted run. When a file
is read to its end the checkpoint is cleared, so the next run counts it again from the
start.

If the outbox is full, the camera stops with :class:`OutboxFullError` (naming the cap)
rather than drop a bucket; the frames of that bucket are not checkpointed, so a later run
on a file re-reads them.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from edgetally.firmware_bridge.power import PowerMeter
from edgetally.models.topics import topic_for
from edgetally.models.wire import DeviceStatus, to_json
from edgetally.runtime.config import CameraConfig, DeviceConfig
from edgetally.runtime.power import PowerSampler, PowerSummary, open_meter
from edgetally.runtime.types import Dwell, Frame, FrameResult, Progress
from edgetally.runtime.uplink.aggregator import AggregateDraft, Aggregator, ClosedBucket
from edgetally.runtime.uplink.outbox import Checkpoint, Outbox, PayloadBuilder
from edgetally.runtime.uplink.publisher import Publisher, PublisherError

if TYPE_CHECKING:
    from edgetally.runtime.audio.device import AudioReport
    from edgetally.runtime.audio.pipeline import AudioAnalyzer
    from edgetally.runtime.shelf.buckets import ShelfBucket

log = logging.getLogger(__name__)


class Pipeline(Protocol):
    def process(self, frame: Frame) -> FrameResult: ...

    def finish(self, ts: datetime) -> list[Dwell]: ...


class Source(Protocol):
    name: str
    live: bool

    def __iter__(self) -> Any: ...

    def close(self) -> None: ...


PipelineFactory = Callable[[CameraConfig, DeviceConfig], Pipeline]
SourceFactory = Callable[[CameraConfig, datetime], Source]


@dataclass(slots=True)
class CameraReport:
    camera: str
    frames: int = 0
    aggregates: int = 0  # stored for this pass over the source (a resumed run included)
    totals: dict[str, list[int]] = field(default_factory=dict)  # line -> [in, out]
    resumed_at: int | None = None
    completed: bool = False
    shelf_messages: int = 0  # shelf messages stored by this run


@dataclass(frozen=True, slots=True)
class DeviceReport:
    cameras: tuple[CameraReport, ...]
    produced: int  # aggregates stored by this run
    remaining: int  # still in the outbox when the run ended
    next_seq: int
    power: PowerSummary | None = None  # None when power telemetry is off
    audio: AudioReport | None = None  # None without an audio source
    broker_problem: str | None = None  # why messages remain, when the broker was the reason
    published: int = 0  # messages the broker acknowledged during this run (older ones too)
    refused: int = 0  # of ``remaining``: messages the broker refused (PUBACK >= 0x80), kept

    @property
    def aggregates(self) -> int:
        return sum(c.aggregates for c in self.cameras)

    def lines(self) -> list[dict[str, Any]]:
        many = len(self.cameras) > 1
        return [
            {"line": f"{c.camera}:{line}" if many else line, "in": io[0], "out": io[1]}
            for c in self.cameras
            for line, io in c.totals.items()
        ]

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"aggregates": self.aggregates, "lines": self.lines()}
        if self.power is not None:
            out["power"] = self.power.as_json()
        if self.audio is not None:
            out["audio"] = self.audio.as_json()
        shelf = {c.camera: c.shelf_messages for c in self.cameras if c.shelf_messages}
        if shelf:
            out["shelf_messages"] = shelf
        return out


def store_bucket(
    outbox: Outbox,
    *,
    site: str,
    device: str,
    source: str,
    bucket: ClosedBucket,
    checkpoint: tuple[str, Checkpoint] | None = None,
    shelf: Sequence[ShelfBucket] = (),
) -> list[int]:
    """Write a closed bucket's aggregates, the shelf messages of ``shelf`` (buckets of the
    same camera) and a checkpoint in one transaction; returns the aggregates' seqs."""
    topic = topic_for(site, device, "agg")

    def build(draft: AggregateDraft) -> PayloadBuilder:
        return lambda seq, epoch: to_json(
            draft.to_message(site=site, device=device, source=source, seq=seq, epoch=epoch)
        )

    items = [(topic, build(draft)) for draft in bucket.drafts]
    if shelf:
        from edgetally.runtime.shelf.watch import shelf_messages

        shelf_topic = topic_for(site, device, "shelf")
        items += [
            (shelf_topic, build)
            for sb in shelf
            for build in shelf_messages(sb, site=site, device=device, source=source)
        ]
    return outbox.put_many(items, checkpoint=checkpoint)[: len(bucket.drafts)]


def default_pipeline(camera: CameraConfig, config: DeviceConfig) -> Pipeline:
    from edgetally.runtime.counting.analytics import LineSpec, ZoneSpec
    from edgetally.runtime.counting.detectors import load_detector
    from edgetally.runtime.counting.pipeline import build_pipeline
    from edgetally.runtime.types import LineId, ZoneId

    lines = [LineSpec(LineId(ln.id), *ln.points, band=ln.band) for ln in camera.lines]
    zones = [ZoneSpec(ZoneId(z.id), z.polygon) for z in camera.zones]
    detector = load_detector(config.model, config.backend, config.accelerator)
    return build_pipeline(detector, lines, zones, roi=camera.roi)


def default_source(camera: CameraConfig, start: datetime) -> Source:
    from edgetally.runtime.counting.sources import SourceOptions, open_source

    options = SourceOptions(start=start, stride=camera.stride, max_frames=camera.max_frames)
    return open_source(camera.source, options)


class Device:
    """One device: its outbox, its publisher and one worker per camera."""

    def __init__(
        self,
        config: DeviceConfig,
        *,
        pipeline_factory: PipelineFactory = default_pipeline,
        source_factory: SourceFactory = default_source,
        stop: threading.Event | None = None,
        on_bucket: Callable[[str, ClosedBucket], None] | None = None,
        progress: Progress | None = None,
    ) -> None:
        """``progress`` is told ``(camera id, frames read, frames in the file)`` for each
        camera whose source is a file (a live source has no end to show)."""
        self.config = config
        self.stop = stop or threading.Event()
        self._pipeline_factory = pipeline_factory
        self._source_factory = source_factory
        self._on_bucket = on_bucket
        self._progress = progress
        self.outbox = Outbox(config.outbox, max_messages=config.outbox_max)
        self.produced = 0
        self._produced_lock = threading.Lock()
        self._started = time.monotonic()
        self._model: str | None = None
        self._backend: str | None = None
        self.publisher: Publisher | None = None
        self.power_sampler: PowerSampler | None = None

    # ------------------------------------------------------------------ status

    def _status(self, state: Literal["online", "offline"]) -> DeviceStatus:
        return DeviceStatus(
            site=self.config.site,  # type: ignore[arg-type]  # pydantic validates it
            device=self.config.device,  # type: ignore[arg-type]  # pydantic validates it
            at=datetime.now(UTC),
            state=state,
            model=self._model,
            backend=self._backend,
            uptime_s=round(time.monotonic() - self._started, 3),
        )

    def set_model(self, model: str | None, backend: str | None = None) -> None:
        """The model in use changed (an update): the status says so, now and from then on."""
        self._model = _safe_name(model) if model else None
        self._backend = _safe_name(backend) if backend else self._backend
        if self.publisher is not None:
            self.publisher.publish_status()

    # ------------------------------------------------------------------ run

    def run(self, *, drain_timeout: float | None = None) -> DeviceReport:
        """Run every camera to its end (files) or until :attr:`stop` is set (live)."""
        cfg = self.config
        login = cfg.broker_login()  # a missing password file or CA fails before counting
        pipelines = [self._pipeline_factory(cam, cfg) for cam in cfg.cameras]
        first = pipelines[0] if pipelines else None
        info = getattr(getattr(first, "detector", None), "info", None)
        if info is not None:
            self._model, self._backend = _safe_name(info.model), _safe_name(info.backend)
        # An unreadable meter fails before publishing (a plug: the broker, without login).
        meter = open_meter(cfg.power, str(login.address))
        analyzer = self._audio_analyzer()  # so does a missing VAD or classifier model
        self.publisher = Publisher(
            self.outbox, login, site=cfg.site, device=cfg.device, status=self._status
        )
        self.publisher.start()
        sampler = self.power_sampler = self._start_power(meter, self.publisher)
        reports = [CameraReport(cam.id) for cam in cfg.cameras]
        errors: list[BaseException] = []
        threads = [
            threading.Thread(
                target=self._camera_thread,
                args=(cam, pipe, rep, errors),
                name=f"camera-{cam.id}",
                daemon=True,
            )
            for cam, pipe, rep in zip(cfg.cameras, pipelines, reports, strict=True)
        ]
        audio_reports: list[AudioReport] = []
        if analyzer is not None:
            threads.append(
                threading.Thread(
                    target=self._audio_thread,
                    args=(analyzer, audio_reports, errors),
                    name="audio",
                    daemon=True,
                )
            )
        try:
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
        except KeyboardInterrupt:
            self.stop.set()
            for t in threads:
                t.join()
        timeout = cfg.drain_timeout_s if drain_timeout is None else drain_timeout
        power: PowerSummary | None = None
        try:
            if sampler is not None:
                power = sampler.stop()
            remaining = self.publisher.drain(timeout=timeout)
        finally:
            self.publisher.stop(graceful=True)
            next_seq = self.outbox.next_seq()
            self.outbox.close()
        if errors:
            raise errors[0]
        problem = (self.publisher.problem or self.publisher.refused_why) if remaining else None
        if problem is not None and self.publisher.fatal:  # counted, kept, never delivered
            raise PublisherError(
                f"{problem}; {remaining} messages wait in the outbox {cfg.outbox}, "
                "the next run sends them"
            )
        audio = audio_reports[0] if audio_reports else None
        return DeviceReport(
            tuple(reports),
            self.produced,
            remaining,
            next_seq,
            power,
            audio,
            problem,
            published=self.publisher.acked,
            refused=self.publisher.refused,
        )

    def _audio_analyzer(self) -> AudioAnalyzer | None:
        if self.config.audio is None:
            return None
        from edgetally.runtime.audio.device import build_analyzer

        return build_analyzer(self.config.audio, self.config.bucket_seconds)

    def _audio_thread(
        self, analyzer: AudioAnalyzer, reports: list[AudioReport], errors: list[BaseException]
    ) -> None:
        from edgetally.runtime.audio.device import run_audio

        cfg = self.config
        assert cfg.audio is not None
        try:
            reports.append(
                run_audio(
                    cfg.audio,
                    analyzer,
                    self.outbox,
                    site=cfg.site,
                    device=cfg.device,
                    bucket_seconds=cfg.bucket_seconds,
                    stop=self.stop,
                    on_stored=self._stored,
                )
            )
        except BaseException as exc:  # handed to run(), which raises it
            errors.append(exc)
            self.stop.set()

    def _stored(self, _n: int) -> None:
        if self.publisher is not None:
            self.publisher.wake()

    def _start_power(self, meter: PowerMeter | None, publisher: Publisher) -> PowerSampler | None:
        """Power telemetry into the outbox, when configured (``power.source`` not none)."""
        if meter is None:
            return None
        cfg = self.config
        sampler = PowerSampler(
            meter,
            self.outbox,
            site=cfg.site,
            device=cfg.device,
            bucket_seconds=cfg.bucket_seconds,
            interval=cfg.power.interval_s,
            on_stored=publisher.wake,
        )
        sampler.start()
        return sampler

    def _camera_thread(
        self,
        cam: CameraConfig,
        pipeline: Pipeline,
        report: CameraReport,
        errors: list[BaseException],
    ) -> None:
        try:
            self._run_camera(cam, pipeline, report)
        except BaseException as exc:  # handed to run(), which raises it
            errors.append(exc)
            self.stop.set()

    def _run_camera(self, cam: CameraConfig, pipeline: Pipeline, report: CameraReport) -> None:
        cfg = self.config
        key = f"{cam.id}|{cam.source}|{cam.stride}|{cam.max_frames}|{cfg.bucket_seconds}"
        aggregator = Aggregator(
            [ln.id for ln in cam.lines],
            [z.id for z in cam.zones],
            bucket_seconds=cfg.bucket_seconds,
        )
        report.totals = {ln.id: [0, 0] for ln in cam.lines}
        start = datetime.now(UTC)
        skip_before = 0
        saved = self.outbox.checkpoint(key)
        if saved is not None:
            state = json.loads(saved.state)
            start = datetime.fromisoformat(state["start"])
            skip_before = saved.next_frame
            report.aggregates = int(state.get("aggregates", 0))
            report.totals.update({k: list(v) for k, v in state.get("totals", {}).items()})
            report.resumed_at = skip_before
            log.warning("camera %s: resuming %s at frame %d", cam.id, cam.source, skip_before)
        source = self._source_factory(cam, start)
        # A resumed file replays the frames before its checkpoint through the pipeline,
        # results dropped, so the tracker knows who is where (someone half across a line
        # at the checkpoint is still counted once).
        warmup = round(RESUME_WARMUP_S * (getattr(source, "fps", 0.0) or 0.0))
        buckets = saved.buckets if saved is not None else 0
        shelf_config = cam.shelf
        watch = None
        if shelf_config is not None:
            from edgetally.runtime.shelf.watch import ShelfWatch

            watch = ShelfWatch(
                shelf_config, cfg.bucket_seconds, backend=cfg.backend, accelerator=cfg.accelerator
            )
        shelf_closed: list[ShelfBucket] = []

        def store(bucket: ClosedBucket) -> None:
            nonlocal buckets
            for d in bucket.drafts:
                if d.kind == "line":
                    io = report.totals.setdefault(d.counter, [0, 0])
                    io[0] += d.in_count
                    io[1] += d.out_count
            buckets += 1
            state = {
                "start": start.isoformat(),
                "aggregates": report.aggregates + len(bucket.drafts),
                "totals": report.totals,
            }
            cp = Checkpoint(bucket.next_frame, buckets, json.dumps(state))
            shelf = [b for b in shelf_closed if b.start < bucket.start + _span(bucket)]
            seqs = store_bucket(
                self.outbox,
                site=cfg.site,
                device=cfg.device,
                source=cam.id,
                bucket=bucket,
                checkpoint=(key, cp) if not source.live else None,
                shelf=shelf,
            )
            del shelf_closed[: len(shelf)]
            report.shelf_messages += sum(_shelf_message_count(b) for b in shelf)
            report.aggregates += len(seqs)
            with self._produced_lock:
                self.produced += len(seqs)
            if self.publisher is not None:
                self.publisher.wake()
            if self._on_bucket is not None:
                self._on_bucket(cam.id, bucket)

        last: FrameResult | None = None
        interrupted = False
        pace = _Pace()
        progress = self._progress if not source.live else None
        total: int | None = getattr(source, "total", None)
        read = 0
        try:
            for frame in _frames(source):
                read += 1
                if progress is not None:
                    progress(cam.id, read, total)
                if frame.index < skip_before:
                    if frame.index >= skip_before - warmup:
                        pipeline.process(frame)  # who is where: counted by the last run
                    continue
                if self.stop.is_set():
                    interrupted = True
                    break
                if cam.realtime and not source.live:
                    pace.wait(frame.timestamp, self.stop)
                result = pipeline.process(frame)
                report.frames += 1
                last = result
                if watch is not None:
                    persons = (t.xyxy for t in result.tracks)
                    shelf_closed += watch.update(frame.image, persons, frame.index, frame.timestamp)
                for bucket in aggregator.add(result):
                    store(bucket)
        finally:
            source.close()
        if last is not None and (not interrupted or source.live):
            # The end of a file, or a live source being stopped: close the open bucket.
            aggregator.add_dwells(pipeline.finish(last.timestamp))
            shelf_last = watch.flush() if watch is not None else None
            if shelf_last is not None:
                shelf_closed.append(shelf_last)
            final = aggregator.flush(next_frame=last.frame_index + 1)
            if final is not None:
                store(final)
        if not interrupted and not source.live:
            self.outbox.clear_checkpoint(key)
            report.completed = True


RESUME_WARMUP_S = 5.0  # longer than a track coasts or a person is joined (1.5 s, 1 s)


def _span(bucket: ClosedBucket) -> timedelta:
    return timedelta(seconds=bucket.seconds)


def _shelf_message_count(bucket: ShelfBucket) -> int:
    from edgetally.runtime.shelf.watch import FACINGS_PER_MESSAGE

    return -(-len(bucket.facings) // FACINGS_PER_MESSAGE)


class _Pace:
    """Sleeps so that frames come at the pace of their timestamps."""

    def __init__(self) -> None:
        self._origin: tuple[float, datetime] | None = None

    def wait(self, ts: datetime, stop: threading.Event) -> None:
        if self._origin is None:
            self._origin = (time.monotonic(), ts)
            return
        wall0, ts0 = self._origin
        delay = wall0 + (ts - ts0).total_seconds() - time.monotonic()
        if delay > 0:
            stop.wait(delay)


def _frames(source: Source) -> Iterable[Frame]:
    yield from source


def _safe_name(value: object) -> str | None:
    import re

    text = str(value)
    return text[:64] if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.:@+/-]{0,63}", text) else None


def install_stop_signals(
    stop: threading.Event, came: list[int] | None = None
) -> Callable[[], None]:
    """SIGTERM (and SIGINT) set ``stop`` (and are added to ``came``); returns a function
    that restores the handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(signum: int, frame: Any) -> None:
        log.warning("signal %d: stopping after the current frame", signum)
        if came is not None:
            came.append(signum)
        stop.set()

    for s in previous:
        signal.signal(s, handler)

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore
