"""Call attempts and outcomes: the system of record behind the Redis frequency counters.

The engine writes one compliance_call_attempts row per call it places (record_attempt, right
after the gate allowed it) and reports the outcome (record_outcome): the outcome also starts
the locks it implies (Reg F conversation, Ofcom abandoned/AMD, Washington "no") and uncounts
calls that never connected (12 CFR 1006.14(b)(3)). If Redis loses its data, rebuild_counters()
replays the attempts and outcomes of the longest window back into it and marks the counters as
loaded (counters.LOADED_KEY): until then the gate refuses every call. Engines call
ensure_counters_loaded() every second, so a Redis restart stops calls for the time of one replay.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

import psycopg

from dialer.compliance.gate import ATTEMPT_LOG_WINDOW_MS, ComplianceGate
from dialer.compliance.model import CallRequest, Campaign, Decision, Lead, Outcome
from dialer.errors import StorageError

REBUILD_WINDOW = timedelta(days=366)     # the longest counter window or lock (WA: 12 months)


def record_attempt(conn, call: CallRequest, decision: Decision) -> None:
    """One row per placed call; refuses a decision that did not allow the call."""
    if not decision.allowed:
        raise StorageError(f"decision {decision.decision_id} did not allow the call")
    c, lead = call.campaign, call.lead
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO compliance_call_attempts (decision_id, phone_e164, campaign_id, seller, subject,"
                " person_id, debt_id, attempted_at, counter_keys) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (decision_id) DO NOTHING",
                (decision.decision_id, call.phone_e164, c.campaign_id, c.seller, c.subject or c.campaign_id,
                 lead.person_id, lead.debt_id, call.now, list(decision.counter_keys)))
    except psycopg.Error as exc:
        raise StorageError(f"cannot record call attempt: {exc}") from exc


def _call_of(row) -> CallRequest:
    phone, campaign_id, seller, subject, person_id, debt_id, attempted_at = row
    return CallRequest(phone, Campaign(campaign_id, seller=seller, subject=subject), attempted_at,
                       Lead(person_id=person_id, debt_id=debt_id))


def record_outcome(conn, gate: ComplianceGate, decision_id: str, outcome: Outcome, at: datetime) -> list[str]:
    """Store the outcome and apply it to the counters and locks; returns the rule ids affected."""
    try:
        with conn.transaction():
            row = conn.execute(
                "UPDATE compliance_call_attempts SET outcome=%s, outcome_at=%s WHERE decision_id=%s"
                " RETURNING phone_e164, campaign_id, seller, subject, person_id, debt_id, attempted_at",
                (Outcome(outcome).value, at, decision_id)).fetchone()
    except psycopg.Error as exc:
        raise StorageError(f"cannot record call outcome: {exc}") from exc
    if row is None:
        raise StorageError(f"no call attempt for decision {decision_id}")
    return gate.record_outcome(_call_of(row), decision_id, outcome, at)


_REBUILD_SQL = ("SELECT decision_id, counter_keys, outcome, outcome_at, phone_e164, campaign_id, seller, subject,"
                " person_id, debt_id, attempted_at FROM compliance_call_attempts"
                " WHERE attempted_at > %(counted)s OR (attempted_at > %(since)s AND EXISTS (SELECT 1 FROM"
                " unnest(%(locking)s::text[], %(lock_since)s::timestamptz[]) AS l(outcome, since)"
                " WHERE compliance_call_attempts.outcome = l.outcome AND outcome_at > l.since))"
                " ORDER BY attempted_at")
REBUILD_BATCH = 5000
# Calls allowed just before Redis lost its data may reach PostgreSQL after the replay read past
# them: the rows of this last stretch are replayed once more after the marker is set (adding an
# attempt or an outcome twice changes nothing: counters are sets of decision ids).
REBUILD_OVERLAP = timedelta(minutes=2)
REBUILD_LOCK_MS = 60_000              # extended after every batch


def rebuild_counters(conn, gate: ComplianceGate, now: datetime, *, note: str = "",
                     on_batch: Callable[[], object] = lambda: None) -> int:
    """Replay attempts of the last REBUILD_WINDOW into the counter store, then mark the store as
    holding the record (the gate refuses every call until then); returns rows replayed."""
    replayed = _replay(conn, gate, now, now - REBUILD_WINDOW, on_batch)
    gate.counters.mark_loaded(f"{now.isoformat(timespec='seconds')} {replayed} attempts {note}".strip())
    _replay(conn, gate, now, now - REBUILD_OVERLAP, on_batch)
    return replayed


def ensure_counters_loaded(conn, gate: ComplianceGate, now: datetime, owner: str) -> int | None:
    """Rebuild the counters if the store lost them and no other process is rebuilding them;
    returns the rows replayed, or None when nothing was done."""
    if gate.counters.loaded() is not None or not gate.counters.try_lock_rebuild(owner, REBUILD_LOCK_MS):
        return None
    try:
        if gate.counters.loaded() is not None:      # another process finished just before the lock
            return None
        return rebuild_counters(conn, gate, now, note=f"by {owner}",
                                on_batch=lambda: gate.counters.try_lock_rebuild(owner, REBUILD_LOCK_MS))
    finally:
        gate.counters.unlock_rebuild(owner)


def _replay(conn, gate: ComplianceGate, now: datetime, since: datetime, on_batch: Callable[[], object]) -> int:
    """Attempts within the longest counter window go back into their counters, with their
    outcomes; older ones only for an outcome whose lock may still run (a "no" in Washington:
    12 months). Each batch of rows is one round trip to Redis."""
    rules = [r for p in gate.rulebook.packs for r in p.rules]
    counter_window = max([timedelta(milliseconds=ATTEMPT_LOG_WINDOW_MS)]
                         + [timedelta(seconds=r.params["window_seconds"]) for r in rules if r.kind == "counter"])
    lock_s: dict[str, int] = {}          # per outcome, its longest lock (rest of the day: 1 day)
    for r in rules:
        if "lock_on_outcome" in r.params:
            outcome = r.params["lock_on_outcome"]
            lock_s[outcome] = max(lock_s.get(outcome, 0), r.params.get("lock_seconds", 86400))
    counted = max(since, now - counter_window)
    replayed = 0
    try:
        # a server-side cursor: a year of attempts is read in batches, not held in memory
        with conn.transaction(), conn.cursor(name="compliance_rebuild") as cursor:
            cursor.execute(_REBUILD_SQL, {"counted": counted, "since": since, "locking": list(lock_s),
                                          "lock_since": [now - timedelta(seconds=v) for v in lock_s.values()]})
            while rows := cursor.fetchmany(REBUILD_BATCH):
                adds, changes = [], []
                for decision_id, keys, outcome, outcome_at, *call_fields in rows:
                    attempted_at = call_fields[-1]
                    if attempted_at > counted:
                        adds.append((keys, int(attempted_at.timestamp() * 1000), decision_id))
                    if outcome is not None:
                        changes += gate.outcome_changes(_call_of(call_fields), decision_id, Outcome(outcome),
                                                        outcome_at)[1]
                gate.counters.apply(changes, adds)
                replayed += len(rows)
                on_batch()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read call attempts: {exc}") from exc
    return replayed
