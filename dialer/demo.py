"""`dialer demo`: a predictive campaign on the embedded default, end to end.

The simulated FreeSWITCH answers the engine's originates with modelled called parties (spoken
humans and answering machines from espeak-ng), federal and state do-not-call snapshots are imported, a
campaign with leads in eight US time zones is created, simulated agents log in, and the engine
runs it for a while with the compliance gate deciding before every originate, AMD listening to
every answered call and pacing keeping the abandon rate under 3%.

The leads use the fictional NANP range NXX-555-0112..0199, so even pointed at a real FreeSWITCH
(FREESWITCH_URL) the demo cannot ring a real person.
"""
from __future__ import annotations

import os
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
from dialer.compliance.service import LazyConnection, data_dir, import_test_lists, live_gate
from dialer.engine.engine import Engine, EngineConfig
from dialer.engine.simagents import AgentSimulator
from dialer.errors import DialerError
from dialer.reporting import campaign_report, render_report

# Area codes by calling-time zone, each inside one state and one zone (no split area codes), so
# that whatever the time of day most demo leads can be in zones inside their calling window and
# some in zones outside it.
DEMO_AREAS = [
    ("212", "America/New_York", "NY"), ("617", "America/New_York", "MA"), ("404", "America/New_York", "GA"),
    ("202", "America/New_York", "DC"), ("215", "America/New_York", "PA"), ("704", "America/New_York", "NC"),
    ("313", "America/Detroit", "MI"), ("305", "America/New_York", "FL"),
    ("312", "America/Chicago", "IL"), ("214", "America/Chicago", "TX"), ("713", "America/Chicago", "TX"),
    ("504", "America/Chicago", "LA"), ("612", "America/Chicago", "MN"), ("615", "America/Chicago", "TN"),
    ("303", "America/Denver", "CO"), ("801", "America/Denver", "UT"), ("505", "America/Denver", "NM"),
    ("602", "America/Phoenix", "AZ"), ("406", "America/Denver", "MT"),
    ("213", "America/Los_Angeles", "CA"), ("415", "America/Los_Angeles", "CA"), ("206", "America/Los_Angeles", "WA"),
    ("503", "America/Los_Angeles", "OR"), ("702", "America/Los_Angeles", "NV"), ("619", "America/Los_Angeles", "CA"),
    ("907", "America/Anchorage", "AK"), ("808", "Pacific/Honolulu", "HI"),
    ("787", "America/Puerto_Rico", "PR"), ("671", "Pacific/Guam", "GU"),
]
NUMBERS_PER_AREA = 88            # NXX-555-0112 .. 0199, the fictional range (0100-0111 are scripted)
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DemoLead:
    phone: str
    state: str
    line_type: str


def is_open(zone: str, at: datetime) -> bool:
    """Inside the federal 8 am - 9 pm window with a margin of half an hour at each end."""
    local = at.astimezone(ZoneInfo(zone))
    return 8.5 <= local.hour + local.minute / 60 < 20.5


def open_areas(at: datetime) -> list[str]:
    return [npa for npa, zone, _state in DEMO_AREAS if is_open(zone, at)]


def demo_leads(rng: random.Random, at: datetime, count: int
               ) -> tuple[list[DemoLead], list[str], dict[str, list[str]]]:
    """About `count` leads, nine in ten in area codes inside their calling window at `at`, the
    numbers on the federal do-not-call snapshot (about 5%, plus one per area code so every area
    code has a dated snapshot), and those on their state's list (about 2% in states keeping one)."""
    open_, closed = ([a for a in DEMO_AREAS if is_open(a[1], at) == flag] for flag in (True, False))
    wanted_open = min(len(open_), max(1, round(0.9 * count / NUMBERS_PER_AREA)))
    wanted_closed = min(len(closed), max(1, round(0.1 * count / NUMBERS_PER_AREA)))
    areas = rng.sample(open_, wanted_open) + rng.sample(closed, wanted_closed)
    leads, registry, state_lists = [], [], {}
    for npa, _zone, state in areas:
        for line in range(12, 12 + NUMBERS_PER_AREA):
            phone = f"+1{npa}55501{line:02d}"
            # About one in ten has no line-type data: treated as wireless, so an autodialed call
            # needs consent the lead does not have (the gate blocks it, 47 CFR 64.1200(a)(1)(iii)).
            leads.append(DemoLead(phone, state, "unknown" if rng.random() < 0.10 else "landline"))
            if rng.random() < 0.05:
                registry.append(phone)
            elif rng.random() < 0.02:
                state_lists.setdefault(state, []).append(phone)
        registry.append(f"+1{npa}5550111")
    return leads, registry, state_lists


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


def setup(db_url: str, name: str, agents: int, rng: random.Random, registry_dir: Path, as_of: date,
          at: datetime, lead_count: int) -> tuple[int, int]:
    leads, registry, state_lists = demo_leads(rng, at, lead_count)
    registry_dir.mkdir(parents=True, exist_ok=True)
    # Every state that keeps a list gets one (empty where no demo lead is on it): without a copy,
    # telemarketing to those states fails closed (REGISTRY_MISSING).
    import_test_lists(RegistryStore(LazyConnection(db_url), registry_dir), as_of, federal=registry,
                      states=state_lists, source="demo")
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
    return created.id, len(leads)


def retire_old_demos(db_url: str, console: Console) -> None:
    """Earlier demo campaigns left running (an interrupted demo) would be dialed too: stop them."""
    with storage.connect_db(db_url) as conn:
        names = [name for (name,) in conn.execute(
            "UPDATE campaigns SET status = 'stopped', status_changed_at = now()"
            " WHERE name LIKE 'demo-%%' AND status <> 'stopped' RETURNING name")]
    if names:
        console.print(f"stopped earlier demo campaigns: {', '.join(names)}")


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


