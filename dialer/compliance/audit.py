"""Append-only audit of every compliance decision, hash-chained so that tampering is evident.

Each row stores the canonical JSON of the request and the decision, and
row_hash = SHA-256(prev_hash + "\\n" + record); the first row's prev_hash is 64 zeros. Rows are
appended in one round trip by the SQL function compliance_audit_append() (migration 0102) under
a transaction-scoped advisory lock, so the chain order is the id order even with several
engines. A trigger refuses UPDATE and DELETE; verify_chain() recomputes the whole chain and
reports the first row that does not match (a changed record, a deleted or reordered row).
Records are kept at least 5 years (16 CFR 310.5; compliance-rules.md US-REC).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime

import psycopg

from dialer.compliance.model import CallRequest, Decision, iso_z
from dialer.errors import StorageError

GENESIS = "0" * 64


def canonical_record(call: CallRequest, decision: Decision) -> str:
    request = asdict(call)
    request["now"] = iso_z(call.now)
    body = {"request": request, "decision": decision.to_dict()}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


def chain_hash(prev_hash: str, record: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{record}".encode()).hexdigest()


@dataclass(frozen=True)
class AuditRow:
    id: int
    decided_at: datetime
    decision_id: str
    phone_e164: str
    campaign_id: str
    allowed: bool
    reasons: list[str]
    record: str
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    rows_checked: int
    first_bad_id: int | None
    problem: str = ""


class PgAudit:
    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def append(self, call: CallRequest, decision: Decision) -> int:
        """One round trip: compliance_audit_append() (migration 0102) locks, chains and inserts."""
        try:
            return self.conn.execute(
                "SELECT compliance_audit_append(%s, %s, %s, %s, %s, %s, %s)",
                (call.now, decision.decision_id, call.phone_e164, call.campaign.campaign_id,
                 decision.allowed, decision.reasons, canonical_record(call, decision))).fetchone()[0]
        except psycopg.Error as exc:
            raise StorageError(f"audit write failed: {exc}") from exc


def read_audit(conn: psycopg.Connection, *, number: str | None = None, campaign: str | None = None,
               since: datetime | None = None, limit: int = 1000) -> list[AuditRow]:
    clauses, params = [], []
    if number:
        clauses.append("phone_e164 = %s")
        params.append(number)
    if campaign:
        clauses.append("campaign_id = %s")
        params.append(campaign)
    if since:
        clauses.append("decided_at >= %s")
        params.append(since)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        "SELECT id, decided_at, decision_id, phone_e164, campaign_id, allowed, reasons, record, prev_hash,"
        f" row_hash FROM compliance_audit {where} ORDER BY id LIMIT %s", (*params, limit)).fetchall()
    return [AuditRow(*row) for row in rows]


def verify_chain(conn: psycopg.Connection, batch: int = 5000) -> ChainReport:
    """Recompute every row's hash from the start; the first mismatch is reported."""
    prev = GENESIS
    checked = 0
    with conn.transaction(), conn.cursor(name="audit_verify") as cur:
        cur.itersize = batch
        cur.execute("SELECT id, record, prev_hash, row_hash FROM compliance_audit ORDER BY id")
        for row_id, record, prev_hash, row_hash in cur:
            if prev_hash != prev:
                return ChainReport(False, checked, row_id, "prev_hash does not match the previous row")
            if chain_hash(prev_hash, record) != row_hash:
                return ChainReport(False, checked, row_id, "record does not match its hash")
            prev = row_hash
            checked += 1
    return ChainReport(True, checked, None)
