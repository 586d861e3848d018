"""Audio decoding for AMD: G.711 mu-law / A-law, L16, WAV files, resampling to 8 kHz.

G.711 (ITU-T, 11/88) defines both companding laws; the decode tables below are built from its
segment/mantissa formulas once and applied with numpy indexing, so a 20 ms frame decodes in a
single vectorised lookup. FreeSWITCH's unicast stream carries either L16 (signed 16-bit
little-endian, mono, at the channel's read rate) or the native codec payload (PCMU/PCMA), see
../shared/reference/esl-protocol.md "unicast".

WAV files (RIFF, "WAVE"): format tags 1 (PCM 8/16/24/32-bit), 3 (IEEE float), 6 (A-law),
7 (mu-law) and 0xFFFE (WAVE_FORMAT_EXTENSIBLE with one of those sub-formats), at 1000-384000 Hz.
Stereo input uses the first channel. 16 kHz goes through the live path's decimator; other rates
are resampled to 8 kHz by a polyphase FIR (scipy's resample_poly; cutoff 3.6 kHz, about 90 dB
stop band) whose length scales with the ratio, so nothing above the telephone band folds into it
(see to_8k). Files are read from disk only as far as asked (read_wav_head, load_audio_8k_head).
Errors are AudioFormatError with the path first; OSError (missing, unreadable) propagates.
"""
from __future__ import annotations

