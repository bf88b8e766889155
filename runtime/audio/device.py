"""Audio on the device: a configured sound source measured per bucket, each bucket stored
in the outbox as an ``.../audio`` message (levels, speech share, event counts; no sound).

A sound file is read as fast as it decodes and stamped from the moment the run started; a
checkpoint stored with every bucket lets an interrupted run resume the file where its last
stored bucket ended (the same timestamps, no bucket twice). A microphone runs until stopped.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edgetally.models.topics import topic_for
from edgetally.models.wire import MAX_EVENT_KINDS, AudioLevels, to_json
from edgetally.runtime.audio.config import AudioConfig
from edgetally.runtime.audio.pipeline import AudioAnalyzer, AudioBucket
from edgetally.runtime.audio.sources import RATE, FileSource, MicSource, Samples
from edgetally.runtime.uplink.outbox import Checkpoint, Outbox

log = logging.getLogger(__name__)


def event_name(label: str) -> str:
    """A class map's display name as a wire event name: ``Speech, speaking`` ->
    ``speech_speaking`` (lower case, runs of other characters as ``_``, at most 64)."""
    name = re.sub(r"[^a-z0-9_.:-]+", "_", label.lower()).strip("_.:-")[:64]
    return name or "unnamed"


def wire_events(counts: dict[str, int]) -> dict[str, int]:
    """Event counts under wire names; the most frequent :data:`MAX_EVENT_KINDS` kinds."""
    out: dict[str, int] = {}
    for label, n in counts.items():
        if n > 0:
            key = event_name(label)
            out[key] = out.get(key, 0) + n
    if len(out) > MAX_EVENT_KINDS:
        log.warning(
            "audio: %d event kinds in one bucket, sending the %d most frequent",
            len(out),
            MAX_EVENT_KINDS,
        )
        out = dict(sorted(out.items(), key=lambda kv: -kv[1])[:MAX_EVENT_KINDS])
    return out


def to_message(
    bucket: AudioBucket,
    *,
    site: str,
    device: str,
    source: str,
    start: datetime,
    seconds: int,
    seq: int,
    epoch: str | None = None,
) -> AudioLevels:
    """The wire message of one bucket; ``start`` is when the source's first sample was."""
    return AudioLevels(
        site=site,  # type: ignore[arg-type]  # pydantic validates it
        device=device,  # type: ignore[arg-type]  # pydantic validates it
        source=source,  # type: ignore[arg-type]  # pydantic validates it
        seq=seq,  # type: ignore[arg-type]  # pydantic validates it
        epoch=epoch,  # type: ignore[arg-type]  # pydantic validates it
        start=start + timedelta(seconds=bucket.start_s),
        seconds=seconds,
        duration_s=min(float(seconds), bucket.duration_s),
        leq_dbfs=bucket.leq_dbfs,
        laeq_dbfs=bucket.laeq_dbfs,
        leq_dbspl=bucket.leq_dbspl,
        laeq_dbspl=bucket.laeq_dbspl,
        speech_ratio=bucket.speech_ratio,
        events=wire_events(bucket.events),
    )


def build_analyzer(config: AudioConfig, bucket_seconds: int) -> AudioAnalyzer:
    """The analyzer the config asks for (VAD and classifier loaded now: errors come early)."""
    from edgetally.runtime.audio.classifier import EventCounter, ModelClassifier
    from edgetally.runtime.audio.vad import SileroVad

    vad = None
    if config.vad:
        vad = SileroVad(
            config.vad_model, backend=config.vad_backend, accelerator=config.vad_accelerator
        )
    events = None
    if config.classifier is not None and config.class_map is not None:
        classifier = ModelClassifier(
            config.classifier,
            config.class_map,
            backend=config.classifier_backend,
            accelerator=config.classifier_accelerator,
        )
        events = EventCounter(classifier, config.event_threshold)
    return AudioAnalyzer(float(bucket_seconds), vad, events, config.spl_offset_db)


def open_chunks(config: AudioConfig) -> Iterator[Samples]:
    if config.live:
        name = config.source.partition(":")[2] or None
        device: str | int | None = int(name) if name and name.isdigit() else name
        return MicSource(device).chunks()
    return FileSource(Path(config.source)).chunks()


@dataclass(slots=True)
class AudioReport:
    source: str
    buckets: int = 0  # stored for this pass over the source (a resumed run included)
    seconds: float = 0.0
    resumed_at_s: float | None = None
    completed: bool = False

    def as_json(self) -> dict[str, object]:
        return {"source": self.source, "buckets": self.buckets, "seconds": round(self.seconds, 3)}


def run_audio(
    config: AudioConfig,
    analyzer: AudioAnalyzer,
    outbox: Outbox,
    *,
    site: str,
    device: str,
    bucket_seconds: int,
    stop: threading.Event,
    on_stored: Callable[[int], None],
    chunks: Iterator[Samples] | None = None,
) -> AudioReport:
    """Measure the source until its end (a file) or ``stop``; every bucket into ``outbox``
    (one sequence with the aggregates). ``on_stored(n)`` after each stored message."""
    report = AudioReport(config.id)
    topic = topic_for(site, device, "audio")
    key = f"audio|{config.id}|{config.source}|{bucket_seconds}"
    start = datetime.now(UTC)
    skip = 0  # samples of the file already in stored buckets
    saved = None if config.live else outbox.checkpoint(key)
    if saved is not None:
        state = json.loads(saved.state)
        start = datetime.fromisoformat(state["start"])
        skip = saved.next_frame
        report.buckets, report.seconds = saved.buckets, float(state.get("seconds", 0.0))
        report.resumed_at_s = skip / RATE
        log.warning("audio %s: resuming %s at %.1f s", config.id, config.source, skip / RATE)
    origin = start + timedelta(seconds=skip / RATE)

    def store(bucket: AudioBucket) -> None:
        report.buckets += 1
        report.seconds += bucket.duration_s
        done = skip + round((bucket.start_s + bucket.duration_s) * RATE)
        state = json.dumps({"start": start.isoformat(), "seconds": report.seconds})
        outbox.put_many(
            [
                (
                    topic,
                    lambda seq, epoch: to_json(
                        to_message(
                            bucket,
                            site=site,
                            device=device,
                            source=config.id,
                            start=origin,
                            seconds=bucket_seconds,
                            seq=seq,
                            epoch=epoch,
                        )
                    ),
                )
            ],
            checkpoint=None if config.live else (key, Checkpoint(done, report.buckets, state)),
        )
        on_stored(1)

    interrupted = False
    to_skip = skip
    for chunk in chunks if chunks is not None else open_chunks(config):
        if stop.is_set():
            interrupted = True
            break
        if to_skip:
            if chunk.size <= to_skip:
                to_skip -= chunk.size
                continue
            chunk, to_skip = chunk[to_skip:], 0
        bucket = analyzer.feed(chunk)
        if bucket is not None:
            store(bucket)
    if not interrupted or config.live:
        last = analyzer.flush()
        if last is not None:
            store(last)
    if not interrupted and not config.live:
        outbox.clear_checkpoint(key)
        report.completed = True
    return report
