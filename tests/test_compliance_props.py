"""Properties of the calling-hours intersection and of the per-exchange cache (hypothesis)."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import phonenumbers
from hypothesis import given, settings, strategies as st
from phonenumbers import timezone as pn_timezone
from phonenumbers.tzdata import TIMEZONE_DATA

from dialer.compliance.gate import ComplianceGate
from dialer.compliance.geo import Geography
from dialer.compliance.hours import failing_checks, next_allowed
from dialer.compliance.model import CallRequest, Campaign, DialMode, Lead, ListKind, Purpose
from dialer.compliance.counters import MemoryCounters
from dialer.compliance.records import MemoryRecords
from dialer.compliance.registry import RegistryIndex
from dialer.compliance.rules import load_packs

RULEBOOK = load_packs()
REGISTRY = RegistryIndex()
REGISTRY.mark_complete(ListKind.FEDERAL, "US", date(2100, 1, 1))
for _state in RULEBOOK.state_list_states():     # fresh state lists: only hours decide the requeue property
    REGISTRY.mark_complete(ListKind.STATE, _state, date(2100, 1, 1))
GATE = ComplianceGate(RULEBOOK, REGISTRY, MemoryRecords(), MemoryCounters())
CAMPAIGN = Campaign("p", Purpose.TELEMARKETING, DialMode.PREVIEW, caller_id="+12125550000")
HOURS_RULES = [r for p in RULEBOOK.packs_for("US") for r in p.rules
               if r.kind == "hours" and r.in_scope(CAMPAIGN, date(2026, 6, 1))]
ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
         "America/Anchorage", "Pacific/Honolulu", "America/St_Johns", "America/Halifax", "America/Boise",
         "America/Puerto_Rico", "Europe/London"]
STATES = sorted({r.state for r in HOURS_RULES if r.state})

zones_st = st.sets(st.sampled_from(ZONES), min_size=1, max_size=4)
states_st = st.sets(st.sampled_from(STATES), max_size=3)
instant_st = st.integers(0, 365 * 24 * 60 * 3).map(
    lambda minutes: datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=minutes))


def checks(zones, states):
    out = []
    for rule in HOURS_RULES:
        if rule.state is None or rule.state in states:
            out.extend(GATE._hours_checks(rule, tuple(sorted(zones)), None))
    return out


def allowed(zones, states, moment) -> bool:
    return not failing_checks(checks(zones, states), moment, GATE.calendars)


@settings(max_examples=300, deadline=None)
@given(zones_st, states_st, st.sampled_from(ZONES), st.sampled_from(STATES), instant_st)
def test_window_never_grows_when_a_zone_or_state_is_added(zones, states, zone, state, moment):
    if allowed(zones | {zone}, states, moment):
        assert allowed(zones, states, moment)
    if allowed(zones, states | {state}, moment):
        assert allowed(zones, states, moment)


@settings(max_examples=300, deadline=None)
@given(zones_st, states_st, instant_st)
def test_allowed_set_is_the_intersection_of_single_zone_results(zones, states, moment):
    singles = [allowed({z}, set(), moment) for z in zones] + [allowed({z}, {s}, moment) for z in zones for s in states]
    assert allowed(zones, states, moment) == all(singles)


@settings(max_examples=150, deadline=None)
@given(zones_st, states_st, instant_st)
def test_next_allowed_is_the_first_allowed_moment(zones, states, moment):
    cs = checks(zones, states)
    found = next_allowed(cs, moment, GATE.calendars)
    if found is None:
        # Nothing in the horizon: spot-check every hour of the next 10 days.
        assert all(failing_checks(cs, moment + timedelta(hours=h), GATE.calendars) for h in range(240))
        return
    assert found >= moment
    assert not failing_checks(cs, found, GATE.calendars)
    if found > moment:
        assert failing_checks(cs, found - timedelta(seconds=1), GATE.calendars)
        # No allowed moment hides between: probe every 15 minutes.
        probe = moment
        while probe < found - timedelta(seconds=1):
            assert failing_checks(cs, probe, GATE.calendars)
            probe += timedelta(minutes=15)


NPAS = ["212", "208", "305", "601", "709", "416", "907", "850", "605", "801", "999", "800", "264", "787",
        "246", "658", "876"]     # validity depends on the 7th digit there


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NPAS), st.integers(200, 999), st.integers(0, 9999))
def test_exchange_cache_agrees_with_phonenumbers(npa, nxx, line):
    number = f"+1{npa}{nxx:03d}{line:04d}"
    parsed = phonenumbers.parse(number, None)
    facts = Geography(RULEBOOK).facts(number)
    cached = GATE.geo.facts(number)        # shared cache, warmed by other examples of the exchange
    zones = tuple(z for z in pn_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")
    if phonenumbers.is_valid_number(parsed) and zones and number[1:8] not in TIMEZONE_DATA:
        # no exchange-level entry: every zone any entry of the area code names (QA6 F2)
        area = [z for prefix, names in TIMEZONE_DATA.items() if prefix[:4] == number[1:5] for z in names]
        zones = tuple(dict.fromkeys(zones + tuple(area)))
    for f in (facts, cached):
        assert f.valid == phonenumbers.is_valid_number(parsed)
        assert f.zones == zones


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["+12125551234", "+16015551234", "+12085551234", "+14015551234", "+12145551234",
                        "+18015551234", "+14165551234"]), instant_st)
def test_requeue_time_is_allowed_by_every_hours_rule(number, moment):
    decision = GATE.decide(CallRequest(number, CAMPAIGN, moment, Lead()), dry_run=True)
    if decision.next_allowed_at is not None:
        later = GATE.decide(CallRequest(number, CAMPAIGN, decision.next_allowed_at, Lead()), dry_run=True)
        assert not any(b.timed for b in later.blocks), later.to_dict()


@settings(max_examples=200, deadline=None)
@given(zones_st, states_st, instant_st)
def test_shared_timeline_agrees_with_the_rules(zones, states, moment):
    from dialer.compliance.hours import build_timeline
    cs = checks(zones, states)
    start = datetime.combine(moment.date(), datetime.min.time(), tzinfo=timezone.utc)
    timeline = build_timeline(cs, start, start + timedelta(days=11), GATE.calendars)
    assert timeline.allows(moment) == allowed(zones, states, moment)
    direct = next_allowed(cs, moment, GATE.calendars)
    shared = timeline.next_allowed(moment, timedelta(days=10))
    if direct is not None and direct <= moment + timedelta(days=9):
        assert shared == direct
    if shared is not None:
        assert not failing_checks(cs, shared, GATE.calendars)
