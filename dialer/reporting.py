"""Operator figures: `dialer status` (live) and `dialer report` (a period), as plain data and as rich
renderables (issue 6, item 5; docs/operations.md).

The abandon rate follows 47 CFR 64.1200(a)(7) and 16 CFR 310.4(b)(4)(i): abandoned calls over
calls answered by a live person, per campaign, measured over the campaign when it is shorter than
30 days, else over each 30-day period, at most 3%. An abandoned call is a live answer too (a person
answered; no agent within 2 s); a call AMD classed as a machine is not. The engine keeps the
account per campaign and UTC clock hour (abandon_hours, migration 0300), so every window here is a
sum of whole hours:
  - today: the hours starting at or after the campaign's local midnight (its settings' time zone);
  - rolling 30 days: the current hour and the 719 before it, the window the pacer enforces
    (dialer.engine.store.EngineStore.abandon_account);
  - a report's worst 30-day window: every run of 720 consecutive hours inside the report period
    (the whole period when it is 30 days or shorter).

Live counters (ringing, connected, calls per minute) come from the engines' Redis hashes, summed
over engines. Everything else is read from PostgreSQL, so status works with no engine running and,
with a warning, with Redis down.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Iterable, Iterator
from zoneinfo import ZoneInfo

import psycopg
import redis
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from dialer.campaigns import CampaignNotFound, CampaignSettings, CallOutcome
from dialer.errors import DialerError, StorageError
from dialer.rediskeys import AGENTS_HASH, CAMPAIGN_HASH_PREFIX

ABANDON_LIMIT = 0.03             # 47 CFR 64.1200(a)(7); 16 CFR 310.4(b)(4)(i)
ABANDON_WARN = 0.025             # operators are warned from here on (issue 6, item 5)
WINDOW_HOURS = 30 * 24
HOUR = timedelta(hours=1)
DEFAULT_MIN_LIVE_PER_HOUR = 20   # an hour's rate is shown only with at least this many live answers
AGENT_STATES = ("ready", "on_call", "wrap_up", "paused", "logged_out")
OUTCOMES = tuple(o.value for o in CallOutcome)
IN_PROGRESS = "in_progress"      # an attempt without an outcome yet
NO_DISPOSITION = "(none)"        # a human call without a disposition (dispositions are [A-Za-z0-9_]+)


class ReportError(DialerError):
    """A report or status request that cannot be answered (an empty period, malformed live state)."""


# ------------------------------------------------------------------ abandon arithmetic

def abandon_rate(abandoned: int, live: int) -> float | None:
    """abandoned / live answers (live answers include the abandoned); None without live answers."""
    return abandoned / live if live else None


@dataclass(frozen=True)
class AbandonFigure:
    live: int                       # live answers, abandoned included
    abandoned: int
    machines: int = 0               # answered by a machine (AMD): not live answers
    start: datetime | None = None   # the hours summed: [start, end)
    end: datetime | None = None

    @property
    def rate(self) -> float | None:
        return abandon_rate(self.abandoned, self.live)

    def to_dict(self) -> dict:
        return {"live": self.live, "abandoned": self.abandoned, "machines": self.machines,
                "rate": self.rate, "start": iso(self.start), "end": iso(self.end)}


def utc_hour(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def local_midnight(moment: datetime, zone: ZoneInfo) -> datetime:
    """The start of `moment`'s day in `zone`, as an aware datetime."""
    return datetime.combine(moment.astimezone(zone).date(), time(0), zone)


def worst_window(hours: dict[datetime, tuple[int, ...]], start: datetime, end: datetime,
                 window_hours: int = WINDOW_HOURS) -> AbandonFigure | None:
    """The highest-rate window of `window_hours` consecutive hours within [start, end) (UTC hour
    boundaries), from per-hour (live, abandoned) or (live, abandoned, machines); the whole range
    when it is not longer than a window. Ties go to the earliest window. None when no window has
    a live answer. The figure's machines are the window's machine answers (0 without them)."""
    span = int((end - start) / HOUR)
    if span <= 0:
        return None
    width = min(window_hours, span)
    live_prefix, ab_prefix, mach_prefix = [0], [0], [0]
    for i in range(span):
        counts = hours.get(start + i * HOUR, (0, 0))
        live_prefix.append(live_prefix[-1] + counts[0])
        ab_prefix.append(ab_prefix[-1] + counts[1])
        mach_prefix.append(mach_prefix[-1] + (counts[2] if len(counts) > 2 else 0))
    best: tuple[int, int, int] | None = None      # (first hour index, live, abandoned)
    for first in range(span - width + 1):
        live = live_prefix[first + width] - live_prefix[first]
        abandoned = ab_prefix[first + width] - ab_prefix[first]
        # a/l > b/m  <=>  a*m > b*l  (exact integer comparison, no float ties)
        if live and (best is None or abandoned * best[1] > best[2] * live):
            best = (first, live, abandoned)
    if best is None:
        return None
    first, live, abandoned = best
    machines = mach_prefix[first + width] - mach_prefix[first]
    return AbandonFigure(live, abandoned, machines, start=start + first * HOUR, end=start + (first + width) * HOUR)


