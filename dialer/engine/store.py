"""The engine's reads and writes in PostgreSQL, the system of record.

Leads are claimed with `FOR UPDATE SKIP LOCKED` under a lease (claimed_by, claimed_until), so
several engines share a campaign without dialing a lead twice. The attempt row, with our
origination_uuid, is written before the originate is sent; the CDR is written from
CHANNEL_HANGUP_COMPLETE. Abandons are counted per campaign and hour (abandon_hours).
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from datetime import time as dtime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import gevent.lock
import psycopg
from psycopg.rows import dict_row

from dialer import storage
from dialer.campaigns import CallOutcome, CampaignSettings, LeadStatus
from dialer.compliance import attempts
from dialer.engine.calls import INVALID_NUMBER_CAUSES, Call
from dialer.errors import StorageError
from esl.protocol import Event

# A claimed lead's lease; the owner renews it every second while it lives, so an engine that
# dies loses its leads within this time and no live call is ever taken over.
CLAIM_LEASE = timedelta(seconds=float(os.environ.get("DIALER_CLAIM_LEASE_S", "60")))
# The CDR keeps the switch's timing and identity variables of the call, not all ~200 of them.
CDR_VARIABLES = ("duration", "billsec", "answersec", "waitsec", "progresssec", "progress_mediasec",
                 "billmsec", "answermsec", "waitmsec", "start_epoch", "answer_epoch", "end_epoch",
                 "hangup_cause", "hangup_cause_q850", "sip_term_status", "sip_hangup_disposition",
                 "origination_caller_id_number", "bridge_uuid", "last_bridge_to")


@dataclass(frozen=True)
class ClaimedLead:
    id: int
    campaign_id: int
    phone_e164: str
    attempts: int
    state: str | None
    zip: str | None
    tz_hint: str | None
    person_id: str | None
    debt_id: str | None
    line_type: str
    callback_agent: str | None = None     # a callback reserved for this agent


@dataclass(frozen=True)
class CampaignRow:
    id: int
    name: str
    status: str
    settings: CampaignSettings
    settings_version: int


FEDERAL_WINDOW_END = 21  # 9 pm local, 47 CFR 64.1200(c)(1)


def window_close(zones, now: datetime) -> datetime | None:
    """The next 9 pm local time after `now`, in the zone where it comes first."""
    closes = []
    for zone in zones:
        try:
            tz = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            continue
        local = now.astimezone(tz)
        close = local.replace(hour=FEDERAL_WINDOW_END, minute=0, second=0, microsecond=0)
        if close <= local:
            close += timedelta(days=1)
        closes.append(close.astimezone(timezone.utc))
    return min(closes) if closes else None


def utc_hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


# A campaign's ownership lease, renewed every second by its owner.
OWNER_LEASE = timedelta(seconds=float(os.environ.get("DIALER_OWNER_LEASE_S", "15")))
# An engine whose heartbeat is older than this is dead: its agents are logged out.
ENGINE_DEAD_AFTER = timedelta(seconds=float(os.environ.get("DIALER_ENGINE_DEAD_AFTER_S", "30")))


def _serialized(method):
    """One statement or transaction at a time on the store's connection: a psycopg connection
    holds its lock per statement, not across a `transaction()` block, so without this another
    greenlet's statement could land inside (and be rolled back with) someone else's transaction."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._lock:
            try:
                return method(self, *args, **kwargs)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                # The server went away or the connection broke: a typed error the engine acts
                # on (no new call; call ends spooled), and a fresh connection next time.
                raise StorageError(f"PostgreSQL: {exc}") from exc
    return wrapper


STATEMENT_TIMEOUT_MS = 10_000     # well under the 30 s after which an engine counts as dead


