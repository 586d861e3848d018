"""QA pass 6 on the AMD input paths (/work/notes/qa6/amd/findings.md): callbacks isolated per
call, gaps not analysed as silence, datagram sizes checked, dual-stack sources, registration
conflicts; `dialer amd analyze` per-file errors (I/O errors, missing paths, FIFOs, dangling
links, NaN), absurd sample rates, long files read by their head, band-limited resampling.

The receiver tests drive `handle()` and `tick()` directly (no socket, no playout greenlet), so
every frame the analyzer sees is known and the results are exact."""
from __future__ import annotations

import json
import logging
import os
import struct
import time
import tracemalloc
import warnings

import numpy as np
import pytest
from click.testing import CliRunner

from amd import audio, session
from amd.audio import Codec
from amd.detector import AmdResult, Cause
from amd.errors import AudioFormatError, ReceiverError
from amd.receiver import COMFORT_NOISE, UnicastReceiver
from amd.session import analyze_file, analyze_samples
from cli import main

SRC = ("127.0.0.1", 40000)


def _capture(captures_dir):
    sizes = [int(line.split("\t")[3]) for line in (captures_dir / "21_unicast_native_packets.tsv").read_text().splitlines()[1:]]
    blob = (captures_dir / "21_unicast_native_payload.pcmu").read_bytes()
    out, pos = [], 0
    for size in sizes:
        out.append(blob[pos:pos + size])
        pos += size
    return out


def _decoded(payloads):
    return np.concatenate([np.zeros(160, np.int16) if p == COMFORT_NOISE else audio.decode_mulaw(p) for p in payloads])


def _rx(**kw):
    """A receiver driven by hand: prefill 0 so the first datagram plays at the next tick."""
    kw.setdefault("prefill_frames", 0)
    kw.setdefault("first_audio_timeout_s", 30)
    kw.setdefault("stall_timeout_s", 30)
    return UnicastReceiver(("127.0.0.1", 0), **kw)


def _play(rx, source, payloads):
    for p in payloads:
        if p is not None:
            rx.handle(p, source)
        rx.tick()


# -- 1. callbacks -----------------------------------------------------------------------------

def test_a_raising_callback_ends_only_its_own_call(captures_dir, caplog):
    """QA6 #1: A's on_decision raised in tick() on every later tick, so B never got a frame."""
    rx = _rx(first_audio_timeout_s=0.01)
    done = []

    def boom(stream, *_):
        raise RuntimeError("engine callback failed")

    a = rx.register("A", ("127.0.0.1", 40001), Codec.PCMU, on_decision=boom, on_done=lambda s, r: done.append(("A", r)))
    c = rx.register("C", ("127.0.0.1", 40003), Codec.PCMU, on_done=boom)
    b = rx.register("B", ("127.0.0.1", 40002), Codec.PCMU, on_done=lambda s, r: done.append(("B", r)))
    time.sleep(0.02)                              # A's and C's first-audio timeout passes
    payloads = _capture(captures_dir)
    with caplog.at_level(logging.ERROR, logger="amd.receiver"):
        _play(rx, ("127.0.0.1", 40002), payloads)
    assert rx.calls == 0 and a.final.ready() and c.final.ready() and b.final.ready()
    assert (a.final.get().cause, c.final.get().cause) == (Cause.NO_AUDIO, Cause.NO_AUDIO)
    result = b.final.get()
    offline = analyze_samples(_decoded(payloads))
    assert (result.result, result.cause, result.decision_ms, result.beep_end_ms) == \
        (offline.result, offline.cause, offline.decision_ms, offline.beep_end_ms)
    assert [name for name, _ in done] == ["A", "B"]           # on_done still reaches A
    failures = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(failures) == 2                                # A's on_decision, C's on_done: once each


# -- 2. gaps ----------------------------------------------------------------------------------

def test_a_stream_that_stops_ends_at_its_last_real_audio_not_human(captures_dir):
    """QA6 #2: 2 s of greeting, then nothing: 720 ms of fill gave HUMAN / SPEECH_THEN_SILENCE."""
    payloads = _capture(captures_dir)[:100]
    rx = _rx(stall_timeout_s=0.5)
    stream = rx.register("c", SRC, Codec.PCMU)
    _play(rx, SRC, payloads + [None] * 40)                 # 800 ms of ticks without a datagram
    assert not stream.decision.ready()                     # nothing decided on the fills
    time.sleep(0.55)
    rx.tick()                                              # the stall timeout ends the stream
    result = stream.wait_final(0)
    offline = analyze_samples(_decoded(payloads))
    assert (offline.result, offline.cause) == (AmdResult.NOTSURE, Cause.END_OF_AUDIO)
    assert (result.result, result.cause, result.decision_ms) == (offline.result, offline.cause, offline.decision_ms)
    assert stream.stats.concealed == 0 and stream.stats.gap_ticks == 40