# ------------------------------------------------------------------ shared helpers

def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") if moment else None


@dataclass(frozen=True)
class CampaignRef:
    id: int
    name: str
    status: str
    zone: ZoneInfo
    created_at: datetime


def _campaigns(conn: psycopg.Connection, name: str | None) -> list[CampaignRef]:
    sql = "SELECT id, name, status, settings, created_at FROM campaigns"
    rows = conn.execute(sql + (" WHERE name = %s" if name else "") + " ORDER BY name",
                        (name,) if name else ()).fetchall()
    if name and not rows:
        raise CampaignNotFound(f"no campaign named {name!r}")
    return [CampaignRef(id_, name_, status, CampaignSettings.from_dict(settings).zone, created)
            for id_, name_, status, settings, created in rows]


def _abandon_sum(conn: psycopg.Connection, campaign_id: int, start: datetime, end: datetime) -> AbandonFigure:
    row = conn.execute(
        "SELECT COALESCE(sum(live), 0), COALESCE(sum(abandoned), 0), COALESCE(sum(machines), 0)"
        " FROM abandon_hours WHERE campaign_id = %s AND hour >= %s AND hour < %s",
        (campaign_id, start, end)).fetchone()
    return AbandonFigure(int(row[0]), int(row[1]), int(row[2]), start=start, end=end)


def _counts(conn: psycopg.Connection, sql: str, params) -> dict[str, int]:
    return {str(key): int(n) for key, n in conn.execute(sql, params).fetchall()}


def _amd_results(conn, campaign_id: int, start: datetime, end: datetime) -> dict[str, int]:
    return _counts(conn, "SELECT amd_result, count(*) FROM call_attempts WHERE campaign_id = %s"
                         " AND created_at >= %s AND created_at < %s AND amd_result IS NOT NULL"
                         " GROUP BY 1 ORDER BY 2 DESC, 1", (campaign_id, start, end))


def _block_reasons(conn, campaign_name: str, start: datetime, end: datetime) -> tuple[dict[str, int], dict[str, int]]:
    """({decisions, allowed, blocked}, {reason code: blocked decisions naming it}) from the audit.
    compliance_audit.campaign_id holds the campaign's name (the gate's campaign id)."""
    decisions, allowed = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE allowed) FROM compliance_audit"
        " WHERE campaign_id = %s AND decided_at >= %s AND decided_at < %s",
        (campaign_name, start, end)).fetchone()
    reasons = _counts(conn, "SELECT reason, count(*) FROM compliance_audit, unnest(reasons) AS reason"
                            " WHERE campaign_id = %s AND decided_at >= %s AND decided_at < %s AND NOT allowed"
                            " GROUP BY 1 ORDER BY 2 DESC, 1", (campaign_name, start, end))
    return {"decisions": decisions, "allowed": allowed, "blocked": decisions - allowed}, reasons


# ------------------------------------------------------------------ status (live)

@dataclass
class LiveCounters:
    """The engines' Redis hashes of one campaign, summed (counters since each engine started)."""
    engines: dict[str, str] = field(default_factory=dict)     # engine id -> the runner's status
    originated: int = 0
    answered: int = 0
    ringing: int = 0
    connected: int = 0
    calls_last_minute: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    amd: dict[str, int] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)
    updated: float | None = None                               # newest engine update (epoch s)
    held: dict[str, str] = field(default_factory=dict)         # engine id -> why it places no call now

    def add(self, engine: str, fields: dict[str, str]) -> None:
        """Add one engine's hash. A malformed hash raises ReportError and adds nothing."""
        try:
            numbers = {name: int(fields.get(name) or 0) for name in _LIVE_NUMBERS}
            maps = {name: {str(k): int(v) for k, v in json.loads(fields.get(name) or "{}").items()}
                    for name in _LIVE_MAPS}
            updated = float(fields["updated"]) if fields.get("updated") else None
        except (ValueError, TypeError, AttributeError) as exc:
            raise ReportError(f"engine {engine}: malformed live counters: {exc}") from exc
        self.engines[engine] = fields.get("status", "?")
        if fields.get("held"):
            self.held[engine] = fields["held"]
        for name, n in numbers.items():
            setattr(self, name, getattr(self, name) + n)
        for name, counts in maps.items():
            setattr(self, name, dict(Counter(getattr(self, name)) + Counter(counts)))
        if updated is not None:
            self.updated = max(self.updated or 0.0, updated)


_LIVE_NUMBERS = ("originated", "answered", "ringing", "connected", "calls_last_minute")
_LIVE_MAPS = ("outcomes", "amd", "blocks")


