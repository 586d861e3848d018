"""Streaming answering-machine detectors: ours and an Asterisk app_amd-compatible one.

Both consume one FrameFeatures per 20 ms frame, never look ahead, and return a Decision
(HUMAN / MACHINE / NOTSURE, a Cause from a fixed vocabulary, the decision time from the first
audio sample) as soon as their rule fires.

Ours (DialerDetector) works on the timing of speech and pauses, where "speech" is a webrtcvad
speech frame at least `voice_margin_db` above a tracked noise floor that is not a pure tone
(webrtcvad calls a beep speech). A person who answers says a few words and waits for the
caller; a greeting keeps talking. So:
- HUMAN / SPEECH_THEN_SILENCE when the silence after the speech heard so far reaches
  `human_silence_short_ms` (at most `short_speech_ms` of speech: "Hello?") or
  `human_silence_long_ms` (longer answers, where a greeting's sentence pause is likelier);
- MACHINE / LONG_SPEECH when the speech heard reaches `machine_speech_ms`;
- MACHINE / MUSIC when, after speech, loud sound that is not speech lasts `music_ms` (music
  before the beep: a person waiting for the caller is quiet) and holds still like notes do:
  in `music_min_steady` of its frames the strongest spectral peak or the level stays where the
  frame before had it (a TV or voices behind a person glide and flutter like speech), and
  plays near the greeting's level (`music_below_peak_db` of the loudest speech: a recording's
  music comes from the same recording, the sound behind a person is well under their voice);
- MACHINE / BEEP, MACHINE / FAX_TONE, NOTSURE / SIT_TONE from the tone detector (amd.beep);
- SILENT_ANSWER (HUMAN by default, configurable) when nothing is said for `initial_silence_ms`
  (machines here start their greeting within 3 s; a person who answers and waits does not);
- NOTSURE / MAX_ANALYSIS_TIME after `max_analysis_ms`, NOTSURE / END_OF_AUDIO when the audio ends.
A silence is not counted while a tone is under way, so a beep right after a short greeting is
classified before the silence rule could call it a person. Loud sound that is not the party's
speech (background voices, a TV) counts as silence, but HUMAN waits until `loud_hold_ms` after
such sound within `loud_hold_below_peak_db` of the loudest speech, so music that starts right
before the silence rule would fire is still heard as MUSIC, while a TV far under a person's
voice does not hold them waiting.

AppAmdDetector reproduces Asterisk's app_amd.c isAnsweringMachine() loop frame by frame with
its defaults (initial silence 2500, greeting 1500, after-greeting silence 800, total analysis
5000, minimum word 100, between words 50, maximum words 2 - a third word is a machine -,
silence threshold 256 on the mean absolute sample, maximum word length 5000 ms).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from amd.audio import FRAME_MS
from amd.features import SILENT_DB, FrameFeatures


_BIT_COUNT = tuple(bin(i).count("1") for i in range(16))


class AmdResult(enum.Enum):
    HUMAN = "HUMAN"
    MACHINE = "MACHINE"
    NOTSURE = "NOTSURE"


class Cause(enum.Enum):
    """Why a decision was made. The fixed vocabulary printed by `dialer amd analyze`."""

    # ours
    SPEECH_THEN_SILENCE = "SPEECH_THEN_SILENCE"   # HUMAN: short speech, then the party waits
    SILENT_ANSWER = "SILENT_ANSWER"               # nothing said within initial_silence_ms
    LONG_SPEECH = "LONG_SPEECH"                   # MACHINE: speech went on too long for a person
    MUSIC = "MUSIC"                               # MACHINE: loud sound that is not speech after the greeting
    BEEP = "BEEP"                                 # MACHINE: a voicemail beep
    FAX_TONE = "FAX_TONE"                         # MACHINE: fax calling tone (CNG 1100 Hz)
    SIT_TONE = "SIT_TONE"                         # NOTSURE: special information tones (intercept)
    RINGBACK = "RINGBACK"                         # NOTSURE: only ringback heard (early answer)
    MAX_ANALYSIS_TIME = "MAX_ANALYSIS_TIME"       # NOTSURE: no rule fired in time
    END_OF_AUDIO = "END_OF_AUDIO"                 # NOTSURE: the audio ended before a decision
    NO_AUDIO = "NO_AUDIO"                         # NOTSURE: the live stream sent nothing
    # app_amd-compatible mode, named as app_amd sets AMDCAUSE
    INITIALSILENCE = "INITIALSILENCE"
    AFTERGREETINGSILENCE = "AFTERGREETINGSILENCE"  # app_amd's HUMAN-<silence>-<after greeting>
    MAXWORDLENGTH = "MAXWORDLENGTH"
    MAXWORDS = "MAXWORDS"
    LONGGREETING = "LONGGREETING"
    TOOLONG = "TOOLONG"


@dataclass(frozen=True)
class Decision:
    result: AmdResult
    cause: Cause
    decision_ms: int


@dataclass(frozen=True)
class DetectorParams:
    """Our detector's parameters (per campaign). Defaults were chosen on the corpus' tune split."""

    vad_mode: int = 2                     # webrtcvad aggressiveness (live: one value per receiver)
    voice_margin_db: float = 6.0          # speech is at least this far above the noise floor
    voice_below_peak_db: float = 12.0     # ... and at most this far below the loudest speech
    loud_margin_db: float = 16.0          # non-speech this far above the floor is not silence
    onset_frames: int = 3                 # voice frames among the last 4 that start speech
    utterance_gap_ms: int = 200           # a pause this long ends an utterance
    short_speech_ms: int = 800
    human_silence_short_ms: int = 400
    human_silence_long_ms: int = 750
    machine_speech_ms: int = 4600
    # long talk only counts as a greeting when it stands this far above the noise floor on
    # average: a TV or a room full of voices behind a silent person is not a greeting
    machine_min_snr_db: float = 19.0
    # after speech, this much loud sound that is not the party's speech (music before a beep)
    # is a recording: a person waiting for the caller is quiet
    music_ms: int = 400
    # ... and holds still like notes: this share of its frames keeps the frame before's
    # strongest peak or level (a TV or babble behind a person glides and flutters like speech)
    music_min_steady: float = 0.7
    music_steady_hz: float = 8.0          # about one 7.8 Hz bin of the tone analysis
    music_steady_db: float = 2.0
    # ... and plays near the greeting's level: at least half its frames within this far of the
    # loudest speech heard (a recording's music sits 12-17 dB under the greeting's peak frames
    # here; a TV or voices behind a person who has spoken sit further down, 18-24 dB)
    music_below_peak_db: float = 18.0
    # loud non-speech (a TV, voices behind the party) counts as the party's silence, but no
    # HUMAN decision is taken within loud_hold_ms of such sound within loud_hold_below_peak_db
    # of the loudest speech: music starting before a beep has time to be recognised (MUSIC),
    # and a TV far under the voice of a person who waits does not hold the decision back (the
    # margin is wider than music's, as the quiet ends of a greeting's own words hold it too)
    loud_hold_ms: int = 80
    loud_hold_below_peak_db: float = 21.0
    initial_silence_ms: int = 3600
    initial_silence_result: AmdResult = AmdResult.HUMAN
    max_analysis_ms: int = 10000


@dataclass(frozen=True)
class AppAmdParams:
    """app_amd.c defaults (amd.conf names)."""

    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    silence_threshold: int = 256
    maximum_word_length: int = 5000


class DialerDetector:
    """Our streaming detector. feed() returns a Decision once, then keeps returning None."""

    def __init__(self, params: DetectorParams | None = None):
        self.params = params or DetectorParams()
        self.index = -1
        self.floor_db: float | None = None
        self.peak_db = -200.0
        # the two frame levels before this one (newest first), for the floor's median of three
        self._level1: float | None = None
        self._level2: float | None = None
        self._snr_sum = 0.0
        self._snr_frames = 0
        self._recent_bits = 0              # voice flags of the last 4 frames, newest in bit 0
        self.in_speech = False
        self.speech_heard = False
        self.speech_ms = 0
        self.silence_ms = 0
        self.voice = False                 # last frame was speech (for the beep stage's fallback)
        self.loud_ms = 0                   # loud non-speech since the last speech or quiet frame
        # frames of that loud run whose strongest peak / level held still since the frame before
        self._loud_steady_hz = 0
        self._loud_steady_db = 0
        self._loud_near_talk = 0           # ... and whose level came near the loudest speech
        self._previous: FrameFeatures | None = None
        self.since_loud_ms = 10 ** 9       # since the last loud non-speech frame near the talk
        self.decided: Decision | None = None

    def _track_floor(self, level_db: float, candidate: bool) -> None:
        """Noise floor: a low percentile of frame levels, tracked by stepping up 0.1 dB per frame
        above it (0.05 dB on speech-like frames, so a long greeting barely lifts it) and down at
        least 0.25 dB, or half the gap, per frame below it."""
        if level_db <= SILENT_DB:          # lost frame or comfort noise: says nothing about noise
            return
        # the median of the last three levels: one lost or partly lost frame is not the floor
        # (with two levels so far, the higher one)
        a, b = self._level1, self._level2
        self._level1, self._level2 = level_db, a
        if a is not None:
            level_db = max(a, level_db) if b is None else max(min(a, b), min(max(a, b), level_db))
        floor = self.floor_db
        if floor is None:
            self.floor_db = level_db
        elif level_db > floor:
            self.floor_db = floor + (0.05 if candidate else 0.1)
        else:
            # fall fast when far above the frame (the call opened with speech, not noise)
            self.floor_db = floor - max(0.25, 0.5 * (floor - level_db))

    def is_voice(self, f: FrameFeatures, tonal: bool) -> bool:
        """Update the noise floor with this frame; is the frame the party's speech?"""
        self._track_floor(f.level_db, f.vad)
        p = self.params
        if not (f.vad and not tonal and self.floor_db is not None
                and f.level_db >= self.floor_db + p.voice_margin_db):
            return False
        # a loud talker over background voices (babble, TV): frames far below the loudest
        # speech heard are the background, not the party
        self.peak_db = max(self.peak_db - 0.01, f.level_db)
        return f.level_db >= self.peak_db - p.voice_below_peak_db

    @property
    def silence_after_speech_ms(self) -> int | None:
        """How long the party has been silent since they last spoke (None before any speech)."""
        return self.silence_ms if self.speech_heard else None

    @property
    def talk_snr_db(self) -> float:
        """Mean level of the speech frames above the noise floor."""
        return self._snr_sum / self._snr_frames if self._snr_frames else 0.0

    def feed(self, f: FrameFeatures, tonal: bool = False, in_tone: bool = False) -> Decision | None:
        self.index += 1
        p = self.params
        now = (self.index + 1) * FRAME_MS
        voice = self.is_voice(f, tonal)
        self.voice = voice
        # a loud sound that is not speech (music before a beep) is not the party waiting
        loud = not voice and self.floor_db is not None and f.level_db >= self.floor_db + p.loud_margin_db
        if self.decided is not None:
            return None
        previous, self._previous = self._previous, f
        near = False                       # loud, and near the loudest speech heard
        if loud and not tonal and self.speech_heard:
            self.loud_ms += FRAME_MS
            near = f.level_db >= self.peak_db - p.loud_hold_below_peak_db
            self._loud_near_talk += f.level_db >= self.peak_db - p.music_below_peak_db
            if previous is not None:
                self._loud_steady_hz += abs(f.f1_hz - previous.f1_hz) <= p.music_steady_hz
                self._loud_steady_db += abs(f.level_db - previous.level_db) <= p.music_steady_db
        else:
            self.loud_ms = self._loud_steady_hz = self._loud_steady_db = self._loud_near_talk = 0
        self.since_loud_ms = 0 if near else self.since_loud_ms + FRAME_MS
        self._recent_bits = bits = ((self._recent_bits << 1) | voice) & 0xF
        if not self.in_speech:
            if voice and _BIT_COUNT[bits] >= p.onset_frames:
                self.in_speech = self.speech_heard = True
                self.speech_ms += FRAME_MS * _BIT_COUNT[bits]
                self.silence_ms = 0
            elif self.speech_heard and not (tonal or in_tone):
                self.silence_ms += FRAME_MS
        elif voice:
            # talk time: a pause shorter than utterance_gap_ms belongs to the utterance
            self.speech_ms += FRAME_MS + self.silence_ms
            self.silence_ms = 0
        elif not (tonal or in_tone):
            self.silence_ms += FRAME_MS
            if self.silence_ms >= p.utterance_gap_ms:
                self.in_speech = False
        if voice:
            self._snr_sum += f.level_db - self.floor_db
            self._snr_frames += 1
        decision = None
        if self.speech_ms >= p.machine_speech_ms and self.talk_snr_db >= p.machine_min_snr_db:
            decision = Decision(AmdResult.MACHINE, Cause.LONG_SPEECH, now)
        elif (self.loud_ms >= p.music_ms and max(self._loud_steady_hz, self._loud_steady_db)
              >= p.music_min_steady * self.loud_ms / FRAME_MS
              and 2 * self._loud_near_talk >= self.loud_ms / FRAME_MS):
            decision = Decision(AmdResult.MACHINE, Cause.MUSIC, now)
        elif self.speech_heard and not self.in_speech and not in_tone and self.since_loud_ms > p.loud_hold_ms:
            needed = p.human_silence_short_ms if self.speech_ms <= p.short_speech_ms else p.human_silence_long_ms
            if self.silence_ms >= needed:
                decision = Decision(AmdResult.HUMAN, Cause.SPEECH_THEN_SILENCE, now)
        elif not self.speech_heard and now >= p.initial_silence_ms and not in_tone:
            decision = Decision(p.initial_silence_result, Cause.SILENT_ANSWER, now)
        if decision is None and now >= p.max_analysis_ms:
            decision = Decision(AmdResult.NOTSURE, Cause.MAX_ANALYSIS_TIME, now)
        self.decided = decision
        return decision


