"""gevent UDP receiver for FreeSWITCH's unicast call audio, feeding one CallAnalyzer per call.

FreeSWITCH streams a parked leg's audio after `sendmsg <uuid>` / `call-command: unicast`
(../shared/reference/esl-protocol.md, "unicast"): one datagram per 20 ms, no RTP header, from
the FreeSWITCH-side `local-ip:local-port` to ours. Default payload L16 (signed 16-bit
little-endian, mono, channel read rate: 320 bytes at 8 kHz, 640 at 16 kHz); with `flags: native`
the codec payload (PCMU/PCMA: 160 bytes). Comfort-noise datagrams are 320 bytes of 0xFF in both
modes at 8 kHz (seen in ../shared/esl-captures/21_*; 640 at 16 kHz): 20 ms of silence, not audio.

Datagram sizes follow from the call's packetization (FreeSWITCH's switch_ivr_park sends the
codec frame as read, or its L16 decoding, or for comfort noise `decoded_bytes_per_packet` bytes
of 0xFF): with `ptime_ms` (20 in every capture: SDP a=ptime:20) a PCMU/PCMA datagram is
8 x ptime bytes, an L16 one 2 x rate x ptime / 1000, comfort noise that L16 size of 0xFF. Any
other size (another codec, another read rate, a truncated or padded payload) is counted in
`bad_datagrams` and dropped, and neither starts the stream nor keeps it alive: decoding it as
audio once played a codec switch as noise and pushed real frames out of the buffer (QA6 #7).

The engine uses one FreeSWITCH-side port per call, so datagrams are demultiplexed on their source
address (or source port alone; IPv4-mapped IPv6 sources of a dual-stack socket match their IPv4
registration). Without sequence numbers, order is arrival order: each call has a bounded jitter
buffer of decoded 20 ms frames drained by one playout clock for all calls (every `tick_s`).
A tick with nothing buffered is a lost frame and is filled with silence, so the detector's
timeline stays on the wall clock - but only for a short gap (`conceal_max_frames`, 200 ms),
and only once real audio follows it (see tick()); a longer gap is cut out of the call's
timeline. Fabricated silence once called a machine whose stream paused for 0.8 s a person
(QA6 #2); decision times count real audio (and short gaps' fills) only. A datagram that
arrives when the buffer is full (a late burst) pushes out the oldest frame. All calls' frames of
a tick go through one batched FeatureExtractor (amd.features), then each call's CallAnalyzer.

Results: `CallStream.decision` (an AsyncResult set at the HUMAN/MACHINE/NOTSURE decision) and
`CallStream.final` (the AnalysisResult once listening ends, with the beep end), plus optional
callbacks. Every wait takes a timeout. A call that sends nothing for `first_audio_timeout_s`
ends NOTSURE / NO_AUDIO; one whose stream stops for `stall_timeout_s` (the leg was bridged or
hung up) ends as at the end of a file (NOTSURE / END_OF_AUDIO if undecided, at the last real
audio). A callback that raises is logged once and ends that call only; the other calls go on
(QA6 #1).
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable

import gevent
import numpy as np
from gevent.event import AsyncResult
from gevent.server import DatagramServer

from amd import audio
from amd.audio import FRAME_SAMPLES, Codec
from amd.detector import AmdResult, Cause, Decision
from amd.errors import AudioFormatError, ReceiverError
from amd.features import FeatureExtractor, all_rows
from amd.params import AmdParams
from amd.session import AnalysisResult, BeepOutcome, CallAnalyzer

log = logging.getLogger(__name__)

COMFORT_NOISE = b"\xff" * 320     # 20 ms at 8 kHz; the size for any stream: UnicastReceiver.expected_sizes


@dataclass
class StreamStats:
    datagrams: int = 0
    bytes: int = 0
    comfort_noise: int = 0
    frames_played: int = 0
    concealed: int = 0            # ticks with no frame buffered (loss or lateness): silence
    overflow_dropped: int = 0     # frames pushed out of a full jitter buffer
    bad_datagrams: int = 0        # wrong size for the codec / rate / ptime, or undecodable
    gap_ticks: int = 0            # ticks of gaps longer than conceal_max_frames: not analysed


@dataclass
class CallStream:
    """One registered call: its expected source, codec, buffer, analyzer and results."""

    call_id: str
    source: tuple[str | None, int]
    codec: Codec
    rate: int
    analyzer: CallAnalyzer
    jitter_frames: int
    registered_at: float
    on_decision: Callable | None = None
    on_done: Callable | None = None
    decision: AsyncResult = field(default_factory=AsyncResult)
    final: AsyncResult = field(default_factory=AsyncResult)
    stats: StreamStats = field(default_factory=StreamStats)
    buffer: deque = field(default_factory=deque)
    pending: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    decimator: audio.Decimator | None = None
    row: int = -1
    started: bool = False
    playing: bool = False
    first_datagram_at: float = 0.0
    last_datagram_at: float = 0.0
    ptime_ms: int = 20
    missing: int = 0                        # ticks since the last real frame was played
    bad_logged: bool = False

    def wait_decision(self, timeout: float) -> Decision:
        """The HUMAN/MACHINE/NOTSURE decision; raises gevent.Timeout when not in time."""
        return self.decision.get(timeout=timeout)

    def wait_final(self, timeout: float) -> AnalysisResult:
        return self.final.get(timeout=timeout)


def _host(host: str | None) -> str | None:
    """An IPv4-mapped IPv6 address (how a dual-stack socket bound to `::` sees IPv4 senders) as
    its IPv4 form, so it matches an IPv4 registration (QA6 #10)."""
    if host is not None and host[:7].lower() == "::ffff:" and "." in host:
        return host[7:]
    return host


class UnicastReceiver(DatagramServer):
    """Bind with UnicastReceiver(("127.0.0.1", port)); start(); register() calls; stop()."""

    def __init__(self, listener, params: AmdParams | None = None, tick_s: float = 0.020,
                 jitter_frames: int = 5, prefill_frames: int = 2, first_audio_timeout_s: float = 3.0, stall_timeout_s: float = 1.0,
                 max_calls: int = 2000, conceal_max_frames: int = 10, **kwargs):
        """conceal_max_frames: the longest run of missing frames filled with silence (10: 200 ms,
        a few lost packets); a longer gap is not analysed, see the module docstring."""
        # handle() only decodes and queues: run it inline, not in a greenlet per datagram
        kwargs.setdefault("spawn", None)
        super().__init__(listener, **kwargs)
        self.params = params or AmdParams()
        self.tick_s = tick_s
        self.jitter_frames = jitter_frames
        self.prefill_frames = prefill_frames
        self.first_audio_timeout_s = first_audio_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.max_calls = max_calls
        self.conceal_max_frames = max(0, int(conceal_max_frames))
        self._by_source: dict[tuple[str | None, int], CallStream] = {}
        self._by_call: dict[str, CallStream] = {}
        self._extractor = FeatureExtractor(0, vad_mode=self.params.detector.vad_mode)
        self._free_rows: list[int] = []
        self._clock: gevent.Greenlet | None = None
        self.unknown_datagrams = 0
        self.after_finish_datagrams = 0
        self._finished: OrderedDict = OrderedDict()   # recently finished sources, bounded

    # -- registration (the engine's API) -------------------------------------------------
    def register(self, call_id: str, source: tuple[str, int] | int, codec: Codec = Codec.L16, rate: int = 8000,
                 params: AmdParams | None = None, on_decision: Callable | None = None,
                 on_done: Callable | None = None, beep_stage_only: bool = False, ptime_ms: int = 20) -> CallStream:
        """Expect a call's audio from `source` ((ip, port), or a port from any address).
        beep_stage_only: skip the decision and only listen for the beep (voicemail drop on a
        call already known to be a machine). ptime_ms: the call's packetization (10-120 ms in
        10 ms steps, as FreeSWITCH's G.711 and L16 codecs offer), which fixes the datagram size."""
        if rate not in (8000, 16000) or (codec is not Codec.L16 and rate != 8000):
            raise ReceiverError(f"unsupported stream {codec.value}/{rate}")
        if isinstance(ptime_ms, bool) or not isinstance(ptime_ms, int) or not (10 <= ptime_ms <= 120 and ptime_ms % 10 == 0):
            raise ReceiverError(f"unsupported ptime {ptime_ms!r} ms (10-120 ms in steps of 10)")
        key = (None, source) if isinstance(source, int) else (_host(source[0]), int(source[1]))
        if call_id in self._by_call:
            raise ReceiverError(f"call {call_id} is already registered")
        # a port-only key matches every address on that port, so it conflicts with any key of
        # the port, whichever was registered first (QA6 #9)
        if key in self._by_source or (None, key[1]) in self._by_source or \
                (key[0] is None and any(port == key[1] for _, port in self._by_source)):
            raise ReceiverError(f"source {key} is already registered")
        self._finished.pop(key, None)
        if len(self._by_call) >= self.max_calls:
            raise ReceiverError(f"receiver full ({self.max_calls} calls)")
        row = self._free_rows.pop() if self._free_rows else self._extractor.add_row()
        self._extractor.reset_row(row)
        analyzer = CallAnalyzer(params or self.params, beep_stage_only=beep_stage_only)
        stream = CallStream(call_id, key, codec, rate, analyzer, self.jitter_frames,
                            time.monotonic(), on_decision, on_done, row=row,
                            decimator=audio.Decimator(rate // 8000) if rate != 8000 else None,
                            ptime_ms=ptime_ms)
        self._by_source[key] = stream
        self._by_call[call_id] = stream
        return stream

    def unregister(self, call_id: str) -> None:
        """Stop analysing a call (hang-up); an unfinished analysis ends as at end of audio."""
        stream = self._by_call.get(call_id)
        if stream is not None:
            self._finish(stream, end_of_audio=True)

    def silence_after_speech_ms(self, call_id: str) -> int | None:
        """A registered call's silence since its party last spoke (None: no speech yet, or the
        call is not registered)."""
        stream = self._by_call.get(call_id)
        return stream.analyzer.silence_after_speech_ms if stream is not None else None

    @property
    def calls(self) -> int:
        return len(self._by_call)

    # -- datagrams --------------------------------------------------------------------------
    @staticmethod
    def expected_sizes(stream: CallStream) -> tuple[int, int]:
        """(audio datagram bytes, comfort-noise datagram bytes) for a stream's codec, rate and
        ptime: FreeSWITCH sends the codec frame (PCMU/PCMA: one byte a sample) or its L16
        decoding, and for comfort noise the decoded size of 0xFF."""
        samples = stream.rate * stream.ptime_ms // 1000
        decoded = 2 * samples
        return (decoded if stream.codec is Codec.L16 else samples), decoded

    def handle(self, data: bytes, address) -> None:
        host, port = _host(address[0]), address[1]
        stream = self._by_source.get((host, port)) or self._by_source.get((None, port))
        if stream is None:
            if (host, port) in self._finished or (None, port) in self._finished:
                self.after_finish_datagrams += 1     # the call's analysis is over; FreeSWITCH still streams
            else:
                self.unknown_datagrams += 1
            return
        stream.stats.datagrams += 1
        stream.stats.bytes += len(data)
        size, cn_size = self.expected_sizes(stream)
        comfort_noise = len(data) == cn_size and data.count(0xFF) == cn_size
        if len(data) != size and not comfort_noise:
            self._bad(stream, f"{len(data)}-byte datagram, expected {size} ({stream.codec.value}/{stream.rate}, "
                              f"{stream.ptime_ms} ms)")
            return
        if comfort_noise:
            samples = np.zeros(cn_size // 2 * audio.RATE // stream.rate, dtype=np.int16)
        else:
            try:
                samples = audio.decode(data, stream.codec)
            except AudioFormatError as exc:
                self._bad(stream, str(exc))
                return
        stream.last_datagram_at = time.monotonic()
        if not stream.started:
            stream.started = True
            stream.first_datagram_at = stream.last_datagram_at
        if comfort_noise:
            stream.stats.comfort_noise += 1
        elif stream.decimator is not None:
            samples = stream.decimator.process(samples)
        self._push(stream, samples)

    def _bad(self, stream: CallStream, why: str) -> None:
        stream.stats.bad_datagrams += 1
        if not stream.bad_logged:       # once per call: a wrong registration would flood the log
            stream.bad_logged = True
            log.warning("AMD call %s: dropping malformed datagrams (%s)", stream.call_id, why)

    def _push(self, stream: CallStream, samples: np.ndarray) -> None:
        pending = np.concatenate([stream.pending, samples]) if len(stream.pending) else samples
        while len(pending) >= FRAME_SAMPLES:
            if len(stream.buffer) >= stream.jitter_frames:
                stream.buffer.popleft()
                stream.stats.overflow_dropped += 1
            stream.buffer.append(pending[:FRAME_SAMPLES])
            pending = pending[FRAME_SAMPLES:]
        stream.pending = pending

    # -- playout clock ----------------------------------------------------------------------
    def start(self):
        super().start()
        if self._clock is None:
            self._clock = gevent.spawn(self._run_clock)

    def stop(self, timeout=None):
        if self._clock is not None:
            self._clock.kill(timeout=1.0)
            self._clock = None
        for stream in list(self._by_call.values()):
            self._finish(stream, end_of_audio=True)
        super().stop(timeout=timeout)

    def _run_clock(self) -> None:
        next_tick = time.monotonic()
        while True:
            next_tick += self.tick_s
            try:
                self.tick()
            except Exception:                      # keep the clock alive for the other calls
                log.exception("AMD playout tick failed")
            delay = next_tick - time.monotonic()
            if delay < -10 * self.tick_s:          # far behind (overload): skip, do not spin
                next_tick = time.monotonic()
                delay = 0
            gevent.sleep(max(delay, 0))

    def tick(self) -> None:
        """One playout step: a frame for every started call that has one buffered.

        A call with nothing buffered is in a gap. Its silence fills are not fed at once but when
        audio resumes, all in that tick before the real frame, and only if the gap lasted at most
        conceal_max_frames: so nothing is ever decided on fills that no real audio follows, and
        a longer gap is simply not analysed (the stall timeout ends a stream that never resumes,
        at its last real audio). This costs a short gap's decision at most its own length."""
        now = time.monotonic()
        playing: list[CallStream] = []
        catch_up: list[tuple[CallStream, int]] = []
        for stream in list(self._by_call.values()):
            if not stream.started:
                if now - stream.registered_at > self.first_audio_timeout_s:
                    self._no_audio(stream)
                continue
            if not stream.buffer and now - stream.last_datagram_at > self.stall_timeout_s:
                self._finish(stream, end_of_audio=True)
                continue
            if not stream.playing:
                # prefill: start playout with a little audio buffered, so sender jitter does
                # not turn into silence fills at the start
                if len(stream.buffer) < min(self.prefill_frames, stream.jitter_frames) and \
                        now - stream.first_datagram_at < self.prefill_frames * self.tick_s * 2:
                    continue
                stream.playing = True
            if stream.buffer:
                if 0 < stream.missing <= self.conceal_max_frames:
                    catch_up.append((stream, stream.missing))
                stream.missing = 0
                playing.append(stream)
            else:
                stream.missing += 1
                if stream.missing > self.conceal_max_frames:
                    # the gap is too long to pass for silence: its ticks are not analysed
                    stream.stats.gap_ticks += stream.missing if stream.missing == self.conceal_max_frames + 1 else 1
        # a short gap's fills, one batched pass per fill position
        for j in range(max((k for _, k in catch_up), default=0)):
            batch = [st for st, k in catch_up if k > j and not st.analyzer.done]
            if batch:
                self._feed(batch, [np.zeros(FRAME_SAMPLES, dtype=np.int16)] * len(batch), concealed=True)
        for stream, _ in catch_up:
            self._report(stream)
        active = [st for st in playing if self._by_call.get(st.call_id) is st]
        if active:
            self._feed(active, [st.buffer.popleft() for st in active])
            for stream in active:
                self._report(stream)

    def _feed(self, streams: list[CallStream], frames: list[np.ndarray], concealed: bool = False) -> None:
        feats = all_rows(self._extractor.compute(np.stack(frames), np.array([s.row for s in streams])))
        for stream, features in zip(streams, feats):
            stream.stats.frames_played += 1
            stream.stats.concealed += concealed
            try:
                stream.analyzer.feed_features(features)
            except Exception:                      # this call's analysis is broken, not the others'
                log.exception("AMD analysis of call %s failed", stream.call_id)
                self._finish(stream, end_of_audio=True)

    def _report(self, stream: CallStream) -> bool:
        """Publish a new decision and finish a done analysis; False if the call is finished."""
        analyzer = stream.analyzer
        if analyzer.decision is not None and not stream.decision.ready():
            self._decided(stream)
        if analyzer.done and self._by_call.get(stream.call_id) is stream:
            self._finish(stream)
        return self._by_call.get(stream.call_id) is stream

    def _callback(self, stream: CallStream, name: str, *args) -> bool:
        """Run one of the call's callbacks; an exception is logged and ends this call only (it
        once stopped the playout clock's loop for every call, QA6 #1). False if it raised."""
        callback = getattr(stream, name)
        if callback is None:
            return True
        try:
            callback(stream, *args)
            return True
        except Exception:
            log.exception("AMD %s callback of call %s failed; the call's analysis ends", name, stream.call_id)
            setattr(stream, name, None)            # logged once: it is not called again
            return False

    def _decided(self, stream: CallStream) -> None:
        if not stream.decision.ready():
            stream.decision.set(stream.analyzer.decision)
        if not self._callback(stream, "on_decision", stream.analyzer.decision):
            self._finish(stream, end_of_audio=True)

    def _no_audio(self, stream: CallStream) -> None:
        stream.analyzer.no_audio()
        self._finish(stream)

    def _finish(self, stream: CallStream, end_of_audio: bool = False) -> None:
        if self._by_call.get(stream.call_id) is not stream:
            return
        del self._by_call[stream.call_id]
        del self._by_source[stream.source]
        self._finished[stream.source] = True
        while len(self._finished) > self.max_calls:
            self._finished.popitem(last=False)
        self._free_rows.append(stream.row)
        analyzer = stream.analyzer
        try:
            if end_of_audio or not analyzer.done:
                analyzer.end_of_audio()
            result = analyzer.result()
        except Exception:
            log.exception("AMD analysis of call %s failed at its end", stream.call_id)
            analyzer.decision = analyzer.decision or Decision(AmdResult.NOTSURE, Cause.END_OF_AUDIO, analyzer.now_ms)
            result = AnalysisResult(analyzer.decision.result, analyzer.decision.cause, analyzer.decision.decision_ms,
                                    None, BeepOutcome.END_OF_AUDIO, analyzer.now_ms)
        if not stream.decision.ready():
            stream.decision.set(analyzer.decision)
            self._callback(stream, "on_decision", analyzer.decision)
        stream.final.set(result)
        self._callback(stream, "on_done", result)
