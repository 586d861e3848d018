"""Decision table for the compliance gate (issue 3): states, zones, DST, holidays, ambiguous area
codes, every list kind, consent, frequency caps. Expected local windows are written here from
compliance-rules.md, independently of the rule pack files, so a wrong pack fails these tests."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from dialer.compliance.counters import MemoryCounters
from dialer.compliance.gate import ComplianceGate
from dialer.compliance.model import (
    CallRequest, Campaign, ConsentKind, DialMode, Lead, LineType, ListKind, Outcome, Purpose, Voice,
)
from dialer.compliance.records import MemoryRecords
from dialer.compliance.registry import BYTES_PER_NPA, NpaSnapshot, RegistryIndex
from dialer.compliance.rnd import MemoryRnd
from dialer.compliance.rules import load_packs
from dialer.errors import StorageError

RULEBOOK = load_packs()
UTC = timezone.utc
ON_FEDERAL_LIST = "+12125550100"


STATE_LISTS = ("CO", "FL", "IN", "LA", "MA", "MO", "OK", "PA", "TN", "TX", "WY")
FAR_FUTURE = date(2100, 1, 1)


def fresh_lists(registry: RegistryIndex, *, skip: tuple = ()) -> RegistryIndex:
    """Every registry the packs consult, empty and fresh, except the (kind, jurisdiction) pairs in `skip`."""
    wanted = [(ListKind.FEDERAL, "US"), (ListKind.TPS, "GB"), (ListKind.CTPS, "GB")]
    wanted += [(ListKind.STATE, s) for s in STATE_LISTS]
    for kind, jurisdiction in wanted:
        if (kind, jurisdiction) not in skip:
            registry.mark_complete(kind, jurisdiction, FAR_FUTURE)
    return registry


def make_gate(registry: RegistryIndex | None = None, records: MemoryRecords | None = None,
              rnd: MemoryRnd | None = None) -> ComplianceGate:
    if registry is None:
        registry = fresh_lists(RegistryIndex())
        bits = np.zeros(BYTES_PER_NPA, dtype=np.uint8)
        line7 = int(ON_FEDERAL_LIST[5:])
        bits[line7 >> 3] |= 1 << (line7 & 7)
        registry.put(ListKind.FEDERAL, "US", 212, NpaSnapshot(bits, FAR_FUTURE, 1))
    if rnd is None:
        rnd = MemoryRnd(date(2021, 1, 27), FAR_FUTURE)
    return ComplianceGate(RULEBOOK, registry, records or MemoryRecords(), MemoryCounters(), rnd=rnd)


def call(number: str, at: datetime, *, purpose="telemarketing", mode="preview", voice="live", state=None,
         zip_code=None, campaign="c1", caller_id="+12125550000", line_type=LineType.UNKNOWN,
         person=None, debt=None, subject="") -> CallRequest:
    # A debt call needs the lead's person (PERSON_MISSING otherwise): one person per number unless given.
    if person is None and purpose == "debt":
        person = f"person-of-{number}"
    return CallRequest(number, Campaign(campaign, Purpose(purpose), DialMode(mode), Voice(voice), caller_id,
                                        subject=subject),
                       at, Lead(state=state, zip_code=zip_code, person_id=person, debt_id=debt, line_type=line_type))


def local(zone: str, text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone))


# ---------------------------------------------------------------- state hours, on a plain Wednesday

# state: (number, zone of its exchange, start, end) -- telemarketing windows from compliance-rules.md
STATE_WINDOWS = {
    "NY": ("+12125551234", "America/New_York", "08:00", "21:00"),
    "CA": ("+12135551234", "America/Los_Angeles", "08:00", "21:00"),
    "FL": ("+13055551234", "America/New_York", "08:00", "20:00"),
    "OK": ("+14055551234", "America/Chicago", "08:00", "20:00"),
    "MD": ("+14105551234", "America/New_York", "08:00", "20:00"),
    "WA": ("+12065551234", "America/Los_Angeles", "08:00", "20:00"),
    "CT": ("+12035551234", "America/New_York", "09:00", "20:00"),
    "TX": ("+12145551234", "America/Chicago", "09:00", "21:00"),
    "UT": ("+18015551234", "America/Denver", "08:00", "21:00"),
    "LA": ("+15045551234", "America/Chicago", "08:00", "20:00"),
    "AL": ("+12055551234", "America/Chicago", "08:00", "20:00"),
    "RI": ("+14015551234", "America/New_York", "09:00", "18:00"),
    "MA": ("+16175551234", "America/New_York", "08:00", "20:00"),
    "PA": ("+12155551234", "America/New_York", "08:00", "21:00"),
    "KY": ("+15025551234", "America/New_York", "10:00", "21:00"),
    "MI": ("+13135551234", "America/New_York", "09:00", "21:00"),
    "MN": ("+16125551234", "America/Chicago", "09:00", "21:00"),
    "NV": ("+17025551234", "America/Los_Angeles", "09:00", "20:00"),
    "NM": ("+15055551234", "America/Denver", "09:00", "21:00"),
}
WEDNESDAY = "2026-11-18"


def _edge_cases():
    for state, (number, zone, start, end) in STATE_WINDOWS.items():
        start_at = local(zone, f"{WEDNESDAY}T{start}:00")
        end_at = local(zone, f"{WEDNESDAY}T{end}:00")
        code = "US-HRS" if state in ("NY", "CA") else f"{state}-HRS"
        yield pytest.param(number, start_at - timedelta(minutes=1), False, code, id=f"{state}-before-start")
        yield pytest.param(number, start_at, True, None, id=f"{state}-at-start")
        yield pytest.param(number, end_at - timedelta(seconds=1), True, None, id=f"{state}-last-second")
        yield pytest.param(number, end_at, False, code, id=f"{state}-at-end")


@pytest.mark.parametrize("number,at,allowed,code", list(_edge_cases()))
def test_state_window_edges(number, at, allowed, code):
    decision = make_gate().decide(call(number, at), dry_run=True)
    assert decision.allowed is allowed, decision.to_dict()
    if code:
        assert code in decision.reasons
        assert decision.next_allowed_at is not None and decision.next_allowed_at > at


# ---------------------------------------------------------------- Sundays, holidays (observed), DST

SUNDAY = "2026-11-22"
THANKSGIVING = "2026-11-26"
JULY_3_OBSERVED = "2026-07-03"     # Independence Day falls on a Saturday in 2026


@pytest.mark.parametrize("state,day,hhmm,allowed,code", [
    ("UT", SUNDAY, "14:00", False, "UT-HRS"),
    ("LA", SUNDAY, "14:00", False, "LA-HRS"),
    ("AL", SUNDAY, "14:00", False, "AL-HRS"),
    ("RI", SUNDAY, "14:00", False, "RI-HRS"),
    ("TX", SUNDAY, "11:59", False, "TX-HRS"),
    ("TX", SUNDAY, "12:00", True, None),
    ("NY", SUNDAY, "14:00", True, None),
    ("FL", SUNDAY, "14:00", True, None),
    ("RI", "2026-11-21", "10:00", True, None),        # Saturday 10-17
    ("RI", "2026-11-21", "17:00", False, "RI-HRS"),
    ("RI", "2026-11-21", "09:30", False, "RI-HRS"),
    ("UT", THANKSGIVING, "14:00", False, "UT-HRS"),
    ("LA", THANKSGIVING, "14:00", False, "LA-HRS"),
    ("AL", THANKSGIVING, "14:00", False, "AL-HRS"),
    ("RI", THANKSGIVING, "14:00", False, "RI-HRS"),
    ("PA", THANKSGIVING, "14:00", False, "PA-HRS"),
    ("NY", THANKSGIVING, "14:00", True, None),
    ("FL", THANKSGIVING, "14:00", True, None),
    ("PA", JULY_3_OBSERVED, "14:00", False, "PA-HRS"),
    ("UT", JULY_3_OBSERVED, "14:00", False, "UT-HRS"),
    ("NY", JULY_3_OBSERVED, "14:00", True, None),
    ("UT", "2026-07-24", "14:00", False, "UT-HRS"),   # Pioneer Day, a Utah holiday only
    ("NY", "2026-07-24", "14:00", True, None),
    ("PA", "2026-11-27", "14:00", False, "PA-HRS"),   # Day After Thanksgiving is a PA holiday
    ("PA", "2026-11-25", "14:00", True, None),
])
def test_sundays_and_holidays(state, day, hhmm, allowed, code):
    number, zone, _, _ = STATE_WINDOWS[state]
    decision = make_gate().decide(call(number, local(zone, f"{day}T{hhmm}:00")), dry_run=True)
    assert decision.allowed is allowed, decision.to_dict()
    if code:
        assert decision.reasons == [code]
        assert decision.next_allowed_at is not None


@pytest.mark.parametrize("at,allowed", [
    ("2026-03-06T12:59:59Z", False),   # Friday before DST: 07:59:59 EST
    ("2026-03-06T13:00:00Z", True),    # 08:00 EST
    ("2026-03-09T12:00:00Z", True),    # Monday after spring forward: 08:00 EDT
    ("2026-03-09T11:59:59Z", False),   # 07:59:59 EDT
    ("2026-03-09T00:59:59Z", True),    # Sunday 20:59:59 EDT
    ("2026-03-09T01:00:00Z", False),   # 21:00 EDT
    ("2026-10-30T00:59:59Z", True),    # Thursday 20:59:59 EDT
    ("2026-11-03T01:59:59Z", True),    # Monday after fall back: 20:59:59 EST
    ("2026-11-03T02:00:00Z", False),   # 21:00 EST
    ("2026-11-02T12:59:00Z", False),   # 07:59 EST
])
def test_dst_transitions_new_york(at, allowed):
    decision = make_gate().decide(call("+12125551234", datetime.fromisoformat(at)), dry_run=True)
    assert decision.allowed is allowed, decision.to_dict()


def test_next_allowed_across_spring_forward():
    # Saturday 2026-03-07 22:00 EST: next is Sunday 08:00 EDT = 12:00Z (the clocks changed overnight).
    decision = make_gate().decide(call("+12125551234", datetime(2026, 3, 8, 3, 0, tzinfo=UTC)), dry_run=True)
    assert decision.next_allowed_at == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("at,allowed,next_at", [
    ("2026-07-15T13:30:00Z", False, "2026-07-15T14:00:00+00:00"),   # 08:30 CDT = 07:30 CST
    ("2026-07-15T14:00:00Z", True, None),                           # 08:00 CST
    ("2026-07-16T01:30:00Z", True, None),                           # 20:30 CDT = 19:30 CST
    ("2026-07-16T01:59:59Z", True, None),
    ("2026-07-16T02:00:00Z", False, "2026-07-16T14:00:00+00:00"),   # 21:00 CDT = 20:00 CST
    ("2026-01-14T14:00:00Z", True, None),                           # winter: 08:00 CST
    ("2026-01-14T13:59:00Z", False, "2026-01-14T14:00:00+00:00"),
    ("2026-01-15T01:59:00Z", True, None),                           # 19:59 CST
    ("2026-01-15T02:00:00Z", False, "2026-01-15T14:00:00+00:00"),
    ("2026-07-19T15:00:00Z", False, "2026-07-20T14:00:00+00:00"),   # Sunday: no calls in MS
])
def test_mississippi_central_standard_time(at, allowed, next_at):
    decision = make_gate().decide(call("+16015551234", datetime.fromisoformat(at)), dry_run=True)
    assert decision.allowed is allowed, decision.to_dict()
    if not allowed:
        assert "MS-HRS" in decision.reasons
        assert decision.next_allowed_at == datetime.fromisoformat(next_at)


# ---------------------------------------------------------------- zones: ambiguous, lead address, unknown

@pytest.mark.parametrize("number,kwargs,at,allowed,expect", [
    # Idaho 208 spans Mountain and Pacific: 08:00 MST is 07:00 PST.
    ("+12085551234", {}, "2026-11-18T15:00:00Z", False, {"US-HRS"}),
    ("+12085551234", {}, "2026-11-18T16:00:00Z", True, set()),
    ("+12085551234", {}, "2026-11-19T03:59:00Z", True, set()),     # 20:59 PST, 21:59 MST? no: 20:59 MST
    # Newfoundland 709: Halifax and St John's (UTC-3:30): CA-HRS weekday 09:00-21:30
    ("+17095551234", {}, "2026-11-18T13:00:00Z", True, set()),     # 09:00 AST, 09:30 NST
    ("+17095551234", {}, "2026-11-18T12:45:00Z", False, {"CA-HRS"}),
    # QA6 F4: the 08:00-21:00 floor (CA-FLOOR) holds telemarketing too: 21:00 NST ends the day
    ("+17095551234", {}, "2026-11-19T00:29:00Z", True, set()),     # 20:29 AST, 20:59 NST
    ("+17095551234", {}, "2026-11-19T00:30:00Z", False, {"CA-FLOOR"}),  # 21:00 NST
    ("+17095551234", {}, "2026-11-19T01:00:00Z", False, {"CA-HRS", "CA-FLOOR"}),  # 21:30 NST
    # Lead's address: a New York number whose lead lives in California adds Pacific time.
    ("+12125551234", {"state": "CA"}, "2026-11-18T15:00:00Z", False, {"US-HRS"}),  # 07:00 PST
    ("+12125551234", {"state": "CA"}, "2026-11-18T16:00:00Z", True, set()),
    ("+12125551234", {"zip_code": "90012"}, "2026-11-18T15:00:00Z", False, {"US-HRS"}),
    ("+12125551234", {"zip_code": "10001"}, "2026-11-18T13:00:00Z", True, set()),
    # Pensacola ZIP (Central) on a New York number: FL hours in both zones; 19:30 CST is 20:30 EST.
    ("+12125551234", {"zip_code": "32501"}, "2026-11-19T01:30:00Z", False, {"FL-HRS"}),
    ("+12125551234", {"zip_code": "32501"}, "2026-11-19T00:59:00Z", True, set()),
    # A Florida area code is presumed resident (FL hours) even when the lead says Georgia.
    ("+13055551234", {"state": "GA"}, "2026-11-19T01:30:00Z", False, {"FL-HRS"}),
    # Connecticut presumption: 203 number, New York lead, 08:30 ET is before CT's 09:00.
    ("+12035551234", {"state": "NY"}, "2026-11-18T13:30:00Z", False, {"CT-HRS"}),
    ("+12035551234", {"state": "NY"}, "2026-11-18T14:00:00Z", True, set()),
    # Unknown state / ZIP: fail closed.
    ("+12125551234", {"state": "ZZ"}, "2026-11-18T16:00:00Z", False, {"UNKNOWN_STATE"}),
    ("+12125551234", {"zip_code": "00000"}, "2026-11-18T16:00:00Z", False, {"UNKNOWN_STATE"}),
    ("+12125551234", {"zip_code": "abc"}, "2026-11-18T16:00:00Z", False, {"UNKNOWN_STATE"}),
    # QA: "1002" (01002, Massachusetts, its leading zero lost) was read as New York's 100
    ("+12125551234", {"zip_code": "1002"}, "2026-11-18T16:00:00Z", False, {"UNKNOWN_STATE"}),
    ("+12125551234", {"zip_code": "01002-1234"}, "2026-11-19T01:30:00Z", False, {"MA-HRS"}),
    # Alaska 907 spans Anchorage and Adak (one hour apart).
    ("+19075551234", {}, "2026-11-18T17:00:00Z", False, {"US-HRS"}),   # 08:00 AKST, 07:00 HST-Adak
    ("+19075551234", {}, "2026-11-18T18:00:00Z", True, set()),
    ("+18087551234", {}, "2026-11-18T18:00:00Z", True, set()),         # Hawaii 08:00 HST
    ("+18087551234", {}, "2026-11-18T17:59:00Z", False, {"US-HRS"}),
])
def test_candidate_zones(number, kwargs, at, allowed, expect):
    decision = make_gate().decide(call(number, datetime.fromisoformat(at), **kwargs), dry_run=True)
    assert decision.allowed is allowed, decision.to_dict()
    assert expect <= set(decision.reasons)


def test_toll_free_every_zone_is_an_empty_window():
    decision = make_gate().decide(call("+18005551234", datetime(2026, 11, 18, 18, tzinfo=UTC)), dry_run=True)
    assert not decision.allowed
    assert len(decision.zones) >= 40
    assert "UNKNOWN_STATE" in decision.reasons


@pytest.mark.parametrize("number,code", [
    ("+19995551234", "INVALID_NUMBER"),
    ("+12121234567", "INVALID_NUMBER"),        # exchange 123 cannot exist
    ("+999123", "INVALID_NUMBER"),
    ("+8613800138000", "NO_RULE_PACK"),         # valid Chinese mobile: no pack
])
def test_invalid_numbers_fail_closed(number, code):
    decision = make_gate().decide(call(number, datetime(2026, 11, 18, 18, tzinfo=UTC)), dry_run=True)
    assert not decision.allowed and decision.reasons == [code]


# ---------------------------------------------------------------- UK and Canada packs

@pytest.mark.parametrize("number,at,kwargs,allowed,expect", [
    ("+442071234567", "2026-11-18T10:00:00Z", {}, True, set()),                   # fresh TPS and CTPS, not on them
    ("+442071234567", "2026-11-18T10:00:00Z", {"purpose": "informational"}, True, set()),
    ("+442071234567", "2026-11-18T07:59:00Z", {"purpose": "informational"}, False, {"UK-HRS"}),
    ("+442071234567", "2026-07-15T07:00:00Z", {"purpose": "informational"}, True, set()),  # 08:00 BST
    ("+442071234567", "2026-07-15T20:00:00Z", {"purpose": "informational"}, False, {"UK-HRS"}),  # 21:00 BST
    ("+14165551234", "2026-11-21T22:59:00Z", {}, True, set()),                   # Sat 17:59 ET
    ("+14165551234", "2026-11-21T23:00:00Z", {}, False, {"CA-HRS"}),             # Sat 18:00 ET
    ("+14165551234", "2026-11-21T14:59:00Z", {}, False, {"CA-HRS"}),             # Sat 09:59 ET
    # QA6 F4: weekdays 09:00-21:30 (CA-HRS) within the 08:00-21:00 floor for every call (CA-FLOOR)
    ("+14165551234", "2026-11-19T01:59:00Z", {}, True, set()),                   # Wed 20:59 ET
    ("+14165551234", "2026-11-19T02:00:00Z", {}, False, {"CA-FLOOR"}),           # Wed 21:00 ET
    ("+14165551234", "2026-11-19T02:29:00Z", {}, False, {"CA-FLOOR"}),           # Wed 21:29 ET
    ("+14165551234", "2026-11-19T02:30:00Z", {}, False, {"CA-HRS", "CA-FLOOR"}),
    ("+14165551234", "2026-11-18T13:30:00Z", {}, False, {"CA-HRS"}),             # 08:30 ET
    ("+14165551234", "2026-11-18T13:30:00Z", {"purpose": "informational"}, True, set()),
    ("+14165551234", "2026-11-18T12:59:00Z", {"purpose": "informational"}, False, {"CA-FLOOR"}),
])
def test_uk_and_canada(number, at, kwargs, allowed, expect):
    decision = make_gate().decide(call(number, datetime.fromisoformat(at), **kwargs), dry_run=True)
    assert decision.allowed is allowed, decision.to_dict()
    assert expect <= set(decision.reasons)
    assert decision.pack_versions


# ---------------------------------------------------------------- lists

NOON_NY = datetime(2026, 11, 18, 17, tzinfo=UTC)


def test_federal_registry_hit_blocks_telemarketing_only():
    gate = make_gate()
    assert gate.decide(call(ON_FEDERAL_LIST, NOON_NY), dry_run=True).reasons == ["US-DNC-1"]
    assert gate.decide(call(ON_FEDERAL_LIST, NOON_NY, purpose="informational"), dry_run=True).allowed
    assert gate.decide(call(ON_FEDERAL_LIST, NOON_NY, purpose="debt"), dry_run=True).allowed
    assert gate.decide(call("+12125550101", NOON_NY), dry_run=True).allowed


@pytest.mark.parametrize("kind,age_days,allowed", [
    (ConsentKind.EBR_PURCHASE, 30 * 17, True),
    (ConsentKind.EBR_PURCHASE, 30 * 19, False),
    (ConsentKind.EBR_INQUIRY, 60, True),
    (ConsentKind.EBR_INQUIRY, 100, False),
    (ConsentKind.WRITTEN, 1000, True),
    (ConsentKind.EXPRESS, 10, False),      # express (not written) permission does not exempt from DNC
])
def test_ebr_and_written_permission_exempt_from_registry(kind, age_days, allowed):
    records = MemoryRecords()
    records.add_consent(ON_FEDERAL_LIST, kind, occurred_at=NOON_NY - timedelta(days=age_days), source="t", recorded_by="t")
    decision = make_gate(records=records).decide(call(ON_FEDERAL_LIST, NOON_NY), dry_run=True)
    assert decision.allowed is allowed, decision.to_dict()


def test_do_not_call_request_ends_the_ebr_exemption():
    records = MemoryRecords()
    records.add_consent(ON_FEDERAL_LIST, ConsentKind.EBR_PURCHASE, occurred_at=NOON_NY - timedelta(days=5),
                        source="t", recorded_by="t")
    records.add_dnc(ON_FEDERAL_LIST, ListKind.INTERNAL, added_by="agent:7", source="agent")
    assert set(make_gate(records=records).decide(call(ON_FEDERAL_LIST, NOON_NY), dry_run=True).reasons) \
        == {"US-DNC-1", "US-IDNC"}


@pytest.mark.parametrize("list_kind,scope,campaign,purpose,code", [
    (ListKind.INTERNAL, "", "c1", "telemarketing", "US-IDNC"),
    (ListKind.INTERNAL, "", "c1", "informational", "US-IDNC"),
    (ListKind.INTERNAL, "", "c1", "debt", "US-IDNC"),
    (ListKind.CAMPAIGN, "c1", "c1", "telemarketing", "US-IDNC"),
    (ListKind.CAMPAIGN, "c1", "c2", "telemarketing", None),
    (ListKind.CUSTOM, "litigators", "c1", "telemarketing", "CO-CUSTOM-DNC"),
    (ListKind.CUSTOM, "litigators", "c2", "debt", "CO-CUSTOM-DNC"),
])
def test_company_campaign_custom_lists(list_kind, scope, campaign, purpose, code):
    records = MemoryRecords()
    records.add_dnc("+12125559876", list_kind, scope=scope, added_by="t", source="t", reason="asked")
    decision = make_gate(records=records).decide(
        call("+12125559876", NOON_NY, campaign=campaign, purpose=purpose), dry_run=True)
    assert decision.reasons == ([code] if code else [])


def test_list_entries_for_uk_and_canada():
    records = MemoryRecords()
    records.add_dnc("+14165551234", ListKind.INTERNAL, added_by="t", source="t")
    records.add_dnc("+442071234567", ListKind.INTERNAL, added_by="t", source="t")
    gate = make_gate(records=records)
    assert "CA-IDNC" in gate.decide(call("+14165551234", NOON_NY), dry_run=True).reasons
    assert "UK-IDNC" in gate.decide(call("+442071234567", NOON_NY, purpose="informational"), dry_run=True).reasons


@pytest.mark.parametrize("age_days,reasons", [(0, []), (31, []), (32, ["REGISTRY_STALE"]), (400, ["REGISTRY_STALE"])])
def test_stale_federal_copy_blocks(age_days, reasons):
    registry = RegistryIndex()
    registry.put(ListKind.FEDERAL, "US", 212, NpaSnapshot(np.zeros(BYTES_PER_NPA, np.uint8),
                                                          NOON_NY.date() - timedelta(days=age_days), 0))
    decision = make_gate(registry).decide(call("+12125551234", NOON_NY), dry_run=True)
    assert decision.reasons == reasons
    if reasons:
        assert decision.blocks[0].rule_id == "US-DNC-2" and decision.next_allowed_at is None


def test_missing_area_code_blocks_telemarketing_but_not_informational():
    registry = RegistryIndex()
    registry.put(ListKind.FEDERAL, "US", 212, NpaSnapshot(np.zeros(BYTES_PER_NPA, np.uint8), NOON_NY.date(), 0))
    gate = make_gate(registry)
    assert gate.decide(call("+13125551234", NOON_NY), dry_run=True).reasons == ["REGISTRY_MISSING"]
    assert gate.decide(call("+13125551234", NOON_NY, purpose="informational"), dry_run=True).allowed
    assert gate.decide(call("+12125551234", NOON_NY), dry_run=True).allowed


def _bits_with(*line7s: int) -> np.ndarray:
    bits = np.zeros(BYTES_PER_NPA, np.uint8)
    for line7 in line7s:
        bits[line7 >> 3] |= 1 << (line7 & 7)
    return bits


# State lists fail closed like the federal one: (registry setup, call kwargs, expected reasons, blocking rule ids).
# "none": the state's list was never imported; "stale"/"fresh": imported that long ago; "hit": 5551234 is on it.
@pytest.mark.parametrize("number,state_list,kwargs,reasons,rule_ids", [
    ("+13055551234", "none", {}, ["REGISTRY_MISSING"], {"FL-DNC"}),                 # FL area code, FL presumed
    ("+13055551234", "none", {"purpose": "informational"}, [], set()),              # state lists: telemarketing only
    ("+13055551234", "none", {"purpose": "debt"}, [], set()),
    ("+13055551234", "fresh", {}, [], set()),
    ("+13055551234", "hit", {}, ["FL-DNC"], {"FL-DNC"}),
    ("+13055551235", "hit", {}, [], set()),
    ("+13055551234", "stale", {}, ["REGISTRY_STALE"], {"FL-DNC"}),
    ("+13055551234", "age31", {}, [], set()),
    ("+12125551234", "none", {"state": "TX"}, ["REGISTRY_MISSING"], {"TX-DNC"}),     # the lead's state counts
    ("+12125551234", "none", {"zip_code": "75201"}, ["REGISTRY_MISSING"], {"TX-DNC"}),
    ("+12125551234", "none", {}, [], set()),                                         # NY keeps no state list
    # QA6 F1: the number's state stays a candidate whatever the lead's state (more lead data never
    # makes the gate more permissive; before, a New York lead dropped Texas's list)
    ("+12145551234", "none", {"state": "NY"}, ["REGISTRY_MISSING"], {"TX-DNC"}),
    ("+14055551234", "none", {"state": "NY"}, ["REGISTRY_MISSING"], {"OK-DNC"}),     # OK presumes its area code
])
def test_state_lists_fail_closed(number, state_list, kwargs, reasons, rule_ids):
    missing = {"FL", "TX", "OK"} if state_list == "none" else set()
    registry = fresh_lists(RegistryIndex(), skip=tuple((ListKind.STATE, s) for s in missing | {"FL"}))
    as_of = {"stale": NOON_NY.date() - timedelta(days=32), "age31": NOON_NY.date() - timedelta(days=31)}.get(
        state_list, NOON_NY.date())
    if state_list != "none":
        registry.mark_complete(ListKind.STATE, "FL", as_of)
        if state_list == "hit":
            registry.put(ListKind.STATE, "FL", 305, NpaSnapshot(_bits_with(5551234), as_of, 1))
    # Mid-afternoon in every zone: only lists decide.
    decision = make_gate(registry).decide(call(number, NOON_NY + timedelta(hours=2), **kwargs), dry_run=True)
    assert decision.reasons == reasons, decision.to_dict()
    assert {b.rule_id for b in decision.blocks} == rule_ids
    assert decision.next_allowed_at is None


def test_state_list_is_whole_list_any_area_code():
    """A state's list covers every area code: a Florida lead with an out-of-state number is checked too."""
    registry = fresh_lists(RegistryIndex())
    registry.put(ListKind.STATE, "FL", 212, NpaSnapshot(_bits_with(5551234), FAR_FUTURE, 1))
    gate = make_gate(registry)
    assert gate.decide(call("+12125551234", NOON_NY, state="FL"), dry_run=True).reasons == ["FL-DNC"]
    assert gate.decide(call("+12125551234", NOON_NY), dry_run=True).allowed
    assert gate.decide(call("+17865551234", NOON_NY), dry_run=True).allowed


