"""Campaigns: validated settings, status transitions and their rows in PostgreSQL (issue 6, item 1).

A campaign's settings are one JSON document (campaigns.settings) that `CampaignSettings.from_dict`
validates completely: unknown keys, wrong types and out-of-range values are refused with the
dotted path of each problem, so nothing an operator mistypes is silently ignored. The stored
document is always the normalised `to_dict()` output (defaults filled in), so an engine reading
it needs no defaults of its own.

Rules encoded here, with their sources:
- ring timeout at least 15 s: 47 CFR 64.1200(a)(6) (let the phone ring 15 s or four rings).
- the safe-harbor message played on an abandoned call: 47 CFR 64.1200(a)(7)(i)(A) and
  16 CFR 310.4(b)(4)(iii); required before a campaign can start.
- dial mode, call purpose and voice use the compliance gate's own enums (dialer.compliance.model),
  so the scope of every rule the gate applies is read from the campaign as it is.
- retry ("lead recycling" in VICIdial's words) by outcome: a delay and a maximum of attempts.

Docs: docs/campaigns.md (reference of every setting, with an example).
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dialer.compliance.model import DialMode, Purpose, Voice
from dialer.errors import DialerError


class CampaignError(DialerError):
    """A campaign operation was refused (unknown campaign, bad name, refused transition)."""


class CampaignNotFound(CampaignError):
    pass


class SettingsError(CampaignError):
    """Settings that do not validate; `problems` holds one 'path: message' per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid campaign settings:\n  " + "\n  ".join(problems))


class CampaignStatus(enum.StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"          # no new originates; calls in flight go on
    STOPPING = "stopping"      # no new originates; the engine moves it to stopped when its calls end
    STOPPED = "stopped"


# Allowed status changes. stopping -> stopped is the engine's, once its calls for the campaign ended
# and it released the campaign's leads.
TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.RUNNING, CampaignStatus.STOPPED}),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.STOPPING}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.STOPPING}),
    CampaignStatus.STOPPING: frozenset({CampaignStatus.STOPPED}),
    CampaignStatus.STOPPED: frozenset({CampaignStatus.RUNNING}),
}


class LeadStatus(enum.StrEnum):
    NEW = "new"                  # imported, never dialed; claimable
    CALLABLE = "callable"        # waiting for next_attempt_at after an outcome; claimable
    IN_PROGRESS = "in_progress"  # claimed by an engine (claimed_by, claimed_until) or on a call
    CALLBACK = "callback"        # a scheduled callback at next_attempt_at (callback_agent or anyone)
    DONE = "done"                # reached a final disposition
    CLOSED = "closed"            # no further attempt; close_reason says why


CLAIMABLE_STATUSES = (LeadStatus.NEW, LeadStatus.CALLABLE)


class CallOutcome(enum.StrEnum):
    """How an attempt ended (call_attempts.outcome)."""
    HUMAN = "human"            # a person answered and reached an agent
    BUSY = "busy"
    NO_ANSWER = "no_answer"    # rang out at the ring timeout
    MACHINE = "machine"        # AMD said machine
    ABANDONED = "abandoned"    # a person answered, no agent within 2 s: safe-harbor message
    FAILED = "failed"          # network or gateway failure, invalid number at the carrier


RETRY_OUTCOMES = (CallOutcome.BUSY, CallOutcome.NO_ANSWER, CallOutcome.MACHINE,
                  CallOutcome.ABANDONED, CallOutcome.FAILED)


class AmdAction(enum.StrEnum):
    HANGUP = "hangup"
    VOICEMAIL_DROP = "voicemail_drop"   # play voicemail_message after the beep, then hang up
    AGENT = "agent"                     # hand machines to an agent anyway


class CallerIdRotation(enum.StrEnum):
    ROUND_ROBIN = "round_robin"
    RANDOM = "random"
    LOCAL_PRESENCE = "local_presence"   # a pool number with the lead's area code, else round robin
    PER_LEAD = "per_lead"               # always the same pool number for a given lead


# Pacing modes that go with each dial mode the compliance gate knows (power and the benchmark
# baselines are autodialed like predictive dialing: calls can be abandoned).
_PACING_FOR_DIAL_MODE = {
    DialMode.PREDICTIVE: ("predictive", "power", "vicidial", "webitel"),
    DialMode.PROGRESSIVE: ("progressive",),
    DialMode.PREVIEW: ("preview",),
    DialMode.AGENTLESS: ("agentless",),
}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MIN_RING_TIMEOUT_S = 15
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ------------------------------------------------------------------ validation helpers

