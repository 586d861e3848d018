"""Decoders (G.711 tables against known values and audioop), WAV reading, resampling."""
from __future__ import annotations

import struct
import subprocess
import warnings

import numpy as np
import pytest

from amd import audio
from amd.errors import AudioFormatError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # deprecated in 3.11, removed in 3.13: a cross-check only, in tests


def test_mulaw_known_values():
    table = audio.MULAW_TO_LINEAR
    assert table[0x00] == -32124 and table[0x80] == 32124
    assert table[0xFF] == 0 and table[0x7F] == 0
    assert table[0xFE] == 8 and table[0x7E] == -8      # MSB set: positive half
    assert table[0xF0] == 120 and table[0x70] == -120


def test_alaw_known_values():
    table = audio.ALAW_TO_LINEAR
    assert table[0xD5] == 8 and table[0x55] == -8
    assert table[0xAA] == 32256 and table[0x2A] == -32256
    assert table[0x80] == 5504 and table[0x00] == -5504


def test_g711_tables_match_audioop_for_every_code():
    codes = bytes(range(256))
    ulaw = np.frombuffer(audioop.ulaw2lin(codes, 2), dtype="<i2")
    alaw = np.frombuffer(audioop.alaw2lin(codes, 2), dtype="<i2")
    assert np.array_equal(audio.decode_mulaw(codes), ulaw)
    assert np.array_equal(audio.decode_alaw(codes), alaw)


def test_encoders_round_trip_and_track_audioop():
    rng = np.random.default_rng(1)
    x = rng.integers(-32000, 32000, 4000).astype(np.int16)
    for encode, decode, ref in ((audio.encode_mulaw, audio.decode_mulaw, audioop.lin2ulaw),
                                (audio.encode_alaw, audio.decode_alaw, audioop.lin2alaw)):
        ours = decode(encode(x)).astype(int)
        theirs = decode(ref(x.tobytes(), 2)).astype(int)
        # both quantise to the same G.711 levels: within one step of each other
        step = np.abs(np.diff(np.sort(np.unique(decode(bytes(range(256))).astype(int))))).max()
        assert np.max(np.abs(ours - theirs)) <= step
        assert np.array_equal(decode(encode(ours)), ours)       # levels are fixed points


def test_l16_decode_and_odd_length():
    assert list(audio.decode_l16(struct.pack("<3h", 1, -2, 32767))) == [1, -2, 32767]
    with pytest.raises(AudioFormatError):
        audio.decode_l16(b"\x00\x01\x02")


def _peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * rate / len(x)


def test_resample_16k_to_8k_keeps_tone_and_removes_alias():
    t = np.arange(16000) / 16000
    tone = 10000 * np.sin(2 * np.pi * 1000 * t)
    y = audio.resample(tone, 16000, 8000)
    assert len(y) == 8000
    assert abs(_peak_hz(y, 8000) - 1000) < 2
    assert np.sqrt(np.mean(y[200:-200] ** 2)) == pytest.approx(10000 / np.sqrt(2), rel=0.02)
    alias = audio.resample(10000 * np.sin(2 * np.pi * 6000 * t), 16000, 8000)
    assert np.sqrt(np.mean(alias[200:-200] ** 2)) < 100         # 6 kHz must not fold to 2 kHz


def test_streaming_decimator_matches_tone():
    t = np.arange(16000) / 16000
    x = (8000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
    d = audio.Decimator(2)
    y = np.concatenate([d.process(x[i:i + 320]) for i in range(0, len(x), 320)])
    assert len(y) == 8000 and abs(_peak_hz(y[100:], 8000) - 700) < 3


@pytest.mark.parametrize("encoding,bits", [("signed-integer", 16), ("u-law", 8), ("a-law", 8), ("floating-point", 32)])
def test_read_wav_encodings_from_sox(tmp_path, encoding, bits):
    src = tmp_path / "src.wav"
    t = np.arange(8000) / 8000
    audio.write_wav(src, (12000 * np.sin(2 * np.pi * 800 * t)).astype(np.int16))
    out = tmp_path / f"out_{encoding}.wav"
    subprocess.run(["sox", str(src), "-e", encoding, "-b", str(bits), str(out)], check=True, timeout=30)
    samples, rate = audio.read_wav(out)
    assert rate == 8000 and len(samples) == 8000
    ref, _ = audio.read_wav(src)
    err = np.abs(samples.astype(int) - ref.astype(int))
    assert np.max(err) <= (400 if bits == 8 else 2)


def test_stereo_44k_uses_first_channel_and_resamples(tmp_path):
    left, right = tmp_path / "l.wav", tmp_path / "r.wav"
    t = np.arange(44100) / 44100
    audio.write_wav(left, (9000 * np.sin(2 * np.pi * 1200 * t)).astype(np.int16), 44100)
    audio.write_wav(right, np.zeros(44100, dtype=np.int16), 44100)
    stereo = tmp_path / "stereo.wav"
    subprocess.run(["sox", "-M", str(left), str(right), str(stereo)], check=True, timeout=30)
    x = audio.load_audio_8k(stereo)
    assert len(x) == 8000
    assert abs(_peak_hz(x.astype(float), 8000) - 1200) < 2
    assert np.sqrt(np.mean(x[100:-100].astype(float) ** 2)) > 5000     # not the silent channel


def test_malformed_wav_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(AudioFormatError, match="missing fmt or data"):
        audio.read_wav(bad)
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(AudioFormatError, match="not a RIFF"):
        audio.read_wav(tmp_path / "text.wav")


def test_truncated_wav_is_an_error_but_a_streamed_one_is_read(tmp_path):
    """A file cut short (its data chunk declares more than it holds) is named as such rather
    than analysed as a few milliseconds of audio; a recorder that streams the file and leaves
    the placeholder size (0 or 0xFFFFFFFF) in the header is read to the end of the file."""
    samples = (1000 * np.sin(np.arange(8000) / 5.0)).astype(np.int16)
    whole = tmp_path / "whole.wav"
    audio.write_wav(whole, samples)
    data = whole.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:100])
    with pytest.raises(AudioFormatError, match="truncated: the data chunk declares 16000 bytes, the file holds 56"):
        audio.read_wav(cut)
    at = data.index(b"data") + 4
    for placeholder in (0, 0xFFFFFFFF):
        streamed = tmp_path / f"streamed_{placeholder}.wav"
        streamed.write_bytes(data[:at] + struct.pack("<I", placeholder) + data[at + 4:])
        got, rate = audio.read_wav(streamed)
        assert rate == 8000 and np.array_equal(got, samples)
