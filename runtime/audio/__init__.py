"""Audio on the device: sources resampled to 16 kHz mono, sound level (Leq, LAeq), speech
activity (silero-vad) and sound-event counts from a pluggable classifier, per time bucket."""

from __future__ import annotations

from edgetally.runtime.audio.errors import AudioError
from edgetally.runtime.audio.pipeline import AudioAnalyzer, AudioBucket, analyze_file

__all__ = ["AudioAnalyzer", "AudioBucket", "AudioError", "analyze_file"]
