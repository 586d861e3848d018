"""Far-end audio of simulated calls, framed as mod_event_socket's unicast sends it.

unicast (switch_ivr.c, unicast thread) sends one datagram per 20 ms frame read from the channel:
L16 signed little-endian at 8 kHz (320 bytes) by default, or the codec payload with
`flags: native` (PCMU, 160 bytes). Comfort-noise frames are 320 bytes of 0xFF in both modes, as
the shared captures 21_unicast_* show (about 14 of them before the far end's first audio).

The speech-like audio is generated cheaply with numpy: voiced syllables (a 110-180 Hz harmonic
series shaped by two formant-like resonances and a syllable envelope) separated by pauses.
A human says a short "hello?" then stays silent; an answering machine plays a long greeting, then
a 1000 Hz beep of 0.5 s. WAV files (16-bit mono 8 kHz) can replace either.
"""
from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from esl.fakeswitch.model import FakeSwitchError, Party

RATE = 8000
FRAME_SAMPLES = 160                  # 20 ms at 8 kHz
FRAME_SECONDS = 0.020
COMFORT_NOISE = b"\xff" * 320
COMFORT_NOISE_LEAD_FRAMES = 14       # seen before the first audio frame in the captures


def _syllable(rng: np.random.Generator, seconds: float) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    pitch = rng.uniform(110, 180) * (1 + 0.08 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    formants = (rng.uniform(400, 800), rng.uniform(1000, 2200))
    signal = np.zeros(n)
    for harmonic in range(1, 20):
        frequency = harmonic * pitch.mean()
        if frequency > 3600:
            break
        gain = sum(1.0 / (1.0 + ((frequency - f) / 150.0) ** 2) for f in formants)
        signal += gain * np.sin(harmonic * phase) / harmonic
    envelope = np.sin(np.pi * np.linspace(0, 1, n)) ** 0.6
    return signal * envelope


def speech_like(seed: int, seconds: float, level: float = 0.3) -> np.ndarray:
    """Syllables and short pauses filling about `seconds`, as float samples in [-level, level]."""
    rng = np.random.default_rng(seed)
    pieces, total = [], 0.0
    while total < seconds:
        length = rng.uniform(0.12, 0.3)
        pieces.append(_syllable(rng, length))
        pause = rng.uniform(0.04, 0.25) if rng.random() > 0.2 else rng.uniform(0.3, 0.6)
        pieces.append(np.zeros(int(pause * RATE)))
        total += length + pause
    signal = np.concatenate(pieces)
    return level * signal / max(1e-9, np.abs(signal).max())


def tone(frequency: float, seconds: float, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return level * np.sin(2 * np.pi * frequency * t)


def silence(seconds: float, seed: int = 0) -> np.ndarray:
    """Line noise about 60 dB below full scale, so a VAD sees silence rather than digital zero."""
    return np.random.default_rng(seed).normal(0.0, 0.001, int(seconds * RATE))


def party_audio(party: Party, seed: int) -> np.ndarray:
    """What the far end says after answering (float samples at 8 kHz)."""
    if party is Party.HUMAN:
        return np.concatenate([silence(0.3, seed), speech_like(seed, 0.6), silence(0.2, seed)])
    rng = np.random.default_rng(seed)
    greeting = speech_like(seed, float(rng.uniform(4.0, 8.0)))
    return np.concatenate([silence(0.2, seed), greeting, silence(0.4, seed), tone(1000.0, 0.5),
                           silence(0.2, seed)])


def load_wav(path: str | Path) -> np.ndarray:
    """Samples of a 16-bit mono 8 kHz WAV file as floats."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1 or wav.getframerate() != RATE:
                raise FakeSwitchError(
                    f"{path}: need 16-bit mono 8000 Hz WAV, this one is {8 * wav.getsampwidth()}-bit, "
                    f"{wav.getnchannels()} channel(s), {wav.getframerate()} Hz "
                    f"(convert it, e.g. sox IN.wav -r 8000 -c 1 -b 16 OUT.wav)")
            data = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise FakeSwitchError(f"{path}: not a readable WAV file: {exc}") from exc
    return np.frombuffer(data, dtype="<i2").astype(np.float64) / 32768.0


def beep_onset(samples: np.ndarray, frequency: float = 1000.0, min_seconds: float = 0.1) -> float | None:
    """Start (s) of the first steady tone at `frequency` lasting `min_seconds`, or None.

    Per 20 ms frame, the share of the frame's energy at `frequency` (Goertzel-style projection);
    a beep is a run of frames above 80 %. Used to time the simulated avmd::beep from the very
    audio the engine receives, whether generated or read from a WAV file."""
    usable = len(samples) - len(samples) % FRAME_SAMPLES
    if usable == 0:
        return None
    framed = samples[:usable].reshape(-1, FRAME_SAMPLES)
    t = np.arange(FRAME_SAMPLES) / RATE
    basis = np.exp(-2j * np.pi * frequency * t)
    tone_energy = 2 * np.abs(framed @ basis) ** 2 / FRAME_SAMPLES
    energy = (framed ** 2).sum(axis=1) + 1e-12
    steady = (tone_energy / energy > 0.8) & (energy > FRAME_SAMPLES * 1e-4)
    needed = max(1, int(round(min_seconds / FRAME_SECONDS)))
    run = 0
    for index, flag in enumerate(steady):
        run = run + 1 if flag else 0
        if run == needed:
            return (index - needed + 1) * FRAME_SECONDS
    return None


def to_l16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def to_pcmu(samples: np.ndarray) -> bytes:
    """G.711 mu-law encoding (ITU-T G.711, the classic bias-and-segment algorithm)."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(pcm), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    exponent = np.clip(exponent, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def frames(samples: np.ndarray, native: bool) -> list[bytes]:
    """The audio as unicast datagram payloads: 320-byte L16 or 160-byte PCMU frames."""
    usable = len(samples) - len(samples) % FRAME_SAMPLES
    payload = to_pcmu(samples[:usable]) if native else to_l16(samples[:usable])
    size = FRAME_SAMPLES if native else FRAME_SAMPLES * 2
    return [payload[i:i + size] for i in range(0, len(payload), size)]
