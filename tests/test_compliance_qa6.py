"""QA pass 6 (compliance correctness, /work/notes/qa6/compliance/findings.md): one test (or more)
per finding F1-F13, each failing on the code before its fix. Gate logic runs on the project's
memory stores as in test_compliance_cases; counters, attempts, records and `dnc check` on the
real PostgreSQL and Redis (conftest)."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import phonenumbers
import pytest
from click.testing import CliRunner
from phonenumbers.tzdata import TIMEZONE_DATA

from cli import main
from dialer import storage
from dialer.compliance import attempts
from dialer.compliance.gate import _months_before
from dialer.compliance.geo import Geography, nanp_area_codes
from dialer.compliance.hours import HolidayCalendars
from dialer.compliance.model import (
    CallRequest, Campaign, ConsentKind, DialMode, Lead, ListKind, Outcome, Purpose,
)
from dialer.compliance.records import MemoryRecords, PgRecords, is_sms_revocation, opt_out_sms
from dialer.compliance.registry import BYTES_PER_NPA, NpaSnapshot, RegistryIndex, RegistryStore
from dialer.compliance.rules import load_packs
from dialer.compliance.service import dry_run_gate, live_gate
from tests.test_compliance_cases import call, fresh_lists, make_gate

UTC = timezone.utc
RULEBOOK = load_packs()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---------------------------------------------------------------- F1: every source adds candidates

@pytest.mark.parametrize("number,lead,moment,purpose,reasons", [
    # Knoxville ZIP (Eastern) with a Nashville number (Central) and --state TN: 21:30 EST
    ("+16152221234", {"state": "TN", "zip_code": "37902"}, "2026-12-03T02:30:00Z", "informational", {"US-HRS"}),
    # Pensacola ZIP (Central) with a Miami number and --state FL: 07:00 CST
    ("+13052221234", {"state": "FL", "zip_code": "32501"}, "2026-12-03T13:00:00Z", "telemarketing",
     {"US-HRS", "FL-HRS"}),
    # Miami ZIP with an Atlanta number and --state GA: 20:30 EST is after Florida's 20:00
    ("+14042221234", {"state": "GA", "zip_code": "33101"}, "2026-12-04T01:30:00Z", "telemarketing", {"FL-HRS"}),
    # A Seattle number stays a Washington candidate when the lead says Oregon: 20:30 PST
    ("+12062221234", {"state": "OR"}, "2026-12-04T04:30:00Z", "telemarketing", {"WA-HRS"}),
])
def test_the_lead_zip_and_the_numbers_state_count_even_with_a_lead_state(number, lead, moment, purpose, reasons):
    decision = make_gate().decide(call(number, at(moment), purpose=purpose, **lead), dry_run=True)
    assert not decision.allowed and reasons <= set(decision.reasons), decision.to_dict()


@pytest.mark.parametrize("number,state,moment,zone", [
    ("+13055551234", "FL", "2026-11-18T13:30:00Z", "America/Chicago"),    # 08:30 EST, 07:30 CST (Panhandle)
    ("+12145551234", "TX", "2026-11-18T14:30:00Z", "America/Denver"),     # 08:30 CST, 07:30 MST (El Paso)
])
def test_a_lead_state_adds_all_its_zones_even_when_one_is_a_candidate(number, state, moment, zone):
    gate = make_gate()
    assert gate.decide(call(number, at(moment), purpose="informational"), dry_run=True).allowed
    decision = gate.decide(call(number, at(moment), purpose="informational", state=state), dry_run=True)
    assert zone in decision.zones and "US-HRS" in decision.reasons, decision.to_dict()


MONOTONE_NUMBERS = ["+16152221234", "+13052221234", "+14042221234", "+12142221234", "+12062221234",
                    "+12122221234", "+14232221234"]
MONOTONE_STATES = [None, "TN", "FL", "GA", "TX", "OR", "NY"]
MONOTONE_ZIPS = [None, "37902", "32501", "33101", "79901", "97201"]


@pytest.mark.parametrize("number", MONOTONE_NUMBERS)
def test_more_lead_data_never_makes_the_gate_more_permissive(number):
    """allowed with a state and a ZIP => allowed with either alone, and with neither (every hour of
    a weekday and of a Sunday, telemarketing and informational)."""
    gate = make_gate()
    moments = [datetime(2026, 11, 18, 0, 30, tzinfo=UTC) + timedelta(hours=h) for h in range(24)]
    moments += [datetime(2026, 11, 22, 0, 30, tzinfo=UTC) + timedelta(hours=h) for h in range(24)]
    for purpose in ("telemarketing", "informational"):
        for moment in moments:
            def allowed(state, zip_code):
                return gate.decide(call(number, moment, purpose=purpose, state=state, zip_code=zip_code),
                                   dry_run=True).allowed
            for state in MONOTONE_STATES:
                for zip_code in MONOTONE_ZIPS:
                    if allowed(state, zip_code):
                        assert allowed(state, None) and allowed(None, zip_code) and allowed(None, None), \
                            (number, purpose, moment, state, zip_code)


# ---------------------------------------------------------------- F2: split area codes

@pytest.mark.parametrize("number,moment,purpose", [
    ("+14232221234", "2026-12-04T02:30:00Z", "informational"),   # 423 defaults to Central: 21:30 EST
    ("+18509991234", "2026-12-03T13:00:00Z", "informational"),   # 850 defaults to Eastern: 07:00 CST
])
def test_an_exchange_without_its_own_zone_entry_gets_every_zone_of_its_area_code(number, moment, purpose):
    decision = make_gate().decide(call(number, at(moment), purpose=purpose), dry_run=True)
    assert {"America/Chicago", "America/New_York"} <= set(decision.zones)
    assert decision.reasons == ["US-HRS"], decision.to_dict()


def test_an_exchange_with_its_own_zone_entry_keeps_phonenumbers_answer():
    geo = Geography(RULEBOOK)
    listed = sorted(p for p in TIMEZONE_DATA if p.startswith("1423") and len(p) == 7)
    assert listed
    for prefix in listed[:20]:
        number = f"+{prefix}1234"
        parsed = phonenumbers.parse(number, None)
        if phonenumbers.is_valid_number(parsed):
            assert geo.facts(number).zones == TIMEZONE_DATA[prefix], number


def test_the_reference_split_area_codes_are_multi_zone():
    geo = Geography(RULEBOOK)
    # compliance-rules.md names these among its 23 split NPAs; 555-01xx style exchanges are unlisted
    for npa in ("850", "219", "270", "423", "812", "605", "701", "208", "928"):
        zones = set(geo.facts(f"+1{npa}9991234").zones)
        assert len(zones) >= 2, (npa, zones)


# ---------------------------------------------------------------- F3: EBR months end on the right day

@pytest.mark.parametrize("moment,months,expected", [
    ("2026-12-31T16:00:00+00:00", 18, "2025-06-30T16:00:00+00:00"),
    ("2026-12-31T16:00:00+00:00", 3, "2026-09-30T16:00:00+00:00"),
    ("2026-12-31T16:00:00+00:00", 6, "2026-06-30T16:00:00+00:00"),
    ("2027-05-31T10:00:00+00:00", 3, "2027-02-28T10:00:00+00:00"),
    ("2028-05-31T10:00:00+00:00", 3, "2028-02-29T10:00:00+00:00"),
    ("2026-03-15T10:00:00+00:00", 18, "2024-09-15T10:00:00+00:00"),
])
def test_months_before_clamps_to_the_last_day_of_the_month(moment, months, expected):
    assert _months_before(datetime.fromisoformat(moment), months) == datetime.fromisoformat(expected)


def _listed_gate(npa: int, line7: int) -> tuple:
    registry = fresh_lists(RegistryIndex())
    bits = np.zeros(BYTES_PER_NPA, dtype=np.uint8)
    bits[line7 >> 3] |= 1 << (line7 & 7)
    registry.put(ListKind.FEDERAL, "US", npa, NpaSnapshot(bits, date(2100, 1, 1), 1))
    records = MemoryRecords()
    return make_gate(registry, records), records


@pytest.mark.parametrize("kind,given,allowed", [
    (ConsentKind.EBR_PURCHASE, "2025-06-30T16:00:00Z", True),
    (ConsentKind.EBR_PURCHASE, "2025-06-29T16:00:00Z", False),
    (ConsentKind.EBR_PURCHASE, "2025-06-28T16:00:00Z", False),
    (ConsentKind.EBR_PURCHASE, "2025-06-27T16:00:00Z", False),
    (ConsentKind.EBR_INQUIRY, "2026-09-30T16:00:00Z", True),
    (ConsentKind.EBR_INQUIRY, "2026-09-29T16:00:00Z", False),
    (ConsentKind.EBR_INQUIRY, "2026-09-28T16:00:00Z", False),
])
def test_ebr_exemption_ends_18_and_3_months_after(kind, given, allowed):
    gate, records = _listed_gate(212, 2221234)
    records.add_consent("+12122221234", kind, occurred_at=at(given), source="qa6", recorded_by="qa6")
    decision = gate.decide(call("+12122221234", at("2026-12-31T16:00:00Z"), state="NY"), dry_run=True)
    assert decision.allowed is allowed and (allowed or decision.reasons == ["US-DNC-1"]), decision.to_dict()


@pytest.mark.parametrize("given,allowed", [("2026-06-30T16:00:00Z", True), ("2026-06-29T16:00:00Z", False)])
def test_canadian_inquiry_exemption_ends_6_months_after(given, allowed):
    gate, records = _listed_gate(416, 2221234)
    records.add_consent("+14162221234", ConsentKind.EBR_INQUIRY, occurred_at=at(given), source="qa6",
                        recorded_by="qa6")
    decision = gate.decide(call("+14162221234", at("2026-12-31T16:00:00Z")), dry_run=True)
    assert decision.allowed is allowed and (allowed or decision.reasons == ["CA-DNCL"]), decision.to_dict()


# ---------------------------------------------------------------- F4: Canada's floor holds telemarketing

@pytest.mark.parametrize("moment,allowed,reasons", [
    ("2026-12-04T02:15:00Z", False, {"CA-FLOOR"}),     # Thu 21:15 Toronto
    ("2026-12-04T01:59:00Z", True, set()),             # Thu 20:59
    ("2026-12-03T14:00:00Z", True, set()),             # Thu 09:00
    ("2026-12-05T22:59:00Z", True, set()),             # Sat 17:59
    ("2026-12-05T23:00:00Z", False, {"CA-HRS"}),       # Sat 18:00
])
def test_canadian_telemarketing_keeps_the_08_21_floor(moment, allowed, reasons):
    decision = make_gate().decide(call("+14162221234", at(moment)), dry_run=True)
    assert decision.allowed is allowed and reasons <= set(decision.reasons), decision.to_dict()


# ---------------------------------------------------------------- F5: Pennsylvania's legal holidays

@pytest.mark.parametrize("day,closed", [
    ("2027-06-14", True),    # Flag Day (Monday)
    ("2027-03-26", True),    # Good Friday
    ("2027-11-02", True),    # Election Day
    ("2026-06-15", True),    # Flag Day 2026 is a Sunday: the Monday after
    ("2026-04-03", True),    # Good Friday 2026
    ("2026-11-03", True),    # Election Day 2026
    ("2027-11-26", True),    # day after Thanksgiving (the holidays package's PA calendar)
    ("2027-06-15", False),
    ("2027-03-25", False),
    ("2027-11-03", False),
])
def test_pennsylvania_legal_holidays(day, closed):
    assert HolidayCalendars("US").is_holiday("PA", date.fromisoformat(day)) is closed
    decision = make_gate().decide(call("+12152221234", at(f"{day}T15:00:00Z"), state="PA"), dry_run=True)
    assert decision.allowed is not closed, decision.to_dict()
    if closed:
        assert decision.reasons == ["PA-HRS"]


def test_other_states_do_not_get_pennsylvanias_days():
    calendars = HolidayCalendars("US")
    assert not calendars.is_holiday("RI", date(2027, 6, 14)) and not calendars.is_holiday("UT", date(2027, 11, 2))


# ---------------------------------------------------------------- F6: Reg F counts calls that rang

@pytest.fixture
def live(db_url, redis_url, tmp_path):
    with storage.connect_db(db_url, autocommit=True) as conn:
        store = RegistryStore(conn, tmp_path)
        store.import_numbers([], kind="federal", jurisdiction="US", snapshot_date=date(2026, 12, 1), source="qa6")
        gate = live_gate(db_url, redis_url, tmp_path)
        assert attempts.ensure_counters_loaded(conn, gate, datetime(2026, 12, 1, tzinfo=UTC), "qa6") == 0
    yield gate
    gate.records.conn.close()
    gate.counters.client.close()


def _debt(moment: datetime, number="+12125551234", person="p1") -> CallRequest:
    return CallRequest(number, Campaign("qa6", Purpose.DEBT, DialMode.PREVIEW, caller_id="+12125550000"), moment,
                       Lead(person_id=person, debt_id="d1"))


def test_the_engine_reports_an_unanswered_ring_as_a_counted_outcome():
    from dialer.engine.calls import CallOutcome
    from dialer.engine.runner import _GATE_OUTCOME
    # busy and failed did not connect to the dialed number (12 CFR 1006.14(b)(3)); a ring did
    assert _GATE_OUTCOME[CallOutcome.NO_ANSWER] == Outcome.NO_ANSWER
    assert _GATE_OUTCOME[CallOutcome.BUSY] == _GATE_OUTCOME[CallOutcome.FAILED] == Outcome.NO_CONNECT
    uncounting = {r.params.get("uncount_on_outcome") for p in RULEBOOK.packs for r in p.rules}
    assert Outcome.NO_ANSWER not in uncounting and Outcome.MACHINE not in uncounting


def test_reg_f_counts_unanswered_calls_and_the_rebuild_keeps_them(live, db, redis_client):
    db.autocommit = True
    t0 = datetime(2026, 12, 1, 15, tzinfo=UTC)
    ids = []
    for k in range(7):
        request = _debt(t0 + timedelta(hours=k))
        decision = live.decide(request)
        assert decision.allowed, decision.to_dict()
        attempts.record_attempt(db, request, decision)
        assert attempts.record_outcome(db, live, decision.decision_id, Outcome.NO_ANSWER,
                                       request.now + timedelta(seconds=30)) == []
        ids.append(decision.decision_id)
    eighth = live.decide(_debt(t0 + timedelta(hours=8)), dry_run=True)
    assert eighth.reasons == ["US-7IN7"] and eighth.counters["US-7IN7"] == 7
    # a busy signal still gives its slot back
    assert attempts.record_outcome(db, live, ids[0], Outcome.NO_CONNECT, t0 + timedelta(hours=8)) == ["US-7IN7"]
    assert live.decide(_debt(t0 + timedelta(hours=8)), dry_run=True).allowed
    stored = db.execute("SELECT outcome, count(*) FROM compliance_call_attempts GROUP BY 1 ORDER BY 1").fetchall()
    assert stored == [("no_answer", 6), ("no_connect", 1)]
    redis_client.flushdb()
    assert attempts.ensure_counters_loaded(db, live, t0 + timedelta(hours=8), "qa6") == 7
    rebuilt = live.decide(_debt(t0 + timedelta(hours=8, minutes=1)), dry_run=True)
    assert rebuilt.allowed and rebuilt.counters["US-7IN7"] == 6, rebuilt.to_dict()


# ---------------------------------------------------------------- F7: a US file is not the DNCL

def test_dry_run_us_file_does_not_cover_canadian_area_codes(tmp_path):
    us_file = tmp_path / "ftc.txt"
    us_file.write_text("212,5550100\n")
    gate, _ = dry_run_gate([us_file], date.max)
    toronto = call("+14162221234", at("2026-12-03T17:00:00Z"))
    assert gate.decide(toronto, dry_run=True).reasons == ["REGISTRY_MISSING"]
    assert gate.decide(call("+13055551234", at("2026-12-03T17:00:00Z")), dry_run=True).reasons == ["REGISTRY_MISSING"]
    dncl = tmp_path / "dncl.txt"
    dncl.write_text("416,5550100\n")
    gate, _ = dry_run_gate([us_file, dncl], date.max)
    assert gate.decide(toronto, dry_run=True).allowed
    assert gate.decide(call("+14165550100", at("2026-12-03T17:00:00Z")), dry_run=True).reasons == ["CA-DNCL"]
    assert {416, 905, 604, 709} <= nanp_area_codes("CA") and not {212, 800, 787} & nanp_area_codes("CA")


def test_cli_check_of_a_canadian_number_with_a_us_file_fails_closed(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/dialer")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    out = CliRunner().invoke(main, ["compliance", "check", "+14162221234", "--at", "2026-12-03T17:00:00Z",
                                    "--mode", "preview", "--dnc-file", str(empty), "--json"])
    assert out.exit_code == 1 and json.loads(out.output)["reasons"] == ["REGISTRY_MISSING"], out.output


# ---------------------------------------------------------------- F8: batch exit codes

@pytest.mark.parametrize("lines,code", [
    ([{"number": "+12125551234", "purpose": "informational"}], 0),
    ([{"number": "+12125551234", "purpose": "informational"},
      {"number": "+12125551234", "purpose": "informational", "at": "2026-12-03T03:00:00Z"}], 1),
    ([{"number": "+12125551234", "purpose": "informational"}, "{bad json"], 2),
    ([{"number": "+12125551234", "purpose": "informational", "at": "2026-12-03T03:00:00Z"}, {"number": "abc"}], 2),
])
def test_batch_exit_code(tmp_path, monkeypatch, lines, code):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/dialer")
    batch = tmp_path / "batch.jsonl"
    batch.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    out = CliRunner().invoke(main, ["compliance", "check", "--batch", str(batch), "--at", "2026-12-03T17:00:00Z",
                                    "--mode", "preview"])
    assert out.exit_code == code, out.output
    assert len(out.output.splitlines()) == len(lines)


# ---------------------------------------------------------------- F9: SMS revocation by reasonable means

@pytest.mark.parametrize("text,revokes", [
    ("STOP", True), ("Please stop", True), ("please STOP calling me", True), ("I want to unsubscribe", True),
    ("Stop!", True), ("ok... quit it", True), ("opt-out", True), ("Opt out please", True), ("that's the END", True),
    ("revoke", True), ("cancel", True), ("do not call me again", True), ("Don't text me", True),
    ("don\u2019t call", True), ("remove me from your list", True), ("take me off", True),
    ("I stopped by the store", False), ("see you at the weekend", False), ("cancellation policy?", False),
    ("yes please", False), ("", False), ("nonstop", False),
])
def test_sms_revocation_words_anywhere(text, revokes):
    assert is_sms_revocation(text) is revokes


def test_an_sms_revocation_inside_a_sentence_reaches_the_gate(db):
    db.autocommit = True
    records = PgRecords(db)
    assert opt_out_sms(records, "+12125551234", "Please STOP calling me", at=at("2026-11-18T15:00:00Z"))
    entries, consents = records.lookup("+12125551234")
    assert [e.list_kind for e in entries] == ["internal"]
    assert [c.kind for c in consents] == [ConsentKind.REVOCATION]


# ---------------------------------------------------------------- F10: caller ID (UK CLI, US validity)

@pytest.mark.parametrize("number,caller_id,purpose,reasons", [
    ("+442071234567", None, "telemarketing", ["UK-CLI"]),
    ("+442071234567", None, "informational", ["UK-CLI"]),
    ("+442071234567", "abc", "debt", ["UK-CLI"]),
    ("+442071234567", "+4420", "informational", ["UK-CLI"]),
    ("+442071234567", "+442079460000", "telemarketing", []),
    ("+12125551234", "abc", "telemarketing", ["US-CID"]),
    ("+12125551234", "+1", "telemarketing", ["US-CID"]),
    ("+12125551234", "", "telemarketing", ["US-CID"]),
    ("+12125551234", "+12125550000", "telemarketing", []),
])
def test_caller_id_must_be_a_valid_number(number, caller_id, purpose, reasons):
    moment = at("2026-11-18T12:00:00Z") if number.startswith("+44") else at("2026-11-18T17:00:00Z")
    decision = make_gate().decide(call(number, moment, caller_id=caller_id, purpose=purpose), dry_run=True)
    assert decision.reasons == reasons, decision.to_dict()


# ---------------------------------------------------------------- F11: dnc check on a stale copy

def test_dnc_check_on_a_stale_copy_cannot_decide(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DIALER_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    registry = tmp_path / "fed.txt"
    registry.write_text("212,5551234\n")
    today = datetime.now(UTC).date()
    old = (today - timedelta(days=32)).isoformat()
    assert runner.invoke(main, ["dnc", "import", str(registry), "--date", old]).exit_code == 0
    out = runner.invoke(main, ["dnc", "check", "+12125550199"])
    assert out.exit_code == 3 and "STALE" in out.output and "not on any list" not in out.output, out.output
    out = runner.invoke(main, ["dnc", "check", "+12125550199", "--json"])
    assert out.exit_code == 3 and json.loads(out.output)["registries"][0]["stale"] is True
    # still listed in the stale copy: on a list (1) all the same
    assert runner.invoke(main, ["dnc", "check", "+12125551234"]).exit_code == 1
    fresh = (today - timedelta(days=31)).isoformat()
    assert runner.invoke(main, ["dnc", "import", str(registry), "--date", fresh]).exit_code == 0
    out = runner.invoke(main, ["dnc", "check", "+12125550199", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["registries"][0]["stale"] is False, out.output


# ---------------------------------------------------------------- F12: Reg F needs the person

def test_a_debt_call_without_a_person_is_refused():
    gate = make_gate()
    moment = at("2026-11-18T17:00:00Z")
    no_person = CallRequest("+12125551234", Campaign("c1", Purpose.DEBT, DialMode.PREVIEW, caller_id="+12125550000"),
                            moment, Lead(debt_id="d1"))
    decision = gate.decide(no_person, dry_run=True)
    assert decision.reasons == ["PERSON_MISSING"] and decision.blocks[0].rule_id == "US-7IN7"
    assert decision.next_allowed_at is None
    # telemarketing does not count per person: no person needed
    assert gate.decide(call("+12125551234", moment, person=None), dry_run=True).allowed


def test_one_person_on_two_numbers_reaches_the_reg_f_cap():
    gate = make_gate()
    t0 = at("2026-11-18T15:00:00Z")
    results = [gate.decide(call(("+12125551234", "+12125555678")[k % 2], t0 + timedelta(minutes=k), purpose="debt",
                                person="p1", debt="d1")).allowed for k in range(8)]
    assert results == [True] * 7 + [False]


# ---------------------------------------------------------------- F13: --state-dnc-file of no state

@pytest.mark.parametrize("command", [
    ["compliance", "check", "+12122221234", "--at", "2026-12-03T17:00:00Z", "--mode", "preview"],
    ["compliance", "scrub", "LEADS", "--out", "OUT", "--rejects", "REJ"],
])
def test_state_dnc_file_of_an_unknown_state_is_a_usage_error(command, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/dialer")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    leads = tmp_path / "leads.csv"
    leads.write_text("phone\n+12122221234\n")
    args = [str(leads) if a == "LEADS" else str(tmp_path / "out.csv") if a == "OUT"
            else str(tmp_path / "rej.csv") if a == "REJ" else a for a in command]
    out = CliRunner().invoke(main, [*args, "--dnc-file", str(empty), "--state-dnc-file", f"ZZ={empty}"])
    assert out.exit_code == 2 and "ZZ is not a state" in out.output, out.output
    ok = CliRunner().invoke(main, [*args, "--dnc-file", str(empty), "--state-dnc-file", f"fl={empty}"])
    assert ok.exit_code in (0, 1), ok.output