class _Checker:
    """Collects every problem of a settings document, each with its dotted path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else f"the settings {message}")

    def mapping(self, value: Any, path: str, allowed: Iterable[str]) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"must be an object, got {_show(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}" if path else key,
                          f"unknown setting (known: {', '.join(sorted(allowed))})")
        return value

    def integer(self, value: Any, path: str, low: int | None = None, high: int | None = None,
                optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be an integer, got {_show(value)}")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.fail(path, f"must be {_range(low, high)}, got {value}")
            return None
        return value

    def number(self, value: Any, path: str, low: float, optional: bool = False) -> float | None:
        if value is None and optional:
            return None
        if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                or value <= low):
            self.fail(path, f"must be a number above {low}, got {_show(value)}")
            return None
        return float(value)

    def text(self, value: Any, path: str, optional: bool = False, non_empty: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {_show(value)}")
            return None
        if non_empty and not value.strip():
            self.fail(path, "must not be empty")
            return None
        return value.strip()

    def choice(self, value: Any, path: str, kind: type[enum.Enum], optional: bool = False):
        if value is None and optional:
            return None
        try:
            return kind(value)
        except ValueError:
            self.fail(path, f"must be one of {', '.join(repr(m.value) for m in kind)}, got {_show(value)}")
            return None

    def boolean(self, value: Any, path: str) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, got {_show(value)}")
            return None
        return value

    def string_list(self, value: Any, path: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(path, f"must be a list of strings, got {_show(value)}")
            return []
        return [v.strip() for v in value]


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _range(low, high) -> str:
    if low is not None and high is not None:
        return f"between {low} and {high}"
    return f">= {low}" if low is not None else f"<= {high}"


def _parse_hhmm(value: Any) -> time | None:
    if not isinstance(value, str) or not re.fullmatch(r"\d\d:\d\d", value):
        return None
    hours, minutes = int(value[:2]), int(value[3:])
    if hours == 24 and minutes == 0:
        return time.max
    if hours > 23 or minutes > 59:
        return None
    return time(hours, minutes)


def _hhmm(moment: time) -> str:
    return "24:00" if moment == time.max else moment.strftime("%H:%M")


# ------------------------------------------------------------------ the settings model

@dataclass(frozen=True)
class PacingSettings:
    mode: str = "predictive"
    params: dict = dataclasses.field(default_factory=dict)   # pacing.model.PacingConfig fields

    def config(self, ring_timeout_s: float):
        """The pacer's PacingConfig for these settings."""
        return _pacing_config(self.mode, self.params, ring_timeout_s)


@dataclass(frozen=True)
class Gateway:
    name: str
    max_cps: float | None = None        # calls per second through this gateway (token bucket)
    max_channels: int | None = None     # concurrent calls through this gateway


@dataclass(frozen=True)
class CallerIdSettings:
    pool: tuple[str, ...] = ()          # E.164 numbers
    rotation: CallerIdRotation = CallerIdRotation.ROUND_ROBIN


@dataclass(frozen=True)
class AmdSettings:
    enabled: bool = True
    action: AmdAction = AmdAction.HANGUP
    voicemail_message: str | None = None
    params: dict = dataclasses.field(default_factory=dict)   # amd.params.AmdParams keys


@dataclass(frozen=True)
class RetryRule:
    delay_s: int                        # from the end of the attempt to the next one
    max_attempts: int                   # retry while the lead has fewer attempts than this (0: never)


_DEFAULT_RETRY = {
    CallOutcome.BUSY: RetryRule(delay_s=600, max_attempts=5),
    CallOutcome.NO_ANSWER: RetryRule(delay_s=3600, max_attempts=5),
    CallOutcome.MACHINE: RetryRule(delay_s=4 * 3600, max_attempts=3),
    CallOutcome.ABANDONED: RetryRule(delay_s=3 * 86400, max_attempts=3),  # Ofcom: 72 h before a repeat
    CallOutcome.FAILED: RetryRule(delay_s=900, max_attempts=3),
}


