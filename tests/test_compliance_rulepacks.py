"""Rule packs as data: the shipped packs, the format's validation, effective dates, calendars."""
from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from dialer.compliance.counters import MemoryCounters
from dialer.compliance.gate import ComplianceGate
from dialer.compliance.model import CallRequest, Campaign, DialMode, Lead, ListKind, RulePackError
from dialer.compliance.records import MemoryRecords
from dialer.compliance.registry import RegistryIndex
from dialer.compliance.rules import RuleBook, load_packs, parse_pack

HEAD = '[pack]\nid = "t"\nversion = "1"\njurisdiction = "US"\ncountries = ["US"]\n'
RULE = '[[rules]]\nid = "T-1"\nkind = "hours"\ncitation = "c"\nverified = "P"\neffective_from = "2020-01-01"\n'


def test_shipped_packs_are_complete():
    book = load_packs()
    assert {p.id for p in book.packs} == {"us-federal", "us-states", "ca", "uk", "company"}
    for pack in book.packs:
        assert pack.version
        for rule in pack.rules:
            assert rule.citation and rule.verified in ("P", "S")
    ids = {r.id for p in book.packs for r in p.rules}
    assert {"US-HRS", "US-DNC-1", "US-7IN7", "CA-HRS", "UK-TPS", "MS-HRS", "FL-3IN24", "WA-NO12M"} <= ids
    assert len(book.states) >= 50 and book.states["FL"].presume_area_code_resident


@pytest.mark.parametrize("text,message", [
    ("x = [", "Invalid"),
    ('[pack]\nid = "t"\n', "needs id"),
    (HEAD + RULE.replace('"hours"', '"magic"') + 'windows = { all = ["08:00", "21:00"] }\n', "unknown kind"),
    (HEAD + RULE, "without windows"),
    (HEAD + RULE + 'windows = { all = ["21:00", "08:00"] }\n', "ends before"),
    (HEAD + RULE + 'windows = { someday = ["08:00", "21:00"] }\n', "unknown window keys"),
    (HEAD + RULE + 'windows = { all = ["8 am", "21:00"] }\n', "bad time"),
    (HEAD + RULE.replace('"P"', '"X"') + 'windows = { all = ["08:00", "21:00"] }\n', "P or S"),
    (HEAD + RULE.replace('citation = "c"\n', '') + 'windows = { all = ["08:00", "21:00"] }\n', "missing field"),
    (HEAD + RULE + 'windows = { all = ["08:00", "21:00"] }\npurposes = ["sales"]\n', "sales"),
    (HEAD + RULE + 'windows = { all = ["08:00", "21:00"] }\n' + RULE + 'windows = { all = ["08:00", "21:00"] }\n', "duplicate"),
    (HEAD + RULE + 'windows = { all = ["08:00", "21:00"] }\nclock = "Mars/Olympus"\n', "unknown clock"),
    (HEAD + '[states]\nZZ = { name = "Z", zones = ["Nowhere/Town"] }\n', "unknown zone"),
    (HEAD + RULE.replace('"hours"', '"counter"') + 'key = "phone"\n', "integer limit"),
    (HEAD + RULE.replace('"hours"', '"lock"') + 'key = "email"\n', "key must be"),
    (HEAD + RULE.replace('"hours"', '"registry"') + 'list = "national"\n', "registry rule needs"),
    (HEAD + RULE.replace('"hours"', '"registry"') + 'list = ["tps", "state"]\n', "registry rule needs"),
    (HEAD + RULE.replace('"hours"', '"reassigned"'), "reassigned rule needs"),
])
def test_malformed_packs_are_refused(text, message):
    with pytest.raises(RulePackError, match=message):
        parse_pack(text, "test.toml")


def _gate(extra: str) -> ComplianceGate:
    shipped = load_packs()
    pack = parse_pack(HEAD + extra, "extra.toml")
    registry = RegistryIndex()
    registry.mark_complete(ListKind.FEDERAL, "US", date(2100, 1, 1))
    return ComplianceGate(RuleBook(shipped.packs + [pack]), registry, MemoryRecords(), MemoryCounters())


def _call(state=None, at=datetime(2026, 11, 18, 17, tzinfo=timezone.utc)):
    return CallRequest("+12125551234", Campaign("c", mode=DialMode.PREVIEW, caller_id="+12125550000"), at, Lead(state=state))


def test_missing_holiday_calendar_fails_closed():
    gate = _gate('[states]\nZZ = { name = "Zedland", zones = ["America/New_York"] }\n'
                 + RULE.replace('"T-1"', '"ZZ-HRS"') + 'state = "ZZ"\nclosed_on_holidays = true\n'
                 'windows = { all = ["08:00", "21:00"] }\n')
    assert gate.decide(_call("ZZ"), dry_run=True).reasons == ["HOLIDAY_CALENDAR_MISSING"]
    assert gate.decide(_call("NY"), dry_run=True).allowed


def test_effective_dates_bound_a_rule():
    gate = _gate(RULE + 'effective_to = "2026-11-18"\nwindows = { all = ["09:00", "10:00"] }\n')
    assert gate.decide(_call(at=datetime(2026, 11, 17, 17, tzinfo=timezone.utc)), dry_run=True).reasons == ["T-1"]
    decision = gate.decide(_call(), dry_run=True)
    assert decision.allowed and "T-1" not in decision.rules_evaluated and decision.pack_versions["t"] == "1"


def test_a_window_that_never_overlaps_is_an_empty_window():
    # 08:00-09:00 at UTC+9 is 18:00-19:00 EST the day before: inside 08-21 EST, so calls are possible.
    gate = _gate(RULE + 'clock = "UTC+09:00"\nwindows = { all = ["08:00", "09:00"] }\n')
    assert gate.decide(_call(at=datetime(2026, 11, 18, 23, 30, tzinfo=timezone.utc)), dry_run=True).allowed
    # 13:00-14:00 at UTC+9 is 23:00-00:00 EST: never inside 08-21 EST.
    gate = _gate(RULE + 'clock = "UTC+09:00"\nwindows = { all = ["13:00", "14:00"] }\n')
    decision = gate.decide(_call(), dry_run=True)
    assert decision.reasons == ["T-1", "EMPTY_WINDOW"] and decision.next_allowed_at is None
