"""gevent UDP receiver for FreeSWITCH's unicast call audio, feeding one CallAnalyzer per call.

FreeSWITCH streams a parked leg's audio after `sendmsg <uuid>` / `call-command: unicast`
(../shared/reference/esl-protocol.md, "unicast"): one datagram per 20 ms, no RTP header, from
the FreeSWITCH-side `local-ip:local-port` to ours. Default payload L16 (signed 16-bit
little-endian, mono, channel read rate: 320 bytes at 8 kHz, 640 at 16 kHz); with `flags: native`
the codec payload (PCMU/PCMA: 160 bytes). Comfort-noise datagrams are 320 bytes of 0xFF in both
modes (seen in ../shared/esl-captures/21_*): they are 20 ms of silence, not audio.

The engine uses one FreeSWITCH-side port per call, so datagrams are demultiplexed on their source
address (or source port alone). Without sequence numbers, order is arrival order: each call has a
bounded jitter buffer of decoded 20 ms frames drained by one playout clock for all calls (every
`tick_s`). A tick with nothing buffered is a lost frame and is filled with silence, so the
detector's timeline stays on the wall clock; a datagram that arrives when the buffer is full
(a late burst) pushes out the oldest frame. All calls' frames of a tick go through one batched
FeatureExtractor (amd.features), then each call's CallAnalyzer.

Results: `CallStream.decision` (an AsyncResult set at the HUMAN/MACHINE/NOTSURE decision) and
`CallStream.final` (the AnalysisResult once listening ends, with the beep end), plus optional
callbacks. Every wait takes a timeout. A call that sends nothing for `first_audio_timeout_s`
ends NOTSURE / NO_AUDIO; one whose stream stops for `stall_timeout_s` (the leg was bridged or
hung up) ends as at the end of a file.
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
from amd.detector import Decision
from amd.errors import AudioFormatError, ReceiverError
from amd.features import FeatureExtractor, all_rows
from amd.params import AmdParams
from amd.session import AnalysisResult, CallAnalyzer

log = logging.getLogger(__name__)

COMFORT_NOISE = b"\xff" * 320


@dataclass
class StreamStats:
    datagrams: int = 0
    bytes: int = 0
    comfort_noise: int = 0
    frames_played: int = 0
    concealed: int = 0            # ticks with no frame buffered (loss or lateness): silence
    overflow_dropped: int = 0     # frames pushed out of a full jitter buffer
    bad_datagrams: int = 0


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

    def wait_decision(self, timeout: float) -> Decision:
        """The HUMAN/MACHINE/NOTSURE decision; raises gevent.Timeout when not in time."""
        return self.decision.get(timeout=timeout)

    def wait_final(self, timeout: float) -> AnalysisResult:
        return self.final.get(timeout=timeout)


class UnicastReceiver(DatagramServer):
    """Bind with UnicastReceiver(("127.0.0.1", port)); start(); register() calls; stop()."""

    def __init__(self, listener, params: AmdParams | None = None, tick_s: float = 0.020,
                 jitter_frames: int = 5, prefill_frames: int = 2, first_audio_timeout_s: float = 3.0, stall_timeout_s: float = 1.0,
                 max_calls: int = 2000, **kwargs):
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
                 on_done: Callable | None = None, beep_stage_only: bool = False) -> CallStream:
        """Expect a call's audio from `source` ((ip, port), or a port from any address).
        beep_stage_only: skip the decision and only listen for the beep (voicemail drop on a
        call already known to be a machine)."""
        if rate not in (8000, 16000) or (codec is not Codec.L16 and rate != 8000):
            raise ReceiverError(f"unsupported stream {codec.value}/{rate}")
        key = (None, source) if isinstance(source, int) else (source[0], int(source[1]))
        if call_id in self._by_call:
            raise ReceiverError(f"call {call_id} is already registered")
        if key in self._by_source or ((None, key[1]) in self._by_source):
            raise ReceiverError(f"source {key} is already registered")
        self._finished.pop(key, None)
        if len(self._by_call) >= self.max_calls:
            raise ReceiverError(f"receiver full ({self.max_calls} calls)")
        row = self._free_rows.pop() if self._free_rows else self._extractor.add_row()
        self._extractor.reset_row(row)
        analyzer = CallAnalyzer(params or self.params, beep_stage_only=beep_stage_only)
        stream = CallStream(call_id, key, codec, rate, analyzer, self.jitter_frames,
                            time.monotonic(), on_decision, on_done, row=row,
                            decimator=audio.Decimator(rate // 8000) if rate != 8000 else None)
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
    def handle(self, data: bytes, address) -> None:
        stream = self._by_source.get((address[0], address[1])) or self._by_source.get((None, address[1]))
        if stream is None:
            if (address[0], address[1]) in self._finished or (None, address[1]) in self._finished:
                self.after_finish_datagrams += 1     # the call's analysis is over; FreeSWITCH still streams
            else:
                self.unknown_datagrams += 1
            return
        stream.stats.datagrams += 1
        stream.stats.bytes += len(data)
        stream.last_datagram_at = time.monotonic()
        if not stream.started:
            stream.started = True
            stream.first_datagram_at = stream.last_datagram_at
        if data == COMFORT_NOISE:
            stream.stats.comfort_noise += 1
            self._push(stream, np.zeros(FRAME_SAMPLES, dtype=np.int16))
            return
        try:
            samples = audio.decode(data, stream.codec)
        except AudioFormatError:
            stream.stats.bad_datagrams += 1
            return
        if stream.decimator is not None:
            samples = stream.decimator.process(samples)
        self._push(stream, samples)

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
        """One playout step: a frame (or a silence fill) for every started call."""
        now = time.monotonic()
        active, frames = [], []
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
                frames.append(stream.buffer.popleft())
            else:
                stream.stats.concealed += 1
                frames.append(np.zeros(FRAME_SAMPLES, dtype=np.int16))
            stream.stats.frames_played += 1
            active.append(stream)
        if not active:
            return
        feats = all_rows(self._extractor.compute(np.stack(frames), np.array([s.row for s in active])))
        for stream, features in zip(active, feats):
            analyzer = stream.analyzer
            had_decision = analyzer.decision is not None
            analyzer.feed_features(features)
            if not had_decision and analyzer.decision is not None:
                self._decided(stream)
            if analyzer.done:
                self._finish(stream)

    def _decided(self, stream: CallStream) -> None:
        stream.decision.set(stream.analyzer.decision)
        if stream.on_decision is not None:
            stream.on_decision(stream, stream.analyzer.decision)

    def _no_audio(self, stream: CallStream) -> None:
        stream.analyzer.no_audio()
        self._decided(stream)
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
        had_decision = analyzer.decision is not None
        if end_of_audio or not analyzer.done:
            analyzer.end_of_audio()
        if not had_decision:
            self._decided(stream)
        result = analyzer.result()
        stream.final.set(result)
        if stream.on_done is not None:
            stream.on_done(stream, result)
