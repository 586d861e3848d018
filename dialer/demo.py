"""`dialer demo`: a predictive campaign on the embedded default, end to end.

The simulated FreeSWITCH answers the engine's originates with modelled called parties (spoken
humans and answering machines from espeak-ng), a federal do-not-call snapshot is imported, a
campaign with leads in eight US time zones is created, simulated agents log in, and the engine
runs it for a while with the compliance gate deciding before every originate, AMD listening to
every answered call and pacing keeping the abandon rate under 3%.

The leads use the fictional NANP range NXX-555-0112..0199, so even pointed at a real FreeSWITCH
(FREESWITCH_URL) the demo cannot ring a real person.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import gevent
from rich.console import Console
from rich.table import Table

from dialer import campaigns, config, storage
from dialer.compliance.registry import RegistryStore
from dialer.compliance.service import LazyConnection, data_dir, live_gate
from dialer.engine.engine import Engine, EngineConfig
from dialer.engine.simagents import AgentSimulator
from dialer.errors import DialerError

# Area codes in each US calling-time zone (and two territories), so that at most hours of the
# day some leads are inside their calling window and others wait for theirs.
DEMO_AREAS = {"212": "America/New_York", "312": "America/Chicago", "303": "America/Denver",
              "213": "America/Los_Angeles", "907": "America/Anchorage", "808": "Pacific/Honolulu",
              "787": "America/Puerto_Rico", "671": "Pacific/Guam"}
STATE_OF = {"212": "NY", "312": "IL", "303": "CO", "213": "CA", "907": "AK", "808": "HI", "787": "PR", "671": "GU"}
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoLead:
    phone: str
    state: str
    line_type: str


def demo_leads(rng: random.Random) -> tuple[list[DemoLead], list[str]]:
    """The leads, and the numbers on the federal do-not-call snapshot (about 5%)."""
    leads, registry = [], []
    for npa in DEMO_AREAS:
        for line in range(12, 100):
            phone = f"+1{npa}55501{line:02d}"
            # About one in ten has no line-type data: treated as wireless, so an autodialed call
            # needs consent the lead does not have (the gate blocks it, 47 CFR 64.1200(a)(1)(iii)).
            leads.append(DemoLead(phone, STATE_OF[npa], "unknown" if rng.random() < 0.10 else "landline"))
            if rng.random() < 0.05:
                registry.append(phone)
        registry.append(f"+1{npa}5550111")   # every area code has a dated snapshot
    return leads, registry


def open_areas(at: datetime) -> list[str]:
    """Area codes whose local time is inside the federal 8 am - 9 pm window, with a margin."""
    def local_hour(zone: str) -> float:
        local = at.astimezone(ZoneInfo(zone))
        return local.hour + local.minute / 60
    return [npa for npa, zone in DEMO_AREAS.items() if 8.5 <= local_hour(zone) < 20.5]


def demo_settings(agents: int) -> dict:
    all_day = {day: [["00:00", "24:00"]] for day in campaigns.WEEKDAYS}
    return {
        "dial_mode": "predictive", "call_purpose": "telemarketing", "seller": "demo",
        "pacing": {"mode": "predictive", "params": {"target": 0.03}},
        "gateways": [{"name": "demo", "max_cps": 20, "max_channels": max(10, agents * 4)}],
        "caller_ids": {"pool": ["+12125550100", "+13125550100", "+12135550100"], "rotation": "local_presence"},
        "ring_timeout_s": 25,
        "amd": {"enabled": True, "action": "hangup"},
        "safe_harbor_message": "ivr/safe_harbor.wav",
        # The law's hours are the gate's business, per lead and zone; the campaign itself may
        # dial at any hour, so the demo shows the gate at work whatever the time.
        "schedule": {"windows": all_day},
        "timezone": "America/New_York",
    }


def setup(db_url: str, name: str, agents: int, rng: random.Random, registry_dir: Path, as_of: date) -> int:
    leads, registry = demo_leads(rng)
    registry_file = registry_dir / "demo-federal.txt"
    registry_dir.mkdir(parents=True, exist_ok=True)
    registry_file.write_text("".join(p.removeprefix("+1") + "\n" for p in registry))
    RegistryStore(LazyConnection(db_url), registry_dir).import_full(
        registry_file, kind="federal", jurisdiction="US", snapshot_date=as_of, source="demo")
    with storage.connect_db(db_url) as conn:
        created = campaigns.create_campaign(conn, name, campaigns.CampaignSettings.from_dict(demo_settings(agents)))
        (list_id,) = conn.execute("INSERT INTO lead_lists (campaign_id, name, source_file, rows_read, imported)"
                                  " VALUES (%s, 'demo', 'generated', %s, %s) RETURNING id",
                                  (created.id, len(leads), len(leads))).fetchone()
        with conn.cursor().copy("COPY leads (campaign_id, list_id, phone_e164, phone_raw, state, line_type)"
                                " FROM STDIN") as copy:
            for lead in leads:
                copy.write_row((created.id, list_id, lead.phone, lead.phone, lead.state, lead.line_type))
        conn.commit()
        campaigns.set_status(conn, name, "running")
        conn.commit()
    return created.id


def retire_old_demos(db_url: str, console: Console) -> None:
    """Earlier demo campaigns left running (an interrupted demo) would be dialed too: stop them."""
    with storage.connect_db(db_url) as conn:
        names = [name for (name,) in conn.execute(
            "UPDATE campaigns SET status = 'stopped', status_changed_at = now()"
            " WHERE name LIKE 'demo-%%' AND status <> 'stopped' RETURNING name")]
    if names:
        console.print(f"stopped earlier demo campaigns: {', '.join(names)}")


def summary_table(db_url: str, campaign_id: int) -> Table:
    with storage.connect_db(db_url) as conn:
        outcomes = conn.execute("SELECT outcome, count(*) FROM call_attempts WHERE campaign_id = %s"
                                " GROUP BY 1 ORDER BY 2 DESC", (campaign_id,)).fetchall()
        amd = conn.execute("SELECT amd_result, count(*) FROM call_attempts WHERE campaign_id = %s"
                           " AND amd_result IS NOT NULL GROUP BY 1 ORDER BY 2 DESC", (campaign_id,)).fetchall()
        live, abandoned = conn.execute("SELECT COALESCE(sum(live), 0), COALESCE(sum(abandoned), 0)"
                                       " FROM abandon_hours WHERE campaign_id = %s", (campaign_id,)).fetchone()
        leads = conn.execute("SELECT status, COALESCE(split_part(close_reason, ':', 1), ''), count(*) FROM leads"
                             " WHERE campaign_id = %s GROUP BY 1, 2 ORDER BY 3 DESC", (campaign_id,)).fetchall()
        blocked = conn.execute("SELECT last_outcome, count(*) FROM leads WHERE campaign_id = %s"
                               " AND last_outcome LIKE 'blocked:%%' GROUP BY 1 ORDER BY 2 DESC LIMIT 8",
                               (campaign_id,)).fetchall()
        cdrs = conn.execute("SELECT count(*) FROM cdrs WHERE campaign_id = %s", (campaign_id,)).fetchone()[0]
    table = Table(title="demo campaign: what happened", show_lines=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for outcome, count in outcomes:
        table.add_row(f"attempts: {outcome}", str(count))
    for result, count in amd:
        table.add_row(f"AMD: {result}", str(count))
    rate = f"{100 * abandoned / live:.2f}% ({abandoned}/{live})" if live else "no live answers yet"
    table.add_row("abandon rate (abandoned / live answers)", rate)
    table.add_row("CDRs written", str(cdrs))
    for status, reason, count in leads:
        table.add_row(f"leads {status}{' (' + reason + ')' if reason else ''}", str(count))
    for reason, count in blocked:
        table.add_row(f"requeued by the gate: {reason.removeprefix('blocked:')}", str(count))
    return table


def live_table(engine: Engine, started: float, seconds: float) -> Table:
    """One column per campaign, one row per measure: readable in an 80-column terminal."""
    from dialer.engine.agents import AgentState
    runners = list(engine.runners.values())
    table = Table(title=f"dialer demo: {time.monotonic() - started:3.0f} of {seconds:.0f} s")
    table.add_column("live")
    for runner in runners:
        table.add_column(runner.name, overflow="fold")

    def row(label: str, value) -> None:
        table.add_row(label, *(str(value(r)) for r in runners))

    agents = engine.agents
    row("agents ready / on call / wrap-up", lambda r: "/".join(
        str(agents.count(r.name, state)) for state in (AgentState.READY, AgentState.ON_CALL, AgentState.WRAP_UP)))
    row("calls ringing", lambda r: sum(1 for c in r.calls.values() if c.answered is None))
    row("calls with an agent", lambda r: sum(1 for c in r.calls.values() if c.state.value == "bridged"))
    row("calls per minute", lambda r: r.stats.calls_last_minute())
    row("originated / answered", lambda r: f"{r.stats.originated} / {r.stats.answered}")
    row("outcomes", lambda r: ", ".join(f"{k} {v}" for k, v in r.stats.outcomes.most_common()))
    row("AMD", lambda r: ", ".join(f"{k} {v}" for k, v in r.stats.amd.most_common()))
    row("compliance blocks", lambda r: ", ".join(f"{k} {v}" for k, v in r.stats.blocks.most_common()))
    return table


def run_demo(*, seconds: float, agents: int, seed: int, at: datetime | None, console: Console) -> dict:
    """Run the demo; returns the figures it printed."""
    from esl.fakeswitch import CalledPartyModel, FakeSwitch
    from esl.fakeswitch.voices import available, build_voices

    rng = random.Random(seed)
    db_url, redis_url = config.database_url(), config.redis_url()
    now = datetime.now(timezone.utc)
    clock_offset = timedelta(0)
    if at is None and not open_areas(now):
        # 11:00-12:00 UTC no US zone is inside calling hours: say so and show the next hour.
        at = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        console.print(f"[yellow]No demo time zone is inside calling hours now; the compliance clock is set to "
                      f"{at.isoformat()} (the gate judges calling hours by it). Use --at to choose.[/]")
    if at is not None:
        clock_offset = at - now
    console.print(f"leads inside calling hours now: area codes {', '.join(open_areas(now + clock_offset)) or 'none'}")

    nodes = config.freeswitch_nodes()
    switch = None
    if nodes is None:
        files = build_voices(ROOT / ".data" / "voices") if available() else {}
        if not files:
            console.print("[yellow]espeak-ng/sox missing: far ends use synthetic audio, AMD will be poor[/]")
        model = CalledPartyModel(seed=seed, answer_probability=0.45, machine_probability=0.25,
                                 ring_median=4.0, ring_max=20.0, stay_mean=15.0)
        switch = FakeSwitch(port=0, model=model, audio_files=files).start()
        nodes = config.parse_freeswitch_urls(switch.url)
        console.print(f"simulated FreeSWITCH on {switch.url.split('@')[1]}")

    retire_old_demos(db_url, console)
    name = f"demo-{int(now.timestamp())}"
    campaign_id = setup(db_url, name, agents, rng, data_dir() / "demo", (now + clock_offset).date() - timedelta(days=1))
    console.print(f"campaign {name}: {8 * 88} leads in 8 zones, {agents} agents, predictive pacing, target 3%")
    cfg = EngineConfig.from_env(nodes)
    engine = Engine(cfg, live_gate(db_url, redis_url, data_dir() / "demo"),
                    clock=lambda: datetime.now(timezone.utc) + clock_offset).start()
    simulator = AgentSimulator(engine, wrap_mean_s=4.0, seed=seed).start()
    try:
        agent_phone = "sofia/internal/7700@127.0.0.1" if switch is not None else "user/{agent}"
        for index in range(agents):
            engine.login_agent(f"demo-agent-{index + 1}", agent_phone.format(agent=1000 + index), name)
        started = time.monotonic()
        from rich.live import Live
        with Live(live_table(engine, started, seconds), console=console, refresh_per_second=2) as live:
            while time.monotonic() - started < seconds:
                gevent.sleep(0.5)
                live.update(live_table(engine, started, seconds))
        console.print("stopping: calls in flight finish, unclaimed leads go back")
    finally:
        simulator.stop()
        engine.stop(drain_timeout=60)
        if switch is not None:
            switch.stop()
        with storage.connect_db(db_url) as conn:
            conn.execute("UPDATE campaigns SET status = 'stopped', status_changed_at = now() WHERE id = %s",
                         (campaign_id,))
    console.print(summary_table(db_url, campaign_id))
    return {"campaign": name, "campaign_id": campaign_id}


def check_ready() -> None:
    """Fail early, with a clear message, when PostgreSQL or Redis is not reachable."""
    try:
        with storage.connect_db():
            pass
        storage.check_redis(storage.connect_redis())
    except DialerError as exc:
        raise DialerError(f"{exc} (scripts/demo.sh starts both; or set DATABASE_URL and REDIS_URL)") from exc
