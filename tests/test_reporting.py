"""`dialer status` and `dialer report` (dialer/reporting.py, dialer/report_cli.py) against the real
PostgreSQL and Redis fixtures: rows are written with SQL, figures are checked against hand counts."""
from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from psycopg.types.json import Jsonb

from dialer import reporting, storage
from dialer.campaigns import CampaignNotFound, CampaignSettings
from dialer.report_cli import report, status

UTC = timezone.utc
NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)      # a Friday; New York is UTC-5 that day
HOUR = timedelta(hours=1)


# ------------------------------------------------------------------ rows written with SQL

def make_campaign(db, name: str, zone: str = "America/New_York") -> int:
    campaign_id = db.execute(
        "INSERT INTO campaigns (name, status, settings, created_at) VALUES (%s, 'running', %s, %s) RETURNING id",
        (name, Jsonb(CampaignSettings.from_dict({"timezone": zone}).to_dict()), NOW - timedelta(days=90))).fetchone()[0]
    list_id = db.execute("INSERT INTO lead_lists (campaign_id, name, source_file) VALUES (%s, 'l', 'l.csv')"
                         " RETURNING id", (campaign_id,)).fetchone()[0]
    db.execute("INSERT INTO leads (campaign_id, list_id, phone_e164, phone_raw) VALUES (%s, %s, '+12125550100', 'x')",
               (campaign_id, list_id))
    return campaign_id


def add_hour(db, campaign_id: int, hour: datetime, live: int, abandoned: int, machines: int = 0) -> None:
    db.execute("INSERT INTO abandon_hours (campaign_id, hour, live, abandoned, machines) VALUES (%s, %s, %s, %s, %s)",
               (campaign_id, hour, live, abandoned, machines))


def add_attempt(db, campaign_id: int, created: datetime, outcome: str | None, *, amd: str | None = None,
                cause: str | None = None, disposition: str | None = None) -> uuid.UUID:
    answered = outcome in ("human", "abandoned", "machine")
    call = uuid.uuid4()
    db.execute(
        "INSERT INTO call_attempts (origination_uuid, lead_id, campaign_id, attempt_no, phone_e164, engine_id,"
        " created_at, answered_at, ended_at, outcome, amd_result, amd_cause, disposition)"
        " SELECT %s, id, %s, 1, phone_e164, 'e1', %s, %s, %s, %s, %s, %s, %s FROM leads WHERE campaign_id = %s",
        (call, campaign_id, created, created + timedelta(seconds=5) if answered else None,
         created + timedelta(seconds=40) if outcome else None, outcome, amd, cause, disposition, campaign_id))
    return call


def add_cdr(db, campaign_id: int, call: uuid.UUID, ended: datetime) -> None:
    db.execute("INSERT INTO cdrs (origination_uuid, campaign_id, hangup_cause, started_at, ended_at, variables)"
               " VALUES (%s, %s, 'NORMAL_CLEARING', %s, %s, '{}')", (call, campaign_id, ended - HOUR / 60, ended))


def add_decision(db, campaign: str, at: datetime, reasons: list[str]) -> None:
    db.execute("SELECT compliance_audit_append(%s, %s, '+12125550100', %s, %s, %s, '{}')",
               (at, uuid.uuid4().hex, campaign, not reasons, reasons))


# ------------------------------------------------------------------ abandon arithmetic

def test_status_abandon_today_and_30_days_by_hand(db):
    """today = New York's day (from 05:00 UTC); 30 days = this hour and the 719 before it."""
    cid = make_campaign(db, "acme")
    other = make_campaign(db, "other")
    this_hour = NOW.replace(minute=0)
    add_hour(db, cid, this_hour - HOUR, live=40, abandoned=2, machines=30)          # today
    add_hour(db, cid, NOW.replace(hour=6, minute=0), live=60, abandoned=1, machines=10)   # today, 01:00 local
    add_hour(db, cid, NOW.replace(hour=4, minute=0), live=50, abandoned=3)          # 23:00 local yesterday
    add_hour(db, cid, this_hour - 719 * HOUR, live=10, abandoned=5)                 # oldest hour of the window
    add_hour(db, cid, this_hour - 720 * HOUR, live=100, abandoned=50)               # just outside it
    add_hour(db, other, this_hour, live=1, abandoned=1)

    snapshot = reporting.status_snapshot(db, None, "acme", now=NOW)
    (row,) = snapshot.campaigns
    assert (row.abandon_today.live, row.abandon_today.abandoned, row.abandon_today.machines) == (100, 3, 40)
    assert row.abandon_today.rate == pytest.approx(3 / 100)           # machines are not live answers
    assert row.abandon_today.start == datetime(2026, 11, 20, 5, tzinfo=UTC)
    assert (row.abandon_30d.live, row.abandon_30d.abandoned) == (160, 11)
    assert row.abandon_30d.rate == pytest.approx(11 / 160)
    assert any("30 days" in w and "(11/160) over the limit" in w for w in row.warnings)
    assert any("today 3.00%" in w and "nearing the limit" in w for w in row.warnings)

    # The engine's pacer reads the same 30-day window.
    from dialer.engine.store import EngineStore
    db.commit()
    store = EngineStore(db.info.dsn, "e1")
    try:
        account = store.abandon_account(cid, now=NOW)
    finally:
        store.close()
    assert (account["window_live"], account["window_abandoned"]) == (160, 11)