@dataclass
class CampaignStatusRow:
    id: int
    name: str
    status: str
    timezone: str
    agents: dict[str, int]                 # state -> agents
    agents_source: str                     # "redis" or "postgresql"
    abandon_today: AbandonFigure
    abandon_30d: AbandonFigure
    amd_today: dict[str, int]              # AMD result -> attempts placed today
    compliance_today: dict[str, int]       # decisions, allowed, blocked
    blocks_today: dict[str, int]           # reason code -> blocked decisions today
    live: LiveCounters | None              # None: no engine serves it (or Redis is down)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["abandon_today"] = self.abandon_today.to_dict()
        data["abandon_30d"] = self.abandon_30d.to_dict()
        return data


@dataclass
class StatusSnapshot:
    taken_at: datetime
    campaigns: list[CampaignStatusRow]
    redis_ok: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"taken_at": iso(self.taken_at), "redis_ok": self.redis_ok, "warnings": self.warnings,
                "abandon_limit": ABANDON_LIMIT, "campaigns": [c.to_dict() for c in self.campaigns]}


def read_live(client: redis.Redis) -> tuple[dict[str, LiveCounters], dict[str, dict[str, int]], list[str]]:
    """(campaign name -> summed live counters, campaign name -> agents by state, problems) from
    Redis; a malformed hash or agent entry is left out and named in problems. Raises
    redis.RedisError when Redis is unreachable."""
    keys = sorted(client.scan_iter(match=CAMPAIGN_HASH_PREFIX + "*", count=500))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hgetall(key)
    live: dict[str, LiveCounters] = {}
    problems: list[str] = []
    for key, fields in zip(keys, pipe.execute()):
        name, _, engine = key.removeprefix(CAMPAIGN_HASH_PREFIX).partition(":")
        if fields:          # the hash may have expired between SCAN and HGETALL
            try:
                live.setdefault(name, LiveCounters()).add(engine, fields)
            except ReportError as exc:
                problems.append(f"{key}: {exc}")
    agents: dict[str, Counter] = defaultdict(Counter)
    for agent_id, raw in client.hgetall(AGENTS_HASH).items():
        try:
            entry = json.loads(raw)
            agents[entry.get("campaign") or ""][str(entry["state"])] += 1
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            problems.append(f"{AGENTS_HASH} field {agent_id!r}: malformed entry ({exc!r})")
    return live, {name: dict(states) for name, states in agents.items()}, problems


def _db_agents(conn: psycopg.Connection) -> dict[str, dict[str, int]]:
    agents: dict[str, dict[str, int]] = defaultdict(dict)
    for name, state, n in conn.execute(
            "SELECT c.name, a.state, count(*) FROM agents a JOIN campaigns c ON c.id = a.campaign_id"
            " GROUP BY 1, 2").fetchall():
        agents[name][state] = n
    return agents


def status_snapshot(conn: psycopg.Connection, redis_client: redis.Redis | None, campaign: str | None = None,
                    now: datetime | None = None) -> StatusSnapshot:
    """One status picture of every campaign (or one): PostgreSQL figures always, the engines'
    live counters when Redis answers. Raises StorageError when PostgreSQL fails, CampaignNotFound
    for an unknown name; Redis trouble is a warning in the snapshot, not an error."""
    now = now or datetime.now(timezone.utc)
    warnings: list[str] = []
    live: dict[str, LiveCounters] = {}
    redis_agents: dict[str, dict[str, int]] | None = None
    redis_ok = redis_client is not None
    if redis_client is None:
        warnings.append("Redis not configured: live counters absent")
    else:
        try:
            live, redis_agents, problems = read_live(redis_client)
            warnings += [f"ignored: {p}" for p in problems]
        except redis.RedisError as exc:
            redis_ok = False
            warnings.append(f"Redis unreachable ({exc}): PostgreSQL figures only, live counters absent")
    try:
        with conn.transaction():    # one snapshot of the figures; a watching loop holds none open
            refs = _campaigns(conn, campaign)
            db_agents = _db_agents(conn) if redis_agents is None else {}
            rows = []
            hour = utc_hour(now)
            window_start = hour - (WINDOW_HOURS - 1) * HOUR
            for ref in refs:
                today = local_midnight(now, ref.zone)
                compliance, blocks = _block_reasons(conn, ref.name, today, now)
                row = CampaignStatusRow(
                    id=ref.id, name=ref.name, status=ref.status, timezone=ref.zone.key,
                    agents=(redis_agents if redis_agents is not None else db_agents).get(ref.name, {}),
                    agents_source="redis" if redis_agents is not None else "postgresql",
                    abandon_today=_abandon_sum(conn, ref.id, today, hour + HOUR),
                    abandon_30d=_abandon_sum(conn, ref.id, window_start, hour + HOUR),
                    amd_today=_amd_results(conn, ref.id, today, now),
                    compliance_today=compliance, blocks_today=blocks, live=live.get(ref.name))
                row.warnings = _abandon_warnings(row) + [
                    f"{ref.name}: engine {engine} places no call: {why}"
                    for engine, why in sorted((row.live.held if row.live else {}).items())]
                rows.append(row)
    except psycopg.Error as exc:
        raise StorageError(f"PostgreSQL: {exc}") from exc
    return StatusSnapshot(now, rows, redis_ok, warnings)


