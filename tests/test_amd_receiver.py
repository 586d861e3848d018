"""Unicast receiver: real UDP datagrams on 127.0.0.1, the real FreeSWITCH capture payloads
replayed with their packet sizes, loss, reordering, comfort noise, demultiplexing, timeouts.

The playout clock and the sender run in real time (20 ms), as FreeSWITCH streams: a faster
replay left the jitter buffer too little slack when the test process was busy. Scheduler jitter
can still make the receiver fill or drop a frame; each such frame shifts the live timeline by 20 ms,
so timing checks allow for the frames the receiver reports it filled or dropped."""
from __future__ import annotations

import socket
import time

import gevent
import numpy as np
import pytest

from amd import audio
from amd.audio import Codec
from amd.detector import AmdResult, Cause
from amd.errors import ReceiverError
from amd.receiver import COMFORT_NOISE, UnicastReceiver
from amd.session import analyze_samples

TICK = 0.020     # real time: a 4x playout left too little slack for a busy test process


def load_capture(captures_dir, name):
    """(payloads, codec) of a capture, split exactly as the datagrams were received."""
    sizes = [int(line.split("\t")[3]) for line in (captures_dir / f"21_unicast_{name}_packets.tsv").read_text().splitlines()[1:]]
    blob = (captures_dir / f"21_unicast_{name}_payload.{'pcmu' if name == 'native' else 'l16le'}").read_bytes()
    assert sum(sizes) == len(blob)
    payloads, pos = [], 0
    for size in sizes:
        payloads.append(blob[pos:pos + size])
        pos += size
    return payloads


@pytest.fixture
def receiver():
    # Generous stall timeout: a scheduler hiccup on a loaded machine must not end a stream early.
    rx = UnicastReceiver(("127.0.0.1", 0), tick_s=TICK, jitter_frames=30, prefill_frames=3, first_audio_timeout_s=0.3,
                         stall_timeout_s=0.5)
    rx.start()
    yield rx
    rx.stop()


@pytest.fixture
def sender():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def send_paced(sock, address, payloads, period=TICK):
    """Send with the stream's cadence (one datagram per tick); gevent-friendly sleeps. The
    clock is time.monotonic(): the loop's cached now() stays stale across sleep(0), which once
    behind would send the rest of the capture in one burst."""
    start = time.monotonic()
    for i, payload in enumerate(payloads):
        sock.sendto(payload, address)
        delay = start + (i + 1) * period - time.monotonic()
        gevent.sleep(max(delay, 0))


def test_native_capture_replay_matches_file_analysis(receiver, sender, captures_dir):
    payloads = load_capture(captures_dir, "native")
    stream = receiver.register("call-1", sender.getsockname(), Codec.PCMU)
    send_paced(sender, receiver.address, payloads)
    result = stream.wait_final(timeout=10)
    # the same audio decoded offline (160-byte PCMU frames; 320 x 0xFF comfort noise = 20 ms silence)
    decoded = np.concatenate([np.zeros(160, np.int16) if p == COMFORT_NOISE else audio.decode_mulaw(p) for p in payloads])
    offline = analyze_samples(decoded)
    assert stream.stats.comfort_noise > 0 and stream.stats.bad_datagrams == 0
    assert result.result is offline.result is AmdResult.MACHINE
    # each concealed or dropped frame shifts the live timeline by 20 ms against the file's
    shift = 20 * (stream.stats.concealed + stream.stats.overflow_dropped) + 40
    assert abs(result.decision_ms - offline.decision_ms) <= shift
    assert result.beep_end_ms is not None and 14500 <= result.beep_end_ms <= 16100 + shift
    assert abs(result.beep_end_ms - offline.beep_end_ms) <= shift
    assert stream.decision.ready() and stream.wait_decision(0).result is AmdResult.MACHINE


def test_l16_capture_replay(receiver, sender, captures_dir):
    payloads = load_capture(captures_dir, "l16")
    stream = receiver.register("call-l16", sender.getsockname(), Codec.L16, 8000)
    send_paced(sender, receiver.address, payloads)
    result = stream.wait_final(timeout=10)
    shift = 20 * (stream.stats.concealed + stream.stats.overflow_dropped)
    assert result.result is AmdResult.MACHINE
    assert result.beep_end_ms is not None and 14500 <= result.beep_end_ms <= 16100 + shift


