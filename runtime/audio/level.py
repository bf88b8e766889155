"""Sound level: Leq and A-weighted LAeq (IEC 61672-1) in dBFS, and dB SPL with a calibration.

dBFS follows AES17: a full-scale sine reads 0 dBFS, so a signal with mean square ``m`` reads
``10*log10(2*m)``. A calibration offset ``spl_offset_db`` (measured with a calibrator: the dB
SPL that reads 0 dBFS) turns dBFS into dB SPL.

The A-weighting filter is the analogue IEC 61672 pole/zero set split in two: the four
high-pass sections (poles at 20.6, 20.6, 107.7 and 737.9 Hz) go through the bilinear
transform, which is exact enough far below Nyquist; the double pole at 12194 Hz lies above
the Nyquist frequency of 16 kHz audio, so its smooth low-pass magnitude is matched by a short
linear-phase FIR instead. The result is normalised to 0 dB at 1 kHz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import signal

F1, F2, F3, F4 = 20.598997, 107.65265, 737.86223, 12194.217
FIR_TAPS = 31

# IEC 61672-1:2013 table 3: nominal frequency -> A-weighting (dB) and class 1 limits (+, -).
IEC_A_WEIGHTING: tuple[tuple[float, float, float, float], ...] = (
    (10.0, -70.4, 3.5, math.inf),
    (12.5, -63.4, 3.0, math.inf),
    (16.0, -56.7, 2.5, 4.5),
    (20.0, -50.5, 2.5, 2.5),
    (25.0, -44.7, 2.5, 2.0),
    (31.5, -39.4, 2.0, 2.0),
    (40.0, -34.6, 1.5, 1.5),
    (50.0, -30.2, 1.5, 1.5),
    (63.0, -26.2, 1.5, 1.5),
    (80.0, -22.5, 1.5, 1.5),
    (100.0, -19.1, 1.5, 1.5),
    (125.0, -16.1, 1.5, 1.5),
    (160.0, -13.4, 1.5, 1.5),
    (200.0, -10.9, 1.5, 1.5),
    (250.0, -8.6, 1.4, 1.4),
    (315.0, -6.6, 1.4, 1.4),
    (400.0, -4.8, 1.4, 1.4),
    (500.0, -3.2, 1.4, 1.4),
    (630.0, -1.9, 1.4, 1.4),
    (800.0, -0.8, 1.4, 1.4),
    (1000.0, 0.0, 1.1, 1.1),
    (1250.0, 0.6, 1.4, 1.4),
    (1600.0, 1.0, 1.6, 1.6),
    (2000.0, 1.2, 1.6, 1.6),
    (2500.0, 1.3, 1.6, 1.6),
    (3150.0, 1.2, 1.6, 1.6),
    (4000.0, 1.0, 1.6, 1.6),
    (5000.0, 0.5, 2.1, 2.1),
    (6300.0, -0.1, 2.1, 2.6),
    (8000.0, -1.1, 2.1, 3.1),
    (10000.0, -2.5, 2.6, 3.6),
    (12500.0, -4.3, 3.0, 6.0),
    (16000.0, -6.6, 3.5, 17.0),
    (20000.0, -9.3, 4.0, math.inf),
)

SILENCE_DB = -200.0


def a_weighting_db(freq_hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The analytic A-weighting of IEC 61672-1 (dB, 0 at 1 kHz) at the given frequencies."""
    f2 = np.asarray(freq_hz, dtype=np.float64) ** 2
    with np.errstate(divide="ignore"):
        ra = (F4**2 * f2**2) / ((f2 + F1**2) * np.sqrt((f2 + F2**2) * (f2 + F3**2)) * (f2 + F4**2))
        return np.asarray(20.0 * np.log10(ra) + 2.0, dtype=np.float64)


def design_a_weighting(fs: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(sos of the four high-pass sections, FIR taps of the 12194 Hz low-pass), unit at 1 kHz."""
    w = 2.0 * np.pi
    zeros = np.zeros(4)
    poles = -w * np.array([F1, F1, F2, F3])
    zd, pd, kd = signal.bilinear_zpk(zeros, poles, 1.0, fs)
    sos = signal.zpk2sos(zd, pd, kd)
    freqs = np.linspace(0.0, fs / 2.0, 257)
    fir = signal.firwin2(FIR_TAPS, freqs, F4**2 / (freqs**2 + F4**2), fs=fs)
    # normalise the cascade to exactly 0 dB at 1 kHz
    _, h_sos = signal.sosfreqz(sos, worN=[1000.0], fs=fs)
    _, h_fir = signal.freqz(fir, worN=[1000.0], fs=fs)
    gain = abs(h_sos[0] * h_fir[0])
    sos[0, :3] /= gain
    return sos, fir


def a_filter_response_db(fs: float, freq_hz: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Magnitude (dB) of the digital A-weighting filter used by :class:`LevelMeter`."""
    sos, fir = design_a_weighting(fs)
    f = np.atleast_1d(np.asarray(freq_hz, dtype=np.float64))
    _, h1 = signal.sosfreqz(sos, worN=f, fs=fs)
    _, h2 = signal.freqz(fir, worN=f, fs=fs)
    return np.asarray(20.0 * np.log10(np.abs(h1 * h2)), dtype=np.float64)


def mean_square_to_dbfs(mean_square: float) -> float:
    """AES17 dBFS: a full-scale sine reads 0."""
    if mean_square <= 0.0:
        return SILENCE_DB
    return 10.0 * math.log10(2.0 * mean_square)


@dataclass(slots=True)
class LevelMeter:
    """Streaming Leq/LAeq: feed chunks, read the levels of what was fed since the last reset."""

    fs: float
    _sos: npt.NDArray[np.float64] = field(init=False, repr=False)
    _fir: npt.NDArray[np.float64] = field(init=False, repr=False)
    _zi_sos: npt.NDArray[np.float64] = field(init=False, repr=False)
    _zi_fir: npt.NDArray[np.float64] = field(init=False, repr=False)
    _sum: float = 0.0
    _sum_a: float = 0.0
    _n: int = 0

    def __post_init__(self) -> None:
        self._sos, self._fir = design_a_weighting(self.fs)
        self._zi_sos = np.zeros((self._sos.shape[0], 2))
        self._zi_fir = np.zeros(len(self._fir) - 1)

    def feed(self, samples: npt.NDArray[np.float32]) -> None:
        x = samples.astype(np.float64, copy=False)
        y, self._zi_sos = signal.sosfilt(self._sos, x, zi=self._zi_sos)
        y, self._zi_fir = signal.lfilter(self._fir, 1.0, y, zi=self._zi_fir)
        self._sum += float(np.dot(x, x))
        self._sum_a += float(np.dot(y, y))
        self._n += int(x.size)

    @property
    def samples(self) -> int:
        return self._n

    def leq_dbfs(self) -> float:
        return mean_square_to_dbfs(self._sum / self._n) if self._n else SILENCE_DB

    def laeq_dbfs(self) -> float:
        return mean_square_to_dbfs(self._sum_a / self._n) if self._n else SILENCE_DB

    def reset(self) -> None:
        """Start a new measuring interval; the filter state carries over."""
        self._sum = 0.0
        self._sum_a = 0.0
        self._n = 0
