"""Call attempts and outcomes: the system of record behind the Redis frequency counters.

The engine writes one compliance_call_attempts row per call it places (record_attempt, right
after the gate allowed it) and reports the outcome (record_outcome): the outcome also starts
the locks it implies (Reg F conversation, Ofcom abandoned/AMD, Washington "no") and uncounts
calls that never connected (12 CFR 1006.14(b)(3)). If Redis loses its data, rebuild_counters()
replays the attempts and outcomes of the longest window back into it.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from dialer.compliance.gate import ComplianceGate
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


def rebuild_counters(conn, gate: ComplianceGate, now: datetime) -> int:
    """Replay attempts of the last REBUILD_WINDOW into the counter store; returns rows replayed."""
    try:
        rows = conn.execute(
            "SELECT decision_id, counter_keys, outcome, outcome_at, phone_e164, campaign_id, seller, subject,"
            " person_id, debt_id, attempted_at FROM compliance_call_attempts WHERE attempted_at > %s"
            " ORDER BY attempted_at", (now - REBUILD_WINDOW,)).fetchall()
    except psycopg.Error as exc:
        raise StorageError(f"cannot read call attempts: {exc}") from exc
    for decision_id, keys, outcome, outcome_at, *call_fields in rows:
        attempted_ms = int(call_fields[-1].timestamp() * 1000)
        gate.counters.add(keys, attempted_ms, decision_id)
        if outcome is not None:
            gate.record_outcome(_call_of(call_fields), decision_id, Outcome(outcome), outcome_at)
    return len(rows)
