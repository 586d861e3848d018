"""Recorded-sounding far ends for the simulated switch: short human answers and answering-machine
greetings spoken by espeak-ng (a Debian package the project's scripts install), resampled to
8 kHz 16-bit mono with sox, machine greetings followed by a 1000 Hz beep. They are generated
once into a cache directory and reused; AMD hears them as it hears real speech, which the
numpy speech-like signal of esl.fakeswitch.audio does not imitate well enough for a VAD.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from esl.fakeswitch.audio import RATE, silence, tone
from esl.fakeswitch.model import FakeSwitchError

HUMAN_LINES = ("Hello?", "Hi, yes?", "Hello, this is Sam.", "Yeah, hello?", "Hello, who is this?",
               "Good afternoon.")
MACHINE_LINES = (
    "Hi, you have reached the Millers. We can't come to the phone right now. "
    "Please leave your name and number after the tone and we will call you back.",
    "Hello, this is Dana. I am away from my desk. Leave a message after the beep and I will return your call.",
    "The person you are calling is not available. Please record your message after the tone. "
    "When you are finished, you may hang up.",
    "Thank you for calling. Nobody is available to take your call. Please leave a detailed message after the beep.",
)
VOICES = ("en-us", "en-us+f3", "en-us+m3", "en+f2")
TIMEOUT_S = 30


def available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def _speak(text: str, voice: str, path: Path) -> None:
    raw = path.with_suffix(".raw.wav")
    try:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "165", "-w", str(raw), text],
                       check=True, capture_output=True, timeout=TIMEOUT_S)
        subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(path)],
                       check=True, capture_output=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FakeSwitchError(f"cannot synthesise far-end audio: {exc}") from exc
    finally:
        raw.unlink(missing_ok=True)


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64) / 32768.0


def _write(path: Path, samples: np.ndarray) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm.tobytes())


def build_voices(cache_dir: Path) -> dict[str, list[str]]:
    """{"human": [wav...], "machine": [wav...]}, generated on first use into cache_dir."""
    if not available():
        raise FakeSwitchError("espeak-ng and sox are needed for recorded-sounding far ends")
    cache_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, list[str]] = {"human": [], "machine": []}
    for party, lines in (("human", HUMAN_LINES), ("machine", MACHINE_LINES)):
        for index, text in enumerate(lines):
            voice = VOICES[index % len(VOICES)]
            key = hashlib.sha1(f"{party}|{voice}|{text}".encode()).hexdigest()[:12]
            final = cache_dir / f"{party}-{key}.wav"
            if not final.exists():
                spoken = cache_dir / f".{party}-{key}.spoken.wav"
                _speak(text, voice, spoken)
                speech = _read(spoken)
                spoken.unlink()
                if party == "human":
                    # A person answers, says a few words and waits for someone to speak.
                    samples = np.concatenate([silence(0.3, index), speech, silence(3.0, index)])
                else:
                    samples = np.concatenate([silence(0.2, index), speech, silence(0.5, index),
                                              tone(1000.0, 0.5), silence(2.0, index)])
                temporary = final.with_suffix(".tmp")
                _write(temporary, samples)
                temporary.replace(final)    # atomic: concurrent builders never read half a file
            result[party].append(str(final))
    return result
