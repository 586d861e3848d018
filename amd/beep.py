"""Voicemail beep detection on 20 ms frames, with rejection of the tones that are not beeps.

A frame is tonal when one spectral peak (or two, for two-tone beeps) holds most of the
300-3400 Hz energy of its 80 ms window (see amd.features). Consecutive tonal frames whose main
frequency stays within a tolerance form a run (a frame impure only because its window also holds
a lost packet or a noise burst continues a run under way, at the run's frequency and level);
when the run ends it is classified:

- RINGBACK: two tones at 440 + 480 Hz (North American ringback, ITU-T E.180) or any pair closer
  than 60 Hz (a beating tone), which FreeSWITCH's mod_avmd reports as beeps;
- DTMF: a low-group x high-group pair of the DTMF grid within 1.8 % (ITU-T Q.23/Q.24), at most
  `max_dtmf_ms` long (a key press; a two-tone beep can land on a grid pair, and it is longer);
- FAX_CNG: 1100 Hz, 0.35-0.8 s, with no speech before it (ITU-T T.30 calling tone);
- SIT: a run that follows or is followed by another tone within 100 ms (the three-tone special
  information sequence of ITU-T E.180 / Telcordia SR-2275: 913.8/985.2, 1370.6/1428.5, 1776.7 Hz);
- TONE: too short or too long for a beep (beeps here are 0.18-1.7 s), out of 400-2100 Hz,
  gliding in pitch by more than 12 Hz (a sustained vowel: synthetic voices hold one almost pure),
  or under 520 Hz and shorter than 250 ms (a held vowel's harmonic);
- BEEP: everything else: single or simultaneous two-tone, 400-2100 Hz, 0.18-1.7 s.

The end of the beep is placed from frame energies, not from the tonal flags (whose 80 ms window
lags the real end): the last frame above the midpoint between the tone's median level and the
level after it, refined inside the next frame by the energy share the tone still has there.
"""
from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from amd.audio import FRAME_MS
from amd.features import SILENT_DB, FrameFeatures

_DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
_DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
_SIT_HZ = (913.8, 985.2, 1370.6, 1428.5, 1776.7)


class ToneKind(enum.Enum):
    BEEP = "BEEP"
    RINGBACK = "RINGBACK"
    DTMF = "DTMF"
    FAX_CNG = "FAX_CNG"
    SIT = "SIT"
    TONE = "TONE"


@dataclass(frozen=True)
class BeepParams:
    min_purity1: float = 0.70       # single tone: share of band energy in the main peak
    min_purity2: float = 0.80       # two-tone: share in the two main peaks
    min_ratio2: float = 0.15        # two-tone: weaker peak at least this fraction of the stronger
    min_tone_db: float = -65.0      # quieter frames are not tones
    freq_min_hz: float = 400.0
    freq_max_hz: float = 2100.0
    freq_tolerance_hz: float = 20.0
    max_glide_hz: float = 12.0      # a beep holds its pitch; a sung or spoken vowel glides
    min_beep_ms: int = 180
    max_beep_ms: int = 1700
    max_dtmf_ms: int = 500          # key presses send 40-250 ms; longer grid pairs are beeps
    sequence_min_frames: int = 5    # a tone this long and steady makes its neighbours a sequence
    # below this frequency a tone may be a harmonic of a held vowel (voices put their 2nd-5th
    # harmonics at 300-520 Hz), and vowels held like tones last up to about 240 ms: such a tone
    # must be longer than that to be a beep
    voice_band_hz: float = 520.0
    voice_band_min_beep_ms: int = 250
    gap_frames: int = 2             # lost frames tolerated inside a tone
    continue_purity: float = 0.30   # a frame at the tone's level and frequency with this much
    continue_level_db: float = 3.0  # of the band's energy continues a tone already under way


@dataclass(frozen=True)
class ToneEvent:
    kind: ToneKind
    start_ms: int
    end_ms: int
    freqs_hz: tuple[float, ...]
    reported_ms: int                # stream time at which the tone was classified


@dataclass
class _Run:
    start_i: int
    freqs: tuple[float, ...]
    last_tonal_i: int
    follows_tone: bool
    dual_frames: int = 0
    frames: int = 0
    f1_values: list = field(default_factory=list)   # strongest frequency of every frame
    lo_values: list = field(default_factory=list)   # two-tone frames: lower and upper tone
    hi_values: list = field(default_factory=list)
    gap: int = 0
    silent: int = 0


def _near(f: float, targets, tol: float) -> bool:
    return any(abs(f - t) <= tol for t in targets)


