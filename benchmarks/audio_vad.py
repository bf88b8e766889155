"""Speech activity on speech mixed into ESC-10 clips at 0, 5 and 10 dB SNR.

Speech is made with Debian's espeak-ng; truth per 32 ms chunk comes from the clean speech's
energy envelope (a chunk is speech when its energy is within 30 dB of the loudest chunk).
Prints frame-level precision, recall and F1 per SNR, and the mean speech_ratio of the ESC-10
clips alone (no speech in them).

    .venv/bin/python benchmarks/audio_vad.py [--esc10 ../shared/data/audio/esc10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from edgetally.runtime.audio.sources import CHUNK, FileSource
from edgetally.runtime.audio.vad import SileroVad

SENTENCES = [
    "Good morning, the shop opens at nine and closes at six.",
    "Could you tell me where to find the fresh bread, please?",
    "We have a special offer on apples and oranges this week.",
    "Thank you for shopping with us, have a nice day.",
]
ENVELOPE_DB = 30.0


def speech_clips(tmp: Path) -> list[np.ndarray]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SystemExit("espeak-ng missing: apt install espeak-ng")
    out = []
    for i, text in enumerate(SENTENCES):
        wav = tmp / f"s{i}.wav"
        subprocess.run([exe, "-v", "en", "-s", "160", "-w", str(wav), text], check=True)
        out.append(np.concatenate(list(FileSource(wav).chunks())))
    return out


def chunks_of(x: np.ndarray) -> np.ndarray:
    n = x.size // CHUNK
    return x[: n * CHUNK].reshape(n, CHUNK)


def truth(speech: np.ndarray) -> np.ndarray:
    e = 10 * np.log10((chunks_of(speech) ** 2).mean(axis=1) + 1e-12)
    return e > e.max() - ENVELOPE_DB


def predict(vad: SileroVad, x: np.ndarray) -> np.ndarray:
    vad.reset()
    return np.array([vad.is_speech(c) for c in chunks_of(x)])


def main() -> None:
    ap = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "audio" / "esc10"
    ap.add_argument("--esc10", type=Path, default=default)
    args = ap.parse_args()
    clips = sorted((args.esc10 / "audio").glob("*.wav"))
    if not clips:
        raise SystemExit(f"no ESC-10 clips under {args.esc10}/audio")
    vad = SileroVad()
    with tempfile.TemporaryDirectory() as tmp:
        speeches = speech_clips(Path(tmp))
    ratios = []
    counts = {snr: [0, 0, 0] for snr in (0, 5, 10)}  # tp, fp, fn
    for k, clip in enumerate(clips):
        noise = np.concatenate(list(FileSource(clip).chunks()))
        ratios.append(float(predict(vad, noise).mean()))
        speech = speeches[k % len(speeches)]
        start = CHUNK * 16  # 0.5 s in, aligned to chunks
        clean = np.zeros_like(noise)
        n = min(speech.size, noise.size - start)
        clean[start : start + n] = speech[:n]
        t = truth(clean)
        p_speech = float((chunks_of(clean)[t] ** 2).mean())
        p_noise = float((noise**2).mean()) + 1e-12
        for snr, c in counts.items():
            gain = np.sqrt(p_noise * 10 ** (snr / 10) / p_speech)
            mix = noise + gain * clean
            peak = float(np.abs(mix).max())
            if peak > 1.0:
                mix = mix / peak
            p = predict(vad, mix)
            c[0] += int((p & t).sum())
            c[1] += int((p & ~t).sum())
            c[2] += int((~p & t).sum())
    print(
        f"{len(clips)} ESC-10 clips, espeak-ng speech, truth: clean energy within "
        f"{ENVELOPE_DB:.0f} dB of its peak, silero-vad threshold {vad.threshold}"
    )
    print(f"{'SNR dB':>6} {'precision':>9} {'recall':>7} {'F1':>6}")
    for snr, (tp, fp, fn) in counts.items():
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        print(f"{snr:>6} {prec:9.3f} {rec:7.3f} {f1:6.3f}")
    r = np.array(ratios)
    print(
        f"speech_ratio on the clips alone: mean {r.mean():.4f}, max {r.max():.3f}, "
        f"clips above 0.1: {(r > 0.1).sum()}"
    )


if __name__ == "__main__":
    main()