@dataclass(frozen=True)
class Caps:
    daily: int | None = None            # attempts per campaign per day (campaign time zone)
    hourly: int | None = None           # attempts per campaign per clock hour


@dataclass(frozen=True)
class Schedule:
    """Days and hours the campaign dials, in the campaign's time zone, on top of the law's hours."""
    windows: dict[str, tuple[tuple[time, time], ...]]
    exclude_dates: tuple[date, ...] = ()

    @classmethod
    def default(cls) -> "Schedule":
        return cls({day: ((time(9, 0), time(20, 0)),) for day in WEEKDAYS})

    def _day(self, moment: datetime) -> tuple[tuple[time, time], ...]:
        if moment.date() in self.exclude_dates:
            return ()
        return self.windows.get(WEEKDAYS[moment.weekday()], ())

    def is_open(self, local: datetime) -> bool:
        now = local.time()
        return any(start <= now < end for start, end in self._day(local))

    def closes_at(self, local: datetime) -> datetime | None:
        """When the window open at `local` closes; None when closed at `local`."""
        now = local.time()
        for start, end in self._day(local):
            if start <= now < end:
                if end == time.max:
                    return datetime.combine(local.date() + timedelta(days=1), time(0), local.tzinfo)
                return datetime.combine(local.date(), end, local.tzinfo)
        return None

    def next_open(self, local: datetime, horizon_days: int = 14) -> datetime | None:
        """The first moment at or after `local` inside a window (None if none within the horizon)."""
        if self.is_open(local):
            return local
        for offset in range(horizon_days + 1):
            day = local.date() + timedelta(days=offset)
            probe = datetime.combine(day, time(0), local.tzinfo)
            for start, _end in sorted(self._day(probe)):
                candidate = datetime.combine(day, start, local.tzinfo)
                if candidate >= local:
                    return candidate
        return None


