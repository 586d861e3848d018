"""The gate on real PostgreSQL and Redis: audit chain, atomic counters, opt-outs, stores down."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import psycopg
import pytest

from dialer import storage
from dialer.compliance import attempts
from dialer.compliance import records as rec
from dialer.compliance.audit import read_audit, verify_chain
from dialer.compliance.counters import counter_key
from dialer.compliance.model import CallRequest, Campaign, ConsentKind, DialMode, Lead, ListKind, Outcome, Purpose
from dialer.compliance.records import PgRecords
from dialer.compliance.registry import RegistryStore
from dialer.compliance.rnd import PgRnd
from dialer.compliance.rules import load_packs
from dialer.compliance.service import live_gate
from dialer.errors import StorageError

UTC = timezone.utc
NOON_NY = datetime(2026, 11, 18, 17, tzinfo=UTC)
CLOSED_PORT_DB = "postgresql://postgres@127.0.0.1:9/dialer"
CLOSED_PORT_REDIS = "redis://127.0.0.1:9/0"


def call(number="+12125551234", at=NOON_NY, **campaign) -> CallRequest:
    fields = dict(purpose=Purpose.TELEMARKETING, mode=DialMode.PREVIEW, caller_id="+12125550000")
    fields.update(campaign)
    # a debt call needs the lead's person (PERSON_MISSING otherwise): one person per number
    return CallRequest(number, Campaign("c1", **fields), at, Lead(person_id=f"person-of-{number}"))


@pytest.fixture
def registry_file(tmp_path):
    path = tmp_path / "federal.txt"
    path.write_text("212,5550100\n212,5550101\n305,5550100\n206,5550100\n")
    return path


@pytest.fixture
def gate(db_url, redis_url, tmp_path, registry_file):
    with storage.connect_db(db_url, autocommit=True) as conn:
        store = RegistryStore(conn, tmp_path)
        store.import_full(registry_file, kind="federal", jurisdiction="US", snapshot_date=NOON_NY.date(),
                          source="test")
        for state in load_packs().state_list_states():
            store.import_numbers([], kind="state", jurisdiction=state, snapshot_date=NOON_NY.date(), source="test")
        rnd_file = tmp_path / "rnd.csv"
        rnd_file.write_text("+12125559999,2026-11-01\n")
        PgRnd(conn).import_file(rnd_file, covers_from=date(2021, 1, 27), data_through=NOON_NY.date(), source="test")
        g = live_gate(db_url, redis_url, tmp_path)
        assert attempts.ensure_counters_loaded(conn, g, NOON_NY, "test") == 0    # an empty record
    yield g
    g.records.conn.close()
    g.counters.client.close()


def test_every_decision_is_audited_and_the_chain_verifies(gate, db):
    allowed = gate.decide(call())
    blocked = gate.decide(call("+12125550100"))
    dry = gate.decide(call("+12125550101"), dry_run=True)
    assert allowed.allowed and blocked.reasons == ["US-DNC-1"] and dry.reasons == ["US-DNC-1"]
    rows = read_audit(db)
    assert [r.decision_id for r in rows] == [allowed.decision_id, blocked.decision_id]
    assert rows[1].reasons == ["US-DNC-1"] and rows[1].allowed is False
    assert '"pack_versions"' in rows[0].record and "us-federal" in rows[0].record
    assert read_audit(db, number="+12125550100")[0].decision_id == blocked.decision_id
    assert read_audit(db, campaign="nope") == []
    report = verify_chain(db)
    assert report.ok and report.rows_checked == 2


def test_audit_is_append_only_and_tampering_is_evident(gate, db):
    for k in range(3):
        gate.decide(call(at=NOON_NY + timedelta(minutes=k)))
    with pytest.raises(psycopg.Error, match="append-only"):
        db.execute("UPDATE compliance_audit SET allowed = false")
    db.rollback()
    # Someone with superuser rights disables the trigger and edits a row: verify finds it.
    db.execute("ALTER TABLE compliance_audit DISABLE TRIGGER compliance_audit_no_change")
    second = db.execute("SELECT id FROM compliance_audit ORDER BY id OFFSET 1 LIMIT 1").fetchone()[0]
    db.execute("UPDATE compliance_audit SET record = replace(record, 'true', 'false') WHERE id = %s", (second,))
    db.commit()
    report = verify_chain(db)
    assert not report.ok and report.first_bad_id == second
    # Deleting a row breaks the link of the next one.
    db.execute("DELETE FROM compliance_audit WHERE id = %s", (second,))
    db.commit()
    assert not verify_chain(db).ok


def test_redis_caps_are_atomic_across_engines(db_url, redis_url, tmp_path, registry_file):
    gates = [live_gate(db_url, redis_url, tmp_path) for _ in range(4)]
    with storage.connect_db(db_url, autocommit=True) as conn:
        store = RegistryStore(conn, tmp_path)
        store.import_full(registry_file, kind="federal", jurisdiction="US", snapshot_date=NOON_NY.date(), source="test")
        store.import_numbers([], kind="state", jurisdiction="FL", snapshot_date=NOON_NY.date(), source="test")
        attempts.rebuild_counters(conn, gates[0], NOON_NY)
    for g in gates:
        g.registry = g._refresh_registry(g.registry)
    results = []
    barrier = threading.Barrier(len(gates))

    def worker(g):
        barrier.wait()
        for k in range(3):
            results.append(g.decide(call("+13055559999", NOON_NY + timedelta(seconds=k))))

    threads = [threading.Thread(target=worker, args=(g,)) for g in gates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(d.allowed for d in results) == 3
    assert {tuple(d.reasons) for d in results if not d.allowed} == {("FL-3IN24",)}
    for g in gates:
        g.records.conn.close()
    # Four engines appended concurrently: the chain is still one unbroken chain.
    with storage.connect_db(db_url) as conn:
        report = verify_chain(conn)
    assert report.ok and report.rows_checked == 12


def test_reg_f_outcomes_in_redis(gate):
    kw = dict(purpose=Purpose.DEBT)
    decisions = [gate.decide(call(at=NOON_NY + timedelta(minutes=k), **kw)) for k in range(8)]
    assert [d.allowed for d in decisions] == [True] * 7 + [False]
    assert decisions[-1].counters["US-7IN7"] == 7
    gate.record_outcome(call(**kw), decisions[0].decision_id, Outcome.NO_CONNECT, NOON_NY)
    assert gate.decide(call(at=NOON_NY + timedelta(minutes=9), **kw)).allowed
    gate.record_outcome(call(**kw), decisions[1].decision_id, Outcome.CONVERSATION, NOON_NY + timedelta(days=8))
    locked = gate.decide(call(at=NOON_NY + timedelta(days=10), **kw))
    assert locked.reasons == ["US-7IN7"] and locked.counters["US-7IN7:lock_ms"] > 0


def test_opt_outs_reach_the_gate_at_once(gate, db):
    records = PgRecords(db)
    db.autocommit = True
    number = "+12125553333"
    predictive = dict(mode=DialMode.PREDICTIVE, purpose=Purpose.INFORMATIONAL)
    records.add_consent(number, ConsentKind.EXPRESS, occurred_at=NOON_NY - timedelta(days=9), source="web", recorded_by="t")
    assert gate.decide(call(number, **predictive)).allowed
    assert rec.opt_out_sms(records, number, "Stop texting me", at=NOON_NY + timedelta(seconds=1))
    assert not rec.opt_out_sms(records, number, "stopwatch sale?")
    after = gate.decide(call(number, at=NOON_NY + timedelta(seconds=2), **predictive))
    assert set(after.reasons) == {"US-IDNC", "US-REV"}
    assert rec.opt_out_ivr(records, "+12125553334", campaign_id="c1", digit="9", call_id="u1")
    assert not rec.opt_out_ivr(records, "+12125553334", campaign_id="c1", digit="9", call_id="u2")
    assert rec.opt_out_disposition(records, "+12125553335", agent_id="a7", campaign_id="c1", disposition="DNC")
    entries, consents = records.lookup("+12125553335")
    assert entries[0].list_kind == ListKind.INTERNAL and entries[0].added_by == "agent:a7"
    assert consents[0].kind == ConsentKind.REVOCATION
    retain = db.execute("SELECT retain_until - added_at FROM compliance_dnc_entries LIMIT 1").fetchone()[0]
    assert retain >= timedelta(days=5 * 365)


@pytest.mark.parametrize("word", rec.SMS_REVOCATION_WORDS + ("opt-out", "Unsubscribe me", "  stop"))
def test_sms_revocation_words(word):
    assert rec.is_sms_revocation(word)


def test_postgres_down_blocks_with_reasons(redis_url, tmp_path):
    gate = live_gate(CLOSED_PORT_DB, redis_url, tmp_path)
    decision = gate.decide(call(purpose=Purpose.INFORMATIONAL))
    assert not decision.allowed
    assert {"DNC_STORE_UNAVAILABLE", "CONSENT_STORE_UNAVAILABLE", "AUDIT_UNAVAILABLE"} <= set(decision.reasons)
    # Telemarketing also lacks a registry (it could not be loaded).
    assert "REGISTRY_MISSING" in gate.decide(call()).reasons


def test_redis_down_blocks_with_reason(db_url, tmp_path, db):
    gate = live_gate(db_url, CLOSED_PORT_REDIS, tmp_path, redis_timeout_s=0.2, redis_retries=0)
    decision = gate.decide(call(purpose=Purpose.INFORMATIONAL))
    assert decision.reasons == ["COUNTER_STORE_UNAVAILABLE"]
    # The blocked decision is still audited.
    assert read_audit(db)[0].reasons == ["COUNTER_STORE_UNAVAILABLE"]


def test_postgres_recovers_after_a_broken_connection(gate):
    gate.records.conn._get().close()
    assert gate.decide(call(purpose=Purpose.INFORMATIONAL)).allowed


def test_audit_cli_reads_and_verifies(gate, db, db_url, monkeypatch):
    from click.testing import CliRunner

    from cli import main
    gate.decide(call())
    gate.decide(call("+12125550100"))
    gate.decide(call("+13055551234", at=NOON_NY + timedelta(days=2)))
    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()
    out = runner.invoke(main, ["compliance", "audit", "--number", "2125550100", "--json", "--verify"])
    assert out.exit_code == 0, out.output
    lines = [line for line in out.output.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and '"US-DNC-1"' in lines[0]
    assert "chain OK: 3 rows verified" in out.output
    out = runner.invoke(main, ["compliance", "audit", "--since", "2026-11-19T00:00:00", "--campaign", "c1"])
    assert out.exit_code == 0 and "+13055551234" in out.output and "+12125550100" not in out.output
    # QA: a negative limit was a traceback, and a bad --since was called --at
    assert runner.invoke(main, ["compliance", "audit", "--limit", "-1"]).exit_code == 2
    out = runner.invoke(main, ["compliance", "audit", "--since", "garbage"])
    assert out.exit_code == 1 and "--since 'garbage' is not ISO 8601" in out.output
    db.execute("ALTER TABLE compliance_audit DISABLE TRIGGER compliance_audit_no_change")
    db.execute("UPDATE compliance_audit SET record = record || ' ' WHERE phone_e164 = '+13055551234'")
    db.commit()
    out = runner.invoke(main, ["compliance", "audit", "--verify"])
    assert out.exit_code == 1 and "chain BROKEN" in out.output


def test_counters_rebuild_from_call_attempts(gate, db, redis_client):
    db.autocommit = True
    fl = "+13055559000"
    placed = [gate.decide(call(fl, at=NOON_NY + timedelta(minutes=k))) for k in range(3)]
    for k, d in enumerate(placed):
        attempts.record_attempt(db, call(fl, at=NOON_NY + timedelta(minutes=k)), d)
    assert "cmp:c:FL-3IN24:+13055559000|c1" in placed[0].counter_keys
    # Only Reg F uncounts calls that did not connect; Florida's cap counts every call.
    assert attempts.record_outcome(db, gate, placed[0].decision_id, Outcome.NO_CONNECT, NOON_NY) == ["US-7IN7"]
    assert attempts.record_outcome(db, gate, placed[1].decision_id, Outcome.DECLINED, NOON_NY) == []  # WA only
    debt = call("+12125559001", purpose=Purpose.DEBT)
    talk = gate.decide(debt)
    attempts.record_attempt(db, debt, talk)
    assert attempts.record_outcome(db, gate, talk.decision_id, Outcome.CONVERSATION, NOON_NY) == ["US-7IN7"]
    with pytest.raises(StorageError):
        attempts.record_attempt(db, call(fl), gate.decide(call(fl, at=NOON_NY + timedelta(minutes=5))))
    redis_client.flushdb()
    # counters lost: every call is refused until they are rebuilt (at zero, calls over a cap would pass)
    assert gate.decide(call(fl, at=NOON_NY + timedelta(minutes=6)), dry_run=True).reasons == ["COUNTERS_NOT_LOADED"]
    assert attempts.ensure_counters_loaded(db, gate, NOON_NY + timedelta(minutes=6), "test") == 4
    assert attempts.ensure_counters_loaded(db, gate, NOON_NY + timedelta(minutes=6), "test") is None
    # a cap or a lock requeues the lead for when it lets the call through, not closes it: the
    # first of the three Florida calls leaves the 24 h window; the conversation's lock ends
    capped = gate.decide(call(fl, at=NOON_NY + timedelta(minutes=6)), dry_run=True)
    assert capped.reasons == ["FL-3IN24"] and capped.next_allowed_at == NOON_NY + timedelta(days=1)
    locked = gate.decide(call("+12125559001", at=NOON_NY + timedelta(days=1), purpose=Purpose.DEBT), dry_run=True)
    assert locked.reasons == ["US-7IN7"] and locked.next_allowed_at == NOON_NY + timedelta(days=7)


def test_a_rebuild_reads_each_counter_window_and_the_old_outcomes_that_still_lock(gate, db, redis_client):
    """A year of attempts is not replayed: only those within the longest counter window, and
    older ones whose outcome still holds a lock (a Washington "no": 12 months)."""
    db.autocommit = True
    wa, fl = "+12065551234", "+13055559001"
    rows = [("old-no", wa, NOON_NY - timedelta(days=100), "declined"),
            ("old-miss", fl, NOON_NY - timedelta(days=40), "no_connect"),    # outside every window
            ("recent", fl, NOON_NY - timedelta(hours=1), None)]
    for decision_id, phone, at, outcome in rows:
        db.execute("INSERT INTO compliance_call_attempts (decision_id, phone_e164, campaign_id, subject, attempted_at,"
                   " counter_keys, outcome, outcome_at) VALUES (%s, %s, 'c1', 'c1', %s, %s, %s, %s)",
                   (decision_id, phone, at, [counter_key("attempts", phone)], outcome, at if outcome else None))
    redis_client.flushdb()
    assert attempts.ensure_counters_loaded(db, gate, NOON_NY, "test") == 2
    declined = gate.decide(call(wa), dry_run=True)
    assert declined.reasons == ["WA-NO12M"], declined.blocks
    assert declined.next_allowed_at == NOON_NY - timedelta(days=100) + timedelta(days=365)
    assert gate.decide(call(fl), dry_run=True).counters["attempts_24h"] == 1


def test_a_hung_query_times_out_and_blocks(gate, db_url):
    # Another session holds the audit lock: the gate's audit append waits at most statement_timeout.
    gate.records.conn.statement_timeout_ms = 300
    gate.records.conn._get().close()
    with storage.connect_db(db_url) as other:
        other.execute("SELECT pg_advisory_xact_lock(109330228604025)")
        decision = gate.decide(call(purpose=Purpose.INFORMATIONAL))
        other.rollback()
    assert decision.reasons == ["AUDIT_UNAVAILABLE"]
    assert gate.decide(call(purpose=Purpose.INFORMATIONAL, at=NOON_NY + timedelta(minutes=1))).allowed