def _abandon_warnings(row: CampaignStatusRow) -> list[str]:
    found = []
    for label, figure in (("today", row.abandon_today), ("30 days", row.abandon_30d)):
        if figure.rate is not None and figure.rate >= ABANDON_WARN:
            level = "over the limit" if figure.rate > ABANDON_LIMIT else "nearing the limit"
            found.append(f"{row.name}: abandon rate {label} {_pct(figure.rate)} "
                         f"({figure.abandoned}/{figure.live}) {level} of {_pct(ABANDON_LIMIT)}")
    return found


# ------------------------------------------------------------------ rendering helpers

def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.2f}%"


def _rate_text(figure: AbandonFigure) -> Text:
    style = ("red bold" if figure.rate is not None and figure.rate > ABANDON_LIMIT
             else "yellow" if figure.rate is not None and figure.rate >= ABANDON_WARN else "green")
    return Text(f"{_pct(figure.rate)} {figure.abandoned}/{figure.live}", style=style)


def _pairs(counts: dict[str, int], limit: int = 4) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = " ".join(f"{k} {v}" for k, v in items[:limit])
    return (text + f" +{len(items) - limit}") if len(items) > limit else (text or "–")


def render_status(snapshot: StatusSnapshot) -> RenderableType:
    """A rich renderable of a snapshot (two tables and the warnings), for Console.print or Live."""
    calls = Table(title=f"dialer status  {snapshot.taken_at.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC",
                  title_justify="left")
    calls.add_column("campaign", overflow="fold")
    calls.add_column("status")
    calls.add_column("agents\nR/C/W/P", justify="right")
    for column in ("ring", "conn", "calls\n/min"):
        calls.add_column(column, justify="right")
    calls.add_column("abandon\ntoday", justify="right")
    calls.add_column("abandon\n30 days", justify="right")
    today = Table(title="today (campaign's time zone)", title_justify="left")
    today.add_column("campaign", overflow="fold")
    today.add_column("AMD results")
    today.add_column("decisions\nallowed/blocked", justify="right")
    today.add_column("blocks by reason", overflow="fold")
    for row in snapshot.campaigns:
        live = row.live
        status = row.status
        if live is not None:
            engine_states = set(live.engines.values())
            status += f" ×{len(live.engines)}"       # engines serving it
            if engine_states != {row.status}:
                status += f"\n({'/'.join(sorted(engine_states))})"
        calls.add_row(row.name, status, "/".join(str(row.agents.get(s, 0)) for s in AGENT_STATES[:4]),
                      *(str(getattr(live, f)) if live else "–" for f in ("ringing", "connected", "calls_last_minute")),
                      _rate_text(row.abandon_today), _rate_text(row.abandon_30d))
        c = row.compliance_today
        today.add_row(row.name, _pairs(row.amd_today), f"{c['allowed']}/{c['blocked']}", _pairs(row.blocks_today))
    parts: list[RenderableType] = [calls]
    if snapshot.campaigns:
        parts.append(today)
    else:
        parts.append(Text("no campaign", style="dim"))
    parts.append(Text("agents R/C/W/P: ready/on call/wrap-up/paused; ring, conn, calls/min: live from the engines "
                      "(– none running); abandon = abandoned/live answers, limit 3%", style="dim"))
    for warning in snapshot.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    for row in snapshot.campaigns:
        for warning in row.warnings:
            parts.append(Text(f"abandon: {warning}", style="red bold" if "over" in warning else "yellow"))
    return Group(*parts)


# ------------------------------------------------------------------ report (a period)

