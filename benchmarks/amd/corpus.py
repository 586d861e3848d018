"""Builds the project's labelled AMD corpus from espeak-ng voices and sox, reproducibly.

Follows the corpus rules of ../shared/reference/amd.md: telephone band-pass 300-3400 Hz (sox
`sinc`), a G.711 round trip (sox writes mu-law or A-law), noise at 30/20/10 dB SNR, speech
levels -10 to -40 dBFS, 0-2 % dropped 20 ms frames, 0-3 s leading silence; the human, machine
and negative categories listed there. Every item is drawn from its own numpy generator seeded
with (seed, index), so the corpus does not depend on the order or the number of worker processes,
and finished items are cached (a sidecar JSON per file) so a re-run only builds what is missing.

Two disjoint splits: `tune` (the detector's thresholds were chosen on it) and `report` (the
figures in docs/amd.md). They use disjoint espeak-ng voices and disjoint wordings, to mimic the
held-out corpus the product is judged on. `--engine flite` builds a third split, `flite`, with
the same rules and the report split's wordings spoken by another engine (CMU Flite's voices,
Debian package flite): a check that the thresholds chosen on espeak-ng audio carry over to a
synthesiser nobody tuned on. `--engine festival` builds a fourth, `festival`: a third set of
wordings in the Festival Speech Synthesis System's voices (Debian festival and its festvox
English voices), run blind once before anything was read on it.

The manifest (manifest.jsonl) records, for every file, where speech starts, where the first
utterance ends, where the greeting ends and where the beep starts and ends, measured on the clean
signal before noise, band-pass, codec and frame loss.

    python -m benchmarks.amd.corpus --out benchmarks/corpus --seed 20261122 --jobs 2
    python -m benchmarks.amd.corpus --engine flite --out benchmarks/corpus_flite --humans 300 --machines 300 --negatives 60
    python -m benchmarks.amd.corpus --engine festival --out benchmarks/corpus_festival --humans 300 --machines 300 --negatives 60
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from amd import audio

CORPUS_VERSION = 5          # seeds every item's generator: changing it draws a new corpus
RENDER_VERSION = 2          # invalidates the cache without redrawing (2: sox without dither)
RATE = audio.RATE

# Voices: espeak-ng English dialects x variants; each split draws from its own half.
_DIALECTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
             "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
_VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
             "klatt", "klatt2", "klatt3", "klatt4", "adam", "john", "linda", "steph",
             "paul", "robert", "aunty", "grandpa", "max", "Annie", "Andy", "Lee"]
VOICES = {
    "tune": [f"{d}+{v}" for d in _DIALECTS[:4] for v in _VARIANTS[0::2]],
    "report": [f"{d}+{v}" for d in _DIALECTS[4:] for v in _VARIANTS[1::2]],
    # CMU Flite's built-in voices (flite -lv; awb_time only speaks clock times)
    "flite": ["flite:kal", "flite:kal16", "flite:awb", "flite:rms", "flite:slt"],
    # the Festival Speech Synthesis System's English voices in Debian (festvox-kallpc16k,
    # festvox-kdlpc16k: diphones cut from recorded speech; festvox-us-slt-hts: HTS)
    "festival": ["festival:kal_diphone", "festival:ked_diphone", "festival:cmu_us_slt_arctic_hts"],
}
ESPEAK_DEFAULT_WPM = 175    # flite and festival have no words-per-minute: speeds map to a
                            # duration stretch (flite) or a sox tempo change (festival)
# Which wordings each split speaks (index into the lists of WORDINGS).
WORDING_SIDE = {"tune": 0, "report": 1, "flite": 1, "festival": 2}

NAMES = ["Sarah", "John", "Maria", "David", "Linda", "Michael", "Karen", "James", "Emily",
         "Robert", "Jessica", "Daniel", "Laura", "Kevin", "Angela", "Brian"]
COMPANIES = ["Acme Plumbing", "Riverside Dental", "Summit Insurance", "Blue Sky Realty",
             "Northwind Traders", "Oak Street Bakery", "Lakeside Auto Repair", "Pioneer Legal"]

# Wordings: index 0 of each kind belongs to the tune split, index 1 to the report split (and
# the flite split), index 2 to the festival split; written before any festival audio was heard.
WORDINGS = {
    "short": (["Hello?", "Yeah?", "Hi.", "Yes?", "Hello.", "Hey."],
              ["Hullo?", "Yes, hello?", "Speaking.", "Hi there?", "Yep?", "Go ahead."],
              ["Hello, yes?", "Mm, hello?", "Who's this?", "Hi, yes.", "Hello there.", "Yeah, hi?"]),
    "intro": (["Hello, this is {name}.", "Hi, {name} speaking.", "Hello, {name} here."],
              ["Yes, this is {name}, who is it?", "Hi, you got {name}.", "Hello, {name} speaking, hi."],
              ["Hi, it's {name}, go ahead.", "This is {name}, hello?", "{name} speaking, who's calling?"]),
    "business": (["Thank you for calling {company}, this is {name}, how can I help you?",
                  "Good morning, {company}, {name} speaking, how may I help you today?"],
                 ["{company}, this is {name}, what can I do for you this afternoon?",
                  "Hi, thanks for calling {company}, you are speaking with {name}, how can I help?"],
                 ["Good afternoon, {company}, my name is {name}, how can I help you today?",
                  "{company} customer service, {name} speaking, how may I direct your call?"]),
    "carrier": (["Please leave a message after the tone.", "The person you called is not available.",
                 "Your call has been forwarded to voicemail."],
                ["Leave your message after the beep.", "The subscriber cannot take your call.",
                 "You have reached a voice mailbox."],
                ["The wireless customer you are calling is not available.",
                 "Please record your message at the tone.", "This mailbox belongs to a customer who is away."]),
    "personal": (["Hi, you've reached {name}.", "I can't come to the phone right now.",
                  "Please leave your name and number.", "I'll get back to you as soon as I can.",
                  "Thanks for calling.", "If this is urgent, try my cell phone.",
                  "You can also send me an email.", "Have a great day."],
                 ["Hey, this is {name}.", "Sorry I missed your call.",
                  "Leave me a message with your number.", "I will call you back later today.",
                  "Thank you, bye.", "For anything urgent, please text me.",
                  "I check messages every evening.", "Talk to you soon."],
                 ["Hello, you have reached the voicemail of {name}.", "I'm away from my desk at the moment.",
                  "Please leave a short message.", "I'll return your call as soon as possible.",
                  "Thanks a lot.", "If you need help right away, call the front office.",
                  "Or you can reach me by email.", "Have a good one."]),
    "tv": (["and now the weather for the weekend, with sunshine expected across the region",
            "the game continues in the second half with the home team ahead by three points"],
           ["breaking news this hour, traffic is heavy on the northbound highway tonight",
            "stay tuned after the break for the latest from the city council meeting"],
           ["and that's the end of the first quarter, with the visitors leading by seven",
            "coming up next, a look at the housing market and what it means for buyers"]),
}

# utterance durations of amd.md's corpus rules, in seconds
DURATIONS_S = {"short": (0.3, 1.0), "intro": (1.5, 2.5), "business": (3.0, 4.0), "carrier": (1.2, 2.5)}
HUMAN_KINDS = [("short", 0.25), ("intro", 0.2), ("double", 0.15), ("business", 0.15),
               ("late", 0.1), ("silent", 0.05), ("tv", 0.1)]
MACHINE_KINDS = [("carrier", 0.4), ("personal", 0.6)]
MACHINE_ENDINGS = [("beep", 0.35), ("silence", 0.2), ("beep_silence", 0.25), ("music_beep", 0.2)]
NEGATIVE_KINDS = [("ringback", 0.25), ("sit", 0.2), ("fax", 0.2), ("dtmf", 0.2), ("music", 0.15)]
STORAGE = [("pcm16_8k", 0.4), ("mulaw", 0.25), ("alaw", 0.15), ("pcm16_16k", 0.2)]


def _pick(rng, weighted):
    names = [n for n, _ in weighted]
    p = np.array([w for _, w in weighted], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _synth(text: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """Synthesize with espeak-ng (flite for "flite:" voices, Festival for "festival:" ones),
    resample to 8 kHz, trim leading/trailing silence. `speed` is in espeak-ng's words per
    minute; flite gets the duration stretch of that speed, Festival's audio the tempo change,
    and both keep their voice's own pitch."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        if voice.startswith("festival:"):
            # text2wave reads the text on stdin; sox's WSOLA tempo (-s: tuned for speech) sets
            # the speed for every voice alike (the HTS voice ignores Duration_Stretch)
            with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
                subprocess.run(["text2wave", "-eval", f"(voice_{voice.split(':', 1)[1]})", "-o", raw.name],
                               input=text.encode(), check=True, capture_output=True, timeout=60)
                subprocess.run(["sox", "-V1", "-D", raw.name, tmp.name, "tempo", "-s",
                                f"{speed / ESPEAK_DEFAULT_WPM:.3f}"], check=True, capture_output=True, timeout=60)
            samples, rate = audio.read_wav(tmp.name)
            return _trim(audio.resample(samples.astype(np.float64), rate, RATE))
        if voice.startswith("flite:"):
            cmd = ["flite", "-voice", voice.split(":", 1)[1], "--setf",
                   f"duration_stretch={ESPEAK_DEFAULT_WPM / speed:.3f}", "-t", text, "-o", tmp.name]
        else:
            cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", tmp.name, text]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        samples, rate = audio.read_wav(tmp.name)
    x = audio.resample(samples.astype(np.float64), rate, RATE)
    return _trim(x)


