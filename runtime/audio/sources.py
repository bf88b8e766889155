"""Audio sources: a WAV/FLAC file or a live microphone, as 16 kHz mono float32 chunks.

Files are read in blocks and resampled with a polyphase filter; each block is resampled with
enough context on both sides that the joins are seamless (the output equals resampling the
whole file at once). Microphones are opened through sounddevice (ALSA via PortAudio), which is
imported only when a microphone is asked for.
"""

from __future__ import annotations

import math
import queue
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from edgetally.runtime.audio.errors import AudioError
from scipy import signal

RATE = 16000
CHUNK = 512  # 32 ms at 16 kHz: silero-vad's frame

Samples = npt.NDArray[np.float32]


class AudioSource(Protocol):
    """Yields 16 kHz mono float32 chunks of ``CHUNK`` samples (only the last may be shorter)."""

    def chunks(self) -> Iterator[Samples]: ...


class _Rechunker:
    """Cuts a stream of arbitrary-length arrays into fixed-size chunks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._buf = np.zeros(0, np.float32)

    def push(self, x: Samples) -> Iterator[Samples]:
        self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        n = self._buf.size // self.size
        for i in range(n):
            yield self._buf[i * self.size : (i + 1) * self.size]
        self._buf = self._buf[n * self.size :]

    def flush(self) -> Iterator[Samples]:
        if self._buf.size:
            out = self._buf
            self._buf = np.zeros(0, np.float32)
            yield out


class StreamResampler:
    """Polyphase resampling of a stream in blocks, identical to resampling it in one go."""

    def __init__(self, rate_in: int, rate_out: int = RATE) -> None:
        g = math.gcd(rate_in, rate_out)
        self.up, self.down = rate_out // g, rate_in // g
        # context on each side, in input samples, a multiple of `down` (so the output grid
        # stays aligned) and wider than the filter's half-length (10 * max(up, down) / up)
        half = 10 * max(self.up, self.down) // self.up + 1
        self.pad = self.down * math.ceil(half / self.down)
        self._hist = np.zeros(0, np.float32)  # input not yet emitted, plus left context
        self._left = 0  # how much of _hist is left context
        self._done = 0  # output samples emitted

    def process(self, x: Samples, final: bool = False) -> Samples:
        if self.up == self.down:
            return x.astype(np.float32, copy=False)
        self._hist = np.concatenate([self._hist, x.astype(np.float32, copy=False)])
        avail = self._hist.size - self._left
        n_emit_in = avail if final else (avail - self.pad) // self.down * self.down
        if n_emit_in <= 0:
            return np.zeros(0, np.float32)
        start = self._left
        seg = self._hist[: start + n_emit_in + (0 if final else self.pad)]
        resampled = signal.resample_poly(seg, self.up, self.down)
        y: npt.NDArray[np.float32] = resampled.astype(np.float32)
        o0 = start * self.up // self.down
        n_out = (
            math.ceil((start + n_emit_in) * self.up / self.down) - o0
            if final
            else n_emit_in * self.up // self.down
        )
        out = y[o0 : o0 + n_out]
        keep_from = start + n_emit_in - self.pad
        keep_from = max(0, keep_from)
        self._hist = self._hist[keep_from:]
        self._left = start + n_emit_in - keep_from
        return out


@dataclass(frozen=True, slots=True)
class FileSource:
    """A sound file (anything libsndfile reads: WAV, FLAC, OGG) mixed to mono, at 16 kHz."""

    path: Path
    block_seconds: float = 10.0

    def _open(self) -> Any:
        import soundfile

        if not self.path.is_file():
            raise AudioError(f"audio file not found: {self.path}")
        try:
            return soundfile.SoundFile(str(self.path))
        except (RuntimeError, soundfile.LibsndfileError) as exc:
            raise AudioError(f"cannot read audio file {self.path}: {exc}") from exc

    @property
    def duration_s(self) -> float:
        with self._open() as f:
            return float(f.frames) / float(f.samplerate)

    def chunks(self) -> Iterator[Samples]:
        with self._open() as f:
            rs = StreamResampler(int(f.samplerate), RATE)
            rc = _Rechunker(CHUNK)
            block = max(rs.down * 16, int(self.block_seconds * f.samplerate) // rs.down * rs.down)
            while True:
                data = f.read(block, dtype="float32", always_2d=True)
                final = data.shape[0] < block
                yield from rc.push(rs.process(data.mean(axis=1), final=final))
                if final:
                    break
            yield from rc.flush()


@dataclass(frozen=True, slots=True)
class MicSource:
    """A live microphone through sounddevice (ALSA via PortAudio); runs until ``seconds``."""

    device: str | int | None = None
    seconds: float | None = None

    def chunks(self) -> Iterator[Samples]:
        try:
            import sounddevice as sd
        except (ImportError, OSError) as exc:
            raise AudioError(
                f"live audio needs sounddevice and PortAudio (pip install 'edgetally[mic]', "
                f"apt install libportaudio2): {exc}"
            ) from exc
        try:
            info = sd.query_devices(self.device, kind="input")
        except (ValueError, sd.PortAudioError) as exc:
            raise AudioError(f"no audio input device {self.device or '(default)'}: {exc}") from exc
        rate = int(info["default_samplerate"])
        q: queue.Queue[Samples] = queue.Queue(maxsize=256)
        dropped = 0

        def callback(indata: Any, frames: int, time: Any, status: Any) -> None:
            nonlocal dropped
            try:
                q.put_nowait(np.asarray(indata, np.float32).mean(axis=1).copy())
            except queue.Full:
                dropped += frames

        rs = StreamResampler(rate, RATE)
        rc = _Rechunker(CHUNK)
        total = 0
        limit = None if self.seconds is None else int(self.seconds * RATE)
        try:
            stream = sd.InputStream(
                device=self.device,
                samplerate=rate,
                channels=1,
                dtype="float32",
                callback=callback,
            )
        except sd.PortAudioError as exc:
            name = self.device or "(default)"
            raise AudioError(f"cannot open audio input {name}: {exc}") from exc
        with stream:
            while limit is None or total < limit:
                for chunk in rc.push(rs.process(q.get())):
                    total += chunk.size
                    yield chunk
        if dropped:
            import logging

            logging.getLogger(__name__).warning("microphone: %d samples dropped", dropped)