import enum
import math
import os
import stat
import struct
from dataclasses import dataclass
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
    # a chunk x taps array of a steep ratio reached gigabytes (QA6 #4): bound it; 4096 rows as
    # before for the spans of the usual rates (to 44.1 kHz), so their output does not change
    chunk = 4096 if len(offsets) <= 256 else max(64, (1 << 20) // len(offsets))
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

# The highest rate WAV writers use (DXD 352.8 kHz, 384 kHz). A header claiming more is corrupt or
# crafted, and resampling from it would cost memory out of proportion to the file (QA6 #4).
MIN_RATE, MAX_RATE = 1000, 384000
_FMT_READ_MAX = 4096            # a fmt chunk is 16-40 bytes; do not read a crafted huge one whole


@dataclass(frozen=True)
class WavInfo:
    """Where a WAV file's first channel lives: its encoding and its data chunk's extent."""

    tag: int
    channels: int
    rate: int
    block_align: int
    bits: int
    data_offset: int
    data_bytes: int

    @property
    def frames(self) -> int:
        return self.data_bytes // self.block_align


def _open_regular(path: str | Path):
    """Open a regular file for reading. A FIFO or a device named *.wav would block or never end,
    so it is refused up front with a clear reason (QA6 #8); OSError (missing, permission, a
    dangling link) propagates for the caller to report per file."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise AudioFormatError(f"{path}: not a regular file")
    return open(path, "rb")


def _wav_info(f, path, file_size: int) -> WavInfo:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFormatError(f"{path}: not a RIFF/WAVE file")
    fmt = None
    data = None
    pos = 12
    while pos + 8 <= file_size:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            break
        chunk_id, size = header[:4], struct.unpack_from("<I", header, 4)[0]
        if chunk_id == b"fmt ":
            body = f.read(min(size, _FMT_READ_MAX))
            if len(body) < 16:
                raise AudioFormatError(f"{path}: short fmt chunk")
            tag, channels, rate, _, block_align, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAVE_EXTENSIBLE:
                if len(body) < 40:
                    raise AudioFormatError(f"{path}: short WAVE_FORMAT_EXTENSIBLE chunk")
                tag = struct.unpack_from("<H", body, 24)[0]
            fmt = (tag, channels, rate, block_align, bits)
        elif chunk_id == b"data":
            held = max(file_size - (pos + 8), 0)
            if size in (0, 0xFFFFFFFF):
                # the sizes a recorder that streams the file writes before it knows the
                # length, and never comes back to fix: the data runs to the end of the file
                data = (pos + 8, held)
                break
            if held < size:
                raise AudioFormatError(f"{path}: truncated: the data chunk declares {size} bytes, "
                                       f"the file holds {held}")
            data = (pos + 8, size)
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise AudioFormatError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, block_align, bits = fmt
    if channels < 1 or rate < 1 or block_align < 1:
        raise AudioFormatError(f"{path}: bad format (channels={channels}, rate={rate})")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioFormatError(f"{path}: sample rate {rate} Hz out of range ({MIN_RATE}-{MAX_RATE} Hz)")
    return WavInfo(tag, channels, rate, block_align, bits, data[0], data[1])


def _decode_wav(pcm: bytes, info: WavInfo, path) -> np.ndarray:
    block_align, channels, tag = info.block_align, info.channels, info.tag
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
        if not np.isfinite(floats).all():
            # a NaN has no level to give: the file is refused rather than guessed at (QA6 #11)
            raise AudioFormatError(f"{path}: float samples include NaN or infinity")
        samples = to_int16(floats * 32767.0)
    else:
        raise AudioFormatError(f"{path}: unsupported WAV encoding (tag {tag}, {info.bits} bits)")
    return samples


def read_wav_head(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, int, bool]:
    """A WAV file's first channel as int16 at its own rate, at most `max_frames` sample frames:
    (samples, rate, complete). Only the header and those frames are read from disk, so an hour
    of audio costs what its head costs (QA6 #5). complete: the data chunk was read to its end."""
    with _open_regular(path) as f:
        file_size = os.fstat(f.fileno()).st_size
        info = _wav_info(f, path, file_size)
        frames = info.frames if max_frames is None else min(info.frames, max(int(max_frames), 0))
        f.seek(info.data_offset)
        pcm = f.read(frames * info.block_align)
    complete = frames >= info.frames and len(pcm) >= frames * info.block_align
    return _decode_wav(pcm, info, path), info.rate, complete


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read a WAV file's first channel as int16 at its own rate: (samples, rate)."""
    samples, rate, _ = read_wav_head(path)
    return samples, rate


# Polyphase resampling keeps the filter at 32 output samples (as resample() does) whatever the
# ratio, so its length grows with max(up, down); past this the ratio is an odd one (a crafted or
# unusual rate) and two stages are cheaper (see to_8k).
_POLY_MAX_RATIO_TERM = 2000


def _poly_filter(up: int, down: int) -> np.ndarray:
    """Low-pass for resample_poly at the up-sampled rate: cutoff 0.9 x the lower Nyquist (as
    resample()), Kaiser beta 9 (about 90 dB stop band: a tone above the telephone band must
    not fold into it as a quieter tone the beep detector still hears, QA6 #6)."""
    from scipy.signal import firwin
    max_rate = max(up, down)
    half_len = 24 * max_rate
    return firwin(2 * half_len + 1, 0.9 / max_rate, window=("kaiser", 9.0))


def _resample_poly(samples: np.ndarray, up: int, down: int) -> np.ndarray:
    from scipy.signal import resample_poly
    return resample_poly(np.asarray(samples, dtype=np.float64), up, down, window=_poly_filter(up, down))


def to_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    """int16 samples at `rate` as int16 at 8 kHz, band-limited.

    8 kHz passes through and 16 kHz goes through the 47-tap Decimator of live L16 16 kHz (both
    exactly as before: the benchmark corpus is stored at these two rates). Every other rate is
    resampled by a polyphase FIR whose length scales with the ratio: the fixed 47-tap decimator
    let 48-192 kHz files alias (a 6.5 kHz tone in a 96 kHz file became a 1500 Hz "beep", QA6 #6).
    """
    if rate == RATE:
        return samples
    if rate == 2 * RATE:
        return Decimator(2).process(samples)
    g = math.gcd(RATE, rate)
    up, down = RATE // g, rate // g
    if max(up, down) <= _POLY_MAX_RATIO_TERM:
        return to_int16(_resample_poly(samples, up, down))
    if rate >= 4 * RATE:
        # an odd high rate: first an integer decimation to 16-32 kHz, then the windowed sinc
        factor = rate // (2 * RATE)
        return to_int16(resample(_resample_poly(samples, 1, factor), rate / factor, RATE))
    return to_int16(resample(samples, rate, RATE))


_HEAD_MARGIN_MS = 200            # longer than any resampling filter's reach (a few ms)


def load_audio_8k_head(path: str | Path, max_ms: int | None = None) -> tuple[np.ndarray, bool]:
    """The first `max_ms` of a WAV file (all of it when None) as int16 mono at 8 kHz, and
    whether that is the whole file. A little more than max_ms is read so that the resampling
    filters have settled over the whole max_ms."""
    if max_ms is None:
        samples, rate, complete = read_wav_head(path)
    else:
        with _open_regular(path) as f:
            rate = _wav_info(f, path, os.fstat(f.fileno()).st_size).rate
        frames = math.ceil((max_ms + _HEAD_MARGIN_MS) * rate / 1000)
        samples, rate, complete = read_wav_head(path, frames)
    return to_8k(samples, rate), complete


def load_audio_8k(path: str | Path) -> np.ndarray:
    """A WAV file as int16 mono samples at 8 kHz."""
    return load_audio_8k_head(path)[0]


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