def run_demo(*, duration: float, agents: int, leads: int, seed: int, at: datetime | None,
             console: Console) -> dict:
    """Run the demo, print the live view and the report on `console`; return the summary."""
    from esl.fakeswitch import CalledPartyModel, FakeSwitch
    from esl.fakeswitch.voices import available, build_voices

    rng = random.Random(seed)
    db_url, redis_url = config.database_url(), config.redis_url()
    now = datetime.now(timezone.utc)
    clock_offset = timedelta(0)
    if at is None and not open_areas(now):
        # 11:00-12:00 UTC no US zone is inside calling hours: say so and show the next hour.
        at = (now + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
        console.print(f"[yellow]No US time zone is inside calling hours now; the compliance clock is set to "
                      f"{at.isoformat()} (the gate judges calling hours by it). Use --at to choose.[/]")
    if at is not None:
        clock_offset = at - now
    nodes = config.freeswitch_nodes()
    switch = None
    if nodes is None:
        files = build_voices(ROOT / ".data" / "voices") if available() else {}
        if not files:
            console.print("[yellow]espeak-ng/sox missing: far ends use synthetic audio, AMD will be poor[/]")
        model = CalledPartyModel(seed=seed, answer_probability=0.45, machine_probability=0.25,
                                 ring_median=4.0, ring_max=20.0, stay_mean=20.0)
        switch = FakeSwitch(port=0, model=model, audio_files=files).start()
        nodes = config.parse_freeswitch_urls(switch.url)
        console.print(f"simulated FreeSWITCH on {switch.url.split('@')[1]}")

    retire_old_demos(db_url, console)
    name = f"demo-{int(now.timestamp())}"
    campaign_id, lead_count = setup(db_url, name, agents, rng, data_dir() / "demo",
                                    (now + clock_offset).date() - timedelta(days=1), now + clock_offset, leads)
    console.print(f"campaign {name}: {lead_count} leads, area codes inside calling hours now: "
                  f"{', '.join(open_areas(now + clock_offset)) or 'none'}; {agents} agents, predictive pacing, "
                  f"abandon target 3%")
    cfg = EngineConfig.from_env(nodes)
    engine = Engine(cfg, live_gate(db_url, redis_url, data_dir() / "demo"),
                    clock=lambda: datetime.now(timezone.utc) + clock_offset)
    simulator = None
    started = time.monotonic()
    # Engine.start inside the try: when it fails (a listen port taken, QA 7) the finally stops
    # what it started and the demo campaign is not left `running`.
    try:
        try:
            engine.start()
        except OSError as exc:
            raise DialerError(listen_problem(engine, exc)) from None
        simulator = AgentSimulator(engine, wrap_mean_s=4.0, seed=seed).start()
        agent_phone = "sofia/internal/7700@127.0.0.1" if switch is not None else "user/{agent}"
        for index in range(agents):
            engine.login_agent(f"demo-agent-{index + 1}", agent_phone.format(agent=1000 + index), name)
        started = time.monotonic()      # campaign time starts once the agents are in
        from rich.live import Live
        with Live(live_table(engine, started, duration), console=console, refresh_per_second=2) as live:
            while time.monotonic() - started < duration:
                gevent.sleep(0.5)
                live.update(live_table(engine, started, duration))
        if not console.is_terminal:
            console.line()      # rich leaves a piped live table's last line unterminated
        console.print("stopping: calls in flight finish, unclaimed leads go back")
    finally:
        campaign_seconds = time.monotonic() - started
        if simulator is not None:
            simulator.stop()
        engine.stop(drain_timeout=60)
        if switch is not None:
            switch.stop()
        with storage.connect_db(db_url) as conn:
            conn.execute("UPDATE campaigns SET status = 'stopped', status_changed_at = now() WHERE id = %s",
                         (campaign_id,))
    with storage.connect_db(db_url) as conn:
        report = campaign_report(conn, name)
    console.print(render_report(report))
    figures = report.to_dict()
    total = figures["abandon_total"]
    return {"duration_s": round(campaign_seconds, 1), "calls": figures["attempts"], "live_answers": total["live"],
            "abandoned": total["abandoned"], "abandon_rate": total["rate"], "machines": total["machines"],
            "compliance_blocks": figures["compliance"]["blocked"], "blocks_by_reason": figures["blocks_by_reason"],
            "cdrs": figures["cdrs"], "agents": agents}


def listen_problem(engine: Engine, exc: OSError) -> str:
    """One line naming the listen address Engine.start could not take and its variable. It
    starts the AMD receiver, the hook server and the metrics endpoint in that order, so the
    first of them not running is the one that failed."""
    cfg = engine.cfg
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    if not engine.receiver.started:
        what, address = "DIALER_AMD_LISTEN", cfg.amd_listen
    elif cfg.hook_listen is not None and engine.hooks is None:
        what, address = "DIALER_HOOK_LISTEN", cfg.hook_listen
    elif cfg.metrics_listen is not None and engine.ops is None:
        what, address = "DIALER_METRICS_LISTEN", cfg.metrics_listen
    else:
        return f"the engine could not start: {reason}"
    host, port = address
    return (f"cannot listen on {host}:{port} ({what}): {reason}; "
            f"free the port or set {what} to another one")


def check_ready() -> None:
    """Fail early, with a clear message, when PostgreSQL or Redis is not reachable."""
    try:
        with storage.connect_db():
            pass
        storage.check_redis(storage.connect_redis())
    except DialerError as exc:
        raise DialerError(f"{exc} (scripts/demo.sh starts both; or set DATABASE_URL and REDIS_URL)") from exc
