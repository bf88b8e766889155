"""Per-bucket audio aggregates: level, speech share, sound-event counts. No audio leaves."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgetally.runtime.audio.classifier import EventCounter
from edgetally.runtime.audio.errors import AudioError
from edgetally.runtime.audio.level import LevelMeter
from edgetally.runtime.audio.sources import CHUNK, RATE, FileSource, Samples
from edgetally.runtime.audio.vad import SileroVad

if TYPE_CHECKING:
    from edgetally.runtime.types import Progress


@dataclass(frozen=True, slots=True)
class AudioBucket:
    """What one time bucket of sound amounted to.

    ``start_s`` is seconds from the start of the source; ``duration_s`` is shorter than the
    bucket only for the last one. Levels are AES17 dBFS (a full-scale sine is 0 dBFS); the
    ``*_dbspl`` fields are set when a calibration offset is configured. ``speech_ratio`` is
    the share of 32 ms chunks that silero-vad calls speech (None without a VAD), ``events``
    the number of sound events per class name (empty without a classifier).
    """

    start_s: float
    duration_s: float
    leq_dbfs: float
    laeq_dbfs: float
    leq_dbspl: float | None
    laeq_dbspl: float | None
    speech_ratio: float | None
    events: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start": round(self.start_s, 3),
            "duration": round(self.duration_s, 3),
            "leq_dbfs": round(self.leq_dbfs, 2),
            "laeq_dbfs": round(self.laeq_dbfs, 2),
            "speech_ratio": None if self.speech_ratio is None else round(self.speech_ratio, 4),
            "events": dict(sorted(self.events.items())),
        }
        if self.leq_dbspl is not None and self.laeq_dbspl is not None:
            out["leq_dbspl"] = round(self.leq_dbspl, 2)
            out["laeq_dbspl"] = round(self.laeq_dbspl, 2)
        return out


class AudioAnalyzer:
    """Feeds 512-sample chunks at 16 kHz through the level meter, the VAD and the event
    counter, and closes a bucket every ``bucket_seconds``."""

    def __init__(
        self,
        bucket_seconds: float = 60.0,
        vad: SileroVad | None = None,
        events: EventCounter | None = None,
        spl_offset_db: float | None = None,
    ) -> None:
        if bucket_seconds <= 0:
            raise AudioError(f"bucket seconds must be positive, got {bucket_seconds}")
        self.bucket_samples = max(1, round(bucket_seconds * RATE))
        self.vad = vad
        self.events = events
        self.spl_offset_db = spl_offset_db
        self._meter = LevelMeter(RATE)
        self._start = 0
        self._speech = 0
        self._chunks = 0
        self._counts: Counter[str] = Counter()

    def feed(self, chunk: Samples) -> AudioBucket | None:
        if chunk.ndim != 1 or not 0 < chunk.size <= CHUNK:
            raise AudioError(f"chunks are 1..{CHUNK} samples, got {chunk.shape}")
        # speech and events count in the bucket where the chunk starts; the level is split
        # at the exact sample where the bucket ends
        self._chunks += 1
        if self.vad is not None and self.vad.is_speech(chunk):
            self._speech += 1
        if self.events is not None:
            self._counts.update(self.events.feed(chunk))
        room = self.bucket_samples - self._meter.samples
        if chunk.size < room:
            self._meter.feed(chunk)
            return None
        self._meter.feed(chunk[:room])
        bucket = self._close()
        if chunk.size > room:
            self._meter.feed(chunk[room:])
        return bucket

    def flush(self) -> AudioBucket | None:
        return self._close() if self._meter.samples else None

    def _close(self) -> AudioBucket:
        leq, laeq = self._meter.leq_dbfs(), self._meter.laeq_dbfs()
        off = self.spl_offset_db
        bucket = AudioBucket(
            start_s=self._start / RATE,
            duration_s=self._meter.samples / RATE,
            leq_dbfs=leq,
            laeq_dbfs=laeq,
            leq_dbspl=None if off is None else leq + off,
            laeq_dbspl=None if off is None else laeq + off,
            speech_ratio=None if self.vad is None else self._speech / max(1, self._chunks),
            events=dict(self._counts),
        )
        self._start += self._meter.samples
        self._meter.reset()
        self._speech = 0
        self._chunks = 0
        self._counts = Counter()
        return bucket

    def run(
        self,
        chunks: Iterable[Samples],
        progress: Progress | None = None,
        total_s: float | None = None,
        name: str = "audio",
    ) -> Iterator[AudioBucket]:
        """Buckets as they close; ``progress`` is told ``(name, seconds analysed,
        total_s)`` about once per analysed second."""
        fed = 0
        told = 0
        for chunk in chunks:
            bucket = self.feed(chunk)
            fed += chunk.size
            if progress is not None and fed - told >= RATE:
                told = fed
                progress(name, fed / RATE, total_s)
            if bucket is not None:
                yield bucket
        if progress is not None:
            progress(name, fed / RATE, total_s)
        last = self.flush()
        if last is not None:
            yield last


def analyze_file(
    path: Path,
    bucket_seconds: float = 60.0,
    vad: SileroVad | None = None,
    events: EventCounter | None = None,
    spl_offset_db: float | None = None,
) -> list[AudioBucket]:
    """All buckets of a sound file (the last one may be shorter)."""
    analyzer = AudioAnalyzer(bucket_seconds, vad, events, spl_offset_db)
    return list(analyzer.run(FileSource(path).chunks()))