@dataclass(frozen=True)
class CampaignSettings:
    dial_mode: DialMode = DialMode.PREDICTIVE
    call_purpose: Purpose = Purpose.TELEMARKETING
    voice: Voice = Voice.LIVE
    seller: str = ""                            # consent and EBR records are per seller
    subject: str = ""                           # "same subject" of frequency caps; '' = the campaign
    suppression_lists: tuple[str, ...] = ()     # custom do-not-call lists honoured besides '*'
    pacing: PacingSettings = PacingSettings()
    caller_ids: CallerIdSettings = CallerIdSettings()
    gateways: tuple[Gateway, ...] = ()
    ring_timeout_s: int = 25
    amd: AmdSettings = AmdSettings()
    safe_harbor_message: str = ""               # recording path or say: text, played on abandon
    retry: dict[CallOutcome, RetryRule] = dataclasses.field(default_factory=lambda: dict(_DEFAULT_RETRY))
    max_attempts: int = 5
    caps: Caps = Caps()
    schedule: Schedule = dataclasses.field(default_factory=Schedule.default)
    timezone: str = "America/New_York"

    # ---- parsing

    @classmethod
    def from_dict(cls, data: Any) -> "CampaignSettings":
        """Validate a settings document (partial documents get the defaults); SettingsError lists
        every problem found, not only the first."""
        check = _Checker()
        data = check.mapping(data, "", [f.name for f in dataclasses.fields(cls)])
        defaults = cls()
        values: dict[str, Any] = {}

        def get(key):
            return data.get(key, _MISSING)

        if (v := get("dial_mode")) is not _MISSING:
            values["dial_mode"] = check.choice(v, "dial_mode", DialMode)
        if (v := get("call_purpose")) is not _MISSING:
            values["call_purpose"] = check.choice(v, "call_purpose", Purpose)
        if (v := get("voice")) is not _MISSING:
            values["voice"] = check.choice(v, "voice", Voice)
        for key in ("seller", "subject", "safe_harbor_message"):
            if (v := get(key)) is not _MISSING:
                values[key] = check.text(v, key)
        if (v := get("suppression_lists")) is not _MISSING:
            values["suppression_lists"] = tuple(check.string_list(v, "suppression_lists"))
        if (v := get("ring_timeout_s")) is not _MISSING:
            values["ring_timeout_s"] = check.integer(v, "ring_timeout_s", MIN_RING_TIMEOUT_S, 180)
        if (v := get("max_attempts")) is not _MISSING:
            values["max_attempts"] = check.integer(v, "max_attempts", 1, 1000)
        if (v := get("timezone")) is not _MISSING:
            zone = check.text(v, "timezone", non_empty=True)
            if zone is not None:
                try:
                    ZoneInfo(zone)
                    # "localtime" is the host's own zone and "Factory" no zone: engines on
                    # several machines must agree on the campaign's hours
                    if zone in ("localtime", "Factory"):
                        raise ValueError(zone)
                    values["timezone"] = zone
                except (ZoneInfoNotFoundError, ValueError):
                    check.fail("timezone", f"unknown IANA time zone {zone!r}")
        dial_mode = values.get("dial_mode") or defaults.dial_mode
        if (v := get("pacing")) is not _MISSING:
            values["pacing"] = _parse_pacing(check, v, dial_mode)
        elif dial_mode != defaults.dial_mode:
            values["pacing"] = PacingSettings(mode=_PACING_FOR_DIAL_MODE[dial_mode][0])
        if (v := get("caller_ids")) is not _MISSING:
            values["caller_ids"] = _parse_caller_ids(check, v)
        if (v := get("gateways")) is not _MISSING:
            values["gateways"] = _parse_gateways(check, v)
        if (v := get("amd")) is not _MISSING:
            values["amd"] = _parse_amd(check, v)
        if (v := get("retry")) is not _MISSING:
            values["retry"] = _parse_retry(check, v)
        if (v := get("caps")) is not _MISSING:
            caps = check.mapping(v, "caps", ("daily", "hourly"))
            values["caps"] = Caps(daily=check.integer(caps.get("daily"), "caps.daily", 1, optional=True),
                                  hourly=check.integer(caps.get("hourly"), "caps.hourly", 1, optional=True))
        if (v := get("schedule")) is not _MISSING:
            values["schedule"] = _parse_schedule(check, v)
        if check.problems:
            raise SettingsError(check.problems)
        settings = dataclasses.replace(defaults, **values)
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        problems = []
        if self.pacing.mode not in _PACING_FOR_DIAL_MODE[self.dial_mode]:
            problems.append(f"pacing.mode: {self.pacing.mode!r} does not go with dial_mode {self.dial_mode.value!r} "
                            f"(use one of {', '.join(_PACING_FOR_DIAL_MODE[self.dial_mode])})")
        if self.amd.enabled and self.amd.action == AmdAction.VOICEMAIL_DROP and not self.amd.voicemail_message:
            problems.append("amd.voicemail_message: required when amd.action is 'voicemail_drop'")
        if self.dial_mode == DialMode.AGENTLESS and self.voice == Voice.LIVE:
            problems.append("voice: an agentless campaign plays a prerecorded or artificial voice, not 'live'")
        if problems:
            raise SettingsError(problems)

    def start_problems(self) -> list[str]:
        """What keeps a campaign with these settings from running (empty when it may start)."""
        problems = []
        if not self.gateways:
            problems.append("gateways: at least one gateway is needed to place calls")
        if not self.caller_ids.pool:
            problems.append("caller_ids.pool: at least one caller ID is needed (47 CFR 64.1601(e))")
        if not self.safe_harbor_message and self.dial_mode != DialMode.PREVIEW:
            problems.append("safe_harbor_message: needed for abandoned calls (47 CFR 64.1200(a)(7))")
        return problems

    # ---- output

    def to_dict(self) -> dict:
        """The complete JSON document (what campaigns.settings stores)."""
        return {
            "dial_mode": self.dial_mode.value,
            "call_purpose": self.call_purpose.value,
            "voice": self.voice.value,
            "seller": self.seller,
            "subject": self.subject,
            "suppression_lists": list(self.suppression_lists),
            "pacing": {"mode": self.pacing.mode, "params": dict(self.pacing.params)},
            "caller_ids": {"pool": list(self.caller_ids.pool), "rotation": self.caller_ids.rotation.value},
            "gateways": [dataclasses.asdict(g) for g in self.gateways],
            "ring_timeout_s": self.ring_timeout_s,
            "amd": {"enabled": self.amd.enabled, "action": self.amd.action.value,
                    "voicemail_message": self.amd.voicemail_message, "params": dict(self.amd.params)},
            "safe_harbor_message": self.safe_harbor_message,
            "retry": {o.value: {"delay_s": r.delay_s, "max_attempts": r.max_attempts} for o, r in self.retry.items()},
            "max_attempts": self.max_attempts,
            "caps": {"daily": self.caps.daily, "hourly": self.caps.hourly},
            "schedule": {
                "windows": {day: [[_hhmm(s), _hhmm(e)] for s, e in self.schedule.windows.get(day, ())]
                            for day in WEEKDAYS},
                "exclude_dates": [d.isoformat() for d in self.schedule.exclude_dates],
            },
            "timezone": self.timezone,
        }

    # ---- what the call flow asks

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def next_attempt(self, outcome: CallOutcome | str, attempts: int, ended_at: datetime) -> datetime | None:
        """When to dial a lead again after an attempt that ended with `outcome` (the lead now has
        `attempts` attempts); None when the lead is to be closed (reason: max_attempts)."""
        outcome = CallOutcome(outcome)
        if outcome == CallOutcome.HUMAN:
            return None     # a conversation: the agent's disposition decides (done or callback)
        rule = self.retry[outcome]
        if attempts >= min(rule.max_attempts, self.max_attempts):
            return None
        return ended_at + timedelta(seconds=rule.delay_s)

    def pacing_config(self):
        return self.pacing.config(self.ring_timeout_s)

    def amd_params(self):
        from amd.params import AmdParams
        return AmdParams.from_pairs(self.amd.params)