class BeepDetector:
    """Feed one FrameFeatures per 20 ms; returns a ToneEvent when a tone run is classified."""

    def __init__(self, params: BeepParams | None = None):
        self.params = params or BeepParams()
        self.index = -1
        self._run: _Run | None = None
        self._levels: deque = deque(maxlen=200)     # (frame index, level_db), last 4 s
        self._last_run_end_i = -1000
        # the last run was long and steady enough to be part of a tone sequence
        self._last_run_steady = False
        # a run ended by a change of frequency, as part of a sequence and alone: which one is
        # known once the tone after it proves a real tone or a fragment (babble, a vowel)
        self._held: tuple[ToneEvent, ToneEvent] | None = None
        self.tonal = False                        # this frame is tonal
        self.speech_heard = False                 # set by the owner: a greeting was heard
        # set by the owner: let impure frames continue a tone (see _continues). More beeps are
        # found whole, and a held vowel is a little likelier to pass for one: worth it while
        # waiting for the beep of a known machine, not while a person may be on the line
        self.continue_runs = False

    @property
    def in_tone(self) -> bool:
        return self._run is not None

    def _frame_tone(self, f: FrameFeatures) -> tuple[float, ...] | None:
        p = self.params
        if f.level_db < p.min_tone_db:
            return None
        if f.purity1 >= p.min_purity1 and p.freq_min_hz <= f.f1_hz <= p.freq_max_hz:
            if f.purity2 >= p.min_purity2 and f.ratio2 >= p.min_ratio2:
                return tuple(sorted((f.f1_hz, f.f2_hz)))
            return (f.f1_hz,)
        if f.purity2 >= p.min_purity2 and f.ratio2 >= p.min_ratio2 \
                and p.freq_min_hz <= min(f.f1_hz, f.f2_hz) and max(f.f1_hz, f.f2_hz) <= p.freq_max_hz:
            return tuple(sorted((f.f1_hz, f.f2_hz)))
        return None

    def feed(self, f: FrameFeatures) -> ToneEvent | None:
        self.index += 1
        i = self.index
        self._levels.append((i, f.level_db))
        run = self._run
        if f.level_db <= SILENT_DB:
            # a lost (silence-filled) or comfort-noise frame: a short run of them inside a tone
            # is packet loss, a longer one is the tone's end
            self.tonal = False
            if run is not None:
                run.silent += 1
                if run.silent > self.params.gap_frames + 1:
                    return self._close(run, i, changed=False)
            return None
        tone = self._frame_tone(f)
        if tone is None and self.continue_runs and run is not None and run.frames >= 3 and self._continues(run, f):
            tone = run.freqs
        self.tonal = tone is not None
        event = None
        if tone is not None:
            main = f.f1_hz
            if run is not None and _near(main, run.freqs + tuple(run.f1_values[-3:]), self.params.freq_tolerance_hz):
                self._extend(run, tone, main, i)
                if self._held is not None and self._steady(run):
                    event, self._held = self._held[0], None     # a sequence of real tones
                    return replace(event, reported_ms=(i + 1) * FRAME_MS)
                return None
            if run is not None and run.frames < 3:   # a transition frame, not a tone of its own
                self._run = run = None
            if run is not None:                      # the frequency changed: a tone sequence?
                event = self._close(run, i, changed=True)
            self._run = _Run(start_i=i, freqs=tone, last_tonal_i=i,
                             follows_tone=self._last_run_steady and (i - self._last_run_end_i) <= 5)
            self._extend(self._run, tone, main, i)
            return event
        if run is not None:
            run.gap += 1
            if run.gap > self.params.gap_frames:
                return self._close(run, i, changed=False)
        return None

    def _continues(self, run: _Run, f: FrameFeatures) -> bool:
        """A frame that is not pure enough to be a tone on its own but carries the run's tone
        at its level: its 80 ms window also holds a lost packet or a burst of noise."""
        p = self.params
        if not _near(f.f1_hz, run.freqs, p.freq_tolerance_hz):
            return False
        if f.purity1 < p.continue_purity:
            return False
        levels = [lv for i, lv in list(self._levels)[-run.frames - 2:-1] if lv > SILENT_DB]
        return bool(levels) and f.level_db >= float(np.median(levels)) - p.continue_level_db

    def _extend(self, run: _Run, tone: tuple[float, ...], main_hz: float, i: int) -> None:
        run.last_tonal_i = i
        run.gap = 0
        run.silent = 0
        run.frames += 1
        run.f1_values.append(main_hz)
        if len(tone) == 2:
            run.dual_frames += 1
            run.lo_values.append(tone[0])
            run.hi_values.append(tone[1])
            run.freqs = tone
        elif len(run.freqs) == 1:
            run.freqs = tone

    def _end_ms(self, run: _Run) -> int:
        levels = {i: lv for i, lv in self._levels if i >= run.start_i and lv > SILENT_DB}
        inside = [levels[i] for i in range(run.start_i, run.last_tonal_i + 1) if i in levels]
        after = [lv for i, lv in levels.items() if i > run.last_tonal_i]
        ref = float(np.median(inside)) if inside else -90.0
        post = min(after) if after else -90.0
        if ref - post < 3.0:
            # no level step to find: the tonal flag lags the end by about the window length
            return int((run.last_tonal_i + 1) * FRAME_MS - 60)
        mid = (ref + post) / 2
        end_i = max((i for i, lv in levels.items() if lv >= mid), default=run.last_tonal_i)
        p_ref, p_post = 10 ** (ref / 10), 10 ** (post / 10)
        nxt = levels.get(end_i + 1)
        frac = 0.0
        if nxt is not None:
            frac = float(np.clip((10 ** (nxt / 10) - p_post) / max(p_ref - p_post, 1e-12), 0.0, 1.0))
        return int(round((end_i + 1 + frac) * FRAME_MS))

    def _glides(self, run: _Run) -> bool:
        """A beep holds its pitch: within each of its (one or two) tones the main frequency
        stays within max_glide_hz, first and last frame (the edges) aside."""
        values = run.f1_values[1:-1] if len(run.f1_values) > 4 else run.f1_values
        if run.dual_frames:
            centers = (float(np.median(run.lo_values)), float(np.median(run.hi_values)))
            groups = [[v for v in values if abs(v - c) == min(abs(v - c2) for c2 in centers)] for c in centers]
        else:
            groups = [values]
        return any(max(g) - min(g) > self.params.max_glide_hz for g in groups if g)

    def _steady(self, run: _Run) -> bool:
        """Long and steady enough to count as a tone of a sequence (SIT segments last 274-380
        ms): babble and vowels leave tonal fragments of a few frames, or gliding ones."""
        return run.frames >= self.params.sequence_min_frames and not self._glides(run)

    def _close(self, run: _Run, i: int, changed: bool) -> ToneEvent | None:
        """Classify a run that ended. A run ended by a change of frequency is held until the
        next run shows whether the two are a sequence; a held run is released (alone) when the
        run after it ends as a fragment, whose own event is then dropped (it is a TONE: too
        short or gliding)."""
        self._run = None
        self._last_run_end_i = run.last_tonal_i
        self._last_run_steady = self._steady(run)
        released = replace(self._held[1], reported_ms=(i + 1) * FRAME_MS) if self._held is not None else None
        self._held = None
        alone = self._event(run, i, changed=False)
        if changed:
            self._held = (self._event(run, i, changed=True), alone)
            return released
        return released if released is not None else alone

    def _event(self, run: _Run, i: int, changed: bool) -> ToneEvent:
        p = self.params
        start_ms = run.start_i * FRAME_MS
        end_ms = self._end_ms(run)
        dual = run.dual_frames * 2 >= run.frames
        if dual:
            freqs = (float(np.median(run.lo_values)), float(np.median(run.hi_values)))
        else:
            freqs = (float(np.median(run.f1_values)),)
        duration = end_ms - start_ms
        if dual and (abs(freqs[1] - freqs[0]) < 60.0 or (_near(freqs[0], (440.0,), 20) and _near(freqs[1], (480.0,), 20))):
            kind = ToneKind.RINGBACK
        elif (dual and duration <= p.max_dtmf_ms and _near(freqs[0], _DTMF_LOW, freqs[0] * 0.018)
              and _near(freqs[1], _DTMF_HIGH, freqs[1] * 0.018)):
            kind = ToneKind.DTMF
        elif (not (p.min_beep_ms <= duration <= p.max_beep_ms) or self._glides(run)
              or (freqs[0] < p.voice_band_hz and duration < p.voice_band_min_beep_ms)):
            kind = ToneKind.TONE
        elif not dual and abs(freqs[0] - 1100.0) <= 25.0 and duration <= 800 and not self.speech_heard:
            kind = ToneKind.FAX_CNG
        elif (changed or run.follows_tone) and not dual and _near(freqs[0], _SIT_HZ, 30.0):
            kind = ToneKind.SIT
        elif changed or run.follows_tone:
            kind = ToneKind.TONE          # part of a tone sequence (melody, tone signalling)
        else:
            kind = ToneKind.BEEP
        return ToneEvent(kind, start_ms, end_ms, tuple(round(f, 1) for f in freqs), (i + 1) * FRAME_MS)
