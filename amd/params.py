"""Per-campaign AMD parameters and their KEY=VALUE form (`--campaign-params`, campaign settings).

Keys are flat: `mode` (dialer | app_amd), the two listening limits after a MACHINE decision,
and any field of DetectorParams, AppAmdParams (amd.conf names) or BeepParams. Unknown keys and
values that do not parse raise ParameterError naming the key.
"""
from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field

from amd.beep import BeepParams
from amd.detector import AmdResult, AppAmdParams, DetectorParams
from amd.errors import ParameterError


class AmdMode(enum.Enum):
    DIALER = "dialer"        # our detector
    APP_AMD = "app_amd"      # Asterisk app_amd-compatible


@dataclass(frozen=True)
class AmdParams:
    mode: AmdMode = AmdMode.DIALER
    # after a MACHINE decision, listen for the beep until this much silence follows the last
    # speech or tone (longer than a greeting's longest pause, 2.4 s) ...
    beep_fallback_silence_ms: int = 2600
    # ... or at most this long after the decision
    beep_max_wait_ms: int = 20000
    # a beep is acted on when this long has passed after it without speech
    beep_confirm_ms: int = 200
    # ... and only speech within this many dB of the loudest speech heard cancels it
    beep_cancel_below_peak_db: float = 10.0
    detector: DetectorParams = field(default_factory=DetectorParams)
    app_amd: AppAmdParams = field(default_factory=AppAmdParams)
    beep: BeepParams = field(default_factory=BeepParams)

    @classmethod
    def from_pairs(cls, pairs) -> "AmdParams":
        """Build from ["KEY=VALUE", ...] or a {key: value} mapping."""
        items = pairs.items() if isinstance(pairs, dict) else [_split(p) for p in pairs]
        top: dict = {}
        nested: dict[str, dict] = {"detector": {}, "app_amd": {}, "beep": {}}
        for key, raw in items:
            key = key.strip().replace("-", "_")
            if key in _TOP_FIELDS:
                top[key] = _in_range(key, _coerce(key, _TOP_FIELDS[key], raw), getattr(cls, key))
                continue
            for group, klass in (("detector", DetectorParams), ("app_amd", AppAmdParams), ("beep", BeepParams)):
                types = _fields(klass)
                if key in types:
                    nested[group][key] = _in_range(key, _coerce(key, types[key], raw), getattr(klass(), key))
                    break
            else:
                raise ParameterError(f"unknown AMD parameter {key!r}")
        for key in _SHARES:
            value = next((group[key] for group in nested.values() if key in group), None)
            if value is not None and value > 1:
                raise ParameterError(f"AMD parameter {key}={value!r}: a share of frames or energy is 0-1")
        base = cls()
        if not 0 <= nested["detector"].get("vad_mode", 0) <= 3:
            raise ParameterError(f"AMD parameter vad_mode={nested['detector']['vad_mode']}: webrtcvad's modes are 0-3")
        return dataclasses.replace(
            base, **top,
            detector=dataclasses.replace(base.detector, **nested["detector"]),
            app_amd=dataclasses.replace(base.app_amd, **nested["app_amd"]),
            beep=dataclasses.replace(base.beep, **nested["beep"]),
        )


def _in_range(key: str, value, default):
    """Numbers are finite, and not negative where the default is not (times, counts, shares,
    margins; a level in dBFS such as min_tone_db may be negative)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ParameterError(f"AMD parameter {key}={value!r}: must be a finite number")
        if value < 0 <= default:
            raise ParameterError(f"AMD parameter {key}={value!r}: must not be negative")
    return value


def _split(pair: str) -> tuple[str, str]:
    if "=" not in pair:
        raise ParameterError(f"AMD parameter {pair!r} is not KEY=VALUE")
    key, value = pair.split("=", 1)
    return key, value


def _fields(klass) -> dict[str, type]:
    defaults = klass()
    return {f.name: type(getattr(defaults, f.name)) for f in dataclasses.fields(klass)}


# parameters that are shares (of a band's energy, of frames): above 1 they could never be met and
# would silently switch a rule off
_SHARES = ("min_purity1", "min_purity2", "min_ratio2", "continue_purity", "music_min_steady")

_TOP_FIELDS = {"mode": AmdMode, "beep_fallback_silence_ms": int, "beep_max_wait_ms": int, "beep_confirm_ms": int,
               "beep_cancel_below_peak_db": float}


def _coerce(key: str, kind: type, raw):
    if isinstance(raw, kind) and not isinstance(raw, bool):
        return raw
    text = str(raw).strip()
    try:
        if kind is AmdMode:
            return AmdMode(text.lower())
        if kind is AmdResult:
            return AmdResult(text.upper())
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError as exc:
        expected = (" or ".join(repr(m.value) for m in kind) if issubclass(kind, enum.Enum)
                    else "true or false" if kind is bool else kind.__name__)
        raise ParameterError(f"AMD parameter {key}={text!r}: expected {expected}") from exc
    raise ParameterError(f"AMD parameter {key}: unsupported type {kind.__name__}")