def test_abandon_rate_without_live_answers_is_none():
    assert reporting.abandon_rate(0, 0) is None
    assert reporting.AbandonFigure(0, 0, machines=7).rate is None
    assert reporting.abandon_rate(1, 40) == 0.025


def test_worst_window_edges():
    start = datetime(2026, 1, 1, tzinfo=UTC)
    hours = {start: (10, 1), start + 100 * HOUR: (100, 2), start + 730 * HOUR: (10, 3),
             start + 745 * HOUR: (1, 1)}          # at the range end: outside
    worst = reporting.worst_window(hours, start, start + 745 * HOUR)
    # windows 11..25 hold hours 100 and 730 (730 = 11 + 719): 5 / 110; window 0: 3 / 110; 1..10: 2 / 100
    assert (worst.live, worst.abandoned) == (110, 5)
    assert (worst.start, worst.end) == (start + 11 * HOUR, start + 731 * HOUR)
    # a period of 30 days or less is one window: the whole period
    short = reporting.worst_window(hours, start, start + 200 * HOUR)
    assert (short.live, short.abandoned, short.start, short.end) == (110, 3, start, start + 200 * HOUR)
    assert reporting.worst_window({}, start, start + 800 * HOUR) is None


# ------------------------------------------------------------------ report figures

def _report_rows(db) -> int:
    cid = make_campaign(db, "acme")
    other = make_campaign(db, "other")
    base = datetime(2026, 11, 19, 14, tzinfo=UTC)          # 09:00 in New York
    for outcome, amd, cause, disposition in [
            ("human", "HUMAN", "greeting", "SALE"), ("human", "HUMAN", "greeting", "NI"),
            ("human", "NOTSURE", "timeout", "SALE"), ("abandoned", "HUMAN", "greeting", None),
            ("machine", "MACHINE", "long_greeting", None), ("machine", "MACHINE", "beep", None),
            ("busy", None, None, None), ("no_answer", None, None, None), (None, None, None, None)]:
        add_attempt(db, cid, base + timedelta(minutes=5), outcome, amd=amd, cause=cause, disposition=disposition)
    add_cdr(db, cid, add_attempt(db, cid, base + 2 * HOUR, "failed"), base + 2 * HOUR)
    add_cdr(db, cid, add_attempt(db, cid, base - timedelta(days=3), "busy"), base - timedelta(days=3))
    add_attempt(db, cid, base - timedelta(days=3), "human", amd="HUMAN", disposition="SALE")   # before the period
    add_attempt(db, other, base, "abandoned", amd="HUMAN")
    # the abandon account of the same calls, plus hours that only the account holds
    add_hour(db, cid, base, live=4, abandoned=1, machines=2)
    add_hour(db, cid, datetime(2026, 11, 19, 4, tzinfo=UTC), live=30, abandoned=3)     # 23:00 local, the 18th
    add_hour(db, cid, datetime(2026, 11, 19, 5, tzinfo=UTC), live=19, abandoned=0)     # 00:00 local, the 19th
    add_hour(db, other, base, live=9, abandoned=9)
    add_decision(db, "acme", base, [])
    add_decision(db, "acme", base, ["US-HRS", "US-CONS"])
    add_decision(db, "acme", base + HOUR, ["US-HRS"])
    add_decision(db, "acme", base - timedelta(days=3), ["US-DNC-1"])    # before the period
    add_decision(db, "other", base, ["US-IDNC"])
    db.execute("INSERT INTO agents (agent_id, endpoint, campaign_id) VALUES ('a1', 'user/1001', %s),"
               " ('a2', 'user/1002', %s)", (cid, other))
    for state, seconds in [("ready", 0), ("on_call", 60), ("wrap_up", 180), ("ready", 200), ("paused", 300),
                           ("logged_out", 320)]:
        db.execute("INSERT INTO agent_state_log (agent_id, state, at) VALUES ('a1', %s, %s)",
                   (state, base - timedelta(seconds=30) + timedelta(seconds=seconds)))
    db.execute("INSERT INTO agent_state_log (agent_id, state, at) VALUES ('a2', 'ready', %s)", (base,))
    db.commit()
    return cid