class EngineStore:
    def __init__(self, url: str | None, engine_id: str) -> None:
        self.url = url
        self.engine_id = engine_id
        self._conn: psycopg.Connection | None = None
        self._lock = gevent.lock.RLock()

    def conn(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = storage.connect_db(self.url, autocommit=True)
            # Every write of the engine shares this connection: a statement stuck behind a lock
            # would hold the heartbeat (other engines then log this one's agents out) and every
            # call's bookkeeping. Bounded, it fails and the caller's own fallback takes over.
            self._conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    @_serialized
    def db_clock_skew(self) -> float:
        """Seconds our clock is ahead of the database's (calling hours and leases depend on it)."""
        before = datetime.now(timezone.utc)
        (db_now,) = self.conn().execute("SELECT clock_timestamp()").fetchone()
        after = datetime.now(timezone.utc)
        return ((before + (after - before) / 2) - db_now).total_seconds()

    # -- campaigns ----------------------------------------------------------------------------

    @_serialized
    def campaigns(self, statuses: tuple[str, ...] = ("running", "paused", "stopping")) -> list[CampaignRow]:
        rows = self.conn().execute(
            "SELECT id, name, status, settings, settings_version FROM campaigns WHERE status = ANY(%s)"
            " ORDER BY id", (list(statuses),)).fetchall()
        return [CampaignRow(r[0], r[1], r[2], CampaignSettings.from_dict(r[3]), r[4]) for r in rows]

    @_serialized
    def set_campaign_status(self, campaign_id: int, status: str) -> None:
        self.conn().execute("UPDATE campaigns SET status = %s, status_changed_at = now(), updated_at = now()"
                            " WHERE id = %s", (status, campaign_id))

    # -- leads --------------------------------------------------------------------------------

    @_serialized
    def claim_leads(self, campaign_id: int, limit: int) -> list[ClaimedLead]:
        """Up to `limit` callable leads, soonest-closing calling window first, leased to us."""
        if limit <= 0:
            return []
        with self.conn().cursor(row_factory=dict_row) as cur:
            cur.execute(
                """
                UPDATE leads SET status = 'in_progress', claimed_by = %(engine)s,
                       claimed_until = now() + %(lease)s
                 WHERE id IN (SELECT id FROM leads
                               WHERE campaign_id = %(campaign)s AND status IN ('new', 'callable')
                                 AND next_attempt_at <= now()
                               ORDER BY window_closes_at NULLS LAST, next_attempt_at, id
                               LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
                RETURNING id, campaign_id, phone_e164, attempts, state, zip, tz_hint, person_id,
                          debt_id, line_type
                """, {"engine": self.engine_id, "lease": CLAIM_LEASE, "campaign": campaign_id, "limit": limit})
            return [ClaimedLead(**row) for row in cur.fetchall()]

    @_serialized
    def claim_callbacks(self, campaign_id: int, limit: int, agents_ready: set[str]) -> list[ClaimedLead]:
        """Due callbacks: for anyone, or for an agent of `agents_ready` (ready on this engine)."""
        if limit <= 0:
            return []
        with self.conn().cursor(row_factory=dict_row) as cur:
            cur.execute(
                """
                UPDATE leads SET status = 'in_progress', claimed_by = %(engine)s,
                       claimed_until = now() + %(lease)s
                 WHERE id IN (SELECT id FROM leads
                               WHERE campaign_id = %(campaign)s AND status = 'callback'
                                 AND next_attempt_at <= now()
                                 AND (callback_agent IS NULL OR callback_agent = ANY(%(agents)s))
                               ORDER BY next_attempt_at, id
                               LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
                RETURNING id, campaign_id, phone_e164, attempts, state, zip, tz_hint, person_id,
                          debt_id, line_type, callback_agent
                """, {"engine": self.engine_id, "lease": CLAIM_LEASE, "campaign": campaign_id,
                      "limit": limit, "agents": sorted(agents_ready)})
            return [ClaimedLead(**row) for row in cur.fetchall()]

    @_serialized
    def refresh_windows(self, campaign_id: int, zones_of, now: datetime, limit: int = 5000) -> int:
        """Fill `window_closes_at` (the end of today's federal 8 am - 9 pm window in the
        earliest-closing zone the number may be in) for leads that have none or whose window
        has passed, so claims take the soonest-closing first. An ordering aid only: the gate
        decides each call at dial time."""
        conn = self.conn()
        rows = conn.execute(
            "SELECT id, phone_e164, tz_hint FROM leads WHERE campaign_id = %s AND status IN ('new', 'callable')"
            " AND (window_closes_at IS NULL OR window_closes_at < %s) LIMIT %s",
            (campaign_id, now, limit)).fetchall()
        ids, closes = [], []
        for lead_id, phone, tz_hint in rows:
            zones = (tz_hint,) if tz_hint else zones_of(phone)
            close = window_close(zones, now)
            if close is not None:
                ids.append(lead_id)
                closes.append(close)
        if ids:
            conn.execute("UPDATE leads SET window_closes_at = v.close FROM unnest(%s::bigint[], %s::timestamptz[])"
                         " AS v(id, close) WHERE leads.id = v.id", (ids, closes))
        return len(ids)

    @_serialized
    def extend_claim(self, lead_id: int, seconds: float) -> None:
        """Hold a lead we claimed longer than a dial's lease (an agent previewing it)."""
        self.conn().execute("UPDATE leads SET claimed_until = now() + %s WHERE id = %s AND claimed_by = %s",
                            (timedelta(seconds=seconds), lead_id, self.engine_id))

    @_serialized
    def requeue(self, lead_id: int, at: datetime | None, reason: str) -> None:
        """Give a claimed lead back, callable again at `at` (now when None)."""
        self.conn().execute(
            "UPDATE leads SET status = 'callable', next_attempt_at = COALESCE(%s, now()), claimed_by = NULL,"
            " claimed_until = NULL, last_outcome = %s WHERE id = %s AND claimed_by = %s",
            (at, reason, lead_id, self.engine_id))

    @_serialized
    def close_lead(self, lead_id: int, reason: str) -> None:
        self.conn().execute(
            "UPDATE leads SET status = 'closed', close_reason = %s, claimed_by = NULL, claimed_until = NULL"
            " WHERE id = %s", (reason, lead_id))

    @_serialized
    def release_claims(self, campaign_id: int | None = None) -> int:
        """Leads we claimed but did not dial go back to the pool: one campaign's when it stops
        (another campaign's lead may be between its claim and its attempt row right now: freed,
        a second engine could dial it at the same time), every campaign's at shutdown."""
        cur = self.conn().execute(
            "UPDATE leads SET status = CASE WHEN attempts = 0 THEN 'new' ELSE 'callable' END,"
            " claimed_by = NULL, claimed_until = NULL"
            " WHERE claimed_by = %s AND status = 'in_progress' AND (%s::bigint IS NULL OR campaign_id = %s)"
            " AND NOT EXISTS (SELECT 1 FROM call_attempts a WHERE a.lead_id = leads.id AND a.ended_at IS NULL)",
            (self.engine_id, campaign_id, campaign_id))
        return cur.rowcount

    @_serialized
    def renew_leases(self) -> int:
        """Keep our claims alive: called every second by the supervisor."""
        # Only leads with a call in progress: one whose dial failed half-way lets its lease run
        # out, so it is never held forever.
        cur = self.conn().execute(
            "UPDATE leads SET claimed_until = now() + %s WHERE claimed_by = %s AND status = 'in_progress'"
            " AND EXISTS (SELECT 1 FROM call_attempts a WHERE a.lead_id = leads.id AND a.ended_at IS NULL"
            " AND a.engine_id = %s)", (CLAIM_LEASE, self.engine_id, self.engine_id))
        return cur.rowcount

    @_serialized
    def hold_campaign(self, campaign_id: int) -> bool:
        """Take or renew the campaign's ownership lease; True while this engine owns it. The
        owner does the campaign's once-only duties (window ordering, abandon warnings, the end
        of a stop); any engine may dial its leads."""
        row = self.conn().execute(
            "UPDATE campaigns SET owner_engine = %s, owner_until = now() + %s WHERE id = %s"
            " AND (owner_engine = %s OR owner_until IS NULL OR owner_until < now()) RETURNING id",
            (self.engine_id, OWNER_LEASE, campaign_id, self.engine_id)).fetchone()
        return row is not None

    @_serialized
    def open_attempts(self, campaign_id: int) -> int:
        """Calls of the campaign still in progress, on any engine."""
        (count,) = self.conn().execute(
            "SELECT count(*) FROM call_attempts WHERE campaign_id = %s AND ended_at IS NULL", (campaign_id,)).fetchone()
        return count

    @_serialized
    def heartbeat(self, hostname: str) -> None:
        self.conn().execute(
            "INSERT INTO engine_nodes (node_id, hostname) VALUES (%s, %s) ON CONFLICT (node_id)"
            " DO UPDATE SET heartbeat_at = now(), hostname = EXCLUDED.hostname", (self.engine_id, hostname))

    @_serialized
    def log_out_agents_of_dead_engines(self) -> list[tuple[str, str | None]]:
        """Agents held by an engine whose heartbeat stopped are logged out: none is left stuck.
        Returns (agent id, phone leg) pairs: the caller hangs the legs up (a parked leg has no
        timer of its own, and the dead engine cannot)."""
        conn = self.conn()
        with conn.transaction():
            rows = conn.execute(
                "WITH dead AS (SELECT agent_id, leg_uuid FROM agents WHERE state <> 'logged_out' AND engine_id IN"
                " (SELECT node_id FROM engine_nodes WHERE heartbeat_at < now() - %s) FOR UPDATE)"
                " UPDATE agents a SET state = 'logged_out', state_since = now(), leg_uuid = NULL FROM dead"
                " WHERE a.agent_id = dead.agent_id RETURNING a.agent_id, dead.leg_uuid", (ENGINE_DEAD_AFTER,)).fetchall()
            for agent_id, _leg in rows:
                conn.execute("INSERT INTO agent_state_log (agent_id, state, reason) VALUES (%s, 'logged_out',"
                             " 'engine_lost')", (agent_id,))
        return [(agent_id, leg) for agent_id, leg in rows]

    @_serialized
    def recover_expired_leases(self) -> list[tuple[str, str | None, str, str]]:
        """Leads whose claim lease ran out (their engine died) become callable again. Attempts
        the dead engine left open are closed as failed (engine_lost); their (origination_uuid,
        node, campaign name, outcome) are returned so that the caller hangs those channels up
        before anyone redials, and tells the web app they ended."""
        with self.conn().transaction():
            orphans = self.conn().execute(
                "UPDATE call_attempts SET ended_at = now(), outcome = COALESCE(outcome, 'failed'),"
                " detail = COALESCE(detail, 'engine_lost') WHERE ended_at IS NULL AND lead_id IN"
                " (SELECT id FROM leads WHERE status = 'in_progress' AND claimed_until < now())"
                " RETURNING origination_uuid::text, node,"
                " (SELECT name FROM campaigns c WHERE c.id = call_attempts.campaign_id), outcome").fetchall()
            self.conn().execute(
                "UPDATE leads SET status = 'callable', claimed_by = NULL, claimed_until = NULL"
                " WHERE status = 'in_progress' AND claimed_until < now()")
        return [tuple(row) for row in orphans]

    # -- attempts and CDRs --------------------------------------------------------------------

    @_serialized
    def record_compliance_outcome(self, gate, decision_id: str, outcome, at: datetime) -> list[str]:
        """The outcome on the compliance attempt row, then applied to the gate's counters and
        locks (compliance.attempts.record_outcome)."""
        return attempts.record_outcome(self.conn(), gate, decision_id, outcome, at)

    @_serialized
    def create_attempt(self, call: Call, lead: ClaimedLead, campaign_id: int, decision_id: str,
                       compliance: tuple | None = None) -> int:
        """The attempt row, with our origination_uuid, before the originate is sent; with
        `compliance` (the gate's CallRequest and Decision), in the same transaction, the
        compliance_call_attempts row the frequency counters are rebuilt from after a Redis loss."""
        with self.conn().transaction():
            if compliance is not None:
                attempts.record_attempt(self.conn(), *compliance)
            (attempt_id,) = self.conn().execute(
                "INSERT INTO call_attempts (origination_uuid, lead_id, campaign_id, attempt_no, phone_e164,"
                " engine_id, node, gateway, caller_id, decision_id, originated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) RETURNING id",
                (call.uuid, lead.id, campaign_id, lead.attempts + 1, lead.phone_e164, self.engine_id,
                 call.node, call.gateway, call.caller_id, decision_id)).fetchone()
            self.conn().execute(
                "UPDATE leads SET attempts = attempts + 1, last_attempt_at = now(),"
                " claimed_until = now() + %s WHERE id = %s", (CLAIM_LEASE, lead.id))
        return attempt_id

    @_serialized
    def campaign_of_number(self, phone: str) -> str | None:
        """The running campaign that most recently called this number (a returned call)."""
        row = self.conn().execute(
            "SELECT c.name FROM call_attempts a JOIN campaigns c ON c.id = a.campaign_id"
            " WHERE a.phone_e164 = %s AND c.status = 'running' ORDER BY a.created_at DESC LIMIT 1",
            (phone,)).fetchone()
        return row[0] if row else None

    @_serialized
    def attempts_since(self, campaign_id: int, since: datetime) -> int:
        (count,) = self.conn().execute(
            "SELECT count(*) FROM call_attempts WHERE campaign_id = %s AND created_at >= %s",
            (campaign_id, since)).fetchone()
        return count

    @_serialized
    def attempt_answered(self, call: Call) -> None:
        self.conn().execute("UPDATE call_attempts SET answered_at = now() WHERE origination_uuid = %s", (call.uuid,))

    @_serialized
    def finish_attempt(self, call: Call, settings: CampaignSettings, hangup: Event | None,
                       *, advance_lead: bool = True) -> None:
        """Close the attempt, write the CDR, move the lead on and count the abandon account.
        advance_lead=False keeps the lead claimed (a failover attempt follows at once)."""
        ended = datetime.fromtimestamp(call.ended, timezone.utc) if call.ended else datetime.now(timezone.utc)
        outcome = call.outcome or CallOutcome.FAILED
        conn = self.conn()
        with conn.transaction():
            row = conn.execute(
                "UPDATE call_attempts SET ended_at = %s, outcome = %s, hangup_cause = %s, amd_result = %s,"
                " amd_cause = %s, agent_id = %s, detail = %s, amd_decided_at = %s,"
                " answered_at = COALESCE(answered_at, %s),"
                # the moment uuid_bridge succeeded (QA 7): bridged_at - amd_decided_at is the dead air
                # the person heard, the 2-s rule's evidence; a call nobody bridged has none
                " bridged_at = COALESCE(%s, bridged_at),"
                # when the message began (the rule's 2 s is measured to it), not when the call ended
                " safe_harbor_at = CASE WHEN %s THEN COALESCE(%s, now()) ELSE safe_harbor_at END"
                " WHERE origination_uuid = %s RETURNING lead_id, attempt_no, campaign_id",
                (ended, outcome.value, call.hangup_cause.name if call.hangup_cause else None, call.amd_result,
                 call.amd_cause, call.agent_id, call.detail,
                 _utc(call.amd_decided), _utc(call.answered), _utc(call.bridged),
                 call.detail == "safe_harbor", _utc(call.safe_harbor_started), call.uuid)).fetchone()
            if row is None:
                return
            lead_id, attempts, campaign_id = row
            if hangup is not None:
                self._write_cdr(conn, call, campaign_id, hangup, ended)
            if advance_lead:
                self._advance_lead(conn, lead_id, attempts, outcome, call, settings, ended)
            if call.answered is not None:
                live = outcome in (CallOutcome.HUMAN, CallOutcome.ABANDONED)
                conn.execute(
                    "INSERT INTO abandon_hours (campaign_id, hour, live, abandoned, machines)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (campaign_id, hour) DO UPDATE SET"
                    " live = abandon_hours.live + EXCLUDED.live,"
                    " abandoned = abandon_hours.abandoned + EXCLUDED.abandoned,"
                    " machines = abandon_hours.machines + EXCLUDED.machines",
                    (campaign_id, utc_hour(ended), int(live), int(outcome is CallOutcome.ABANDONED),
                     int(outcome is CallOutcome.MACHINE)))

    def _advance_lead(self, conn, lead_id: int, attempts: int, outcome: CallOutcome, call: Call,
                      settings: CampaignSettings, ended: datetime) -> None:
        if call.hangup_cause in INVALID_NUMBER_CAUSES:
            status, next_at, reason = LeadStatus.CLOSED, None, f"invalid_number:{call.hangup_cause.name}"
        elif outcome is CallOutcome.HUMAN:
            # The agent's disposition decides what follows; until then the lead is done.
            status, next_at, reason = LeadStatus.DONE, None, None
        else:
            next_at = settings.next_attempt(outcome, attempts, ended)
            status = LeadStatus.CALLABLE if next_at is not None else LeadStatus.CLOSED
            reason = None if next_at is not None else "max_attempts"
        conn.execute(
            "UPDATE leads SET status = %s, next_attempt_at = COALESCE(%s, next_attempt_at), last_outcome = %s,"
            " close_reason = %s, claimed_by = NULL, claimed_until = NULL WHERE id = %s",
            (status.value, next_at, outcome.value, reason, lead_id))

    @staticmethod
    def _write_cdr(conn, call: Call, campaign_id: int, hangup: Event, ended: datetime) -> None:
        variables = {name: hangup.variable(name) for name in CDR_VARIABLES if hangup.variable(name) is not None}

        def epoch(name: str) -> datetime | None:
            value = hangup.variable(name)
            return datetime.fromtimestamp(int(value), timezone.utc) if value and value.isdigit() and value != "0" else None

        billmsec = hangup.variable("billmsec")
        conn.execute(
            "INSERT INTO cdrs (origination_uuid, campaign_id, hangup_cause, started_at, answered_at, ended_at,"
            " billsec_ms, amd_result, agent_id, variables) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (origination_uuid) DO NOTHING",
            (call.uuid, campaign_id, hangup.get("Hangup-Cause") or "UNKNOWN",
             epoch("start_epoch") or datetime.fromtimestamp(call.started, timezone.utc),
             epoch("answer_epoch"), epoch("end_epoch") or ended,
             int(billmsec) if billmsec and billmsec.isdigit() else 0, call.amd_result, call.agent_id,
             json.dumps(variables)))

    @_serialized
    def set_disposition(self, origination_uuid: str, disposition: str, callback_at: datetime | None = None,
                        callback_agent: str | None = None) -> str | None:
        """An agent's disposition; a callback puts the lead back at the chosen time. Returns
        the number called (None for an unknown call)."""
        conn = self.conn()
        with conn.transaction():
            row = conn.execute(
                "UPDATE call_attempts SET disposition = %s WHERE origination_uuid = %s RETURNING lead_id, phone_e164",
                (disposition, origination_uuid)).fetchone()
            if row is None:
                return None
            conn.execute("UPDATE cdrs SET disposition = %s WHERE origination_uuid = %s", (disposition, origination_uuid))
            if callback_at is not None:
                conn.execute("UPDATE leads SET status = 'callback', next_attempt_at = %s, callback_agent = %s"
                             " WHERE id = %s", (callback_at, callback_agent, row[0]))
        return row[1]

    # -- agents -------------------------------------------------------------------------------

    @_serialized
    def record_agent_state(self, change, engine_id: str) -> None:
        """An AgentChange, stamped with the moment it happened (it may be written later)."""
        campaign_id = None
        at = datetime.fromtimestamp(change.at, timezone.utc)
        conn = self.conn()
        with conn.transaction():
            if change.campaign:
                row = conn.execute("SELECT id FROM campaigns WHERE name = %s", (change.campaign,)).fetchone()
                campaign_id = row[0] if row else None
            conn.execute(
                "INSERT INTO agents (agent_id, endpoint, campaign_id, state, pause_reason, state_since, engine_id, leg_uuid)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (agent_id) DO UPDATE SET"
                " endpoint = EXCLUDED.endpoint, campaign_id = EXCLUDED.campaign_id, state = EXCLUDED.state,"
                " pause_reason = EXCLUDED.pause_reason, state_since = EXCLUDED.state_since,"
                " engine_id = EXCLUDED.engine_id, leg_uuid = EXCLUDED.leg_uuid",
                (change.agent_id, change.endpoint, campaign_id, change.state.value, change.pause_reason, at,
                 engine_id, change.leg_uuid))
            conn.execute("INSERT INTO agent_state_log (agent_id, state, reason, at) VALUES (%s, %s, %s, %s)",
                         (change.agent_id, change.state.value, change.pause_reason, at))

    # -- abandon account ----------------------------------------------------------------------

    @_serialized
    def abandon_account(self, campaign_id: int, now: datetime | None = None,
                        zone: ZoneInfo | None = None) -> dict[str, int]:
        """Live answers and abandons over the last 30 days, today and this hour.

        "Today" is the campaign's calendar day in its own time zone (`zone`, else the one in its
        settings), as `dialer status` and `dialer report` count it (reporting.local_midnight):
        one definition of the day for the pacer's daily budget and the operator's view (QA 7;
        a UTC day restarted the budget at 19:00 in New York)."""
        now = now or datetime.now(timezone.utc)
        hour = utc_hour(now)
        if zone is None:
            zone = self._campaign_zone(campaign_id)
        day = datetime.combine(now.astimezone(zone).date(), dtime(0), zone).astimezone(timezone.utc)
        row = self.conn().execute(
            "SELECT COALESCE(sum(live), 0), COALESCE(sum(abandoned), 0),"
            " COALESCE(sum(live) FILTER (WHERE hour >= %s), 0), COALESCE(sum(abandoned) FILTER (WHERE hour >= %s), 0),"
            " COALESCE(sum(live) FILTER (WHERE hour >= %s), 0), COALESCE(sum(abandoned) FILTER (WHERE hour >= %s), 0)"
            " FROM abandon_hours WHERE campaign_id = %s AND hour > %s",
            (day, day, hour, hour, campaign_id, hour - timedelta(days=30))).fetchone()
        keys = ("window_live", "window_abandoned", "day_live", "day_abandoned", "hour_live", "hour_abandoned")
        return dict(zip(keys, map(int, row)))

    def _campaign_zone(self, campaign_id: int) -> ZoneInfo:
        row = self.conn().execute("SELECT settings->>'timezone' FROM campaigns WHERE id = %s",
                                  (campaign_id,)).fetchone()
        try:
            return ZoneInfo(row[0] if row and row[0] else CampaignSettings().timezone)
        except (ZoneInfoNotFoundError, ValueError):
            # settings validation refuses such a zone; an old row keeps the default's day
            return ZoneInfo(CampaignSettings().timezone)


def _utc(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, timezone.utc) if epoch else None