@pytest.mark.parametrize("number,setup,kwargs,reasons", [
    ("+442071234567", "no_tps", {}, ["REGISTRY_MISSING"]),
    ("+442071234567", "no_ctps", {}, ["REGISTRY_MISSING"]),         # CTPS is consulted too (PECR reg 26)
    ("+442071234567", "no_tps", {"purpose": "informational"}, []),
    ("+442071234567", "tps_hit", {}, ["UK-TPS"]),
    ("+442071234568", "tps_hit", {}, []),
    ("+442071234567", "ctps_hit", {}, ["UK-TPS"]),
    ("+447400123456", "tps_hit", {}, ["UK-TPS"]),                    # mobile, key 740
    ("+441697773456", "tps_hit", {}, []),
    ("+44169773456", "tps_hit", {}, ["UK-TPS"]),                    # 9-digit NSN (016977 3456), key 16
    ("+442071234567", "tps_hit", {"consent": ConsentKind.WRITTEN}, []),
    ("+442071234567", "age28", {}, []),
    ("+442071234567", "age29", {}, ["REGISTRY_STALE"]),
])
def test_uk_tps_and_ctps(number, setup, kwargs, reasons):
    kinds = {"no_tps": ((ListKind.TPS, "GB"),), "no_ctps": ((ListKind.CTPS, "GB"),)}.get(setup, ())
    registry = fresh_lists(RegistryIndex(), skip=kinds)
    as_of = NOON_NY.date() - timedelta(days=int(setup[3:])) if setup.startswith("age") else FAR_FUTURE
    if setup.startswith("age"):
        registry.mark_complete(ListKind.TPS, "GB", as_of)
    if setup in ("tps_hit", "ctps_hit"):
        kind = ListKind.TPS if setup == "tps_hit" else ListKind.CTPS
        registry.put(kind, "GB", 207, NpaSnapshot(_bits_with(1234567), as_of, 1))
        registry.put(kind, "GB", 740, NpaSnapshot(_bits_with(123456), as_of, 1))
        registry.put(kind, "GB", 16, NpaSnapshot(_bits_with(9773456), as_of, 1))
    records = MemoryRecords()
    if "consent" in kwargs:
        records.add_consent(number, kwargs.pop("consent"), occurred_at=NOON_NY - timedelta(days=3), source="t",
                            recorded_by="t")
    decision = make_gate(registry, records).decide(call(number, NOON_NY, **kwargs), dry_run=True)
    assert decision.reasons == reasons, decision.to_dict()