PERIOD = {"since": datetime(2026, 11, 18, 0, 0), "until": datetime(2026, 11, 20, 0, 0)}   # New York days


def test_report_figures(db):
    _report_rows(db)
    r = reporting.campaign_report(db, "acme", min_live_per_hour=20, **PERIOD)
    assert r.since == datetime(2026, 11, 18, 5, tzinfo=UTC)      # naive: the campaign's time zone
    assert r.attempts == 10 and r.cdrs == 1
    assert r.outcomes == {"human": 3, "machine": 2, "abandoned": 1, "busy": 1, "failed": 1,
                          "in_progress": 1, "no_answer": 1}
    assert r.dispositions == {"SALE": 2, "NI": 1}
    assert [(e["hour"].hour, e.get("human", 0), e.get("failed", 0)) for e in r.outcomes_by_hour] == [(14, 3, 0), (16, 0, 1)]
    # abandon: period 7/53 over three hours; days split at New York midnight; hours with >= 20 live
    assert (r.abandon_total.live, r.abandon_total.abandoned, r.abandon_total.machines) == (53, 4, 2)
    assert r.abandon_total.rate == pytest.approx(4 / 53)
    assert [(d["day"], d["live"], d["abandoned"]) for d in r.abandon_per_day] == [
        ("2026-11-18", 30, 3), ("2026-11-19", 23, 1)]
    assert r.abandon_per_day[1]["rate"] == pytest.approx(1 / 23)
    assert [(h["hour"].hour, h["live"]) for h in r.abandon_per_hour] == [(4, 30)]
    assert (r.abandon_worst_30d.live, r.abandon_worst_30d.abandoned) == (53, 4)     # a 2-day period: one window
    assert r.abandon_recount == {"live": 4, "abandoned": 1}
    assert r.amd_results == {"HUMAN": 3, "MACHINE": 2, "NOTSURE": 1}
    assert {(c["result"], c["cause"]): c["count"] for c in r.amd_causes} == {
        ("HUMAN", "greeting"): 3, ("MACHINE", "beep"): 1, ("MACHINE", "long_greeting"): 1, ("NOTSURE", "timeout"): 1}
    assert r.compliance == {"decisions": 3, "allowed": 1, "blocked": 2}
    assert r.blocks_by_reason == {"US-HRS": 2, "US-CONS": 1}
    # a1 (a2 serves another campaign): ready 60, on_call 120, wrap_up 20, ready 100, paused 20;
    # logged_out time is not counted
    assert r.agent_time == [{"agent_id": "a1", "on_call": 120.0, "paused": 20.0, "ready": 160.0, "wrap_up": 20.0}]


def test_report_clips_agent_time_and_rejects_bad_periods(db):
    _report_rows(db)
    base = datetime(2026, 11, 19, 14, tzinfo=UTC)
    r = reporting.campaign_report(db, "acme", since=base, until=base + timedelta(seconds=100))
    assert r.agent_time == [{"agent_id": "a1", "on_call": 70.0, "ready": 30.0}]
    with pytest.raises(reporting.ReportError, match="empty period"):
        reporting.campaign_report(db, "acme", since=base, until=base)
    with pytest.raises(CampaignNotFound):
        reporting.campaign_report(db, "nope")


# ------------------------------------------------------------------ CLI output shapes and charts

@pytest.fixture
def env(monkeypatch, db_url, redis_url):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("REDIS_URL", redis_url)


