"""Per-frame features for AMD, computed for a batch of calls at once.

Every 20 ms frame (160 samples at 8 kHz) of every call gives: its level in dBFS, the webrtcvad
speech flag, and the tone analysis the beep detector needs: the strongest spectral peak and the
strongest other peak of an 80 ms Hann window ending with this frame (7.8 Hz bins after zero
padding to 1024 points, so ringback's 440 and 480 Hz are separate peaks), and how much of the
300-3400 Hz energy they hold ("purity"). A frame only looks backwards: its features depend on
this frame and the three before it, never on later audio.

The arrays are computed for all calls of a tick in one numpy pass (rows = calls), which is what
makes a thousand streams per core possible; a single call is a batch of one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
import webrtcvad

from amd.audio import FRAME_SAMPLES, RATE

WINDOW_FRAMES = 4                                   # 80 ms analysis window for tones
WINDOW = WINDOW_FRAMES * FRAME_SAMPLES
NFFT = 1024
BIN_HZ = RATE / NFFT
_BAND = (int(300 / BIN_HZ), int(3400 / BIN_HZ) + 1)
# float32 through scipy.fft: half the time of numpy's float64 FFT here, results within 1e-6
_HANN = np.hanning(WINDOW).astype(np.float32)
_PEAK_OFFSETS = np.arange(-2, 3)                    # bins summed into a peak's energy
_MASK_OFFSETS = np.arange(-3, 4)                    # bins hidden around the first peak
SILENT_DB = -85.0                                   # below this a frame is digital silence (lost / CN)


@dataclass(slots=True)
class FrameFeatures:
    """Features of one frame of one call (one row of FeatureExtractor.compute())."""

    level_db: float
    mean_abs: float    # mean |sample| (app_amd's silence measure)
    vad: bool
    f1_hz: float
    f2_hz: float
    purity1: float     # energy share of the strongest peak in 300-3400 Hz
    purity2: float     # energy share of the two strongest peaks
    ratio2: float      # second peak energy / first peak energy


class FeatureExtractor:
    """Keeps the last 60 ms of each row's audio and computes features for a (rows, 160) batch.

    Rows are calls; the caller keeps each call on the same row (or uses one extractor per call).
    """

    def __init__(self, rows: int = 1, vad_mode: int = 2):
        self.rows = rows
        self.vad_mode = vad_mode
        self.history = np.zeros((rows, WINDOW - FRAME_SAMPLES), dtype=np.float32)
        self._vads = [webrtcvad.Vad(vad_mode) for _ in range(rows)]
        self._padded = _PaddedWindows()

    def add_row(self) -> int:
        """A fresh row (a new call); returns its index."""
        self.history = np.vstack([self.history, np.zeros((1, self.history.shape[1]), dtype=np.float32)])
        self._vads.append(webrtcvad.Vad(self.vad_mode))
        self.rows += 1
        return self.rows - 1

    def reset_row(self, row: int) -> None:
        """Forget a row's past so it can carry another call."""
        self.history[row] = 0.0
        self._vads[row] = webrtcvad.Vad(self.vad_mode)

    def compute(self, frames: np.ndarray, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """frames: int16 array (n, 160), one frame per call; `rows` says which row each frame
        belongs to (default: all rows in order). Returns arrays of length n."""
        frames = np.ascontiguousarray(frames, dtype=np.int16)
        x = frames.astype(np.float32)
        if rows is None:
            window = np.concatenate([self.history, x], axis=1)
            self.history = window[:, FRAME_SAMPLES:]
            vads = self._vads
        else:
            window = np.concatenate([self.history[rows], x], axis=1)
            self.history[rows] = window[:, FRAME_SAMPLES:]
            vads = [self._vads[r] for r in rows]
        return _features(frames, x, window, vads, self._padded)

    def compute_one(self, frame: np.ndarray) -> FrameFeatures:
        """Features of one frame for a single-row extractor."""
        return all_rows(self.compute(np.asarray(frame).reshape(1, -1)))[0]


def features_for_signal(samples: np.ndarray, vad_mode: int = 2) -> list[FrameFeatures]:
    """Features of every 20 ms frame of one signal, identical to feeding a FeatureExtractor
    frame by frame (each window holds only this frame and the three before it), computed in
    one numpy pass: for benchmarks that run several detector settings on the same audio."""
    n = len(samples) // FRAME_SAMPLES
    frames = np.ascontiguousarray(samples[:n * FRAME_SAMPLES], dtype=np.int16).reshape(n, FRAME_SAMPLES)
    x = frames.astype(np.float32)
    padded = np.concatenate([np.zeros(WINDOW - FRAME_SAMPLES, dtype=np.float32), x.reshape(-1)])
    window = np.lib.stride_tricks.sliding_window_view(padded, WINDOW)[::FRAME_SAMPLES][:n]
    vad = webrtcvad.Vad(vad_mode)
    return all_rows(_features(frames, x, window, [vad] * n, _PaddedWindows()))


def all_rows(f: dict[str, np.ndarray]) -> list[FrameFeatures]:
    """Every row of a compute() result as FrameFeatures (one list conversion per array)."""
    return [FrameFeatures(*values) for values in zip(
        f["level_db"].tolist(), f["mean_abs"].tolist(), f["vad"].tolist(), f["f1_hz"].tolist(),
        f["f2_hz"].tolist(), f["purity1"].tolist(), f["purity2"].tolist(), f["ratio2"].tolist())]


class _PaddedWindows:
    """A reused (rows, NFFT) buffer whose columns past the window stay zero. Asking
    scipy.fft.rfft for n=NFFT instead pads into a fresh array on every call, and those
    half-megabyte temporaries made the transform 3-5 times slower whenever the allocator handed
    them out as new pages (same output, bit for bit)."""

    def __init__(self):
        self._buffer = np.zeros((0, NFFT), dtype=np.float32)

    def hann(self, window: np.ndarray) -> np.ndarray:
        n = window.shape[0]
        if self._buffer.shape[0] < n:
            self._buffer = np.zeros((n, NFFT), dtype=np.float32)
        padded = self._buffer[:n]
        np.multiply(window, _HANN, out=padded[:, :WINDOW])
        return padded


def _features(frames: np.ndarray, x: np.ndarray, window: np.ndarray, vads,
              padded: _PaddedWindows) -> dict[str, np.ndarray]:
    power = np.einsum("ij,ij->i", x, x) / FRAME_SAMPLES
    level_db = 10.0 * np.log10(power / (32768.0 ** 2) + 1e-12)
    spectrum = scipy.fft.rfft(padded.hann(window))[:, _BAND[0]:_BAND[1]]
    p = spectrum.real ** 2 + spectrum.imag ** 2
    n_rows, n = p.shape
    total = p.sum(axis=1) + 1e-9
    rows = np.arange(n_rows)[:, None]
    k1 = np.argmax(p, axis=1)
    near1 = np.clip(k1[:, None] + _PEAK_OFFSETS, 0, n - 1)
    e1 = p[rows, near1].sum(axis=1)
    # hide the first peak's main lobe, then the strongest remaining bin is the second peak
    masked = p.copy()
    masked[rows, np.clip(k1[:, None] + _MASK_OFFSETS, 0, n - 1)] = 0.0
    k2 = np.argmax(masked, axis=1)
    e2 = p[rows, np.clip(k2[:, None] + _PEAK_OFFSETS, 0, n - 1)].sum(axis=1)
    # one bytes object for the batch, sliced per call (webrtcvad takes 16-bit PCM bytes)
    pcm = frames.tobytes()
    size = 2 * FRAME_SAMPLES
    vad = np.array([level > SILENT_DB and vads[row].is_speech(pcm[row * size:(row + 1) * size], RATE)
                    for row, level in enumerate(level_db.tolist())], dtype=bool)
    return {
        "level_db": level_db,
        "mean_abs": np.abs(x).mean(axis=1),
        "vad": vad,
        "f1_hz": (k1 + _BAND[0]) * BIN_HZ,
        "f2_hz": (k2 + _BAND[0]) * BIN_HZ,
        "purity1": e1 / total,
        "purity2": (e1 + e2) / total,
        "ratio2": e2 / (e1 + 1e-9),
    }