# ---------------------------------------------------------------- consent

@pytest.mark.parametrize("mode,voice,purpose,line_type,consent,expect", [
    ("predictive", "live", "telemarketing", LineType.UNKNOWN, None, ["US-CONS"]),
    ("predictive", "live", "telemarketing", LineType.UNKNOWN, ConsentKind.EXPRESS, ["US-CONS"]),
    ("predictive", "live", "telemarketing", LineType.UNKNOWN, ConsentKind.WRITTEN, []),
    ("progressive", "live", "telemarketing", LineType.WIRELESS, ConsentKind.EXPRESS, ["US-CONS"]),
    ("agentless", "prerecorded", "telemarketing", LineType.UNKNOWN, ConsentKind.WRITTEN, []),
    ("predictive", "live", "informational", LineType.UNKNOWN, None, ["US-CONS"]),
    ("predictive", "live", "informational", LineType.UNKNOWN, ConsentKind.EXPRESS, []),
    ("predictive", "live", "debt", LineType.UNKNOWN, ConsentKind.EXPRESS, []),
    ("predictive", "live", "debt", LineType.UNKNOWN, None, ["US-CONS"]),
    ("preview", "live", "telemarketing", LineType.UNKNOWN, None, []),
    ("preview", "live", "telemarketing", LineType.WIRELESS, None, []),
    ("predictive", "live", "telemarketing", LineType.LANDLINE, None, []),
    ("preview", "prerecorded", "telemarketing", LineType.LANDLINE, None, ["US-CONS"]),
    ("preview", "artificial", "telemarketing", LineType.LANDLINE, ConsentKind.WRITTEN, []),
    ("preview", "prerecorded", "informational", LineType.LANDLINE, None, []),
    ("preview", "prerecorded", "informational", LineType.UNKNOWN, None, ["US-CONS"]),
])
def test_consent_rules(mode, voice, purpose, line_type, consent, expect):
    records = MemoryRecords()
    number = "+12125557777"
    if consent:
        records.add_consent(number, consent, occurred_at=NOON_NY - timedelta(days=3), source="web", recorded_by="t")
    decision = make_gate(records=records).decide(
        call(number, NOON_NY, mode=mode, voice=voice, purpose=purpose, line_type=line_type), dry_run=True)
    assert decision.reasons == expect


