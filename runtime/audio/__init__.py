"""Audio on the device: sources resampled to 16 kHz mono, sound level (Leq, LAeq), speech
activity (silero-vad) and sound-event counts from a pluggable classifier, per time bucket.

Owns its config block (:mod:`.config`, held by the device config) and writes its buckets to
the device's outbox; it never reads the device config module itself. The analysis modules
load lazily, so the device config can import the audio config without numpy's signal work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgetally.runtime.audio.errors import AudioError

if TYPE_CHECKING:
    from edgetally.runtime.audio.pipeline import AudioAnalyzer, AudioBucket, analyze_file

__all__ = ["AudioAnalyzer", "AudioBucket", "AudioError", "analyze_file"]


def __getattr__(name: str) -> Any:
    if name in ("AudioAnalyzer", "AudioBucket", "analyze_file"):
        from edgetally.runtime.audio import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