def test_loss_is_filled_and_reordering_is_survived(receiver, sender, captures_dir):
    payloads = load_capture(captures_dir, "native")
    rng = np.random.default_rng(5)
    kept = [p for p in payloads if rng.random() > 0.03]                 # 3 % lost
    for i in range(10, len(kept) - 1, 37):                              # adjacent swaps
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    stream = receiver.register("lossy", sender.getsockname(), Codec.PCMU)
    # the sender keeps the 20 ms cadence for lost packets: their slots stay empty
    schedule = []
    for p in payloads:
        schedule.append(p if p in kept else None)
    start = time.monotonic()
    for i, p in enumerate(schedule):
        if p is not None:
            sender.sendto(p, receiver.address)
        gevent.sleep(max(start + (i + 1) * TICK - time.monotonic(), 0))
    result = stream.wait_final(timeout=10)
    assert stream.stats.concealed >= 1
    assert result.result is AmdResult.MACHINE
    assert result.beep_end_ms is not None and 14400 <= result.beep_end_ms <= 16200


def test_demultiplexes_calls_by_source(receiver):
    a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    try:
        t = np.arange(audio.RATE * 3) / audio.RATE
        beep = np.concatenate([np.zeros(4000), 6000 * np.sin(2 * np.pi * 1000 * t[:4000]), np.zeros(16000)]).astype(np.int16)
        quiet = np.zeros(24000, dtype=np.int16)
        stream_a = receiver.register("A", a.getsockname(), Codec.PCMA)
        stream_b = receiver.register("B", b.getsockname()[1], Codec.L16)     # by port alone
        frames_a = [audio.encode_alaw(beep[i:i + 160]) for i in range(0, len(beep), 160)]
        frames_b = [quiet[i:i + 160].tobytes() for i in range(0, len(quiet), 160)]
        stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stranger.bind(("127.0.0.1", 0))
        stranger.sendto(b"\x00" * 320, receiver.address)
        stranger.close()
        start = time.monotonic()
        for i, (fa, fb) in enumerate(zip(frames_a, frames_b)):
            a.sendto(fa, receiver.address)
            b.sendto(fb, receiver.address)
            gevent.sleep(max(start + (i + 1) * TICK - time.monotonic(), 0))
        ra, rb = stream_a.wait_final(timeout=5), stream_b.wait_final(timeout=5)
        shift = 20 * (stream_a.stats.concealed + stream_a.stats.overflow_dropped)
        assert ra.result is AmdResult.MACHINE and ra.cause is Cause.BEEP and abs(ra.beep_end_ms - 1000) <= 40 + shift
        assert rb.cause in (Cause.SILENT_ANSWER, Cause.END_OF_AUDIO) and rb.beep_end_ms is None
        assert receiver.unknown_datagrams == 1     # the stranger; late ones for finished calls are counted apart
    finally:
        a.close()
        b.close()


def test_l16_16khz_is_downsampled(receiver, sender):
    rate = 16000
    t = np.arange(rate) / rate
    x = np.concatenate([np.zeros(rate // 2), 6000 * np.sin(2 * np.pi * 850 * t[: rate // 2]), np.zeros(rate)]).astype(np.int16)
    stream = receiver.register("wide", sender.getsockname(), Codec.L16, 16000)
    send_paced(sender, receiver.address, [x[i:i + 320].tobytes() for i in range(0, len(x), 320)])
    result = stream.wait_final(timeout=5)
    shift = 20 * (stream.stats.concealed + stream.stats.overflow_dropped)
    assert result.cause is Cause.BEEP and abs(result.beep_end_ms - 1000) <= 40 + shift


def test_no_audio_and_bad_datagrams(receiver, sender):
    silent = receiver.register("nothing", ("127.0.0.1", 9), Codec.PCMU)
    result = silent.wait_final(timeout=3)
    assert (result.result, result.cause) == (AmdResult.NOTSURE, Cause.NO_AUDIO)
    stream = receiver.register("odd", sender.getsockname(), Codec.L16)
    sender.sendto(b"\x01\x02\x03", receiver.address)                  # odd-length L16: dropped, counted
    send_paced(sender, receiver.address, [np.zeros(160, np.int16).tobytes()] * 20)
    stream.wait_final(timeout=3)
    assert stream.stats.bad_datagrams == 1 and stream.stats.frames_played >= 20


def test_registration_errors(receiver):
    receiver.register("x", ("127.0.0.1", 5000))
    with pytest.raises(ReceiverError):
        receiver.register("x", ("127.0.0.1", 5001))
    with pytest.raises(ReceiverError):
        receiver.register("y", ("127.0.0.1", 5000))
    with pytest.raises(ReceiverError):
        receiver.register("z", ("127.0.0.1", 5002), Codec.PCMU, 16000)
    receiver.unregister("x")
    assert receiver.calls == 0