# US-RND (47 CFR 64.1200(m)): a call that relies on consent blocks when the number was permanently
# disconnected on or after the consent date ("yes") or when the copy has no data for that date.
CONSENT_AT = NOON_NY - timedelta(days=30)
RND_NUMBER = "+12125557790"


class _DownRnd:
    def status(self, phone, since):
        raise StorageError("rnd down")


@pytest.mark.parametrize("consent,mode,purpose,line_type,disconnected_days,rnd_setup,expect", [
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, None, "fresh", []),
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, -10, "fresh", ["US-RND"]),   # after consent
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, 0, "fresh", ["US-RND"]),     # same day
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, 10, "fresh", []),           # before consent
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, None, "none", ["RND_NO_DATA"]),
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, None, "late_start", ["RND_NO_DATA"]),
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, None, "age45", []),
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, None, "age46", ["REGISTRY_STALE"]),
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.UNKNOWN, None, "down", ["RND_STORE_UNAVAILABLE"]),
    (ConsentKind.EXPRESS, "predictive", "informational", LineType.UNKNOWN, -1, "fresh", ["US-RND"]),
    (ConsentKind.EXPRESS, "progressive", "debt", LineType.WIRELESS, -1, "none", ["RND_NO_DATA"]),
    (ConsentKind.WRITTEN, "agentless", "informational", LineType.UNKNOWN, -1, "fresh", ["US-RND"]),
    # Calls that do not rely on consent are not asked about (preview, landline live, no consent).
    (ConsentKind.WRITTEN, "preview", "telemarketing", LineType.UNKNOWN, -10, "none", []),
    (ConsentKind.WRITTEN, "predictive", "telemarketing", LineType.LANDLINE, -10, "none", []),
    (None, "predictive", "telemarketing", LineType.UNKNOWN, -10, "none", ["US-CONS"]),
])
def test_reassigned_numbers(consent, mode, purpose, line_type, disconnected_days, rnd_setup, expect):
    records = MemoryRecords()
    if consent:
        records.add_consent(RND_NUMBER, consent, occurred_at=CONSENT_AT, source="web", recorded_by="t")
    through = NOON_NY.date() - timedelta(days=int(rnd_setup[3:])) if rnd_setup.startswith("age") else NOON_NY.date()
    rnd = MemoryRnd(CONSENT_AT.date() + timedelta(days=1) if rnd_setup == "late_start" else date(2021, 1, 27), through)
    if disconnected_days is not None:
        rnd.add(RND_NUMBER, CONSENT_AT.date() - timedelta(days=disconnected_days))
    rnd.add("+12125557791", NOON_NY.date())          # another number's disconnection changes nothing
    gate = make_gate(records=records, rnd=rnd)
    if rnd_setup in ("none", "down"):
        gate.rnd = None if rnd_setup == "none" else _DownRnd()
    decision = gate.decide(call(RND_NUMBER, NOON_NY, mode=mode, purpose=purpose, line_type=line_type), dry_run=True)
    assert decision.reasons == expect, decision.to_dict()
    if expect and expect != ["US-CONS"]:
        assert {b.rule_id for b in decision.blocks} == {"US-RND"}