def _active_bounds(x: np.ndarray, rel_db: float = -35.0) -> tuple[int, int]:
    """First and last sample of the 10 ms windows within rel_db of the loudest one."""
    win = RATE // 100
    n = len(x) // win
    if n == 0:
        return 0, len(x)
    power = np.mean(x[:n * win].reshape(n, win) ** 2, axis=1) + 1e-9
    active = np.nonzero(10 * np.log10(power / power.max()) > rel_db)[0]
    if len(active) == 0:
        return 0, 0
    return int(active[0] * win), int((active[-1] + 1) * win)


def _trim(x: np.ndarray) -> np.ndarray:
    start, end = _active_bounds(x)
    return x[start:end]


def _tone(freqs, dur_s, amplitude=1.0) -> np.ndarray:
    t = np.arange(int(dur_s * RATE)) / RATE
    # RMS `amplitude` whether one or two tones
    y = sum(np.sin(2 * np.pi * f * t) for f in freqs) * np.sqrt(2.0 / len(freqs))
    ramp = min(len(t) // 2, int(0.005 * RATE))             # 5 ms ramps, no clicks
    env = np.ones(len(t))
    if ramp:
        env[:ramp] = np.linspace(0, 1, ramp)
        env[-ramp:] = np.linspace(1, 0, ramp)
    return amplitude * y * env


def _music(rng, dur_s) -> np.ndarray:
    """Chords of harmonic-rich notes changing every 0.15-0.6 s: tonal but not a beep."""
    out = []
    total = 0
    scale = 220.0 * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12)
    while total < dur_s * RATE:
        note_s = rng.uniform(0.15, 0.6)
        n = int(note_s * RATE)
        t = np.arange(n) / RATE
        chord = rng.choice(scale, size=3, replace=False)
        y = np.zeros(n)
        for f0 in chord:
            vib = 1 + 0.004 * np.sin(2 * np.pi * 5.5 * t)
            for h in range(1, 6):
                y += np.sin(2 * np.pi * f0 * h * vib * t) / h
        env = np.minimum(1.0, np.minimum(t / 0.02, (note_s - t) / 0.05 + 0.2))
        out.append(y * env)
        total += n
    y = np.concatenate(out)[:int(dur_s * RATE)]
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-9)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)))