def test_report_json_csv_and_png(db, env, tmp_path):
    _report_rows(db)
    runner = CliRunner()
    args = ["--since", "2026-11-18", "--until", "2026-11-20"]
    result = runner.invoke(report, ["--campaign", "acme", "--json", *args])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (acme,) = data["campaigns"]
    assert acme["abandon_total"]["rate"] == pytest.approx(4 / 53)
    assert acme["since"] == "2026-11-18T05:00:00Z" and acme["abandon_limit"] == 0.03
    assert acme["blocks_by_reason"] == {"US-HRS": 2, "US-CONS": 1}
    assert acme["abandon_per_hour"][0]["hour"] == "2026-11-19T04:00:00Z"

    result = runner.invoke(report, ["--format", "csv", *args])        # every campaign
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert set(rows[0]) == {"campaign", "section", "key", "metric", "value"}
    assert {r["campaign"] for r in rows} == {"acme", "other"}
    index = {(r["campaign"], r["section"], r["key"], r["metric"]): r["value"] for r in rows}
    assert float(index[("acme", "abandon_day", "2026-11-19", "rate")]) == pytest.approx(1 / 23)
    assert index[("acme", "block_reason", "US-HRS", "count")] == "2"
    assert index[("acme", "period", "", "cdrs")] == "1"
    assert index[("other", "abandon_period", "", "abandoned")] == "9"

    charts = tmp_path / "charts"
    result = runner.invoke(report, ["--campaign", "acme", "--png", str(charts), *args])
    assert result.exit_code == 0, result.output
    assert "abandon rate" in result.output and "US-HRS" in result.output
    files = sorted(p.name for p in charts.iterdir())
    assert files == ["acme-abandon-per-day.png", "acme-amd.png", "acme-blocks.png", "acme-outcomes-per-hour.png"]
    for path in charts.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_charts_of_an_empty_period_are_written(db, tmp_path):
    make_campaign(db, "quiet")
    r = reporting.campaign_report(db, "quiet", since=NOW - HOUR, until=NOW)
    assert r.attempts == 0 and r.abandon_worst_30d is None
    paths = reporting.write_charts(r, tmp_path)
    assert len(paths) == 4 and all(p.stat().st_size > 0 for p in paths)


def test_report_errors(env, db):
    runner = CliRunner()
    result = runner.invoke(report, ["--campaign", "nope"])
    assert result.exit_code == 1 and "no campaign named 'nope'" in result.output
    result = runner.invoke(report, ["--since", "yesterday"])
    assert result.exit_code == 2 and "ISO 8601" in result.output
    # QA: the far ends of the calendar overflowed (a traceback), year 1 took 23 s of CPU
    for option, moment in (("--until", "9999-12-31T23:30:00Z"), ("--since", "0001-01-01T00:00:00+05:00")):
        result = runner.invoke(report, [option, moment])
        assert result.exit_code == 2 and "between 2000 and 2999" in result.output, result.output


# ------------------------------------------------------------------ status with and without Redis

def _live_hash(**fields) -> dict:
    base = {"status": "running", "originated": 10, "answered": 5, "ringing": 3, "connected": 2,
            "calls_last_minute": 7, "outcomes": json.dumps({"human": 2}), "amd": json.dumps({"HUMAN": 2}),
            "blocks": json.dumps({"US-HRS": 1}), "updated": "1795000000.5"}
    return {k: str(v) for k, v in {**base, **fields}.items()}


def test_status_sums_engines_and_counts_agents(db, redis_client):
    cid = make_campaign(db, "acme")
    make_campaign(db, "other")
    add_attempt(db, cid, NOW - HOUR, "human", amd="HUMAN")
    add_attempt(db, cid, NOW - 2 * HOUR, "machine", amd="MACHINE")
    add_attempt(db, cid, NOW - timedelta(hours=12), "machine", amd="MACHINE")    # yesterday in New York
    add_decision(db, "acme", NOW - HOUR, ["US-HRS"])
    redis_client.hset("dialer:campaign:acme:e1", mapping=_live_hash(
        held="compliance store unavailable (COUNTERS_NOT_LOADED)"))
    redis_client.hset("dialer:campaign:acme:e2", mapping=_live_hash(ringing=4, connected=1, calls_last_minute=5,
                                                                    status="paused", amd=json.dumps({"MACHINE": 1}),
                                                                    held=""))
    redis_client.hset("dialer:campaign:acme:e3", mapping=_live_hash(ringing="many"))     # malformed: left out
    for agent, state, campaign in [("a1", "ready", "acme"), ("a2", "on_call", "acme"), ("a3", "ready", "acme"),
                                   ("a4", "ready", "other")]:
        redis_client.hset("dialer:agents", agent, json.dumps({"state": state, "campaign": campaign, "since": 1.0,
                                                              "engine": "e1", "reason": None}))
    redis_client.hset("dialer:agents", "a5", "not json")

    snapshot = reporting.status_snapshot(db, redis_client, now=NOW)
    acme, other = snapshot.campaigns
    assert snapshot.redis_ok and acme.agents_source == "redis"
    assert acme.live.engines == {"e1": "running", "e2": "paused"}
    assert (acme.live.ringing, acme.live.connected, acme.live.calls_last_minute) == (7, 3, 12)
    assert acme.live.amd == {"HUMAN": 2, "MACHINE": 1}
    assert acme.agents == {"ready": 2, "on_call": 1} and other.agents == {"ready": 1}
    assert other.live is None
    assert acme.amd_today == {"HUMAN": 1, "MACHINE": 1}
    assert acme.compliance_today == {"decisions": 1, "allowed": 0, "blocked": 1} and acme.blocks_today == {"US-HRS": 1}
    assert any("dialer:campaign:acme:e3" in w for w in snapshot.warnings)
    assert any("'a5'" in w for w in snapshot.warnings)
    # why an engine places no call for a running campaign is said (a held engine is otherwise silent)
    assert acme.warnings == ["acme: engine e1 places no call: compliance store unavailable (COUNTERS_NOT_LOADED)"]
    json.dumps(snapshot.to_dict())
    text = _plain(reporting.render_status(snapshot))
    assert "running ×2" in text and "(paused/running)" in text