def test_a_long_outage_is_cut_out_and_a_short_one_still_concealed(captures_dir):
    """QA6 #2: a 0.8 s outage mid-greeting made the machine a person; now the outage is not
    analysed (decision times count real audio) and the machine is still found. A 100 ms gap is
    filled with silence as before."""
    payloads = _capture(captures_dir)
    rx = _rx()
    long_gap = rx.register("long", SRC, Codec.PCMU)
    _play(rx, SRC, payloads[:100] + [None] * 40 + payloads[140:])
    result = long_gap.wait_final(0)
    spliced = analyze_samples(_decoded(payloads[:100] + payloads[140:]))
    assert (result.result, result.cause) == (AmdResult.MACHINE, Cause.LONG_SPEECH)
    assert abs(result.decision_ms - spliced.decision_ms) <= 40
    assert result.beep_end_ms is not None and abs(result.beep_end_ms - spliced.beep_end_ms) <= 40
    assert long_gap.stats.concealed == 0 and long_gap.stats.gap_ticks == 40

    short_gap = rx.register("short", ("127.0.0.1", 40010), Codec.PCMU)
    _play(rx, ("127.0.0.1", 40010), payloads[:100] + [None] * 5 + payloads[105:])
    result = short_gap.wait_final(0)
    assert short_gap.stats.concealed == 5 and short_gap.stats.gap_ticks == 0
    assert result.result is AmdResult.MACHINE


# -- 7. datagram sizes ------------------------------------------------------------------------

def test_datagram_sizes_are_checked_against_codec_rate_and_ptime():
    """QA6 #7: any size was decoded, so a codec switch played as noise, 640-byte 16 kHz L16 on an
    8 kHz registration played at half speed, and 65000 bytes of garbage decided MACHINE."""
    rx = _rx()
    pcmu = rx.register("pcmu", ("127.0.0.1", 40020), Codec.PCMU)
    bad = [b"", b"\x00", b"\x01" * 159, b"\x01" * 161, b"\x01" * 320, b"\x01" * 319, b"\x00" * 65000]
    for payload in bad:
        rx.handle(payload, ("127.0.0.1", 40020))
    assert pcmu.stats.bad_datagrams == len(bad) and not pcmu.buffer and not pcmu.started
    rx.handle(COMFORT_NOISE, ("127.0.0.1", 40020))        # 320 x 0xFF: 20 ms of silence
    rx.handle(b"\x55" * 160, ("127.0.0.1", 40020))
    assert pcmu.stats.comfort_noise == 1 and len(pcmu.buffer) == 2 and pcmu.stats.bad_datagrams == len(bad)

    narrow = rx.register("l16", ("127.0.0.1", 40021), Codec.L16, 8000)
    rx.handle(b"\x01\x00" * 320, ("127.0.0.1", 40021))    # 640 bytes: a 16 kHz leg
    rx.handle(b"\x01\x00" * 80, ("127.0.0.1", 40021))     # 160 bytes: PCMU
    assert narrow.stats.bad_datagrams == 2 and not narrow.buffer
    rx.handle(b"\x01\x00" * 160, ("127.0.0.1", 40021))
    assert len(narrow.buffer) == 1

    wide = rx.register("wide", ("127.0.0.1", 40022), Codec.L16, 16000)
    rx.handle(b"\x01\x00" * 160, ("127.0.0.1", 40022))    # 320 bytes: an 8 kHz leg
    assert wide.stats.bad_datagrams == 1
    rx.handle(b"\xff" * 640, ("127.0.0.1", 40022))        # 16 kHz comfort noise
    rx.handle(b"\x01\x00" * 320, ("127.0.0.1", 40022))
    assert wide.stats.comfort_noise == 1 and len(wide.buffer) == 2

    # another packetization, registered: 30 ms PCMU is 240 bytes, split into 20 ms frames
    ptime30 = rx.register("p30", ("127.0.0.1", 40023), Codec.PCMU, ptime_ms=30)
    rx.handle(b"\x55" * 240, ("127.0.0.1", 40023))
    rx.handle(b"\x55" * 240, ("127.0.0.1", 40023))
    rx.handle(b"\x55" * 160, ("127.0.0.1", 40023))
    assert len(ptime30.buffer) == 3 and ptime30.stats.bad_datagrams == 1
    with pytest.raises(ReceiverError):
        rx.register("p25", ("127.0.0.1", 40024), Codec.PCMU, ptime_ms=25)