class _Track:
    """The clean signal under construction, with the timestamps the manifest records."""

    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.length = 0
        self.speech: list[tuple[int, int]] = []    # (start, end) samples of each utterance
        self.beep: tuple[int, int] | None = None
        self.sounds: list[tuple[int, str]] = []    # (start sample, kind) of beeps, tones, music

    def add(self, x: np.ndarray, kind: str = "other") -> None:
        """kind "speech" is espeak-ng output at its own scale; "beep", "tone" and "music" are
        given relative to the speech RMS (1.0 = as loud as the speech) and scaled in signal()."""
        if kind == "speech":
            self.speech.append((self.length, self.length + len(x)))
        elif kind == "beep":
            self.beep = (self.length, self.length + len(x))
        if kind in ("beep", "tone", "music"):
            self.sounds.append((self.length, kind))
        self.parts.append((x, kind in ("beep", "tone", "music")))
        self.length += len(x)

    def signal(self) -> np.ndarray:
        if not self.parts:
            return np.zeros(0)
        speech = [x for x, relative in self.parts if not relative and np.any(x)]
        ref = float(np.sqrt(np.mean(np.concatenate(speech) ** 2))) if speech else 1.0
        return np.concatenate([x * ref if relative else x for x, relative in self.parts])


def _ms(samples: int | None) -> int | None:
    return None if samples is None else int(round(samples * 1000 / RATE))