_MISSING = object()


def _parse_pacing(check: _Checker, value: Any, dial_mode: DialMode) -> PacingSettings | None:
    data = check.mapping(value, "pacing", ("mode", "params"))
    mode = check.text(data.get("mode", _PACING_FOR_DIAL_MODE[dial_mode][0]), "pacing.mode")
    params = data.get("params", {})
    if not isinstance(params, dict):
        check.fail("pacing.params", f"must be an object, got {_show(params)}")
        return None
    if mode is None:
        return None
    try:
        _pacing_config(mode, params, 25.0)
    except SettingsError as exc:
        check.problems.extend(exc.problems)
        return None
    except (DialerError, TypeError, ValueError) as exc:
        check.fail("pacing.params", str(exc))
        return None
    return PacingSettings(mode=mode, params=dict(params))


def _pacing_config(mode: str, params: dict, ring_timeout_s: float):
    """Build pacing.model.PacingConfig; its own __post_init__ checks the values' ranges."""
    from pacing.model import PacingConfig, PacingMode
    fields = {f.name: f for f in dataclasses.fields(PacingConfig)}
    for key in ("mode", "ring_timeout_s"):
        if key in params:
            raise SettingsError([f"pacing.params.{key}: set it as {'pacing.mode' if key == 'mode' else key}"])
    kwargs: dict[str, Any] = {}
    for key, raw in params.items():
        if key not in fields:
            raise SettingsError([f"pacing.params.{key}: unknown pacing parameter"])
        default = fields[key].default
        try:
            if isinstance(default, enum.Enum):
                kwargs[key] = type(default)(raw)
            elif isinstance(default, bool):
                if not isinstance(raw, bool):
                    raise ValueError
                kwargs[key] = raw
            elif isinstance(default, (int, float)):
                if (isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw)
                        or (isinstance(default, int) and raw != int(raw))):
                    raise ValueError
                kwargs[key] = type(default)(raw)
            else:
                kwargs[key] = raw
        except ValueError:
            raise SettingsError([f"pacing.params.{key}: bad value {_show(raw)}"]) from None
    try:
        pacing_mode = PacingMode(mode)
    except ValueError:
        raise SettingsError([f"pacing.mode: unknown pacing mode {mode!r} "
                             f"(known: {', '.join(m.value for m in PacingMode)})"]) from None
    return PacingConfig(mode=pacing_mode, ring_timeout_s=float(ring_timeout_s), **kwargs)


def _parse_caller_ids(check: _Checker, value: Any) -> CallerIdSettings | None:
    data = check.mapping(value, "caller_ids", ("pool", "rotation"))
    pool = []
    for index, raw in enumerate(check.string_list(data.get("pool", []), "caller_ids.pool")):
        e164 = normalize_e164(raw)
        if e164 is None:
            check.fail(f"caller_ids.pool[{index}]", f"{raw!r} is not a valid E.164 number")
        elif e164 not in pool:
            pool.append(e164)
    rotation = check.choice(data.get("rotation", "round_robin"), "caller_ids.rotation", CallerIdRotation)
    return CallerIdSettings(pool=tuple(pool), rotation=rotation) if rotation else None


