"""One call's AMD from its first audio frame to the end of listening, and file analysis.

CallAnalyzer runs the detector (ours or app_amd-compatible) and the beep detector on the same
frames. After HUMAN or NOTSURE it is done. After MACHINE it keeps listening for the beep so a
voicemail message can start right after it: it ends at the end of the beep (beep_end_ms), or by
the silence fallback (beep_fallback_silence_ms of silence after the last speech or tone), or
after beep_max_wait_ms; then beep_end_ms is None. A beep heard before any decision is itself the
decision (MACHINE / BEEP) in our mode.

analyze_file() feeds a WAV file through a CallAnalyzer as 20 ms frames in order, exactly like
live audio: the analyzer never sees a frame before it has decided on the previous ones.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amd import audio
from amd.audio import FRAME_MS
from amd.beep import BeepDetector, ToneEvent, ToneKind
from amd.detector import AmdResult, AppAmdDetector, Cause, Decision, DialerDetector
from amd.features import FeatureExtractor, FrameFeatures
from amd.params import AmdMode, AmdParams


class BeepOutcome(enum.Enum):
    BEEP = "BEEP"                       # beep found, beep_end_ms set
    SILENCE_FALLBACK = "SILENCE_FALLBACK"
    TIMEOUT = "TIMEOUT"
    END_OF_AUDIO = "END_OF_AUDIO"
    NOT_LISTENING = "NOT_LISTENING"     # HUMAN / NOTSURE: no beep stage


@dataclass(frozen=True)
class AnalysisResult:
    result: AmdResult
    cause: Cause
    decision_ms: int
    beep_end_ms: int | None
    beep_outcome: BeepOutcome
    done_ms: int                        # stream time at which listening ended
    tones: tuple[ToneEvent, ...] = ()

    def as_json(self, file: str | None = None) -> dict:
        out = {"result": self.result.value, "cause": self.cause.value,
               "decision_ms": self.decision_ms, "beep_end_ms": self.beep_end_ms}
        return {"file": file, **out} if file is not None else out


class CallAnalyzer:
    """Feed frames (or precomputed features) until `done`; read `decision` and `result()`."""

    def __init__(self, params: AmdParams | None = None, beep_stage_only: bool = False):
        """beep_stage_only: listen for the beep from the first frame without deciding (a call
        the campaign drops a message on whatever AMD would say)."""
        self.params = params or AmdParams()
        self.beep_stage_only = beep_stage_only
        p = self.params
        if p.mode is AmdMode.APP_AMD:
            self.detector = AppAmdDetector(p.app_amd)
        else:
            self.detector = DialerDetector(p.detector)
        self.beep = BeepDetector(p.beep)
        self.beep.continue_runs = beep_stage_only
        self._extractor: FeatureExtractor | None = None
        self.index = -1
        self.decision: Decision | None = None
        self.beep_event: ToneEvent | None = None
        self.beep_outcome = BeepOutcome.NOT_LISTENING
        self.done = False
        self.done_ms: int | None = None
        self.tones: list[ToneEvent] = []
        self._quiet_ms = 0
        self._ringback = False
        self._pending_beep: ToneEvent | None = None
        # level of the last frame if it was speech, and the loudest speech heard (decaying)
        self._talk_level_db = -math.inf
        self._talk_peak_db = -math.inf

    @property
    def now_ms(self) -> int:
        return (self.index + 1) * FRAME_MS

    @property
    def silence_after_speech_ms(self) -> int | None:
        """How long the party has been silent since they last spoke, as far as the detector has
        heard (None before any speech): the engine's measure of a person left waiting when the
        far end hangs up before a decision (47 CFR 64.1200(a)(7)'s 2 s after the greeting)."""
        return self.detector.silence_after_speech_ms

    def feed_frame(self, frame: np.ndarray) -> None:
        if self._extractor is None:
            self._extractor = FeatureExtractor(1, vad_mode=self.params.detector.vad_mode)
        self.feed_features(self._extractor.compute_one(frame))

    def feed_features(self, f: FrameFeatures) -> None:
        if self.done:
            return
        self.index += 1
        event = self.beep.feed(f)
        if event is not None:
            self.tones.append(event)
            self._ringback |= event.kind is ToneKind.RINGBACK
        event = self._confirm_beep(event)
        if self.beep_stage_only:
            self._feed_detector(f)
            self.beep.speech_heard = self.detector.speech_heard
            if event is not None and event.kind is ToneKind.BEEP:
                self._finish(BeepOutcome.BEEP, event)
        elif self.decision is None:
            self._decide(f, event)
        elif self.decision.result is AmdResult.MACHINE:
            self._listen_for_beep(f, event)

    def _feed_detector(self, f: FrameFeatures) -> Decision | None:
        decision = self.detector.feed(f, tonal=self.beep.tonal, in_tone=self._tone_pending)
        if self.detector.voice:
            self._talk_level_db = f.level_db
            self._talk_peak_db = max(self._talk_peak_db - 0.01, f.level_db)
        else:
            self._talk_level_db = -math.inf
        return decision

    @property
    def _tone_pending(self) -> bool:
        """A tone under way or a beep awaiting confirmation: the silence clock waits."""
        return self.beep.in_tone or self._pending_beep is not None

    def _confirm_beep(self, event: ToneEvent | None) -> ToneEvent | None:
        """A beep counts once beep_confirm_ms have passed after it without speech: a
        voicemail beep is followed by the silence of the recording, a vowel held like a tone
        by more talk. While listening for a known machine's beep, only talk near the level of
        the loudest speech heard cancels it: voices in the background (babble, a TV) go on
        after a beep too. Returns the event to act on this frame (other tones pass through)."""
        if event is not None and event.kind is ToneKind.BEEP:
            self._pending_beep = event
            return None
        pending = self._pending_beep
        if pending is None:
            return event
        # Before a decision any speech cancels: a false beep there hangs up on a person.
        margin = self.params.beep_cancel_below_peak_db if self.beep.continue_runs else math.inf
        if self.detector.voice and self._talk_level_db >= self._talk_peak_db - margin:
            self._pending_beep = None
        elif self.now_ms >= pending.end_ms + self.params.beep_confirm_ms:
            self._pending_beep = None
            return pending
        return event

    def _decide(self, f: FrameFeatures, event: ToneEvent | None) -> None:
        ours = self.params.mode is AmdMode.DIALER
        if ours and event is not None and event.kind in (ToneKind.BEEP, ToneKind.FAX_CNG, ToneKind.SIT):
            cause = {ToneKind.BEEP: Cause.BEEP, ToneKind.FAX_CNG: Cause.FAX_TONE, ToneKind.SIT: Cause.SIT_TONE}[event.kind]
            result = AmdResult.NOTSURE if event.kind is ToneKind.SIT else AmdResult.MACHINE
            self.decision = Decision(result, cause, self.now_ms)
            if event.kind is ToneKind.BEEP:
                self._finish(BeepOutcome.BEEP, event)
            elif result is not AmdResult.MACHINE:
                self._finish(BeepOutcome.NOT_LISTENING)
            return
        decision = self._feed_detector(f)
        self.beep.speech_heard = self.detector.speech_heard
        if decision is None:
            return
        if ours and decision.cause is Cause.SILENT_ANSWER and self._ringback:
            decision = Decision(AmdResult.NOTSURE, Cause.RINGBACK, decision.decision_ms)
        self.decision = decision
        if decision.result is not AmdResult.MACHINE:
            self._finish(BeepOutcome.NOT_LISTENING)
        else:
            self.beep.continue_runs = True

    def _listen_for_beep(self, f: FrameFeatures, event: ToneEvent | None) -> None:
        p = self.params
        if event is not None and event.kind is ToneKind.BEEP:
            self._finish(BeepOutcome.BEEP, event)
            return
        self._feed_detector(f)   # keeps voice/floor current
        quiet = not (self.detector.voice or self.beep.tonal or self._tone_pending)
        self._quiet_ms = self._quiet_ms + FRAME_MS if quiet else 0
        if self._quiet_ms >= p.beep_fallback_silence_ms:
            self._finish(BeepOutcome.SILENCE_FALLBACK)
        elif self.now_ms - self.decision.decision_ms >= p.beep_max_wait_ms:
            self._finish(BeepOutcome.TIMEOUT)

    def _finish(self, outcome: BeepOutcome, event: ToneEvent | None = None) -> None:
        self.beep_outcome = outcome
        self.beep_event = event
        self.done = True
        self.done_ms = self.now_ms

    def no_audio(self) -> None:
        """The live stream never sent audio: NOTSURE / NO_AUDIO."""
        if not self.done:
            self.decision = Decision(AmdResult.NOTSURE, Cause.NO_AUDIO, 0)
            self._finish(BeepOutcome.NOT_LISTENING)

    def end_of_audio(self) -> None:
        """The stream ended: NOTSURE / END_OF_AUDIO if undecided (also in beep_stage_only mode,
        which never decides); a pending beep stage ends."""
        undecided = self.decision is None
        if undecided:
            self.decision = Decision(AmdResult.NOTSURE, Cause.END_OF_AUDIO, self.now_ms)
        if not self.done:
            self._finish(BeepOutcome.END_OF_AUDIO if self.beep_stage_only or not undecided
                         else BeepOutcome.NOT_LISTENING)

    def result(self) -> AnalysisResult:
        if self.decision is None:
            self.end_of_audio()
        d = self.decision
        return AnalysisResult(d.result, d.cause, d.decision_ms,
                              self.beep_event.end_ms if self.beep_event is not None else None,
                              self.beep_outcome, self.done_ms if self.done_ms is not None else self.now_ms,
                              tuple(self.tones))


def analyze_samples(samples: np.ndarray, params: AmdParams | None = None) -> AnalysisResult:
    """Stream 8 kHz int16 samples through a CallAnalyzer frame by frame."""
    analyzer = CallAnalyzer(params)
    for frame in audio.frames(samples):
        analyzer.feed_frame(frame)
        if analyzer.done:
            break
    analyzer.end_of_audio()
    return analyzer.result()


def analysis_bound_ms(params: AmdParams) -> int:
    """How much audio a CallAnalyzer can use: it decides by max_analysis_ms (app_amd mode: its
    total analysis time), then listens for the beep at most beep_max_wait_ms; a second more
    covers a beep awaiting confirmation and the last frame."""
    decide = params.app_amd.total_analysis_time if params.mode is AmdMode.APP_AMD else params.detector.max_analysis_ms
    return int(decide) + int(params.beep_max_wait_ms) + 1000


_SETTLED_MS = 100   # the end of a file's head is not final (the resampler saw no audio after it)


def analyze_file(path: str | Path, params: AmdParams | None = None) -> AnalysisResult:
    """Analyse a WAV file, reading and resampling only the head the analysis can use (QA6 #5:
    an hour of 44.1 kHz audio was decoded whole for a decision in the first 30 s). If the
    analysis were still going at the end of that head, the file is read again with twice the
    head, so the result is always that of the whole file."""
    params = params or AmdParams()
    head_ms = analysis_bound_ms(params)
    got = -1
    while True:
        samples, complete = audio.load_audio_8k_head(path, head_ms)
        # a file that reads shorter than its header says gives no more on a longer read
        complete = complete or len(samples) <= got
        got = len(samples)
        analyzer = CallAnalyzer(params)
        for frame in audio.frames(samples):
            analyzer.feed_frame(frame)
            if analyzer.done:
                break
        if complete or (analyzer.done and analyzer.now_ms + _SETTLED_MS <= len(samples) * 1000 // audio.RATE):
            analyzer.end_of_audio()
            return analyzer.result()
        head_ms *= 2
