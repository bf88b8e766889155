"""Sound level: the A-weighting curve against IEC 61672-1, and Leq/LAeq of tones and noise
against their analytic values."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
from edgetally.runtime.audio.level import (
    IEC_A_WEIGHTING,
    LevelMeter,
    a_filter_response_db,
    a_weighting_db,
)
from edgetally.runtime.audio.pipeline import analyze_file
from edgetally.runtime.audio.sources import RATE, FileSource

IEC = np.array([row[:4] for row in IEC_A_WEIGHTING])


def _within_class1(measured: np.ndarray, rows: np.ndarray) -> None:
    err = measured - rows[:, 1]
    bad = (err > rows[:, 2]) | (-err > rows[:, 3])
    assert not bad.any(), list(zip(rows[bad, 0], err[bad], strict=True))


def test_analytic_curve_matches_iec_table_everywhere() -> None:
    _within_class1(a_weighting_db(IEC[:, 0]), IEC)
    # the table is the curve rounded to 0.1 dB
    assert np.abs(a_weighting_db(IEC[:, 0]) - IEC[:, 1]).max() < 0.3


@pytest.mark.parametrize("fs", [16000, 48000])
def test_digital_filter_matches_iec_below_nyquist(fs: int) -> None:
    rows = IEC[IEC[:, 0] < 0.45 * fs]
    _within_class1(a_filter_response_db(fs, rows[:, 0]), rows)
    # tighter than class 1 where it matters: within 0.3 dB of the analytic curve
    assert np.abs(a_filter_response_db(fs, rows[:, 0]) - a_weighting_db(rows[:, 0])).max() < 0.3


def _tone(freq: float, amp: float, seconds: float, fs: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * fs)) / fs
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _measure(x: np.ndarray, fs: int = RATE, chunk: int = 512) -> LevelMeter:
    meter = LevelMeter(fs)
    # settle the filter on the first half second, then measure
    warm = fs // 2
    meter.feed(x[:warm])
    meter.reset()
    for i in range(warm, x.size, chunk):
        meter.feed(x[i : i + chunk])
    return meter


@pytest.mark.parametrize("freq", [31.5, 100.0, 1000.0, 3150.0, 6300.0])
@pytest.mark.parametrize("amp", [1.0, 0.01])
def test_tone_levels_match_analytic(freq: float, amp: float) -> None:
    meter = _measure(_tone(freq, amp, 3.0))
    expected = 20 * math.log10(amp)  # AES17: a full-scale sine is 0 dBFS
    assert meter.leq_dbfs() == pytest.approx(expected, abs=0.1)
    assert meter.laeq_dbfs() == pytest.approx(expected + float(a_weighting_db(freq)), abs=0.5)


def test_white_noise_laeq_matches_integral_of_the_curve() -> None:
    sigma = 0.05
    x = np.random.default_rng(1).normal(0.0, sigma, RATE * 20).astype(np.float32)
    meter = _measure(x)
    f = np.linspace(1.0, RATE / 2, 200_000)
    mean_gain = float(np.mean(10 ** (a_weighting_db(f) / 10)))
    assert meter.leq_dbfs() == pytest.approx(10 * math.log10(2 * sigma**2), abs=0.1)
    assert meter.laeq_dbfs() == pytest.approx(10 * math.log10(2 * sigma**2 * mean_gain), abs=0.5)


def test_pink_noise_is_weighted_less_than_white() -> None:
    rng = np.random.default_rng(2)
    spec = np.fft.rfft(rng.normal(size=RATE * 10))
    f = np.fft.rfftfreq(RATE * 10, 1 / RATE)
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec).astype(np.float32)
    x *= 0.05 / x.std()
    meter = _measure(x)
    # analytic: power density ~ 1/f, weighted by |A(f)|^2
    band = f[1:]
    weights = 10 ** (a_weighting_db(band) / 10) / band
    gain = float(weights.sum() / (1 / band).sum())
    assert meter.laeq_dbfs() - meter.leq_dbfs() == pytest.approx(10 * math.log10(gain), abs=0.5)


def test_file_at_44k1_is_resampled_and_bucketed(tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    fs = 44100
    x = np.concatenate([_tone(1000.0, 0.5, 2.0, fs), _tone(1000.0, 0.05, 2.0, fs)])
    soundfile.write(path, np.stack([x, x], axis=1), fs)  # stereo: mixed to mono
    chunks = list(FileSource(path).chunks())
    assert sum(c.size for c in chunks) == pytest.approx(4.0 * RATE, abs=2)
    buckets = analyze_file(path, bucket_seconds=2.0, spl_offset_db=94.0)
    assert [b.start_s for b in buckets] == [0.0, 2.0]
    assert [b.duration_s for b in buckets] == pytest.approx([2.0, 2.0], abs=1e-3)
    assert buckets[0].laeq_dbfs == pytest.approx(-6.02, abs=0.2)
    assert buckets[1].laeq_dbfs == pytest.approx(-26.02, abs=0.3)
    assert buckets[1].laeq_dbspl == pytest.approx(buckets[1].laeq_dbfs + 94.0)
    assert buckets[0].speech_ratio is None and buckets[0].events == {}