def test_status_without_engines_and_with_redis_down(db):
    cid = make_campaign(db, "acme")
    db.execute("INSERT INTO agents (agent_id, endpoint, campaign_id, state) VALUES"
               " ('a1', 'user/1', %s, 'paused'), ('a2', 'user/2', %s, 'ready')", (cid, cid))
    add_hour(db, cid, NOW.replace(minute=0), live=10, abandoned=1)
    down = storage.connect_redis("redis://127.0.0.1:1/0", timeout_s=0.2, retries=0)
    snapshot = reporting.status_snapshot(db, down, now=NOW)
    (row,) = snapshot.campaigns
    assert not snapshot.redis_ok and "Redis unreachable" in snapshot.warnings[0]
    assert row.live is None and row.agents_source == "postgresql" and row.agents == {"paused": 1, "ready": 1}
    assert row.abandon_today.rate == pytest.approx(0.1)
    text = _plain(reporting.render_status(snapshot))
    assert "Redis unreachable" in text and "10.00% 1/10" in text


def test_status_cli_json_and_errors(db, env, redis_client, monkeypatch):
    cid = make_campaign(db, "acme")
    db.commit()
    redis_client.hset("dialer:campaign:acme:e1", mapping=_live_hash())
    runner = CliRunner()
    result = runner.invoke(status, ["--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["redis_ok"] and data["campaigns"][0]["live"]["ringing"] == 3
    assert data["campaigns"][0]["abandon_30d"]["rate"] is None
    result = runner.invoke(status, ["--campaign", "acme"])
    assert result.exit_code == 0 and "acme" in result.output
    assert runner.invoke(status, ["--watch", "--json"]).exit_code == 2
    assert runner.invoke(status, ["--campaign", "nope"]).exit_code == 1
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    result = runner.invoke(status, [])
    assert result.exit_code == 1 and "cannot connect to PostgreSQL" in result.output


def test_redis_names_match_the_engine():
    from dialer.engine import engine
    assert engine.AGENTS_HASH == reporting.AGENTS_HASH
    assert engine.CAMPAIGN_HASH.format(campaign="c", engine="e") == reporting.CAMPAIGN_HASH_PREFIX + "c:e"


def test_commands_are_registered():
    import cli
    assert {"status", "report"} <= set(cli.main.commands)


def _plain(renderable) -> str:
    from rich.console import Console
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


# ------------------------------------------------------------------ QA 2026-12-03: machines, (none), limit in words

def test_worst_window_and_hour_rows_carry_machines(db, env):
    """The worst 30-day window and the hour rows show their machine answers (they were 0 / blank)."""
    cid = make_campaign(db, "acme")
    base = datetime(2026, 11, 19, 14, tzinfo=UTC)
    add_hour(db, cid, base, live=25, abandoned=1, machines=7)
    add_hour(db, cid, base + HOUR, live=5, abandoned=0, machines=3)
    db.commit()
    window = {"since": datetime(2026, 11, 18, 0, 0), "until": datetime(2026, 11, 20, 0, 0)}
    r = reporting.campaign_report(db, "acme", min_live_per_hour=20, **window)
    assert (r.abandon_worst_30d.live, r.abandon_worst_30d.abandoned, r.abandon_worst_30d.machines) == (30, 1, 10)
    assert [(h["live"], h["machines"]) for h in r.abandon_per_hour] == [(25, 7)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    worst = reporting.worst_window({start: (10, 1, 4), start + 800 * HOUR: (10, 5, 6)}, start, start + 900 * HOUR)
    assert (worst.live, worst.abandoned, worst.machines) == (10, 5, 6)

    runner = CliRunner()
    args = ["--campaign", "acme", "--since", "2026-11-18", "--until", "2026-11-20"]
    data = json.loads(runner.invoke(report, [*args, "--json"]).output)["campaigns"][0]
    assert data["abandon_worst_30d"]["machines"] == 10 and data["abandon_per_hour"][0]["machines"] == 7
    rows = list(csv.DictReader(io.StringIO(runner.invoke(report, [*args, "--format", "csv"]).output)))
    index = {(r["section"], r["metric"]): r["value"] for r in rows}
    assert index[("abandon_worst_30d", "machines")] == "10" and index[("abandon_hour", "machines")] == "7"
    lines = _plain(reporting.render_report(r)).splitlines()
    (worst_line,) = [line for line in lines if "worst 30 d" in line and "│" in line]
    (hour_line,) = [line for line in lines if "hour 2026-11-19 09:00" in line and "│" in line]
    assert worst_line.split("│")[4].strip() == "10" and hour_line.split("│")[4].strip() == "7"


def test_dispositions_count_human_calls_without_a_disposition(db, env):
    cid = make_campaign(db, "acme")
    base = datetime(2026, 11, 19, 14, tzinfo=UTC)
    for outcome, disposition in [("human", "SALE"), ("human", "SALE"), ("human", "NI"), ("human", None),
                                 ("abandoned", None), ("machine", None), ("busy", None)]:
        add_attempt(db, cid, base, outcome, disposition=disposition)
    db.commit()
    r = reporting.campaign_report(db, "acme", since=base - HOUR, until=base + HOUR)
    assert r.dispositions == {"SALE": 2, "NI": 1, "(none)": 1}
    text = _plain(reporting.render_report(r))
    assert "dispositions (4 human calls)" in text
    shares = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in text.splitlines()
              if line.count("│") == 4 and line.split("│")[1].strip() in ("SALE", "NI", "(none)")}
    assert shares == {"SALE": "50.0%", "NI": "25.0%", "(none)": "25.0%"}
    rows = list(csv.DictReader(io.StringIO(CliRunner().invoke(
        report, ["--campaign", "acme", "--since", (base - HOUR).isoformat(), "--until", (base + HOUR).isoformat(),
                 "--format", "csv"]).output)))
    assert {r["key"]: r["value"] for r in rows if r["section"] == "disposition"} == {"SALE": "2", "NI": "1", "(none)": "1"}


def test_report_says_in_words_when_abandon_is_over_the_limit(db, env):
    cid = make_campaign(db, "acme")
    base = datetime(2026, 11, 19, 14, tzinfo=UTC)
    add_hour(db, cid, base, live=100, abandoned=4)
    db.commit()
    result = CliRunner().invoke(report, ["--campaign", "acme", "--since", "2026-11-18", "--until", "2026-11-20"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "abandon rate period 4.00% (4/100) over the 3.00% limit" in text
    assert "abandon rate day 2026-11-19 4.00% (4/100) over the 3.00% limit" in text
    assert "worst 30 d 11-18 05h–11-20 05h UTC 4.00% (4/100) over the 3.00% limit" in text
    assert "abandon rate hour" not in text          # shown in the table; no rule limits an hour
    # nearing: said for the period and the worst window; under 2.5%: nothing
    db.execute("UPDATE abandon_hours SET abandoned = 3 WHERE campaign_id = %s", (cid,))
    db.commit()
    notes = reporting.abandon_limit_notes(reporting.campaign_report(db, "acme", since=base, until=base + HOUR))
    assert notes == ["abandon rate period 3.00% (3/100) nearing the 3.00% limit",
                     "abandon rate worst 30 d 11-19 14h–11-19 15h UTC 3.00% (3/100) nearing the 3.00% limit"]
    db.execute("UPDATE abandon_hours SET abandoned = 2 WHERE campaign_id = %s", (cid,))
    db.commit()
    assert reporting.abandon_limit_notes(reporting.campaign_report(db, "acme", since=base, until=base + HOUR)) == []
