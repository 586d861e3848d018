"""Beep detector on generated tones (beeps and the tones that are not beeps) and on the real
FreeSWITCH unicast capture (7701: greeting, then a 1000 Hz beep at 14.5-16 s)."""
from __future__ import annotations

import numpy as np
import pytest

from amd import audio
from amd.beep import BeepDetector, ToneKind
from amd.features import features_for_signal

RATE = 8000


def tone(freqs, seconds, rms=3000.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return rms * np.sqrt(2.0 / len(freqs)) * sum(np.sin(2 * np.pi * f * t) for f in freqs)


def silence(seconds):
    return np.zeros(int(seconds * RATE))


def noisy(x, snr_db=10.0, ref_rms=3000.0, seed=0):
    rng = np.random.default_rng(seed)
    return x + rng.standard_normal(len(x)) * ref_rms * 10 ** (-snr_db / 20)


def events(signal, continue_runs=False):
    det = BeepDetector()
    det.speech_heard = True          # as after a greeting
    det.continue_runs = continue_runs
    out = []
    for f in features_for_signal(audio.to_int16(signal)):
        e = det.feed(f)
        if e is not None:
            out.append(e)
    return out


def beeps(signal, continue_runs=False):
    return [e for e in events(signal, continue_runs) if e.kind is ToneKind.BEEP]


@pytest.mark.parametrize("freqs,seconds", [((440.0,), 0.5), ((640.0,), 1.0), ((700.0,), 0.42), ((1000.0,), 0.3),
                                           ((1800.0,), 0.2), ((2000.0,), 1.5), ((800.0, 1200.0), 0.6)])
def test_beeps_found_with_end_within_40ms(freqs, seconds):
    start = 1.03
    x = noisy(np.concatenate([silence(start), tone(freqs, seconds), silence(1.0)]), snr_db=15)
    found = beeps(x)
    assert len(found) == 1, events(x)
    end_ms = (start + seconds) * 1000
    assert abs(found[0].end_ms - end_ms) <= 40
    assert abs(found[0].start_ms - start * 1000) <= 60
    assert found[0].reported_ms - end_ms <= 200          # reported soon after it ends


def test_quiet_beep_in_loud_noise_is_found():
    x = np.concatenate([silence(0.5), tone((1400.0,), 0.5, rms=1500), silence(0.8)])
    found = beeps(noisy(x, snr_db=4, ref_rms=1500, seed=3))
    assert len(found) == 1 and abs(found[0].end_ms - 1000) <= 60


def test_ringback_is_not_a_beep():
    x = np.concatenate([tone((440.0, 480.0), 2.0), silence(4.0), tone((440.0, 480.0), 1.0), silence(0.5)])
    ev = events(noisy(x, 20))
    assert not [e for e in ev if e.kind is ToneKind.BEEP]
    assert ToneKind.RINGBACK in {e.kind for e in ev}


def test_short_ringback_burst_is_not_a_beep():
    # a 0.4 s burst is within beep length: only the 440+480 pair tells it apart
    ev = events(np.concatenate([silence(0.3), tone((440.0, 480.0), 0.4), silence(0.6)]))
    assert [e.kind for e in ev] == [ToneKind.RINGBACK]


def test_sit_tones_are_not_beeps():
    x = np.concatenate([silence(0.3), tone((913.8,), 0.274), tone((1370.6,), 0.274), tone((1776.7,), 0.380), silence(0.5)])
    ev = events(noisy(x, 25))
    assert not [e for e in ev if e.kind is ToneKind.BEEP]
    assert ToneKind.SIT in {e.kind for e in ev}


def test_fax_cng_before_speech_is_fax_not_beep():
    det = BeepDetector()                      # nothing said yet
    x = np.concatenate([silence(0.2), tone((1100.0,), 0.5), silence(3.0), tone((1100.0,), 0.5), silence(0.3)])
    kinds = [e.kind for f in features_for_signal(audio.to_int16(x)) if (e := det.feed(f)) is not None]
    assert kinds == [ToneKind.FAX_CNG, ToneKind.FAX_CNG]


@pytest.mark.parametrize("digits", ["159#", "0000", "*3D8"])
def test_dtmf_is_not_a_beep(digits):
    low = {"1": 697, "2": 697, "3": 697, "A": 697, "4": 770, "5": 770, "6": 770, "B": 770,
           "7": 852, "8": 852, "9": 852, "C": 852, "*": 941, "0": 941, "#": 941, "D": 941}
    high = {"1": 1209, "4": 1209, "7": 1209, "*": 1209, "2": 1336, "5": 1336, "8": 1336, "0": 1336,
            "3": 1477, "6": 1477, "9": 1477, "#": 1477, "A": 1633, "B": 1633, "C": 1633, "D": 1633}
    parts = [silence(0.2)]
    for d in digits:
        parts += [tone((low[d], high[d]), 0.3), silence(0.1)]      # long presses: beep-length
    assert not beeps(noisy(np.concatenate(parts + [silence(0.5)]), 25))


def test_long_two_tone_beep_on_a_dtmf_pair_is_a_beep():
    # 941.7 + 1466.7 Hz is within 1.8 % of DTMF "#" (941 + 1477 Hz), but 0.9 s is no key press
    found = beeps(noisy(np.concatenate([silence(0.3), tone((941.7, 1466.7), 0.9), silence(0.6)]), 25))
    assert len(found) == 1 and abs(found[0].end_ms - 1200) <= 40


@pytest.mark.parametrize("fragment_s", [0.04, 0.06])
def test_beep_next_to_a_tone_fragment_is_still_a_beep(fragment_s):
    # babble behind a greeting leaves tonal fragments of a few frames; one right after the beep
    # must not make the beep part of a tone sequence (SIT, a melody), which needs real tones
    x = np.concatenate([silence(0.3), tone((1000.0,), 0.6), tone((620.0,), fragment_s), silence(0.6)])
    found = beeps(noisy(x, 25))
    assert len(found) == 1 and abs(found[0].end_ms - 900) <= 40


@pytest.mark.parametrize("seconds,is_beep", [(0.2, False), (0.4, True)])
def test_low_tone_must_outlast_a_held_vowel(seconds, is_beep):
    # 460 Hz is where a voice's harmonics are: a tone there as short as a held vowel is not a beep
    x = np.concatenate([silence(0.3), tone((460.0,), seconds), silence(0.6)])
    assert bool(beeps(noisy(x, 25))) is is_beep


def test_music_and_gliding_tone_are_not_beeps():
    rng = np.random.default_rng(7)
    t = np.arange(int(0.35 * RATE)) / RATE
    notes = []
    for _ in range(12):
        chord = rng.choice([262, 294, 330, 349, 392, 440, 494, 523], size=3, replace=False)
        notes.append(sum(np.sin(2 * np.pi * f * h * t) / h for f in chord for h in range(1, 5)) * 800)
    assert not beeps(np.concatenate(notes))
    sweep_t = np.arange(int(0.6 * RATE)) / RATE
    glide = 3000 * np.sin(2 * np.pi * (500 * sweep_t + 60 * sweep_t ** 2))     # 500 -> 572 Hz
    assert not beeps(np.concatenate([silence(0.3), glide, silence(0.5)]))


def test_too_long_tone_is_not_a_beep():
    assert not beeps(np.concatenate([silence(0.2), tone((1000.0,), 2.5), silence(0.5)]))


def test_real_capture_beep_at_14_5_to_16_s(captures_dir):
    samples, rate = audio.read_wav(captures_dir / "21_unicast_native_decoded.wav")
    assert rate == 8000
    found = beeps(samples.astype(float))
    assert len(found) == 1
    beep = found[0]
    assert 14500 <= beep.start_ms <= 16000 and 14500 <= beep.end_ms <= 16100
    assert beep.end_ms - beep.start_ms >= 400
    assert abs(beep.freqs_hz[0] - 1000) < 15


def _features(kind: str, n: int, level_db: float | None = None):
    from amd.features import FrameFeatures
    spec = {"quiet": (-60.0, False, 0.05), "tone": (-20.0, True, 0.95), "talk": (-20.0, True, 0.2)}[kind]
    level, vad, purity = spec
    level = level if level_db is None else level_db
    return [FrameFeatures(level, 1000.0, vad, 1000.0, 1500.0, purity, purity + 0.02, 0.02)] * n


@pytest.mark.parametrize("after,expect_beep", [("quiet", True), ("talk", False)])
def test_beep_is_confirmed_only_by_the_silence_after_it(after, expect_beep):
    from amd.detector import AmdResult, Cause
    from amd.session import CallAnalyzer
    analyzer = CallAnalyzer()
    for f in _features("quiet", 10) + _features("tone", 15) + _features(after, 30):
        analyzer.feed_features(f)
    analyzer.end_of_audio()
    r = analyzer.result()
    if expect_beep:
        assert (r.result, r.cause) == (AmdResult.MACHINE, Cause.BEEP)
        assert abs(r.beep_end_ms - 500) <= 20
        assert r.beep_end_ms + 200 <= r.decision_ms <= r.beep_end_ms + 260
    else:
        assert r.cause is not Cause.BEEP and r.beep_end_ms is None


@pytest.mark.parametrize("after_db,expect_beep", [(-21.0, True), (-12.0, False)])
def test_known_machine_beep_survives_background_voices_not_more_talk(after_db, expect_beep):
    # greeting at -10 dB, beep, then voices: 11 dB under the greeting they are the babble
    # behind the recording (still speech to the VAD), 2 dB under it they are more greeting
    from amd.session import BeepOutcome, CallAnalyzer
    frames = (_features("quiet", 10) + _features("talk", 50, -10.0) + _features("quiet", 10)
              + _features("tone", 15) + _features("talk", 30, after_db))
    analyzer = CallAnalyzer(beep_stage_only=True)
    for f in frames:
        analyzer.feed_features(f)
    analyzer.end_of_audio()
    assert (analyzer.beep_outcome is BeepOutcome.BEEP) is expect_beep
    # before a decision any speech after the tone cancels it: a false beep there hangs up on
    # a person
    analyzer = CallAnalyzer()
    for f in frames:
        analyzer.feed_features(f)
    analyzer.end_of_audio()
    assert analyzer.result().cause.value != "BEEP"


def test_beep_stage_only_listens_from_the_first_frame(captures_dir):
    from amd.session import BeepOutcome, CallAnalyzer
    samples, _ = audio.read_wav(captures_dir / "21_unicast_native_decoded.wav")
    analyzer = CallAnalyzer(beep_stage_only=True)
    for f in features_for_signal(samples):
        analyzer.feed_features(f)
        if analyzer.done:
            break
    assert analyzer.beep_outcome is BeepOutcome.BEEP and 14500 <= analyzer.beep_event.end_ms <= 16100
    result = analyzer.result()          # no AMD decision in this mode: NOTSURE, with the beep end
    assert result.cause.value == "END_OF_AUDIO" and result.beep_end_ms == analyzer.beep_event.end_ms


@pytest.mark.parametrize("freqs", [(1000.0,), (548.0, 760.0)])
def test_beep_with_a_lost_packet_inside_is_one_beep(freqs):
    # a 20 ms frame lost mid-beep and filled with faint noise (not digital silence): its 80 ms
    # window spoils the purity of the frames after it, which must not split the beep once the
    # call is known to be a machine (continue_runs, set by the analyzer after MACHINE)
    start, seconds = 0.5, 0.9
    x = noisy(np.concatenate([silence(start), tone(freqs, seconds), silence(0.8)]), snr_db=30)
    lost = int((start + 0.4) * RATE) // 160 * 160
    x[lost:lost + 160] = np.random.default_rng(5).standard_normal(160) * 8      # about -72 dBFS
    found = beeps(x, continue_runs=True)
    assert len(found) == 1, events(x, continue_runs=True)
    assert abs(found[0].end_ms - (start + seconds) * 1000) <= 40