def test_reassigned_check_uses_the_latest_consent():
    """A consent given again after the disconnection belongs to the new holder: the call may go."""
    records = MemoryRecords()
    records.add_consent(RND_NUMBER, ConsentKind.WRITTEN, occurred_at=CONSENT_AT, source="web", recorded_by="t")
    rnd = MemoryRnd(date(2021, 1, 27), NOON_NY.date())
    rnd.add(RND_NUMBER, CONSENT_AT.date() + timedelta(days=5))
    gate = make_gate(records=records, rnd=rnd)
    request = call(RND_NUMBER, NOON_NY, mode="predictive")
    assert gate.decide(request, dry_run=True).reasons == ["US-RND"]
    records.add_consent(RND_NUMBER, ConsentKind.WRITTEN, occurred_at=NOON_NY - timedelta(days=1), source="web",
                        recorded_by="t")
    assert gate.decide(request, dry_run=True).allowed


def test_revocation_is_honoured_at_once_and_new_consent_restores():
    records = MemoryRecords()
    number = "+12125557778"
    records.add_consent(number, ConsentKind.WRITTEN, occurred_at=NOON_NY - timedelta(days=30), source="web", recorded_by="t")
    records.add_consent(number, ConsentKind.REVOCATION, occurred_at=NOON_NY - timedelta(seconds=1), source="sms", recorded_by="t")
    gate = make_gate(records=records)
    assert gate.decide(call(number, NOON_NY, mode="predictive"), dry_run=True).reasons == ["US-REV"]
    # Before the revocation the consent held.
    assert gate.decide(call(number, NOON_NY - timedelta(minutes=1), mode="predictive"), dry_run=True).allowed
    records.add_consent(number, ConsentKind.WRITTEN, occurred_at=NOON_NY + timedelta(hours=1), source="web", recorded_by="t")
    assert gate.decide(call(number, NOON_NY + timedelta(hours=2), mode="predictive"), dry_run=True).allowed