def _parse_gateways(check: _Checker, value: Any) -> tuple[Gateway, ...]:
    if not isinstance(value, list):
        check.fail("gateways", f"must be a list of gateway names or objects, got {_show(value)}")
        return ()
    gateways: list[Gateway] = []
    for index, item in enumerate(value):
        path = f"gateways[{index}]"
        if isinstance(item, str):
            item = {"name": item}
        data = check.mapping(item, path, ("name", "max_cps", "max_channels"))
        name = check.text(data.get("name"), f"{path}.name", non_empty=True)
        if name is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            check.fail(f"{path}.name", f"{name!r}: letters, digits, '_', '.' and '-' only")
            name = None
        if name is not None and any(g.name == name for g in gateways):
            check.fail(f"{path}.name", f"gateway {name!r} listed twice")
            name = None
        cps = check.number(data.get("max_cps"), f"{path}.max_cps", 0.0, optional=True)
        channels = check.integer(data.get("max_channels"), f"{path}.max_channels", 1, optional=True)
        if name is not None:
            gateways.append(Gateway(name=name, max_cps=cps, max_channels=channels))
    return tuple(gateways)


def _parse_amd(check: _Checker, value: Any) -> AmdSettings | None:
    data = check.mapping(value, "amd", ("enabled", "action", "voicemail_message", "params"))
    enabled = check.boolean(data.get("enabled", True), "amd.enabled")
    action = check.choice(data.get("action", "hangup"), "amd.action", AmdAction)
    message = check.text(data.get("voicemail_message"), "amd.voicemail_message", optional=True)
    params = data.get("params", {})
    if not isinstance(params, dict):
        check.fail("amd.params", f"must be an object, got {_show(params)}")
        return None
    try:
        from amd.params import AmdParams
        AmdParams.from_pairs(params)
    except DialerError as exc:
        check.fail("amd.params", str(exc))
        return None
    if enabled is None or action is None:
        return None
    return AmdSettings(enabled=enabled, action=action, voicemail_message=message or None, params=dict(params))


def _parse_retry(check: _Checker, value: Any) -> dict[CallOutcome, RetryRule]:
    data = check.mapping(value, "retry", [o.value for o in RETRY_OUTCOMES])
    rules = dict(_DEFAULT_RETRY)
    for outcome in RETRY_OUTCOMES:
        if outcome.value not in data:
            continue
        path = f"retry.{outcome.value}"
        rule = check.mapping(data[outcome.value], path, ("delay_s", "max_attempts"))
        default = _DEFAULT_RETRY[outcome]
        delay = check.integer(rule.get("delay_s", default.delay_s), f"{path}.delay_s", 0, 365 * 86400)
        most = check.integer(rule.get("max_attempts", default.max_attempts), f"{path}.max_attempts", 0, 1000)
        if delay is not None and most is not None:
            rules[outcome] = RetryRule(delay_s=delay, max_attempts=most)
    return rules


def _parse_schedule(check: _Checker, value: Any) -> Schedule | None:
    data = check.mapping(value, "schedule", ("windows", "exclude_dates"))
    default = Schedule.default()
    if "windows" not in data:       # only exclude_dates given: the default days and hours stay
        raw_windows = {day: [[_hhmm(s), _hhmm(e)] for s, e in spans] for day, spans in default.windows.items()}
    else:
        raw_windows = check.mapping(data["windows"], "schedule.windows", WEEKDAYS)
    windows: dict[str, tuple[tuple[time, time], ...]] = {}
    for day in WEEKDAYS:
        spans = raw_windows.get(day, [])
        path = f"schedule.windows.{day}"
        if not isinstance(spans, list):
            check.fail(path, f"must be a list of [\"HH:MM\", \"HH:MM\"] pairs, got {_show(spans)}")
            continue
        parsed = []
        for index, span in enumerate(spans):
            start = end = None
            if isinstance(span, list) and len(span) == 2:
                start, end = _parse_hhmm(span[0]), _parse_hhmm(span[1])
            if start is None or end is None or start >= end:
                check.fail(f"{path}[{index}]", f"must be [\"HH:MM\", \"HH:MM\"] with start before end "
                                                f"(24:00 allowed as an end), got {_show(span)}")
                continue
            parsed.append((start, end))
        parsed.sort()
        for (s1, e1), (s2, _e2) in zip(parsed, parsed[1:]):
            if s2 < e1:
                check.fail(path, f"windows overlap ({_hhmm(s1)}-{_hhmm(e1)} and {_hhmm(s2)})")
        windows[day] = tuple(parsed)
    excluded = []
    for index, raw in enumerate(check.string_list(data.get("exclude_dates", []), "schedule.exclude_dates")):
        try:
            excluded.append(date.fromisoformat(raw))
        except ValueError:
            check.fail(f"schedule.exclude_dates[{index}]", f"{raw!r} is not a YYYY-MM-DD date")
    return Schedule(windows=windows, exclude_dates=tuple(sorted(set(excluded))))


