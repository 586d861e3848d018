"""Audio decoding for AMD: G.711 mu-law / A-law, L16, WAV files, resampling to 8 kHz.

G.711 (ITU-T, 11/88) defines both companding laws; the decode tables below are built from its
segment/mantissa formulas once and applied with numpy indexing, so a 20 ms frame decodes in a
single vectorised lookup. FreeSWITCH's unicast stream carries either L16 (signed 16-bit
little-endian, mono, at the channel's read rate) or the native codec payload (PCMU/PCMA), see
../shared/reference/esl-protocol.md "unicast".

WAV files (RIFF, "WAVE"): format tags 1 (PCM 8/16/24/32-bit), 3 (IEEE float), 6 (A-law),
7 (mu-law) and 0xFFFE (WAVE_FORMAT_EXTENSIBLE with one of those sub-formats). Stereo input uses
the first channel; other rates are resampled to 8 kHz with a windowed-sinc interpolator.
"""
from __future__ import annotations

import enum
import math
import struct
from pathlib import Path

import numpy as np

from amd.errors import AudioFormatError

RATE = 8000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160 samples per 20 ms at 8 kHz


class Codec(enum.Enum):
    """Payload encodings the unicast receiver and the file reader understand."""

    L16 = "L16"      # signed 16-bit little-endian linear PCM
    PCMU = "PCMU"    # G.711 mu-law
    PCMA = "PCMA"    # G.711 A-law


def _mulaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF
    sign = inverted & 0x80
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = (codes & 0x0F) << 4
    segment = (codes & 0x70) >> 4
    magnitude = np.where(segment == 0, mantissa + 8, mantissa + 0x108)
    magnitude = np.where(segment > 1, magnitude << np.maximum(segment - 1, 0), magnitude)
    return np.where(codes & 0x80, magnitude, -magnitude).astype(np.int16)


MULAW_TO_LINEAR = _mulaw_table()
ALAW_TO_LINEAR = _alaw_table()


def _encoder(table: np.ndarray):
    """Nearest-level encoder for a decode table (used to build test audio, not on the live path)."""
    order = np.argsort(table.astype(np.int32), kind="stable")
    levels = table[order].astype(np.int32)

    def encode(samples: np.ndarray) -> bytes:
        x = np.asarray(samples, dtype=np.int32)
        idx = np.clip(np.searchsorted(levels, x), 1, len(levels) - 1)
        nearer_low = (x - levels[idx - 1]) <= (levels[idx] - x)
        return order[np.where(nearer_low, idx - 1, idx)].astype(np.uint8).tobytes()

    return encode


encode_mulaw = _encoder(MULAW_TO_LINEAR)
encode_alaw = _encoder(ALAW_TO_LINEAR)


def decode_mulaw(payload: bytes) -> np.ndarray:
    return MULAW_TO_LINEAR[np.frombuffer(payload, dtype=np.uint8)]


def decode_alaw(payload: bytes) -> np.ndarray:
    return ALAW_TO_LINEAR[np.frombuffer(payload, dtype=np.uint8)]


def decode_l16(payload: bytes) -> np.ndarray:
    if len(payload) % 2:
        raise AudioFormatError(f"L16 payload of odd length {len(payload)}")
    return np.frombuffer(payload, dtype="<i2").astype(np.int16)


def decode(payload: bytes, codec: Codec) -> np.ndarray:
    """Decode one payload to int16 samples."""
    if codec is Codec.PCMU:
        return decode_mulaw(payload)
    if codec is Codec.PCMA:
        return decode_alaw(payload)
    if codec is Codec.L16:
        return decode_l16(payload)
    raise AudioFormatError(f"unknown codec {codec!r}")


def resample(samples: np.ndarray, src_rate: int, dst_rate: int = RATE, half_width: int = 16) -> np.ndarray:
    """Band-limited resampling by windowed-sinc (Blackman) interpolation, any rate ratio.

    The cutoff sits at 0.9 x the lower Nyquist frequency, so downsampling removes what would
    alias. Returns float64 samples on the input's scale.
    """
    x = np.asarray(samples, dtype=np.float64)
    if src_rate == dst_rate or len(x) == 0:
        return x.copy()
    if src_rate <= 0 or dst_rate <= 0:
        raise AudioFormatError(f"bad sample rates {src_rate} -> {dst_rate}")
    ratio = dst_rate / src_rate
    cutoff = 0.9 * min(1.0, ratio)          # in units of the input Nyquist
    span = int(math.ceil(half_width / min(1.0, ratio)))
    n_out = int(math.floor(len(x) * ratio))
    out = np.empty(n_out)
    padded = np.concatenate([np.zeros(span), x, np.zeros(span + 1)])
    offsets = np.arange(-span, span + 1)
    chunk = 4096
    for start in range(0, n_out, chunk):
        t = np.arange(start, min(start + chunk, n_out)) / ratio          # input positions
        base = np.floor(t).astype(np.int64)
        taps = base[:, None] + offsets[None, :]
        dist = t[:, None] - taps
        window = 0.42 + 0.5 * np.cos(np.pi * dist / (span + 1)) + 0.08 * np.cos(2 * np.pi * dist / (span + 1))
        weights = cutoff * np.sinc(cutoff * dist) * window
        out[start:start + len(t)] = np.sum(padded[taps + span] * weights, axis=1)
    return out