def test_utah_sunday_allowed_with_consent():
    records = MemoryRecords()
    number = "+18015550001"
    sunday_noon = local("America/Denver", f"{SUNDAY}T12:00:00")
    assert make_gate(records=records).decide(call(number, sunday_noon), dry_run=True).reasons == ["UT-HRS"]
    records.add_consent(number, ConsentKind.EXPRESS, occurred_at=sunday_noon - timedelta(days=2), source="web", recorded_by="t")
    assert make_gate(records=records).decide(call(number, sunday_noon), dry_run=True).allowed


def test_missing_caller_id_blocks_telemarketing():
    decision = make_gate().decide(call("+12125551234", NOON_NY, caller_id=None), dry_run=True)
    assert decision.reasons == ["US-CID"]
    assert make_gate().decide(call("+12125551234", NOON_NY, caller_id=None, purpose="debt"), dry_run=True).allowed


# ---------------------------------------------------------------- frequency caps (memory store; Redis in test_compliance_stores)

def test_florida_three_calls_per_24h_per_subject():
    gate = make_gate()
    t0 = datetime(2026, 11, 18, 15, tzinfo=UTC)
    for k in range(3):
        assert gate.decide(call("+13055551234", t0 + timedelta(hours=k))).allowed
    fourth = gate.decide(call("+13055551234", t0 + timedelta(hours=3)))
    assert fourth.reasons == ["FL-3IN24"] and fourth.counters["FL-3IN24"] == 3
    # requeued for when the first call leaves the window (a cap does not close the lead)
    assert fourth.next_allowed_at == t0 + timedelta(hours=24)
    assert gate.decide(call("+13055551234", t0 + timedelta(hours=3), subject="other")).allowed
    assert gate.decide(call("+13055551234", t0 + timedelta(hours=24, seconds=1))).allowed
    # Dry runs never count: the window (t0+1h, t0+25h] holds the calls at t0+2h and t0+24h.
    for _ in range(3):
        assert gate.decide(call("+13055551234", t0 + timedelta(hours=25, seconds=1)), dry_run=True).counters["FL-3IN24"] == 2