def test_a_stream_of_only_malformed_datagrams_ends_as_no_audio():
    rx = _rx(first_audio_timeout_s=0.05)
    stream = rx.register("garbage", SRC, Codec.PCMU)
    for _ in range(10):
        rx.handle(b"\x00" * 321, SRC)
        rx.tick()
    time.sleep(0.06)
    rx.tick()
    assert stream.wait_final(0).cause is Cause.NO_AUDIO and stream.stats.bad_datagrams == 10


# -- 9, 10. registration and dual stack ---------------------------------------------------------

def test_port_only_registration_over_an_exact_one_is_refused():
    """QA6 #9: the reverse order was refused, this one accepted (and got no audio)."""
    rx = _rx()
    rx.register("exact", ("127.0.0.1", 18320), Codec.PCMU)
    with pytest.raises(ReceiverError):
        rx.register("any", 18320, Codec.PCMU)
    rx.register("other-port", 18321, Codec.PCMU)
    assert rx.calls == 2


def test_ipv4_mapped_sources_of_a_dual_stack_socket_match_ipv4_registrations():
    """QA6 #10: a receiver bound to '::' sees IPv4 senders as ::ffff:a.b.c.d."""
    rx = _rx()
    stream = rx.register("c", ("127.0.0.1", 18341), Codec.PCMU)
    rx.handle(b"\x7f" * 160, ("::ffff:127.0.0.1", 18341, 0, 0))
    assert stream.stats.datagrams == 1 and len(stream.buffer) == 1 and rx.unknown_datagrams == 0
    mapped = rx.register("m", ("::ffff:10.0.0.5", 18342), Codec.PCMU)
    rx.handle(b"\x7f" * 160, ("10.0.0.5", 18342))
    assert mapped.stats.datagrams == 1


# -- 3, 8, 11. `dialer amd analyze` per-file errors ----------------------------------------------

def _tone_file(path, rate=8000, seconds=3.0):
    t = np.arange(int(rate * seconds)) / rate
    x = np.where((t > 1.0) & (t < 1.5), 6000 * np.sin(2 * np.pi * 1000 * t), 0.0)
    audio.write_wav(path, audio.to_int16(x), rate)


def test_an_io_error_on_one_file_is_a_per_file_error(tmp_path):
    """QA6 #3: b.wav -> /proc/self/mem (reading it fails with EIO) ended the run in a traceback
    and c.wav was never analysed."""
    d = tmp_path / "d"
    d.mkdir()
    _tone_file(d / "a.wav")
    os.symlink("/proc/self/mem", d / "b.wav")
    _tone_file(d / "c.wav")
    out = CliRunner().invoke(main, ["amd", "analyze", "--json", str(d)])
    assert out.exit_code == 1 and out.exception is None or isinstance(out.exception, SystemExit)
    lines = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert [line["file"].rsplit("/", 1)[1] for line in lines] == ["a.wav", "c.wav"]
    assert f"{d / 'b.wav'}: cannot read: " in out.output
    assert "1 of 3 files could not be analysed" in out.output


def test_missing_paths_fifos_and_dangling_links_are_per_file_errors(tmp_path):
    """QA6 #8, #11: a missing path among several was a usage error before anything ran, a FIFO
    was "no such file", a dangling *.wav link in a directory was skipped in silence, and error
    lines printed the path twice."""
    good = tmp_path / "good.wav"
    _tone_file(good)
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    d = tmp_path / "d"
    d.mkdir()
    os.symlink(tmp_path / "nowhere.wav", d / "broken.wav")
    _tone_file(d / "ok.wav")
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    out = CliRunner().invoke(main, ["amd", "analyze", "--json", str(good), str(tmp_path / "nope.wav"), str(fifo),
                                    str(d), str(empty)])
    assert out.exit_code == 1
    lines = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert [line["file"] for line in lines] == [str(good), str(d / "ok.wav")]
    assert f"{tmp_path / 'nope.wav'}: no such file or directory" in out.output
    assert f"{fifo}: not a regular file" in out.output
    assert f"{d / 'broken.wav'}: broken symbolic link" in out.output
    assert f"{empty}: not a RIFF/WAVE file" in out.output and out.output.count(str(empty)) == 1
    assert "4 of 6 files could not be analysed" in out.output


def test_nan_in_a_float_wav_is_a_bad_file_without_a_numpy_warning(tmp_path):
    """QA6 #11: NaN samples printed numpy's RuntimeWarning; such a file is refused."""
    x = np.zeros(8000, dtype="<f4")
    x[100] = np.nan
    path = tmp_path / "nan.wav"
    pcm = x.tobytes()
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
                     + b"fmt " + struct.pack("<IHHIIHH", 16, 3, 1, 8000, 32000, 4, 32)
                     + b"data" + struct.pack("<I", len(pcm)) + pcm)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AudioFormatError, match="NaN"):
            audio.read_wav(path)


