"""Rule packs: the compliance rules as versioned data files (TOML), one pack per jurisdiction.

Format (docs/compliance.md has the full description): a `[pack]` table (id, version,
jurisdiction, countries) and `[[rules]]` entries, each with id, kind, citation, verified
("P" primary text checked / "S" secondary summary), effective_from/effective_to, scope
(purposes, modes, voices; all when absent), an optional `state`, and the kind's own fields.
The us-states pack also carries a `[states]` table (name, zones, area-code presumption).
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, time, timedelta, timezone, tzinfo
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from dialer.compliance.model import (
    Campaign, DialMode, ListKind, Outcome, Purpose, RulePackError, Voice,
)

RULE_KINDS = {"hours", "registry", "internal_list", "revocation", "consent", "reassigned", "caller_id", "counter",
              "lock"}
COUNTER_KEYS = {"phone", "phone_subject", "phone_seller", "person_debt"}
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class HoursSpec:
    """Allowed local-time windows per weekday (Monday=0), half-open [start, end) in seconds."""
    windows: tuple[tuple[tuple[int, int], ...], ...]
    closed_on_holidays: bool = False
    clock: tzinfo | None = None               # a fixed clock (Mississippi CST) instead of the zone's
    waived_by_consent: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    pack_id: str
    citation: str
    verified: str
    effective_from: date
    effective_to: date | None
    purposes: frozenset[Purpose]
    modes: frozenset[DialMode]
    voices: frozenset[Voice]
    state: str | None = None
    states: frozenset[str] = frozenset()
    hours: HoursSpec | None = None
    params: dict = field(default_factory=dict, compare=False, hash=False)

    def in_scope(self, campaign: Campaign, on: date) -> bool:
        return (campaign.purpose in self.purposes and campaign.mode in self.modes
                and campaign.voice in self.voices and self.effective_from <= on
                and (self.effective_to is None or on < self.effective_to))


@dataclass(frozen=True)
class StateInfo:
    code: str
    name: str
    zones: tuple[str, ...]
    presume_area_code_resident: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class RulePack:
    id: str
    version: str
    jurisdiction: str
    countries: frozenset[str]
    rules: tuple[Rule, ...]
    states: dict[str, StateInfo] = field(default_factory=dict, compare=False, hash=False)


def _parse_hhmm(value: str, where: str) -> int:
    try:
        parsed = time.fromisoformat(value)
    except (TypeError, ValueError):
        if value == "24:00":
            return 86400
        raise RulePackError(f"{where}: bad time {value!r}") from None
    return parsed.hour * 3600 + parsed.minute * 60


def _parse_windows(spec: dict, where: str) -> tuple[tuple[tuple[int, int], ...], ...]:
    days: list[tuple[tuple[int, int], ...]] = [()] * 7
    groups = {"all": range(7), "weekdays": range(5), "weekends": (5, 6)}
    ordered = [k for k in ("all", "weekdays", "weekends") if k in spec] + [k for k in _DAY_NAMES if k in spec]
    unknown = set(spec) - set(groups) - set(_DAY_NAMES)
    if unknown:
        raise RulePackError(f"{where}: unknown window keys {sorted(unknown)}")
    for key in ordered:
        value = spec[key]
        if value and (len(value) != 2):
            raise RulePackError(f"{where}: window {key} must be [start, end] or []")
        window = ((_parse_hhmm(value[0], where), _parse_hhmm(value[1], where)),) if value else ()
        if window and window[0][0] >= window[0][1]:
            raise RulePackError(f"{where}: window {key} ends before it starts")
        for day in groups.get(key, (_DAY_NAMES.index(key),) if key in _DAY_NAMES else ()):
            days[day] = window
    return tuple(days)


def _parse_clock(value: str | None, where: str) -> tzinfo | None:
    if value is None:
        return None
    if value.startswith("UTC") and len(value) == 9:
        sign = -1 if value[3] == "-" else 1
        hours, minutes = int(value[4:6]), int(value[7:9])
        return timezone(sign * timedelta(hours=hours, minutes=minutes), value)
    try:
        return ZoneInfo(value)
    except (KeyError, ValueError) as exc:
        raise RulePackError(f"{where}: unknown clock {value!r}") from exc


def _enum_set(enum_type, values, where: str) -> frozenset:
    if values is None:
        return frozenset(enum_type)
    try:
        return frozenset(enum_type(v) for v in values)
    except ValueError as exc:
        raise RulePackError(f"{where}: {exc}") from None


def _parse_rule(raw: dict, pack_id: str) -> Rule:
    where = f"pack {pack_id} rule {raw.get('id', '?')}"
    data = dict(raw)
    try:
        rule_id, kind, citation = data.pop("id"), data.pop("kind"), data.pop("citation")
        verified = data.pop("verified")
        effective_from = date.fromisoformat(data.pop("effective_from"))
    except KeyError as exc:
        raise RulePackError(f"{where}: missing field {exc}") from None
    except ValueError as exc:
        raise RulePackError(f"{where}: {exc}") from None
    if kind not in RULE_KINDS:
        raise RulePackError(f"{where}: unknown kind {kind!r}")
    if verified not in ("P", "S"):
        raise RulePackError(f"{where}: verified must be P or S")
    effective_to = data.pop("effective_to", None)
    hours = None
    if kind == "hours":
        if "windows" not in data:
            raise RulePackError(f"{where}: hours rule without windows")
        hours = HoursSpec(
            windows=_parse_windows(data.pop("windows"), where),
            closed_on_holidays=bool(data.pop("closed_on_holidays", False)),
            clock=_parse_clock(data.pop("clock", None), where),
            waived_by_consent=frozenset(data.pop("waived_by_consent", ())),
        )
    if kind in ("counter", "lock"):
        if data.get("key") not in COUNTER_KEYS:
            raise RulePackError(f"{where}: key must be one of {sorted(COUNTER_KEYS)}")
        for name in ("lock_on_outcome", "uncount_on_outcome"):
            if name in data:
                try:
                    Outcome(data[name])
                except ValueError:
                    raise RulePackError(f"{where}: unknown outcome {data[name]!r}") from None
        if kind == "counter" and not (isinstance(data.get("limit"), int) and isinstance(data.get("window_seconds"), int)):
            raise RulePackError(f"{where}: counter needs integer limit and window_seconds")
    if kind == "registry":
        # `list` names one registry kind, or several that all apply (UK: TPS and CTPS).
        kinds = data.get("list")
        kinds = tuple(kinds) if isinstance(kinds, list) else (kinds,)
        registries = (ListKind.FEDERAL, ListKind.STATE, ListKind.TPS, ListKind.CTPS)
        if not kinds or any(k not in registries for k in kinds) or \
                (ListKind.STATE in kinds and len(kinds) > 1):
            raise RulePackError(f"{where}: registry rule needs list federal, state, tps or ctps (or several of tps/ctps)")
        data["list"] = tuple(ListKind(k) for k in kinds)
    if kind == "reassigned" and not isinstance(data.get("max_age_days"), int):
        raise RulePackError(f"{where}: reassigned rule needs an integer max_age_days")
    if kind == "internal_list":
        for name in data.get("lists", ()):
            if name not in (ListKind.INTERNAL, ListKind.CAMPAIGN, ListKind.CUSTOM):
                raise RulePackError(f"{where}: unknown list {name!r}")
    return Rule(
        id=rule_id, kind=kind, pack_id=pack_id, citation=citation, verified=verified,
        effective_from=effective_from,
        effective_to=date.fromisoformat(effective_to) if effective_to else None,
        purposes=_enum_set(Purpose, data.pop("purposes", None), where),
        modes=_enum_set(DialMode, data.pop("modes", None), where),
        voices=_enum_set(Voice, data.pop("voices", None), where),
        state=data.pop("state", None),
        states=frozenset(data.pop("states", ())),
        hours=hours,
        params=data,
    )


def parse_pack(text: str, origin: str) -> RulePack:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulePackError(f"{origin}: {exc}") from exc
    head = raw.get("pack")
    if not isinstance(head, dict) or not {"id", "version", "jurisdiction", "countries"} <= head.keys():
        raise RulePackError(f"{origin}: [pack] needs id, version, jurisdiction, countries")
    rules = tuple(_parse_rule(r, head["id"]) for r in raw.get("rules", ()))
    ids = [r.id for r in rules]
    if len(ids) != len(set(ids)):
        raise RulePackError(f"{origin}: duplicate rule ids")
    states = {
        code: StateInfo(code, info["name"], tuple(info["zones"]), bool(info.get("presume_area_code_resident")),
                        tuple(info.get("aliases", ())))
        for code, info in raw.get("states", {}).items()
    }
    for zone in {z for s in states.values() for z in s.zones}:
        try:
            ZoneInfo(zone)
        except (KeyError, ValueError) as exc:
            raise RulePackError(f"{origin}: unknown zone {zone!r}") from exc
    return RulePack(head["id"], str(head["version"]), head["jurisdiction"],
                    frozenset(head["countries"]), rules, states)


class RuleBook:
    """All loaded packs; picks the packs that apply to a number's country."""

    def __init__(self, packs: list[RulePack]):
        self.packs = packs
        self.states: dict[str, StateInfo] = {}
        for pack in packs:
            self.states.update(pack.states)
        self.state_by_name = {name.lower(): code for code, info in self.states.items()
                              for name in (info.name, *info.aliases)}
        self._by_country: dict[str, tuple[RulePack, ...]] = {}
        self._by_outcome: dict[Outcome, list[Rule]] = {}
        rule_ids = [r.id for p in packs for r in p.rules]
        if len(rule_ids) != len(set(rule_ids)):
            raise RulePackError("rule ids repeat across packs")

    def packs_for(self, region: str) -> tuple[RulePack, ...]:
        """Packs for a country; empty when none is national (company-wide packs alone don't count)."""
        cached = self._by_country.get(region)
        if cached is None:
            national = [p for p in self.packs if region in p.countries]
            cached = tuple(national + [p for p in self.packs if "*" in p.countries]) if national else ()
            self._by_country[region] = cached
        return cached

    def state_list_states(self) -> tuple[str, ...]:
        """States whose own do-not-call list a registry rule consults (a copy of each is needed)."""
        return tuple(sorted({s for p in self.packs for r in p.rules
                             if r.kind == "registry" and r.params["list"] == (ListKind.STATE,) for s in r.states}))

    def outcome_rules(self, outcome: Outcome) -> list[Rule]:
        rules = self._by_outcome.get(outcome)
        if rules is None:
            rules = self._by_outcome[outcome] = [
                r for p in self.packs for r in p.rules
                if (r.kind == "counter" and outcome == Outcome.NOT_PLACED)
                or (r.kind in ("counter", "lock")
                    and outcome in (r.params.get("lock_on_outcome"), r.params.get("uncount_on_outcome")))]
        return rules


def load_packs(directory: Path | None = None) -> RuleBook:
    """Load every *.toml pack from `directory` (default: the packs shipped in rulepacks/)."""
    if directory is None:
        folder = resources.files("dialer.compliance") / "rulepacks"
        files = [(f.name, f.read_text(encoding="utf-8")) for f in folder.iterdir() if f.name.endswith(".toml")]
    else:
        files = [(f.name, f.read_text(encoding="utf-8")) for f in Path(directory).glob("*.toml")]
    if not files:
        raise RulePackError(f"no rule packs found in {directory or 'dialer/compliance/rulepacks'}")
    return RuleBook([parse_pack(text, name) for name, text in sorted(files)])