def _speech_rms(track: _Track, x: np.ndarray) -> float:
    if not track.speech:
        return float(np.sqrt(np.mean(x ** 2)) + 1e-9)
    seg = np.concatenate([x[s:e] for s, e in track.speech])
    return float(np.sqrt(np.mean(seg ** 2)) + 1e-9)


def _beep(rng) -> tuple[list[float], float]:
    kind = rng.random()
    if kind < 0.15:     # well-known defaults: FreeSWITCH 640 Hz 1 s, Asterisk ~700 Hz 0.42 s, 440, 1000
        return [float(rng.choice([440.0, 640.0, 700.0, 1000.0, 1800.0]))], float(rng.choice([0.42, 1.0, 0.5]))
    dur = float(rng.uniform(0.2, 1.5))
    if kind < 0.8:
        return [float(rng.uniform(440, 2000))], dur
    f1 = float(rng.uniform(440, 1400))
    return [f1, float(f1 * rng.uniform(1.25, 1.6))], dur


def build_item(seed: int, index: int, split: str, label: str, kind: str | None = None,
               ending: str | None = None, with_noise: bool = True) -> dict:
    """Clean signal and ground truth for one corpus item (no I/O except espeak-ng).
    `kind` / `ending` force a category (tests build small fixed subsets with them); without
    noise (zeros instead: benchmarks.amd.timing_bound reads only the track) the draws up to
    the noise are the same."""
    rng = np.random.default_rng([seed, index, CORPUS_VERSION])
    voices = VOICES[split]
    side = WORDING_SIDE[split]
    voice = str(rng.choice(voices))
    speed = int(rng.integers(135, 195))
    pitch = int(rng.integers(25, 75))

    def say(kind: str) -> np.ndarray:
        text = str(rng.choice(WORDINGS[kind][side])).format(name=rng.choice(NAMES), company=rng.choice(COMPANIES))
        texts.append(text)
        y = _synth(text, voice, speed, pitch)
        if kind in DURATIONS_S:
            # the rules give each kind a duration range: re-speak at the rate that lands on a
            # target drawn inside it (espeak-ng's duration scales inversely with words/minute)
            target = rng.uniform(*DURATIONS_S[kind])
            rate = int(np.clip(speed * (len(y) / RATE) / target, 80, 450))
            y = _synth(text, voice, rate, pitch)
        return y

    texts: list[str] = []
    track = _Track()
    meta: dict = {"label": label, "voice": voice, "split": split}
    lead = float(rng.uniform(0.0, 3.0))
    tv_noise = False
    if label == "HUMAN":
        kind = kind or _pick(rng, HUMAN_KINDS)
        if kind == "late":
            lead = float(rng.uniform(2.5, 4.0))
        track.add(_silence(lead))
        if kind in ("short", "late", "tv"):
            track.add(say("short" if kind != "tv" or rng.random() < 0.5 else "intro"), "speech")
        elif kind == "intro":
            track.add(say("intro"), "speech")
        elif kind == "business":
            track.add(say("business"), "speech")
        elif kind == "double":
            track.add(say("short"), "speech")
            track.add(_silence(rng.uniform(0.5, 1.5)))
            track.add(say("short"), "speech")
        tv_noise = kind == "tv"
        if kind == "silent":
            track.add(_silence(rng.uniform(5.0, 7.0)))
        else:
            # the person waits for the caller, then may say hello again
            track.add(_silence(rng.uniform(2.0, 3.5)))
            if rng.random() < 0.5:
                track.add(say("short"), "speech")
                track.add(_silence(0.5))
    elif label == "MACHINE":
        kind = kind or _pick(rng, MACHINE_KINDS)
        track.add(_silence(lead))
        if kind == "carrier":
            track.add(say("carrier"), "speech")
        else:
            sentences = int(rng.integers(2, 6))
            order = rng.permutation(len(WORDINGS["personal"][side]))[:sentences]
            for i, k in enumerate(sorted(order, key=lambda j: (j != 0, j))):
                if i:
                    # personal greetings pause 0.5-2.4 s between some sentences, naturally elsewhere
                    pause = rng.uniform(0.5, 2.4) if rng.random() < 0.5 else rng.uniform(0.15, 0.45)
                    track.add(_silence(pause))
                text = WORDINGS["personal"][side][k].format(name=rng.choice(NAMES))
                texts.append(text)
                track.add(_synth(text, voice, speed, pitch), "speech")
        ending = ending or _pick(rng, MACHINE_ENDINGS)
        meta["ending"] = ending
        if ending == "silence":
            track.add(_silence(rng.uniform(3.0, 6.0)))
        else:
            track.add(_silence(rng.uniform(0.1, 0.8)))
            if ending == "music_beep":
                track.add(0.5 * _music(rng, rng.uniform(1.0, 3.0)), "music")
                track.add(_silence(rng.uniform(0.05, 0.3)))
            freqs, dur = _beep(rng)
            meta["beep_freqs"] = [round(f, 1) for f in freqs]
            track.add(_tone(freqs, dur, amplitude=float(10 ** (rng.uniform(-6, 3) / 20))), "beep")
            track.add(_silence(rng.uniform(2.0, 4.0) if ending == "beep_silence" else rng.uniform(0.3, 0.6)))
    else:
        kind = kind or _pick(rng, NEGATIVE_KINDS)
        track.add(_silence(rng.uniform(0.0, 1.0)))
        if kind == "ringback":
            for _ in range(2):
                track.add(_tone([440, 480], 2.0), "tone")
                track.add(_silence(4.0 if _ == 0 else 1.0))
        elif kind == "sit":
            for f, d in ((913.8, 0.274), (1370.6, 0.274), (1776.7, 0.380)):
                track.add(_tone([f], d), "tone")
            track.add(_silence(0.3))
            track.add(_synth("The number you have dialed is not in service.", voice, speed, pitch), "speech")
            track.add(_silence(1.0))
        elif kind == "fax":
            for _ in range(2):
                track.add(_tone([1100], 0.5), "tone")
                track.add(_silence(3.0))
        elif kind == "dtmf":
            low, high = [697, 770, 852, 941], [1209, 1336, 1477, 1633]
            for _ in range(int(rng.integers(4, 11))):
                track.add(_tone([float(rng.choice(low)), float(rng.choice(high))],
                                rng.uniform(0.06, 0.25)), "tone")
                track.add(_silence(rng.uniform(0.05, 0.15)))
            track.add(_silence(1.0))
        else:
            track.add(_music(rng, rng.uniform(4.0, 7.0)), "music")
        meta["ending"] = None
    meta["category"] = kind
    meta["text"] = " | ".join(texts)

    x = track.signal()
    level_dbfs = float(rng.uniform(-40.0, -10.0))
    rms = _speech_rms(track, x)
    x = x * (32767.0 * 10 ** (level_dbfs / 20) / rms)
    snr_db = float(rng.choice([30.0, 20.0, 10.0]))
    noise_kind = "tv" if tv_noise else str(rng.choice(["white", "pink", "babble"]))
    if with_noise:
        noise = _noise(rng, noise_kind, len(x), voice_pool=voices, side=side)
        noise *= (32767.0 * 10 ** ((level_dbfs - snr_db) / 20)) / (np.sqrt(np.mean(noise ** 2)) + 1e-9)
    else:
        noise = np.zeros(len(x))
    meta.update({
        "lead_silence_ms": _ms(int(lead * RATE)),
        "speech_start_ms": _ms(track.speech[0][0]) if track.speech else None,
        "first_utterance_end_ms": _ms(track.speech[0][1]) if track.speech else None,
        "greeting_end_ms": _ms(track.speech[-1][1]) if track.speech and label == "MACHINE" else None,
        "speech_end_ms": _ms(track.speech[-1][1]) if track.speech else None,
        "beep_start_ms": _ms(track.beep[0]) if track.beep else None,
        "beep_end_ms": _ms(track.beep[1]) if track.beep else None,
        "duration_ms": _ms(len(x)),
        "level_dbfs": round(level_dbfs, 1), "snr_db": snr_db, "noise": noise_kind,
    })
    return {"meta": meta, "clean": x, "noise": noise, "rng": rng, "track": track}