def normalize_e164(raw: str, region: str = "US") -> str | None:
    """E.164 form of a valid number, else None."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# ------------------------------------------------------------------ settings editing

def parse_assignment(text: str) -> tuple[str, Any]:
    """`key.sub=value` -> (key.sub, value); the value is JSON when it parses as JSON, else a string."""
    if "=" not in text:
        raise SettingsError([f"{text!r}: expected key=value"])
    key, raw = text.split("=", 1)
    key = key.strip()
    if not re.fullmatch(r"[a-z_]+(\.[a-z_0-9]+)*", key):
        raise SettingsError([f"{key!r}: a setting name is lower-case words joined by '.'"])
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


def apply_assignments(document: dict, assignments: Iterable[tuple[str, Any]]) -> dict:
    """A copy of `document` with each dotted key set (intermediate objects created)."""
    result = copy.deepcopy(document)
    for key, value in assignments:
        parts = key.split(".")
        node = result
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return result


# ------------------------------------------------------------------ rows in PostgreSQL

@dataclass(frozen=True)
class Campaign:
    id: int
    name: str
    status: CampaignStatus
    settings: CampaignSettings
    settings_version: int
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "status": self.status.value,
                "settings_version": self.settings_version, "settings": self.settings.to_dict(),
                "created_at": iso_utc(self.created_at), "updated_at": iso_utc(self.updated_at),
                "status_changed_at": iso_utc(self.status_changed_at)}


def iso_utc(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


_COLUMNS = "id, name, status, settings, settings_version, created_at, updated_at, status_changed_at"


def _from_row(row: dict) -> Campaign:
    return Campaign(id=row["id"], name=row["name"], status=CampaignStatus(row["status"]),
                    settings=CampaignSettings.from_dict(row["settings"]),
                    settings_version=row["settings_version"], created_at=row["created_at"],
                    updated_at=row["updated_at"], status_changed_at=row["status_changed_at"])


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise CampaignError(f"campaign name {name!r}: 1-64 letters, digits, '_', '.' or '-', "
                            "starting with a letter or digit")
    return name


def create_campaign(conn: psycopg.Connection, name: str, settings: CampaignSettings) -> Campaign:
    check_name(name)
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"INSERT INTO campaigns (name, settings) VALUES (%s, %s) RETURNING {_COLUMNS}",
                        (name, Jsonb(settings.to_dict())))
            return _from_row(cur.fetchone())
    except psycopg.errors.UniqueViolation:
        raise CampaignError(f"campaign {name!r} already exists") from None


def get_campaign(conn: psycopg.Connection, name: str, *, for_update: bool = False) -> Campaign:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_COLUMNS} FROM campaigns WHERE name = %s" + (" FOR UPDATE" if for_update else ""),
                    (name,))
        row = cur.fetchone()
    if row is None:
        raise CampaignNotFound(f"no campaign named {name!r}")
    return _from_row(row)


def list_campaigns(conn: psycopg.Connection) -> list[dict]:
    """Every campaign with its lead counts by status and its number of lists."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("""
            SELECT c.id, c.name, c.status, c.created_at, c.status_changed_at,
                   (SELECT count(*) FROM lead_lists l WHERE l.campaign_id = c.id) AS lists,
                   coalesce((SELECT jsonb_object_agg(status, n) FROM
                       (SELECT status, count(*) AS n FROM leads WHERE campaign_id = c.id GROUP BY status) s),
                       '{}'::jsonb) AS leads
              FROM campaigns c ORDER BY c.name""")
        rows = cur.fetchall()
    for row in rows:
        row["leads_total"] = sum(row["leads"].values())
    return rows


def lists_of(conn: psycopg.Connection, campaign_id: int) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT id, name, source_file, rows_read, imported, duplicates, rejected, imports, "
                    "created_at, last_imported_at FROM lead_lists WHERE campaign_id = %s ORDER BY id",
                    (campaign_id,))
        return cur.fetchall()


def lead_counts(conn: psycopg.Connection, campaign_id: int) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM leads WHERE campaign_id = %s GROUP BY status",
                        (campaign_id,)).fetchall()
    return {status: n for status, n in rows}


# What each operator command does from each status (docs/campaigns.md, "Status").
COMMAND_TRANSITIONS: dict[str, dict[CampaignStatus, CampaignStatus]] = {
    "start": {CampaignStatus.DRAFT: CampaignStatus.RUNNING, CampaignStatus.STOPPED: CampaignStatus.RUNNING},
    "pause": {CampaignStatus.RUNNING: CampaignStatus.PAUSED},
    "resume": {CampaignStatus.PAUSED: CampaignStatus.RUNNING},
    "stop": {CampaignStatus.RUNNING: CampaignStatus.STOPPING, CampaignStatus.PAUSED: CampaignStatus.STOPPING,
             CampaignStatus.DRAFT: CampaignStatus.STOPPED},
}


def apply_command(conn: psycopg.Connection, name: str, command: str) -> Campaign:
    """An operator command (start, pause, resume, stop) on campaign `name`."""
    moves = COMMAND_TRANSITIONS[command]
    with conn.transaction():
        campaign = get_campaign(conn, name, for_update=True)
        if campaign.status not in moves:
            raise CampaignError(f"campaign {name!r} is {campaign.status.value}: {command} applies to a campaign "
                                f"that is {' or '.join(sorted(s.value for s in moves))}")
        return set_status(conn, name, moves[campaign.status])


def set_status(conn: psycopg.Connection, name: str, target: CampaignStatus | str) -> Campaign:
    """Move a campaign to `target` if TRANSITIONS allows it (and, to run, if its settings may start)."""
    target = CampaignStatus(target)
    with conn.transaction():
        campaign = get_campaign(conn, name, for_update=True)
        if target not in TRANSITIONS[campaign.status]:
            allowed = ", ".join(sorted(s.value for s in TRANSITIONS[campaign.status])) or "none"
            raise CampaignError(f"campaign {name!r} is {campaign.status.value}: it cannot become "
                                f"{target.value} (allowed from {campaign.status.value}: {allowed})")
        if target == CampaignStatus.RUNNING and (problems := campaign.settings.start_problems()):
            raise CampaignError(f"campaign {name!r} cannot start:\n  " + "\n  ".join(problems))
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"UPDATE campaigns SET status = %s, status_changed_at = now(), updated_at = now() "
                        f"WHERE id = %s RETURNING {_COLUMNS}", (target.value, campaign.id))
            return _from_row(cur.fetchone())


SERVED = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.STOPPING)   # engines run these


def update_settings(conn: psycopg.Connection, name: str, assignments: Iterable[tuple[str, Any]]) -> Campaign:
    """Apply dotted-key assignments to a campaign's settings, validate, store (settings_version + 1)."""
    with conn.transaction():
        campaign = get_campaign(conn, name, for_update=True)
        settings = CampaignSettings.from_dict(apply_assignments(campaign.settings.to_dict(), assignments))
        # A campaign an engine serves must keep what it needed to start: without caller IDs or
        # gateways its engines cannot place its calls (they stop serving it until it is fixed).
        if campaign.status in SERVED and (problems := settings.start_problems()):
            raise SettingsError([f"{p} (the campaign is {campaign.status}: stop it first to remove this)"
                                 for p in problems])
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(f"UPDATE campaigns SET settings = %s, settings_version = settings_version + 1, "
                        f"updated_at = now() WHERE id = %s RETURNING {_COLUMNS}",
                        (Jsonb(settings.to_dict()), campaign.id))
            return _from_row(cur.fetchone())