# -- 4, 5, 6. sample rates, long files, aliasing ---------------------------------------------------

def _wav_header(rate, n_bytes, bits=16):
    return (b"RIFF" + struct.pack("<I", 36 + n_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * bits // 8 % 2**32, bits // 8, bits)
            + b"data" + struct.pack("<I", n_bytes))


def test_an_absurd_sample_rate_is_refused(tmp_path):
    """QA6 #4: rate 10000007 made the resampler allocate gigabytes."""
    path = tmp_path / "r.wav"
    path.write_bytes(_wav_header(10_000_007, 200) + b"\x00" * 200)
    with pytest.raises(AudioFormatError, match="sample rate 10000007 Hz out of range"):
        audio.read_wav(path)
    ok = tmp_path / "ok.wav"
    ok.write_bytes(_wav_header(384000, 200) + b"\x00" * 200)
    assert audio.read_wav(ok)[1] == 384000


def test_a_long_file_is_read_only_as_far_as_the_analysis_goes(tmp_path):
    """QA6 #5: a 5-minute 44.1 kHz file was decoded and resampled whole (482 MB, 32 s) for a
    decision at 3.6 s."""
    rate, seconds = 44100, 300
    noise = np.random.default_rng(1).normal(0, 30, rate * seconds).astype("<i2").tobytes()
    path = tmp_path / "long.wav"
    path.write_bytes(_wav_header(rate, len(noise)) + noise)
    del noise
    import scipy.signal  # noqa: F401  (imported before measuring: its import is not the file's cost)
    tracemalloc.start()
    try:
        result = analyze_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (result.result, result.cause) == (AmdResult.HUMAN, Cause.SILENT_ANSWER)
    assert peak < 40e6, peak         # the whole file is 26 MB as int16, 106 MB as float64


def test_a_head_too_short_for_the_analysis_is_read_again_longer(tmp_path, captures_dir, monkeypatch):
    """The head's length is a bound from the parameters; should the analysis outrun it, the
    result is still that of the whole file."""
    path = captures_dir / "21_unicast_native_decoded.wav"
    whole = analyze_samples(audio.load_audio_8k(path))
    monkeypatch.setattr(session, "analysis_bound_ms", lambda params: 700)
    assert analyze_file(path) == whole
    assert (whole.result, whole.cause, whole.beep_end_ms) == (AmdResult.MACHINE, Cause.LONG_SPEECH, 15980)


@pytest.mark.parametrize("rate", [24000, 48000, 96000, 192000, 44100])
def test_resampling_from_high_rates_does_not_alias(rate, tmp_path):
    """QA6 #6: the 47-tap decimator passed a 6.5 kHz tone in a 96 kHz file at -23 dB, folded to
    1500 Hz: a beep. Out-of-band tones now come out 70 dB down or more, 1 kHz within 0.5 dB."""
    t = np.arange(rate) / rate

    def level_db(freq, amplitude):
        audio.write_wav(tmp_path / "t.wav", audio.to_int16(amplitude * np.sin(2 * np.pi * freq * t)), rate)
        y = audio.load_audio_8k(tmp_path / "t.wav").astype(np.float64)[400:-400]
        return 20 * np.log10(max(np.sqrt(np.mean(y ** 2)), 1e-9) / (amplitude / np.sqrt(2)))

    for freq in (4700, 6500, 9000):
        if freq < rate / 2:
            assert level_db(freq, 30000) < -70, freq
    assert abs(level_db(1000, 10000)) < 0.5


def test_a_tone_above_the_band_in_a_96k_file_is_not_a_beep(tmp_path):
    rate = 96000
    t = np.arange(int(rate * 0.6)) / rate
    x = np.concatenate([np.zeros(2 * rate), 29000 * np.sin(2 * np.pi * 6500 * t), np.zeros(4 * rate)])
    audio.write_wav(tmp_path / "tone.wav", audio.to_int16(x), rate)
    result = analyze_file(tmp_path / "tone.wav")
    assert result.cause is not Cause.BEEP and result.beep_end_ms is None


def test_8k_and_16k_files_keep_their_exact_decoding(tmp_path):
    """The benchmark corpus is stored at 8 and 16 kHz: those paths must not change a bit."""
    x = np.random.default_rng(2).normal(0, 3000, 16000 * 3).astype(np.int16)
    audio.write_wav(tmp_path / "w.wav", x, 16000)
    assert np.array_equal(audio.load_audio_8k(tmp_path / "w.wav"), audio.Decimator(2).process(x))
    audio.write_wav(tmp_path / "n.wav", x, 8000)
    assert np.array_equal(audio.load_audio_8k(tmp_path / "n.wav"), x)
