"""Company do-not-call entries, consent records and opt-outs, in PostgreSQL (or memory for dry runs).

- Internal (company), campaign and custom (litigator and other) lists are rows with who, when,
  source and reason, kept 5 years after the request (47 CFR 64.1200(d)(6); 16 CFR 310.5).
- Consent and relationship records: prior express consent, prior express written consent,
  established business relationship (purchase or inquiry date, 64.1200(f)(5)), revocations.
- Opt-outs by any reasonable means are honoured at once (64.1200(a)(10)-(12) allow up to 10
  business days): an IVR key press, an agent disposition, or an SMS reply with STOP, QUIT, END,
  REVOKE, OPT OUT, CANCEL or UNSUBSCRIBE as a word anywhere in it (or "do not call", "remove me",
  ...) puts the number on the internal list and records a revocation of consent.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg

from dialer.compliance.model import ComplianceError, ConsentKind, ListKind
from dialer.errors import StorageError

RETENTION = timedelta(days=5 * 366)
ENTRY_KINDS = (ListKind.INTERNAL, ListKind.CAMPAIGN, ListKind.CUSTOM)
SMS_REVOCATION_WORDS = ("STOP", "QUIT", "END", "REVOKE", "OPT OUT", "CANCEL", "UNSUBSCRIBE")
# 64.1200(a)(12): a reply using one of the FCC's words revokes consent, and revocation may be made
# "by any reasonable means": the word anywhere in the reply counts ("Please stop", "I want to
# unsubscribe"), not only as its first word, and so do plain requests not to be called or texted.
# Whole words only: "stopped", "weekend", "cancellation" are other words. A false match only
# stops calls (fail closed); a missed one keeps calling a person who said no.
_SMS_PATTERN = re.compile(
    r"\b(?:STOP|QUIT|END|REVOKE|OPT[\s-]*OUT|CANCEL|UNSUBSCRIBE"
    r"|(?:DO\s+NOT|DON'?T|DONT|NEVER)\s+(?:CALL|TEXT|CONTACT|MESSAGE)"
    r"|REMOVE\s+ME|TAKE\s+ME\s+OFF)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class DncEntry:
    list_kind: str
    scope: str
    phone_e164: str
    added_by: str
    added_at: datetime
    source: str
    reason: str


@dataclass(frozen=True)
class ConsentRecord:
    kind: ConsentKind
    seller: str
    occurred_at: datetime
    source: str


def _check_entry(list_kind: str, scope: str) -> None:
    if list_kind not in ENTRY_KINDS:
        raise ComplianceError(f"list kind {list_kind!r} is not one of {', '.join(ENTRY_KINDS)}")
    if list_kind in (ListKind.CAMPAIGN, ListKind.CUSTOM) and not scope:
        raise ComplianceError(f"a {list_kind} entry needs a scope (the campaign's name, or the custom list's name)")


class MemoryRecords:
    """Records held in memory: for `compliance check` dry runs and benchmarks."""

    def __init__(self):
        self.entries: dict[str, list[DncEntry]] = {}
        self.consents: dict[str, list[ConsentRecord]] = {}

    def lookup(self, phone: str) -> tuple[list[DncEntry], list[ConsentRecord]]:
        return self.entries.get(phone, []), self.consents.get(phone, [])

    def add_dnc(self, phone: str, list_kind: str, *, scope: str = "", added_by: str, source: str,
                reason: str = "", at: datetime | None = None) -> bool:
        _check_entry(list_kind, scope)
        rows = self.entries.setdefault(phone, [])
        if any(e.list_kind == list_kind and e.scope == scope for e in rows):
            return False
        rows.append(DncEntry(list_kind, scope, phone, added_by, at or datetime.now(timezone.utc), source, reason))
        return True

    def remove_dnc(self, phone: str, list_kind: str, *, scope: str = "", removed_by: str, reason: str = "") -> bool:
        rows = self.entries.get(phone, [])
        kept = [e for e in rows if not (e.list_kind == list_kind and e.scope == scope)]
        self.entries[phone] = kept
        return len(kept) != len(rows)

    def add_consent(self, phone: str, kind: ConsentKind, *, occurred_at: datetime, source: str,
                    recorded_by: str, seller: str = "", evidence: str = "") -> None:
        self.consents.setdefault(phone, []).append(ConsentRecord(ConsentKind(kind), seller, occurred_at, source))


class PgRecords:
    """Records in PostgreSQL; every failure is a StorageError so the gate can fail closed."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def lookup(self, phone: str) -> tuple[list[DncEntry], list[ConsentRecord]]:
        """Active list entries and consent records of a number, in one round trip."""
        try:
            rows = self.conn.execute(
                "SELECT true, list_kind, scope, added_by, added_at, source, reason FROM compliance_dnc_entries"
                " WHERE phone_e164 = %s AND removed_at IS NULL"
                " UNION ALL SELECT false, kind, seller, recorded_by, occurred_at, source, ''"
                " FROM compliance_consents WHERE phone_e164 = %s", (phone, phone)).fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"record lookup failed: {exc}") from exc
        entries = [DncEntry(kind, scope, phone, by, at, source, reason)
                   for is_entry, kind, scope, by, at, source, reason in rows if is_entry]
        consents = [ConsentRecord(ConsentKind(kind), seller, at, source)
                    for is_entry, kind, seller, _by, at, source, _ in rows if not is_entry]
        return entries, consents

    def campaign_scope(self, scope: str) -> tuple[str, str | None]:
        """The scope to store for a campaign do-not-call entry, and a note for the operator (or None).

        The gate matches a campaign entry's scope against the campaign's NAME, so the scope must be
        an existing campaign's name. A number that is not a name but an existing campaign's id is
        taken as that campaign and its name is stored (the note says so). Anything else raises
        ComplianceError and nothing is to be stored. Shared by `dialer dnc add` and the Redis API's `dnc.add`."""
        scope = (scope or "").strip()
        if not scope:
            raise ComplianceError("a campaign entry needs a scope: the campaign's name")
        try:
            row = self.conn.execute("SELECT name FROM campaigns WHERE name = %s", (scope,)).fetchone()
            if row is not None:
                return row[0], None
            if re.fullmatch(r"[0-9]{1,18}", scope):
                row = self.conn.execute("SELECT name FROM campaigns WHERE id = %s", (int(scope),)).fetchone()
                if row is not None:
                    return row[0], (f"{scope} is the id of campaign {row[0]!r}: stored under its name {row[0]!r}"
                                    " (campaign entries are matched by campaign name)")
        except psycopg.Error as exc:
            raise StorageError(f"cannot look up campaign {scope!r}: {exc}") from exc
        raise ComplianceError(f"no campaign named {scope!r}: a campaign entry's scope must be an existing"
                              " campaign's name (see `dialer campaign list`); nothing stored")

    def removal_scope(self, scope: str) -> tuple[str, str | None]:
        """The campaign scope to remove an entry from, resolved as campaign_scope() stores it (a
        campaign's id -> its name, with a note). A name that is no campaign any more is taken as
        written: entries of a deleted campaign stay removable."""
        try:
            name, note = self.campaign_scope(scope)
        except ComplianceError:           # no such campaign (a StorageError is not one: it rises)
            if not (scope or "").strip():
                raise
            return scope.strip(), None
        return name, (f"{scope.strip()} is the id of campaign {name!r}: removing its entry (stored under its name)"
                      if note else None)

    def add_dnc(self, phone: str, list_kind: str, *, scope: str = "", added_by: str, source: str,
                reason: str = "", at: datetime | None = None) -> bool:
        _check_entry(list_kind, scope)
        at = at or datetime.now(timezone.utc)
        try:
            with self.conn.transaction():
                row = self.conn.execute(
                    "INSERT INTO compliance_dnc_entries (list_kind, scope, phone_e164, added_by, added_at,"
                    " source, reason, retain_until) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (phone_e164, list_kind, scope) WHERE removed_at IS NULL DO NOTHING RETURNING id",
                    (list_kind, scope, phone, added_by, at, source, reason, at + RETENTION)).fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cannot add do-not-call entry: {exc}") from exc
        return row is not None

    def remove_dnc(self, phone: str, list_kind: str, *, scope: str = "", removed_by: str, reason: str = "") -> bool:
        try:
            with self.conn.transaction():
                cur = self.conn.execute(
                    "UPDATE compliance_dnc_entries SET removed_at=now(), removed_by=%s, removal_reason=%s"
                    " WHERE phone_e164=%s AND list_kind=%s AND scope=%s AND removed_at IS NULL",
                    (removed_by, reason, phone, list_kind, scope))
        except psycopg.Error as exc:
            raise StorageError(f"cannot remove do-not-call entry: {exc}") from exc
        return cur.rowcount > 0

    def add_consent(self, phone: str, kind: ConsentKind, *, occurred_at: datetime, source: str,
                    recorded_by: str, seller: str = "", evidence: str = "") -> None:
        try:
            with self.conn.transaction():
                self.conn.execute(
                    "INSERT INTO compliance_consents (phone_e164, kind, seller, occurred_at, source,"
                    " recorded_by, evidence) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                    (phone, ConsentKind(kind).value, seller, occurred_at, source, recorded_by, evidence))
        except psycopg.Error as exc:
            raise StorageError(f"cannot record consent: {exc}") from exc

    def stats(self) -> list[tuple[str, str, int]]:
        return self.conn.execute(
            "SELECT list_kind, scope, count(*) FROM compliance_dnc_entries WHERE removed_at IS NULL"
            " GROUP BY list_kind, scope ORDER BY 1, 2").fetchall()


# ---------------------------------------------------------------- opt-outs

def is_sms_revocation(text: str) -> bool:
    """An SMS reply that revokes consent: one of the FCC's listed words (STOP, QUIT, END, REVOKE,
    OPT OUT, CANCEL, UNSUBSCRIBE) as a word anywhere in it, or a request not to be called or
    texted ("do not call", "don't text", "remove me", "take me off")."""
    return bool(_SMS_PATTERN.search((text or "").replace("\u2019", "'")))


def opt_out(records, phone: str, *, channel: str, by: str, detail: str, at: datetime | None = None) -> bool:
    """Internal do-not-call entry plus a revocation of every seller's consent, at once."""
    at = at or datetime.now(timezone.utc)
    added = records.add_dnc(phone, ListKind.INTERNAL, added_by=by, source=channel, reason=detail, at=at)
    records.add_consent(phone, ConsentKind.REVOCATION, occurred_at=at, source=channel, recorded_by=by,
                        evidence=detail)
    return added


def opt_out_ivr(records, phone: str, *, campaign_id: str, digit: str, call_id: str,
                at: datetime | None = None) -> bool:
    """Called by the dialplan hook when the callee presses the opt-out key (16 CFR 310.4(b)(1)(v))."""
    return opt_out(records, phone, channel="ivr", by=f"ivr:{call_id}",
                   detail=f"pressed {digit} in campaign {campaign_id}", at=at)


def opt_out_disposition(records, phone: str, *, agent_id: str, campaign_id: str, disposition: str,
                        at: datetime | None = None) -> bool:
    """Called when an agent dispositions a call as a do-not-call request."""
    return opt_out(records, phone, channel="agent", by=f"agent:{agent_id}",
                   detail=f"disposition {disposition} in campaign {campaign_id}", at=at)


def opt_out_sms(records, phone: str, text: str, *, at: datetime | None = None) -> bool:
    """Called for every inbound SMS; True when the message revoked consent."""
    if not is_sms_revocation(text):
        return False
    opt_out(records, phone, channel="sms", by="sms", detail=text.strip()[:160], at=at)
    return True