@pytest.mark.parametrize("state_number", ["+14055551234", "+14105551234"])
def test_oklahoma_and_maryland_caps(state_number):
    gate = make_gate()
    t0 = datetime(2026, 11, 18, 16, tzinfo=UTC)
    assert [gate.decide(call(state_number, t0 + timedelta(minutes=k))).allowed for k in range(4)] == [True] * 3 + [False]


def test_reg_f_seven_in_seven_and_conversation_lock():
    gate = make_gate()
    t0 = datetime(2026, 11, 16, 15, tzinfo=UTC)
    kw = dict(purpose="debt", person="p1", debt="d1")
    ids = []
    for k in range(7):
        d = gate.decide(call("+12125551234", t0 + timedelta(hours=k), **kw))
        assert d.allowed
        ids.append(d.decision_id)
    blocked = gate.decide(call("+12125551234", t0 + timedelta(hours=8), **kw))
    assert blocked.reasons == ["US-7IN7"] and blocked.next_allowed_at == t0 + timedelta(days=7)
    # A call that did not connect does not count (1006.14(b)(3)).
    gate.record_outcome(call("+12125551234", t0, **kw), ids[0], Outcome.NO_CONNECT, t0 + timedelta(hours=8))
    assert gate.decide(call("+12125551234", t0 + timedelta(hours=9), **kw)).allowed
    # Another debt of the same person has its own count.
    assert gate.decide(call("+12125551234", t0 + timedelta(hours=9), purpose="debt", person="p1", debt="d2")).allowed
    # A conversation starts a 7-day quiet period for that debt.
    talk = datetime(2026, 11, 30, 15, tzinfo=UTC)
    gate.record_outcome(call("+12125551234", talk, **kw), "x", Outcome.CONVERSATION, talk)
    quiet = gate.decide(call("+12125551234", talk + timedelta(days=6), **kw))
    assert quiet.reasons == ["US-7IN7"] and quiet.next_allowed_at == talk + timedelta(days=7)
    assert gate.decide(call("+12125551234", talk + timedelta(days=7, seconds=1), **kw)).allowed


def test_uk_abandoned_72h_and_amd_same_day():
    gate = make_gate()
    t0 = datetime(2026, 11, 18, 10, tzinfo=UTC)
    uk = dict(purpose="informational", mode="predictive")
    gate.record_outcome(call("+442071234567", t0, **uk), "a", Outcome.ABANDONED, t0)
    assert gate.decide(call("+442071234567", t0 + timedelta(hours=71), **uk), dry_run=True).reasons == ["UK-72H"]
    assert gate.decide(call("+442071234567", t0 + timedelta(hours=72, minutes=1), **uk), dry_run=True).allowed
    # A preview (agent guaranteed) call is not held back.
    assert gate.decide(call("+442071234567", t0 + timedelta(hours=1), purpose="informational"), dry_run=True).allowed
    gate.record_outcome(call("+442071234568", t0, **uk), "b", Outcome.MACHINE, t0)
    assert gate.decide(call("+442071234568", t0 + timedelta(hours=9), **uk), dry_run=True).reasons == ["UK-AMD"]
    assert gate.decide(call("+442071234568", datetime(2026, 11, 19, 9, tzinfo=UTC), **uk), dry_run=True).allowed


def test_washington_no_means_twelve_months():
    gate = make_gate()
    t0 = datetime(2026, 11, 18, 20, tzinfo=UTC)
    gate.record_outcome(call("+12065551234", t0), "w", Outcome.DECLINED, t0)
    assert gate.decide(call("+12065551234", t0 + timedelta(days=200)), dry_run=True).reasons == ["WA-NO12M"]
    assert gate.decide(call("+12065551234", t0 + timedelta(days=366)), dry_run=True).allowed


def test_exempt_prerecorded_three_in_thirty_days():
    gate = make_gate()
    t0 = datetime(2026, 11, 18, 16, tzinfo=UTC)
    kw = dict(purpose="informational", voice="prerecorded", line_type=LineType.LANDLINE)
    results = [gate.decide(call("+12125554444", t0 + timedelta(days=k), **kw)).allowed for k in range(4)]
    assert results == [True, True, True, False]