def to_int16(samples: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(samples), -32768, 32767).astype(np.int16)


_WAVE_PCM, _WAVE_FLOAT, _WAVE_ALAW, _WAVE_MULAW, _WAVE_EXTENSIBLE = 1, 3, 6, 7, 0xFFFE


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file's first channel as int16 at its own rate: (samples, rate)."""
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFormatError(f"{path}: not a RIFF/WAVE file")
    fmt = None
    pcm = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8:pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise AudioFormatError(f"{path}: short fmt chunk")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAVE_EXTENSIBLE:
                if len(body) < 40:
                    raise AudioFormatError(f"{path}: short WAVE_FORMAT_EXTENSIBLE chunk")
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            if size in (0, 0xFFFFFFFF):
                # the sizes a recorder that streams the file writes before it knows the
                # length, and never comes back to fix: the data runs to the end of the file
                pcm = data[pos + 8:]
                break
            if len(body) < size:
                raise AudioFormatError(f"{path}: truncated: the data chunk declares {size} bytes, "
                                       f"the file holds {len(body)}")
            pcm = body
        pos += 8 + size + (size & 1)
    if fmt is None or pcm is None:
        raise AudioFormatError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, block_align, bits = fmt
    if channels < 1 or rate < 1000 or block_align < 1:
        raise AudioFormatError(f"{path}: bad format (channels={channels}, rate={rate})")
    frames = len(pcm) // block_align
    raw = np.frombuffer(pcm[:frames * block_align], dtype=np.uint8).reshape(frames, block_align)
    width = block_align // channels
    first = raw[:, :width]                      # first channel only
    if tag == _WAVE_MULAW and width == 1:
        samples = MULAW_TO_LINEAR[first[:, 0]]
    elif tag == _WAVE_ALAW and width == 1:
        samples = ALAW_TO_LINEAR[first[:, 0]]
    elif tag == _WAVE_PCM and width == 1:
        samples = ((first[:, 0].astype(np.int16) - 128) << 8).astype(np.int16)
    elif tag == _WAVE_PCM and width == 2:
        samples = first.copy().view("<i2")[:, 0].astype(np.int16)
    elif tag == _WAVE_PCM and width in (3, 4):
        # keep the top 16 bits of 24/32-bit samples
        samples = first[:, width - 2:].copy().view("<i2")[:, 0].astype(np.int16)
    elif tag == _WAVE_FLOAT and width in (4, 8):
        floats = first.copy().view("<f4" if width == 4 else "<f8")[:, 0]
        samples = to_int16(floats * 32767.0)
    else:
        raise AudioFormatError(f"{path}: unsupported WAV encoding (tag {tag}, {bits} bits)")
    return samples, rate


def load_audio_8k(path: str | Path) -> np.ndarray:
    """A WAV file as int16 mono samples at 8 kHz."""
    samples, rate = read_wav(path)
    if rate == RATE:
        return samples
    if rate % RATE == 0:            # 16, 24, 48 kHz: the same FIR decimator as live L16 16 kHz
        return Decimator(rate // RATE).process(samples)
    return to_int16(resample(samples, rate, RATE))


def write_wav(path: str | Path, samples: np.ndarray, rate: int = RATE) -> None:
    """Write int16 mono PCM (tests and the corpus builder)."""
    pcm = np.asarray(samples, dtype="<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, _WAVE_PCM, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(pcm))
    Path(path).write_bytes(header + pcm)


def frames(samples: np.ndarray, frame_samples: int = FRAME_SAMPLES):
    """Yield consecutive 20 ms frames; a short last frame is zero-padded."""
    for start in range(0, len(samples), frame_samples):
        frame = samples[start:start + frame_samples]
        if len(frame) < frame_samples:
            frame = np.concatenate([frame, np.zeros(frame_samples - len(frame), dtype=frame.dtype)])
        yield frame


class Decimator:
    """Streaming integer-factor downsampler (16 kHz L16 unicast -> 8 kHz): a windowed-sinc
    low-pass FIR whose state carries across calls, so frame edges add no clicks."""

    def __init__(self, factor: int, taps: int = 47):
        if factor < 1:
            raise AudioFormatError(f"bad decimation factor {factor}")
        self.factor = factor
        n = np.arange(taps) - (taps - 1) / 2
        cutoff = 0.9 / factor
        h = cutoff * np.sinc(cutoff * n) * np.blackman(taps)
        self._h = h / h.sum()
        self._state = np.zeros(taps - 1)
        self._phase = 0

    def process(self, samples: np.ndarray) -> np.ndarray:
        if self.factor == 1:
            return np.asarray(samples, dtype=np.int16)
        x = np.concatenate([self._state, np.asarray(samples, dtype=np.float64)])
        y = np.convolve(x, self._h, mode="valid")
        out = y[self._phase::self.factor]
        self._phase = (self._phase - len(y)) % self.factor
        self._state = x[len(x) - len(self._state):]
        return to_int16(out)