@dataclass
class CampaignReport:
    campaign: str
    campaign_id: int
    timezone: str
    since: datetime
    until: datetime
    attempts: int
    cdrs: int                                     # switch records of calls that ended in the period
    outcomes: dict[str, int]                      # outcome (or in_progress) -> attempts
    dispositions: dict[str, int]                  # "(none)": human calls never dispositioned
    outcomes_by_hour: list[dict]                  # {"hour": UTC start, outcome: n, ...}
    abandon_total: AbandonFigure
    abandon_worst_30d: AbandonFigure | None
    abandon_per_day: list[dict]                   # {"day", "live", "abandoned", "machines", "rate"}
    abandon_per_hour: list[dict]                  # {"hour", "live", "abandoned", "machines", "rate"}: hours
                                                  # with at least min_live_per_hour live answers
    min_live_per_hour: int
    abandon_recount: dict[str, int]               # live/abandoned recounted from call_attempts
    amd_results: dict[str, int]
    amd_causes: list[dict]                        # {"result", "cause", "count"}
    compliance: dict[str, int]                    # decisions, allowed, blocked
    blocks_by_reason: dict[str, int]
    agent_time: list[dict]                        # {"agent_id", state: seconds, ...}

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(since=iso(self.since), until=iso(self.until), abandon_limit=ABANDON_LIMIT,
                    abandon_total=self.abandon_total.to_dict(),
                    abandon_worst_30d=self.abandon_worst_30d.to_dict() if self.abandon_worst_30d else None)
        for entry in data["outcomes_by_hour"] + data["abandon_per_hour"]:
            entry["hour"] = iso(entry["hour"])
        return data


def campaign_report(conn: psycopg.Connection, campaign: str, since: datetime | None = None,
                    until: datetime | None = None, min_live_per_hour: int = DEFAULT_MIN_LIVE_PER_HOUR,
                    now: datetime | None = None) -> CampaignReport:
    """Figures of one campaign over [since, until). Defaults: from the campaign's creation to now.
    Naive datetimes are read in the campaign's time zone. Abandon figures count whole UTC hours:
    the hours starting in [since rounded down to the hour, until)."""
    try:
        with conn.transaction():    # commits (or releases its savepoint): no read transaction left open
            (ref,) = _campaigns(conn, campaign)
            now = now or datetime.now(timezone.utc)
            since = _aware(since, ref.zone) if since else ref.created_at
            until = _aware(until, ref.zone) if until else now
            if until <= since:
                raise ReportError(f"empty period: until ({iso(until)}) is not after since ({iso(since)})")
            return _build_report(conn, ref, since, until, min_live_per_hour, now)
    except psycopg.Error as exc:
        raise StorageError(f"PostgreSQL: {exc}") from exc