class AppAmdDetector:
    """Asterisk app_amd's isAnsweringMachine() on 20 ms signed-linear frames."""

    _IN_WORD, _IN_SILENCE = 0, 1

    def __init__(self, params: AppAmdParams | None = None):
        self.params = params or AppAmdParams()
        self.total_ms = 0
        self.dsp_silence = 0
        self.silence_duration = 0
        self.consecutive_voice = 0
        self.voice_duration = 0
        self.words = 0
        self.state = self._IN_WORD
        self.in_initial_silence = True
        self.in_greeting = False
        self.voice = False
        self.speech_heard = False
        self.decided: Decision | None = None

    def feed(self, f: FrameFeatures, tonal: bool = False, in_tone: bool = False) -> Decision | None:
        p = self.params
        silent = f.mean_abs < p.silence_threshold
        self.voice = not silent
        if self.decided is not None:
            return None
        self.total_ms += FRAME_MS
        now = self.total_ms
        if self.total_ms >= p.total_analysis_time:
            return self._decide(AmdResult.NOTSURE, Cause.TOOLONG, now)
        # ast_dsp_silence(): consecutive silent milliseconds, reset by any non-silent frame
        self.dsp_silence = self.dsp_silence + FRAME_MS if silent else 0
        if self.dsp_silence > 0:
            self.silence_duration = self.dsp_silence
            if self.silence_duration >= p.between_words_silence:
                self.state = self._IN_SILENCE
                self.consecutive_voice = 0
            if self.in_initial_silence and self.silence_duration >= p.initial_silence:
                return self._decide(AmdResult.MACHINE, Cause.INITIALSILENCE, now)
            if self.silence_duration >= p.after_greeting_silence and self.in_greeting:
                return self._decide(AmdResult.HUMAN, Cause.AFTERGREETINGSILENCE, now)
        else:
            self.consecutive_voice += FRAME_MS
            self.voice_duration += FRAME_MS
            if self.consecutive_voice >= p.min_word_length and self.state == self._IN_SILENCE:
                self.words += 1
                self.state = self._IN_WORD
            if self.consecutive_voice >= p.maximum_word_length:
                return self._decide(AmdResult.MACHINE, Cause.MAXWORDLENGTH, now)
            if self.words > p.maximum_number_of_words:
                return self._decide(AmdResult.MACHINE, Cause.MAXWORDS, now)
            if self.in_greeting and self.voice_duration >= p.greeting:
                return self._decide(AmdResult.MACHINE, Cause.LONGGREETING, now)
            if self.voice_duration >= p.min_word_length:
                self.silence_duration = 0
            if self.consecutive_voice >= p.min_word_length and not self.in_greeting:
                self.in_initial_silence = False
                self.in_greeting = True
                self.speech_heard = True
        return None

    @property
    def silence_after_speech_ms(self) -> int | None:
        """How long the party has been silent since they last spoke (None before any speech)."""
        return self.dsp_silence if self.speech_heard else None

    def _decide(self, result: AmdResult, cause: Cause, now: int) -> Decision:
        self.decided = Decision(result, cause, now)
        return self.decided