def test_decision_reports_versions_zones_and_local_times():
    d = make_gate().decide(call("+12085551234", NOON_NY), dry_run=True)
    # 208-555 has no exchange-level time zone entry: every zone of area code 208 (QA6 F2)
    assert set(d.zones) == {"America/Boise", "America/Los_Angeles", "America/Denver"}
    assert d.local_times["America/Boise"].startswith("2026-11-18T10:00")
    assert d.pack_versions.keys() >= {"us-federal", "us-states", "company"}
    assert "US-HRS" in d.rules_evaluated


# ---------------------------------------------------------------- per-exchange cache (regression)

# In 246 (Barbados), 658 and 876 (Jamaica) validity depends on the 7th digit: 246-521-0xxx is
# valid and 246-521-2xxx is not, 876-606-0xxx is valid and 876-606-1xxx is not. The per-exchange
# cache once answered the second number of an exchange with the first one's facts.
SEVENTH_DIGIT_PAIRS = [("+12465210555", "+12465212555"), ("+18766060555", "+18766061555"),
                       ("+12465220555", "+12465221555")]


@pytest.mark.parametrize("first,second", SEVENTH_DIGIT_PAIRS + [(b, a) for a, b in SEVENTH_DIGIT_PAIRS])
def test_exchange_cache_respects_the_seventh_digit(first, second):
    import phonenumbers
    from dialer.compliance.geo import Geography
    from dialer.compliance.scrub import Scrubber
    expected = {n: phonenumbers.is_valid_number(phonenumbers.parse(n)) for n in (first, second)}
    assert expected[first] != expected[second]          # the pair really differs
    geo = Geography(RULEBOOK)
    assert [geo.facts(n).valid for n in (first, second)] == [expected[first], expected[second]]
    gate = make_gate()
    for number in (first, second):
        reasons = gate.decide(call(number, NOON_NY, purpose="informational"), dry_run=True).reasons
        assert reasons == (["NO_RULE_PACK"] if expected[number] else ["INVALID_NUMBER"])
    scrubber = Scrubber(Geography(RULEBOOK), fresh_lists(RegistryIndex()), set(), NOON_NY.date())
    # One batch holding both numbers, and one batch each after the other: same answers.
    both = scrubber.classify([first, second])
    one_by_one = [scrubber.classify([n])[0] for n in (first, second)]
    wanted = [None if expected[n] else "INVALID_NUMBER" for n in (first, second)]
    assert both == wanted and one_by_one == wanted


def test_a_decision_never_placed_gives_back_every_counter():
    """QA 2: a call allowed, then requeued for want of a line, kept its place in US-EXFREQ (3
    prerecorded calls in 30 days), which counts calls made, answered or not. NOT_PLACED uncounts
    every counter; NO_CONNECT only where the rule says so."""
    gate = make_gate()
    t0 = datetime(2026, 11, 18, 16, tzinfo=UTC)
    kw = dict(purpose="informational", voice="prerecorded", line_type=LineType.LANDLINE)
    ids = [gate.decide(call("+12125551234", t0 + timedelta(minutes=k), **kw)) for k in range(3)]
    assert all(d.allowed for d in ids), [d.reasons for d in ids]
    assert gate.decide(call("+12125551234", t0 + timedelta(minutes=5), **kw)).reasons == ["US-EXFREQ"]
    gate.record_outcome(call("+12125551234", t0, **kw), ids[0].decision_id, Outcome.NO_CONNECT, t0)
    assert gate.decide(call("+12125551234", t0 + timedelta(minutes=6), **kw)).reasons == ["US-EXFREQ"]
    affected = gate.record_outcome(call("+12125551234", t0, **kw), ids[1].decision_id, Outcome.NOT_PLACED, t0)
    assert "US-EXFREQ" in affected
    assert gate.decide(call("+12125551234", t0 + timedelta(minutes=7), **kw)).allowed


# ---------------------------------------------------------------- digits of other scripts

ARABIC_INDIC = "+1212٥٥٥0130"       # U+0665: a "5" that `\d` matches but no list entry does
FULL_WIDTH = "+1212５５５0131"


@pytest.mark.parametrize("text", [ARABIC_INDIC, FULL_WIDTH])
def test_other_digit_scripts_become_ascii_or_are_invalid(text):
    """QA: such numbers were stored as written and passed the internal list of the ASCII number.
    Entered by an operator (dnc add, compliance check) or imported, they become ASCII E.164; a
    request that reaches the gate with them anyway is not a number it can look up: blocked."""
    from dialer.compliance.geo import normalize
    from dialer.leads import PhoneNormalizer
    ascii_number = text.translate(str.maketrans("٥５", "55"))
    assert normalize(text) == ascii_number
    assert PhoneNormalizer("US").normalize(text[2:])[0] == ascii_number
    decision = make_gate().decide(call(text, NOON_NY, purpose="informational"), dry_run=True)
    assert decision.reasons == ["INVALID_NUMBER"]


def test_a_malformed_zip_is_not_answered_from_a_valid_one_with_the_same_prefix():
    """The gate caches a ZIP code's facts by its first three digits: "1002" must not take the
    answer cached for "10021" (New York)."""
    gate = make_gate()
    at = datetime(2026, 11, 18, 16, tzinfo=UTC)
    assert gate.decide(call("+12125551234", at, purpose="informational", zip_code="10021"), dry_run=True).allowed
    assert "UNKNOWN_STATE" in gate.decide(call("+12125551234", at, purpose="informational", zip_code="1002"),
                                          dry_run=True).reasons


def test_a_uk_postcode_or_a_foreign_region_does_not_block_a_uk_number():
    """QA: a UK lead with its postcode (a US ZIP lookup found none) was blocked UNKNOWN_STATE,
    and the engine closed it: UK leads with postcodes could never be dialed."""
    at = datetime(2026, 11, 18, 12, tzinfo=UTC)      # noon in London
    for lead in ({"zip_code": "SW1A 1AA"}, {"state": "Greater London"}, {"zip_code": "SW1A 1AA", "state": "ENG"}):
        decision = make_gate().decide(call("+442071234567", at, purpose="informational", **lead), dry_run=True)
        assert "UNKNOWN_STATE" not in decision.reasons, (lead, decision.reasons)
    # a US number still needs a state it can place
    assert "UNKNOWN_STATE" in make_gate().decide(call("+12125551234", at, purpose="informational",
                                                       state="Greater London"), dry_run=True).reasons