def _aware(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


def _build_report(conn: psycopg.Connection, ref: CampaignRef, since: datetime, until: datetime,
                  min_live_per_hour: int, now: datetime) -> CampaignReport:
    period = (ref.id, since, until)
    outcomes = _counts(conn, "SELECT COALESCE(outcome, %s), count(*) FROM call_attempts WHERE campaign_id = %s"
                             " AND created_at >= %s AND created_at < %s GROUP BY 1 ORDER BY 2 DESC, 1",
                       (IN_PROGRESS, *period))
    dispositions = _counts(conn, "SELECT disposition, count(*) FROM call_attempts WHERE campaign_id = %s"
                                 " AND created_at >= %s AND created_at < %s AND disposition IS NOT NULL"
                                 " GROUP BY 1 ORDER BY 2 DESC, 1", period)
    # Human calls the agent never dispositioned (still in wrap-up when the campaign stopped):
    # shown as "(none)" so the dispositions add up to the human calls.
    undispositioned = conn.execute("SELECT count(*) FROM call_attempts WHERE campaign_id = %s AND created_at >= %s"
                                   " AND created_at < %s AND outcome = 'human' AND disposition IS NULL",
                                   period).fetchone()[0]
    if undispositioned:
        dispositions[NO_DISPOSITION] = undispositioned
    by_hour: dict[datetime, dict] = {}
    for hour, outcome, n in conn.execute(
            "SELECT date_trunc('hour', created_at, 'UTC'), COALESCE(outcome, %s), count(*) FROM call_attempts"
            " WHERE campaign_id = %s AND created_at >= %s AND created_at < %s GROUP BY 1, 2 ORDER BY 1, 2",
            (IN_PROGRESS, *period)).fetchall():
        by_hour.setdefault(hour, {"hour": hour})[outcome] = n

    first_hour, end_hour = utc_hour(since), utc_hour(until - timedelta(microseconds=1)) + HOUR
    hours = {hour: (live, abandoned, machines) for hour, live, abandoned, machines in conn.execute(
        "SELECT hour, live, abandoned, machines FROM abandon_hours WHERE campaign_id = %s"
        " AND hour >= %s AND hour < %s ORDER BY hour", (ref.id, first_hour, until)).fetchall()}
    per_day: dict[date, list[int]] = {}
    for hour, counts in hours.items():
        day = per_day.setdefault(hour.astimezone(ref.zone).date(), [0, 0, 0])
        for i, n in enumerate(counts):
            day[i] += n
    total = [sum(c[i] for c in hours.values()) for i in range(3)]
    recount_live, recount_abandoned = conn.execute(
        "SELECT count(*) FILTER (WHERE outcome IN ('human', 'abandoned')), count(*) FILTER (WHERE outcome = 'abandoned')"
        " FROM call_attempts WHERE campaign_id = %s AND answered_at IS NOT NULL"
        " AND ended_at >= %s AND ended_at < %s", (ref.id, first_hour, end_hour)).fetchone()

    causes = [{"result": r, "cause": c, "count": n} for r, c, n in conn.execute(
        "SELECT amd_result, COALESCE(amd_cause, ''), count(*) FROM call_attempts WHERE campaign_id = %s"
        " AND created_at >= %s AND created_at < %s AND amd_result IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2", period).fetchall()]
    compliance, blocks = _block_reasons(conn, ref.name, since, until)
    cdrs = conn.execute("SELECT count(*) FROM cdrs WHERE campaign_id = %s AND ended_at >= %s AND ended_at < %s",
                        period).fetchone()[0]
    return CampaignReport(
        campaign=ref.name, campaign_id=ref.id, timezone=ref.zone.key, since=since, until=until,
        attempts=sum(outcomes.values()), cdrs=cdrs, outcomes=outcomes, dispositions=dispositions,
        outcomes_by_hour=list(by_hour.values()),
        abandon_total=AbandonFigure(*total, start=first_hour, end=end_hour),
        abandon_worst_30d=worst_window(hours, first_hour, end_hour),
        abandon_per_day=[{"day": day.isoformat(), "live": c[0], "abandoned": c[1], "machines": c[2],
                          "rate": abandon_rate(c[1], c[0])} for day, c in sorted(per_day.items())],
        abandon_per_hour=[{"hour": hour, "live": c[0], "abandoned": c[1], "machines": c[2],
                           "rate": abandon_rate(c[1], c[0])}
                          for hour, c in sorted(hours.items()) if c[0] >= min_live_per_hour],
        min_live_per_hour=min_live_per_hour,
        abandon_recount={"live": recount_live, "abandoned": recount_abandoned},
        amd_results=_amd_results(conn, ref.id, since, until), amd_causes=causes,
        compliance=compliance, blocks_by_reason=blocks,
        agent_time=_agent_time(conn, ref.id, since, min(until, now)))


def _agent_time(conn: psycopg.Connection, campaign_id: int, since: datetime, until: datetime) -> list[dict]:
    """Seconds each agent of the campaign spent in each state within [since, until), from
    agent_state_log: a state lasts until the agent's next log row (or the end of the period).
    Agents are those whose current campaign is this one (the log has no campaign column)."""
    if until <= since:
        return []
    rows = conn.execute(
        """WITH log AS (
               SELECT l.agent_id, l.state, l.at,
                      lead(l.at) OVER (PARTITION BY l.agent_id ORDER BY l.at, l.id) AS next_at
                 FROM agent_state_log l JOIN agents a ON a.agent_id = l.agent_id
                WHERE a.campaign_id = %(campaign)s AND l.at < %(until)s)
           SELECT agent_id, state,
                  sum(extract(epoch FROM least(COALESCE(next_at, %(until)s), %(until)s) - greatest(at, %(since)s)))
             FROM log WHERE COALESCE(next_at, %(until)s) > %(since)s AND state <> 'logged_out'
            GROUP BY 1, 2 ORDER BY 1, 2""",
        {"campaign": campaign_id, "since": since, "until": until}).fetchall()
    agents: dict[str, dict] = {}
    for agent_id, state, seconds in rows:
        agents.setdefault(agent_id, {"agent_id": agent_id})[state] = round(float(seconds), 3)
    return list(agents.values())


def campaign_reports(conn: psycopg.Connection, campaign: str | None = None, **options) -> list[CampaignReport]:
    """Reports of one campaign, or of every campaign when `campaign` is None."""
    if campaign:
        names = [campaign]
    else:
        try:
            with conn.transaction():
                names = [ref.name for ref in _campaigns(conn, None)]
        except psycopg.Error as exc:
            raise StorageError(f"PostgreSQL: {exc}") from exc
    return [campaign_report(conn, name, **options) for name in names]


# ------------------------------------------------------------------ report output

def _count_table(title: str, counts: dict[str, int], key: str = "", total: int | None = None) -> Table:
    """Counts with their share of `total` (default: their sum)."""
    table = Table(title=title, title_justify="left")
    table.add_column(key or title)
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    total = sum(counts.values()) if total is None else total
    for name, n in counts.items():
        table.add_row(name, str(n), f"{100 * n / total:.1f}%" if total else "")
    if not counts:
        table.add_row("–", "0", "")
    return table


def render_report(report: CampaignReport) -> RenderableType:
    """A rich renderable of one campaign's report."""
    zone = ZoneInfo(report.timezone)
    parts: list[RenderableType] = [Text(
        f"campaign {report.campaign}: {report.since.astimezone(zone):%Y-%m-%d %H:%M} to "
        f"{report.until.astimezone(zone):%Y-%m-%d %H:%M} {report.timezone}: {report.attempts} attempts, "
        f"{report.cdrs} CDRs",
        style="bold")]
    parts.append(_count_table("outcomes", report.outcomes, "outcome"))
    # Shares over every human call: a call never dispositioned counts, as "(none)".
    humans = sum(report.dispositions.values())
    parts.append(_count_table(f"dispositions ({humans} human calls)" if humans else "dispositions",
                              report.dispositions, "disposition", total=humans))

    abandon = Table(title=f"abandon rate (limit {_pct(ABANDON_LIMIT)}: 47 CFR 64.1200(a)(7))", title_justify="left")
    for column in ("window", "live", "aband.", "mach.", "rate"):
        abandon.add_column(column, justify="left" if column == "window" else "right", no_wrap=column == "window")
    total, worst = report.abandon_total, report.abandon_worst_30d
    abandon.add_row("period", str(total.live), str(total.abandoned), str(total.machines), _rate_text(total))
    if worst is not None:
        abandon.add_row(_worst_label(worst),
                        str(worst.live), str(worst.abandoned), str(worst.machines), _rate_text(worst))
    for day in report.abandon_per_day:
        abandon.add_row(f"day {day['day']}", str(day["live"]), str(day["abandoned"]), str(day["machines"]),
                        _rate_text(AbandonFigure(day["live"], day["abandoned"])))
    for hour in report.abandon_per_hour:
        abandon.add_row(f"hour {hour['hour'].astimezone(zone):%Y-%m-%d %H:00}", str(hour["live"]),
                        str(hour["abandoned"]), str(hour["machines"]),
                        _rate_text(AbandonFigure(hour["live"], hour["abandoned"])))
    parts.append(abandon)
    for note in abandon_limit_notes(report):     # in words, not only by colour (as `dialer status`)
        parts.append(Text(note, style="red bold" if " over " in note else "yellow"))
    recount = report.abandon_recount
    if (recount["live"], recount["abandoned"]) != (total.live, total.abandoned):
        parts.append(Text(f"note: attempts recount {recount['abandoned']}/{recount['live']} differs from the "
                          f"abandon account {total.abandoned}/{total.live}", style="yellow"))
    parts.append(_count_table("AMD results", report.amd_results, "result"))
    causes = Table(title="AMD causes", title_justify="left")
    for column in ("result", "cause", "count"):
        causes.add_column(column, justify="right" if column == "count" else "left")
    for entry in report.amd_causes:
        causes.add_row(entry["result"], entry["cause"] or "–", str(entry["count"]))
    parts.append(causes)
    c = report.compliance
    parts.append(_count_table(f"compliance blocks by reason ({c['decisions']} decisions, {c['allowed']} allowed, "
                              f"{c['blocked']} blocked)", report.blocks_by_reason, "reason"))
    agents = Table(title="agents: time in state", title_justify="left")
    agents.add_column("agent")
    for state in AGENT_STATES[:4]:
        agents.add_column(state, justify="right")
    for entry in report.agent_time:
        agents.add_row(entry["agent_id"], *(_duration(entry.get(s, 0.0)) for s in AGENT_STATES[:4]))
    parts.append(agents)
    return Group(*parts)


def _worst_label(worst: AbandonFigure) -> str:
    return f"worst 30 d {worst.start:%m-%d %H}h–{worst.end:%m-%d %H}h UTC"


def abandon_limit_notes(report: CampaignReport) -> list[str]:
    """The report's abandon figures over the limit (and the period and worst 30-day window when
    nearing it), in words: "abandon rate period 4.00% (4/100) over the 3.00% limit"."""
    figures: list[tuple[str, AbandonFigure, bool]] = [("period", report.abandon_total, True)]
    if report.abandon_worst_30d is not None:
        worst = report.abandon_worst_30d
        figures.append((_worst_label(worst), worst, True))
    # days too (Ofcom / CRTC measure them); hours are shown, but no rule limits an hour
    figures += [(f"day {d['day']}", AbandonFigure(d["live"], d["abandoned"]), False) for d in report.abandon_per_day]
    notes = []
    for label, figure, warn_early in figures:
        rate = figure.rate
        if rate is None:
            continue
        if rate > ABANDON_LIMIT:
            level = f"over the {_pct(ABANDON_LIMIT)} limit"
        elif warn_early and rate >= ABANDON_WARN:
            level = f"nearing the {_pct(ABANDON_LIMIT)} limit"
        else:
            continue
        notes.append(f"abandon rate {label} {_pct(rate)} ({figure.abandoned}/{figure.live}) {level}")
    return notes


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def report_rows(reports: Iterable[CampaignReport]) -> Iterator[tuple]:
    """The reports as tidy rows (campaign, section, key, metric, value), header first."""
    yield ("campaign", "section", "key", "metric", "value")
    for r in reports:
        name = r.campaign
        yield name, "period", "", "since", iso(r.since)
        yield name, "period", "", "until", iso(r.until)
        yield name, "period", "", "attempts", r.attempts
        yield name, "period", "", "cdrs", r.cdrs
        for section, counts in (("outcome", r.outcomes), ("disposition", r.dispositions),
                                ("amd_result", r.amd_results), ("compliance", r.compliance),
                                ("block_reason", r.blocks_by_reason)):
            for key, n in counts.items():
                yield name, section, key, "count", n
        for entry in r.outcomes_by_hour:
            for outcome, n in entry.items():
                if outcome != "hour":
                    yield name, "outcome_hour", iso(entry["hour"]), outcome, n
        windows = [("abandon_period", "", r.abandon_total.to_dict())]
        if r.abandon_worst_30d is not None:
            worst = r.abandon_worst_30d
            windows.append(("abandon_worst_30d", f"{iso(worst.start)}/{iso(worst.end)}", worst.to_dict()))
        windows += [("abandon_day", d["day"], d) for d in r.abandon_per_day]
        windows += [("abandon_hour", iso(h["hour"]), h) for h in r.abandon_per_hour]
        windows.append(("abandon_recount", "", r.abandon_recount))
        for section, key, figures in windows:
            for metric in ("live", "abandoned", "machines", "rate"):
                if metric in figures:
                    yield name, section, key, metric, figures[metric]
        for entry in r.amd_causes:
            yield name, "amd_cause", f"{entry['result']}/{entry['cause']}", "count", entry["count"]
        for entry in r.agent_time:
            for state, seconds in entry.items():
                if state != "agent_id":
                    yield name, "agent_state", entry["agent_id"], state, seconds


def report_csv(reports: Iterable[CampaignReport]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for row in report_rows(reports):
        writer.writerow("" if v is None else v for v in row)
    return buffer.getvalue()


def write_charts(report: CampaignReport, directory: Path) -> list[Path]:
    """Four PNG charts of a report into `directory` (created): abandon rate per day with the 3%
    line, outcomes per hour, AMD split, compliance blocks by reason. Headless: matplotlib's
    object API on the Agg canvas, no pyplot and no display. Returns the files written."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    directory.mkdir(parents=True, exist_ok=True)
    zone = ZoneInfo(report.timezone)
    written = []

    def save(figure: Figure, suffix: str) -> None:
        path = directory / f"{report.campaign}-{suffix}.png"
        FigureCanvasAgg(figure).print_png(str(path))
        written.append(path)

    def new(title: str):
        figure = Figure(figsize=(9, 4.5), layout="constrained")
        axes = figure.add_subplot()
        axes.set_title(f"{report.campaign}: {title}")
        return figure, axes

    def empty(axes, what: str) -> None:
        axes.text(0.5, 0.5, f"no {what} in the period", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()

    figure, axes = new(f"abandon rate per day ({report.timezone})")
    days = [d for d in report.abandon_per_day if d["rate"] is not None]
    if days:
        bars = axes.bar([d["day"] for d in days], [100 * d["rate"] for d in days], color="tab:blue",
                        label="abandoned / live answers")
        axes.bar_label(bars, labels=[f"{d['abandoned']}/{d['live']}" for d in days])
        axes.set_ylim(0, max(100 * ABANDON_LIMIT, *(100 * d["rate"] for d in days)) * 1.25)
        axes.axhline(100 * ABANDON_LIMIT, color="tab:red", linestyle="--", label="3% limit, 47 CFR 64.1200(a)(7)")
        axes.set_ylabel("%")
        axes.legend()
        axes.tick_params(axis="x", labelrotation=45)
    else:
        empty(axes, "live answers")
    save(figure, "abandon-per-day")

    figure, axes = new(f"outcomes per hour ({report.timezone})")
    if report.outcomes_by_hour:
        labels = [e["hour"].astimezone(zone).strftime("%m-%d %H:00") for e in report.outcomes_by_hour]
        bottom = [0] * len(labels)
        for outcome in (*OUTCOMES, IN_PROGRESS):
            values = [e.get(outcome, 0) for e in report.outcomes_by_hour]
            if any(values):
                axes.bar(labels, values, bottom=bottom, label=outcome)
                bottom = [b + v for b, v in zip(bottom, values)]
        axes.set_ylabel("attempts")
        axes.legend()
        axes.tick_params(axis="x", labelrotation=45)
    else:
        empty(axes, "attempts")
    save(figure, "outcomes-per-hour")

    for suffix, title, counts in (("amd", "AMD results", report.amd_results),
                                  ("blocks", "compliance blocks by reason", report.blocks_by_reason)):
        figure, axes = new(title)
        if counts:
            names = list(counts)[::-1]
            axes.barh(names, [counts[n] for n in names], color="tab:orange" if suffix == "blocks" else "tab:green")
            axes.set_xlabel("attempts" if suffix == "amd" else "blocked decisions")
        else:
            empty(axes, title)
        save(figure, suffix)
    return written