def _noise(rng, kind: str, n: int, voice_pool, side: int) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(len(spec))
        spec[1:] /= np.sqrt(f[1:])
        return np.fft.irfft(spec, n)
    # babble / TV: several overlapping voices, looped to length
    out = np.zeros(n)
    for _ in range(4 if kind == "babble" else 1):
        text = str(rng.choice(WORDINGS["tv"][side]))
        y = _synth(text, str(rng.choice(voice_pool)), int(rng.integers(150, 200)), int(rng.integers(30, 70)))
        y = np.tile(y, n // max(len(y), 1) + 1)
        shift = int(rng.integers(0, len(y) - n + 1))
        out += y[shift:shift + n] / (np.sqrt(np.mean(y ** 2)) + 1e-9)
    return out


def _telephone(x: np.ndarray, law: str) -> np.ndarray:
    """sox: band-pass 300-3400 Hz and a G.711 round trip (mu-law or A-law)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.wav"), os.path.join(tmp, "out.wav")
        audio.write_wav(src, audio.to_int16(x))
        # -D: no dither, so the same seed gives the same bytes (sox dithers from its own RNG)
        subprocess.run(["sox", "-V1", "-D", src, "-e", "u-law" if law == "mulaw" else "a-law", dst,
                        "sinc", "300-3400"], check=True, capture_output=True, timeout=60)
        samples, _ = audio.read_wav(dst)
    return samples.astype(np.float64)


def render(seed: int, index: int, split: str, label: str, out_dir: Path, kind: str | None = None,
           ending: str | None = None) -> dict:
    name = f"{split}_{label.lower()}_{index:05d}.wav"
    path = out_dir / name
    sidecar = out_dir / (name + ".json")
    if path.exists() and sidecar.exists():
        cached = json.loads(sidecar.read_text())
        if (cached.get("corpus_version"), cached.get("render_version"), cached.get("seed")) == \
                (CORPUS_VERSION, RENDER_VERSION, seed):
            return cached
    item = build_item(seed, index, split, label, kind, ending)
    rng, meta = item["rng"], item["meta"]
    storage = _pick(rng, STORAGE)
    law = "alaw" if storage == "alaw" else "mulaw"
    y = _telephone(item["clean"] + item["noise"], law)
    drop_rate = float(rng.uniform(0.0, 0.02))
    n_frames = len(y) // audio.FRAME_SAMPLES
    dropped = np.nonzero(rng.random(n_frames) < drop_rate)[0]
    for f in dropped:
        y[f * audio.FRAME_SAMPLES:(f + 1) * audio.FRAME_SAMPLES] = 0.0
    samples = audio.to_int16(y)
    if storage == "mulaw":
        _write_g711(path, audio.encode_mulaw(samples), 7)
    elif storage == "alaw":
        _write_g711(path, audio.encode_alaw(samples), 6)
    elif storage == "pcm16_16k":
        audio.write_wav(path, audio.to_int16(audio.resample(samples, RATE, 16000)), 16000)
    else:
        audio.write_wav(path, samples)
    meta.update({"file": name, "index": index, "storage": storage, "codec_chain": law,
                 "drop_rate": round(drop_rate, 4), "dropped_frames": int(len(dropped)),
                 "seed": seed, "corpus_version": CORPUS_VERSION, "render_version": RENDER_VERSION})
    sidecar.write_text(json.dumps(meta))
    return meta


def _write_g711(path: Path, payload: bytes, tag: int) -> None:
    import struct
    fmt = struct.pack("<IHHIIHHH", 18, tag, 1, RATE, RATE, 1, 8, 0)
    fact = b"fact" + struct.pack("<II", 4, len(payload))
    body = b"WAVE" + b"fmt " + fmt + fact + b"data" + struct.pack("<I", len(payload)) + payload
    if len(payload) & 1:
        body += b"\0"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def plan(humans: int, machines: int, negatives: int, tune_fraction: float, engine: str = "espeak-ng"):
    """(index, split, label) for every item; indices are stable across runs."""
    jobs = []
    index = 0
    for label, count in (("HUMAN", humans), ("MACHINE", machines), ("NEGATIVE", negatives)):
        n_tune = int(round(count * tune_fraction))
        for i in range(count):
            # espeak-ng builds the tune and report splits; any other engine one split of its name
            split = ("tune" if i < n_tune else "report") if engine == "espeak-ng" else engine
            jobs.append((index, split, label))
            index += 1
    return jobs


def _render_job(args):
    return render(*args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/corpus")
    parser.add_argument("--seed", type=int, default=20261122)
    parser.add_argument("--humans", type=int, default=960)
    parser.add_argument("--machines", type=int, default=960)
    parser.add_argument("--negatives", type=int, default=180)
    parser.add_argument("--tune-fraction", type=float, default=1 / 3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--engine", default="espeak-ng", choices=["espeak-ng", "flite", "festival"],
                        help="flite: one split, `flite`, of the report wordings in CMU Flite's voices; "
                             "festival: one split, `festival`, of a third set of wordings in Festival's voices")
    args = parser.parse_args(argv)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(args.seed, i, split, label, out_dir)
            for i, split, label in plan(args.humans, args.machines, args.negatives, args.tune_fraction, args.engine)]
    jobs.sort(key=lambda job: job[2] != "tune")     # build the tune split first
    metas = []
    with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, 2))) as pool:
        for n, meta in enumerate(pool.map(_render_job, jobs, chunksize=8), 1):
            metas.append(meta)
            if n % 100 == 0:
                print(f"corpus: {n}/{len(jobs)}", file=sys.stderr, flush=True)
    with open(out_dir / "manifest.jsonl", "w") as fh:
        for meta in metas:
            fh.write(json.dumps(meta, sort_keys=True) + "\n")
    print(f"corpus: {len(metas)} files in {out_dir} (manifest.jsonl)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
