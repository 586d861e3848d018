"""The engine end to end on the simulated switch, a real PostgreSQL and a real Redis."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import gevent
import pytest

from dialer import storage
from dialer.campaigns import CampaignStatus
from dialer.engine.simagents import AgentSimulator
from esl.fakeswitch import Behaviour, Outcome, Party
from tests.engine_world import (AGENT_PHONE, BASE_SETTINGS, PINNED, create_campaign, import_registry,
                                start_engine, start_switch)

HUMAN, MACHINE, BUSY, UNALLOCATED, REJECTED_DNC = ("+12125550100", "+12125550101", "+12125550102",
                                                   "+12125550105", "+12125550104")


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(step)
    return predicate()


def lead_rows(db_url):
    with storage.connect_db(db_url) as conn:
        return {row[0]: row[1:] for row in conn.execute(
            "SELECT phone_e164, status, attempts, last_outcome, close_reason FROM leads")}


def attempts(db_url):
    with storage.connect_db(db_url) as conn:
        return conn.execute(
            "SELECT phone_e164, outcome, amd_result, hangup_cause, agent_id, detail, disposition, ended_at"
            " FROM call_attempts ORDER BY id").fetchall()


def busy_campaign(world, db_url, name: str, phones: list[str], agent_id: str):
    """A campaign of numbers that ring busy, run by a new engine with one agent logged in."""
    switch, make_engine = world
    for phone in phones:
        switch.model.script(phone, Behaviour(Outcome.BUSY, ring_seconds=0.3))
    create_campaign(db_url, name, BASE_SETTINGS, phones)
    engine = make_engine()
    engine.login_agent(agent_id, AGENT_PHONE, name)
    return engine


@pytest.fixture
def world(db_url, redis_url, tmp_path):
    switch = start_switch()
    # A human who talks for 3 s, then hangs up (the agent's leg parks again).
    switch.model.script(HUMAN, Behaviour(Outcome.ANSWER, ring_seconds=0.5, party=Party.HUMAN, stay_seconds=4.0))
    switch.model.script(MACHINE, Behaviour(Outcome.ANSWER, ring_seconds=0.5, party=Party.MACHINE, stay_seconds=30.0))
    import_registry(db_url, tmp_path, [REJECTED_DNC], PINNED.date() - timedelta(days=3))
    engines = []

    def make_engine(**kwargs):
        engine = start_engine(db_url, redis_url, switch, tmp_path, **kwargs)
        engines.append(engine)
        return engine

    yield switch, make_engine
    for engine in engines:
        engine.stop(drain_timeout=2)
    switch.stop()


def test_campaign_runs_end_to_end(world, db_url):
    switch, make_engine = world
    create_campaign(db_url, "e2e", BASE_SETTINGS, [HUMAN, MACHINE, BUSY, UNALLOCATED, REJECTED_DNC])
    engine = make_engine()
    agents = AgentSimulator(engine, wrap_mean_s=0.2, seed=1).start()
    engine.login_agent("agent-1", AGENT_PHONE, "e2e")
    try:
        assert wait_until(lambda: all(status not in ("new", "in_progress")
                                      for status, *_ in lead_rows(db_url).values()), 40)
        assert wait_until(lambda: agents.dispositions >= 1, 5)
    finally:
        agents.stop()
    leads = lead_rows(db_url)
    assert leads[REJECTED_DNC][0] == "closed" and "US-DNC" in leads[REJECTED_DNC][3]
    assert leads[REJECTED_DNC][1] == 0            # never dialed
    assert leads[UNALLOCATED][0] == "closed" and leads[UNALLOCATED][3].startswith("invalid_number")
    assert leads[BUSY][0] == "callable" and leads[BUSY][2] == "busy"
    assert leads[MACHINE][2] == "machine"
    assert leads[HUMAN][0] == "done" and leads[HUMAN][2] == "human"
    rows = {r[0]: r for r in attempts(db_url)}
    assert set(rows) == {HUMAN, MACHINE, BUSY, UNALLOCATED}
    assert rows[HUMAN][2] == "HUMAN" and rows[HUMAN][4] == "agent-1"
    assert rows[MACHINE][2] == "MACHINE"
    assert rows[BUSY][3] == "USER_BUSY"
    assert all(r[7] is not None for r in rows.values())
    with storage.connect_db(db_url) as conn:
        cdrs = dict(conn.execute("SELECT c.origination_uuid::text, c.hangup_cause FROM cdrs c").fetchall())
        live, abandoned = conn.execute("SELECT sum(live), sum(abandoned) FROM abandon_hours").fetchone()
        disposition = conn.execute("SELECT disposition FROM call_attempts WHERE phone_e164 = %s", (HUMAN,)).fetchone()[0]
    assert len(cdrs) == 2        # the two answered calls
    assert (live, abandoned) == (1, 0)
    assert disposition is not None


def test_live_answer_without_agent_hears_safe_harbor_and_counts_abandoned(world, db_url):
    switch, make_engine = world
    patient = "+12125550180"           # stays on the line long enough to hear the whole message
    switch.model.script(patient, Behaviour(Outcome.ANSWER, ring_seconds=0.5, party=Party.HUMAN, stay_seconds=30.0))
    create_campaign(db_url, "abandon", BASE_SETTINGS, [patient])
    engine = make_engine()              # no agent logs in: a progressive campaign would not dial,
    engine.agents.listeners.clear()     # so pretend one is ready without a phone to bridge to
    from dialer.engine.agents import Agent, AgentState
    ghost = engine.agents.add(Agent("ghost", "none", "abandon"))
    # a leg the switch does not have: counted as ready, never bridgeable
    ghost.leg_uuid, ghost.node = "no-such-leg", engine.switchboard.pick_node()
    engine.agents.transition(ghost, AgentState.READY)
    assert wait_until(lambda: lead_rows(db_url)[patient][2] is not None, 30)
    rows = attempts(db_url)
    assert [(r[1], r[2], r[5]) for r in rows] == [("abandoned", "HUMAN", "safe_harbor")]
    with storage.connect_db(db_url) as conn:
        live, abandoned = conn.execute("SELECT sum(live), sum(abandoned) FROM abandon_hours").fetchone()
        safe_harbor_at = conn.execute("SELECT safe_harbor_at FROM call_attempts").fetchone()[0]
    assert (live, abandoned) == (1, 1) and safe_harbor_at is not None
    account = engine.store.abandon_account(engine.runners[next(iter(engine.runners))].campaign_id)
    assert account["window_live"] == 1 and account["window_abandoned"] == 1
    # The safe-harbor message was played on the parked leg before the hangup.
    assert switch.counters["app_playback"] == 1, sorted(switch.counters.items())


def test_two_engines_share_a_campaign_without_dialing_a_lead_twice(world, db_url):
    switch, make_engine = world
    extra = [f"+121255501{n}" for n in range(50, 60)]
    for phone in extra:
        switch.model.script(phone, Behaviour(Outcome.BUSY, ring_seconds=0.3))
    phones = [BUSY, UNALLOCATED, "+12125550106", "+12125550108"] + extra
    create_campaign(db_url, "shared", BASE_SETTINGS, phones)
    first = make_engine(engine_id="engine-a", ports=range(41200, 41300))
    second = make_engine(engine_id="engine-b", ports=range(41300, 41400))
    for index, engine in enumerate((first, second)):
        engine.login_agent(f"agent-{index}", AGENT_PHONE, "shared")
    assert wait_until(lambda: all(r[1] >= 1 for r in lead_rows(db_url).values()), 30)
    with storage.connect_db(db_url) as conn:
        per_lead = conn.execute("SELECT phone_e164, count(*), count(DISTINCT engine_id) FROM call_attempts"
                                " GROUP BY 1").fetchall()
        engines = {e for (e,) in conn.execute("SELECT DISTINCT engine_id FROM call_attempts")}
    # Busy numbers are retried later (retry delay), never twice at once: one attempt each so far.
    assert all(count == 1 for _, count, _ in per_lead), per_lead
    assert engines == {"engine-a", "engine-b"}


def test_pause_stops_new_originates_and_stop_releases_leads(world, db_url):
    switch, make_engine = world
    phones = [f"+121255501{n}" for n in range(60, 66)]
    for phone in phones:
        switch.model.script(phone, Behaviour(Outcome.BUSY, ring_seconds=0.3))
    create_campaign(db_url, "pausing", BASE_SETTINGS, phones)
    with storage.connect_db(db_url) as conn:
        from dialer import campaigns
        campaigns.set_status(conn, "pausing", "paused")
        conn.commit()
    engine = make_engine()
    engine.login_agent("agent-p", AGENT_PHONE, "pausing")
    gevent.sleep(2.5)
    assert attempts(db_url) == []
    with storage.connect_db(db_url) as conn:
        from dialer import campaigns
        campaigns.set_status(conn, "pausing", "running")
        conn.commit()
    assert wait_until(lambda: len(attempts(db_url)) >= 1, 10)
    with storage.connect_db(db_url) as conn:
        from dialer import campaigns
        campaigns.set_status(conn, "pausing", "stopping")
        conn.commit()
    assert wait_until(lambda: storage.connect_db(db_url).execute(
        "SELECT status FROM campaigns WHERE name = 'pausing'").fetchone()[0] == "stopped", 20)
    statuses = {status for status, *_ in lead_rows(db_url).values()}
    assert "in_progress" not in statuses


def test_cdr_written_within_a_second_of_hangup(world, db_url):
    switch, make_engine = world
    create_campaign(db_url, "cdr", BASE_SETTINGS, [MACHINE])
    engine = make_engine()
    engine.login_agent("agent-c", AGENT_PHONE, "cdr")
    assert wait_until(lambda: len(attempts(db_url)) == 1 and attempts(db_url)[0][7] is not None, 30)
    with storage.connect_db(db_url) as conn:
        ended, recorded, variables = conn.execute(
            "SELECT ended_at, recorded_at, variables FROM cdrs").fetchone()
    assert (recorded - ended).total_seconds() < 1.0
    assert "billsec" in variables and "hangup_cause" in variables


def test_trunk_failure_fails_over_to_the_next_gateway(world, db_url):
    switch, make_engine = world
    settings = {**BASE_SETTINGS, "gateways": [{"name": "gw1", "max_cps": 20, "max_channels": 20},
                                              {"name": "gw2", "max_cps": 20, "max_channels": 20}]}
    temporary_failure = "+12125550106"          # scripted 503: NORMAL_TEMPORARY_FAILURE
    create_campaign(db_url, "failover", settings, [temporary_failure])
    engine = make_engine()
    engine.login_agent("agent-f", AGENT_PHONE, "failover")
    assert wait_until(lambda: lead_rows(db_url)[temporary_failure][0] != "in_progress"
                      and len(attempts(db_url)) == 2, 20)
    with storage.connect_db(db_url) as conn:
        rows = conn.execute("SELECT gateway, hangup_cause, decision_id FROM call_attempts ORDER BY id").fetchall()
    assert [(g, c) for g, c, _ in rows] == [("gw1", "NORMAL_TEMPORARY_FAILURE"), ("gw2", "NORMAL_TEMPORARY_FAILURE")]
    assert rows[0][2] != rows[1][2]          # each originate had its own compliance decision
    status, attempts_made, last_outcome, _ = lead_rows(db_url)[temporary_failure]
    assert (status, attempts_made, last_outcome) == ("callable", 2, "failed")


def test_hourly_cap_holds(world, db_url):
    switch, make_engine = world
    busy = [f"+121255501{n}" for n in range(70, 76)]
    for phone in busy:
        switch.model.script(phone, Behaviour(Outcome.BUSY, ring_seconds=0.2))
    create_campaign(db_url, "capped", {**BASE_SETTINGS, "caps": {"hourly": 3}}, busy)
    engine = make_engine()
    engine.login_agent("agent-k", AGENT_PHONE, "capped")
    assert wait_until(lambda: len(attempts(db_url)) >= 3, 20)
    gevent.sleep(2.0)    # several more ticks
    assert len(attempts(db_url)) == 3


def test_voicemail_drop_plays_the_message_after_the_beep(world, db_url):
    switch, make_engine = world
    settings = {**BASE_SETTINGS, "amd": {"enabled": True, "action": "voicemail_drop",
                                         "voicemail_message": "ivr/leave-a-message.wav"}}
    create_campaign(db_url, "vmdrop", settings, [MACHINE])
    engine = make_engine()
    engine.login_agent("agent-v", AGENT_PHONE, "vmdrop")
    assert wait_until(lambda: len(attempts(db_url)) == 1 and attempts(db_url)[0][7] is not None, 30)
    (row,) = attempts(db_url)
    assert (row[1], row[2], row[5]) == ("machine", "MACHINE", "voicemail_left")
    assert switch.counters["app_playback"] == 1, sorted(switch.counters.items())


def test_callback_goes_to_the_agent_it_was_promised_to(world, db_url):
    switch, make_engine = world
    create_campaign(db_url, "callbacks", BASE_SETTINGS, [HUMAN])
    with storage.connect_db(db_url) as conn:
        conn.execute("UPDATE leads SET status = 'callback', callback_agent = 'agent-2',"
                     " next_attempt_at = now() - interval '1 minute'")
        conn.commit()
    engine = make_engine()
    engine.login_agent("agent-1", AGENT_PHONE, "callbacks")
    gevent.sleep(1.5)
    assert attempts(db_url) == []            # promised to agent-2, who is not logged in yet
    engine.login_agent("agent-2", AGENT_PHONE, "callbacks")
    assert wait_until(lambda: len(attempts(db_url)) == 1 and attempts(db_url)[0][4] is not None, 20)
    assert attempts(db_url)[0][4] == "agent-2"


def test_do_not_call_disposition_puts_the_number_on_the_internal_list(world, db_url):
    switch, make_engine = world
    create_campaign(db_url, "optout", BASE_SETTINGS, [HUMAN])
    engine = make_engine()
    engine.login_agent("agent-o", AGENT_PHONE, "optout")
    from dialer.engine.agents import AgentState
    agent = engine.agents.get("agent-o")
    assert wait_until(lambda: agent.state is AgentState.WRAP_UP, 30)
    engine.disposition("agent-o", "DNC")
    assert agent.state is AgentState.READY
    entries, _consents = engine.gate.records.lookup(HUMAN)
    assert any(entry.list_kind == "internal" and entry.source == "agent" for entry in entries)
    decision = engine.gate.decide(engine.runners[next(iter(engine.runners))].gate_request(
        lead_for(db_url, HUMAN), "+12125550199"))
    assert not decision.allowed and any("DNC" in reason for reason in decision.reasons)


def lead_for(db_url, phone):
    from dialer.engine.store import ClaimedLead
    with storage.connect_db(db_url) as conn:
        row = conn.execute("SELECT id, campaign_id, phone_e164, attempts, state, zip, tz_hint, person_id, debt_id,"
                           " line_type FROM leads WHERE phone_e164 = %s", (phone,)).fetchone()
    return ClaimedLead(*row)


def test_ivr_opt_out_through_the_dialplan_socket_hook(world, db_url):
    switch, make_engine = world
    engine = make_engine()
    host, port = engine.hooks.address
    caller = "+12125550181"
    from esl.connection import connect
    conn = connect("127.0.0.1", switch.port, timeout=5)
    conn.authenticate("ClueCon")
    conn.subscribe(["BACKGROUND_JOB"])
    # What the opt-out IVR extension does (dialplans/inbound.xml): set the contract's variables,
    # then hand the call to the engine with `socket host:port async full`.
    job = conn.bgapi("originate {dialer_action=optout,dialer_optout_number=%s,dialer_optout_digits=9,"
                     "dialer_optout_source=inbound,dialer_optout_confirm_file=ivr/optout_done.wav}"
                     "sofia/internal/7700@127.0.0.1 &socket(%s:%d async full)" % (caller, host, port))
    job.wait(10)
    assert wait_until(lambda: engine.hooks.handler.optouts == 1, 10)
    entries, consents = engine.gate.records.lookup(caller)
    assert [(e.list_kind, e.source) for e in entries] == [("internal", "ivr")]
    assert wait_until(lambda: switch.counters["app_playback"] == 1, 10)   # the confirmation
    conn.close()


def test_inbound_call_through_the_socket_hook_reaches_a_ready_agent(world, db_url):
    switch, make_engine = world
    create_campaign(db_url, "inbound", BASE_SETTINGS, [])
    engine = make_engine()
    engine.login_agent("agent-i", AGENT_PHONE, "inbound")
    from dialer.engine.agents import AgentState
    from esl.connection import connect
    host, port = engine.hooks.address
    conn = connect("127.0.0.1", switch.port, timeout=5)
    conn.authenticate("ClueCon")
    conn.subscribe(["BACKGROUND_JOB"])
    caller = "+12125550182"
    switch.model.script(caller, Behaviour(Outcome.ANSWER, party=Party.HUMAN, stay_seconds=2.0))
    conn.bgapi("originate {dialer_action=inbound,dialer_campaign=inbound,dialer_caller=%s}"
               "sofia/gateway/pstn/%s &socket(%s:%d async full)" % (caller, caller, host, port)).wait(10)
    agent = engine.agents.get("agent-i")
    assert wait_until(lambda: engine.hooks.handler.inbound_bridged == 1, 10)
    assert wait_until(lambda: agent.state is AgentState.WRAP_UP, 10)    # the caller hung up after 2 s
    conn.close()


def test_agentless_campaign_plays_its_message_and_abandons_nobody(world, db_url):
    switch, make_engine = world
    patient = "+12125550183"
    switch.model.script(patient, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.HUMAN, stay_seconds=30.0))
    settings = {**BASE_SETTINGS, "dial_mode": "agentless", "call_purpose": "informational", "voice": "prerecorded",
                "pacing": {"mode": "agentless"}, "safe_harbor_message": "ivr/school-closed.wav"}
    create_campaign(db_url, "robo", settings, [patient])
    make_engine()
    assert wait_until(lambda: len(attempts(db_url)) == 1 and attempts(db_url)[0][7] is not None, 30)
    (row,) = attempts(db_url)
    assert (row[1], row[2], row[5]) == ("human", "HUMAN", "message_delivered")
    assert switch.counters["app_playback"] == 1
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT sum(live), sum(abandoned) FROM abandon_hours").fetchone() == (1, 0)


def test_call_ends_are_spooled_while_postgresql_is_down_and_replayed(world, db_url, tmp_path, monkeypatch):
    switch, make_engine = world
    create_campaign(db_url, "spool", BASE_SETTINGS, [BUSY])
    engine = make_engine()
    engine.spool = type(engine.spool)(tmp_path / "spool.jsonl")
    from dialer.errors import StorageError
    real_finish = engine.store.finish_attempt
    outage = {"on": True}

    def finish_attempt(*args, **kwargs):
        if outage["on"]:
            raise StorageError("PostgreSQL: connection refused (simulated outage)")
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(engine.store, "finish_attempt", finish_attempt)
    engine.login_agent("agent-s", AGENT_PHONE, "spool")
    assert wait_until(lambda: engine.spool.written == 1, 20)
    assert attempts(db_url)[0][7] is None           # not ended in the database yet
    outage["on"] = False
    assert wait_until(lambda: engine.spool.replayed == 1, 5)
    (row,) = attempts(db_url)
    assert row[1] == "busy" and row[3] == "USER_BUSY" and row[7] is not None
    assert not engine.spool.pending()


def test_operators_are_warned_as_the_abandon_rate_nears_the_limit(world, db_url):
    switch, make_engine = world
    create_campaign(db_url, "warn", BASE_SETTINGS, [])
    engine = make_engine()
    runner = next(iter(engine.runners.values()))
    quiet = {"window_live": 100, "window_abandoned": 2, "day_live": 10, "day_abandoned": 1}   # 2%; day too small
    engine._warn_abandon(runner, quiet)
    near = {"window_live": 100, "window_abandoned": 2, "day_live": 40, "day_abandoned": 1}    # day 2.5%
    engine._warn_abandon(runner, near)
    engine._warn_abandon(runner, near)        # once a minute, not every second
    events = [fields for _id, fields in engine.redis.xrange("dialer:events")
              if fields.get("type") == "abandon_warning"]
    assert len(events) == 1 and events[0]["campaign"] == "warn" and float(events[0]["rate"]) == 0.025


def test_one_engine_owns_a_campaign_and_another_takes_over_when_it_goes(world, db_url, monkeypatch):
    switch, make_engine = world
    monkeypatch.setattr("dialer.engine.store.OWNER_LEASE", timedelta(seconds=2))
    create_campaign(db_url, "owned", BASE_SETTINGS, [])
    first = make_engine(engine_id="engine-a", ports=range(41200, 41300))
    second = make_engine(engine_id="engine-b", ports=range(41300, 41400))
    gevent.sleep(1.5)
    owners = [engine.engine_id for engine in (first, second) if engine.owned]
    assert owners == ["engine-a"]
    first.stop(drain_timeout=1)                # the owner goes; its lease runs out
    assert wait_until(lambda: bool(second.owned), 6)
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT owner_engine FROM campaigns WHERE name = 'owned'").fetchone()[0] == "engine-b"


def test_no_call_while_the_clock_is_off_the_databases(world, db_url, monkeypatch):
    switch, make_engine = world
    create_campaign(db_url, "skewed", BASE_SETTINGS, [BUSY])
    engine = make_engine()
    monkeypatch.setattr(engine.store, "db_clock_skew", lambda: 3.5)
    gevent.sleep(1.5)                          # a supervision pass notices
    assert not engine.clock_ok and not engine.may_dial()
    engine.login_agent("agent-k", AGENT_PHONE, "skewed")
    gevent.sleep(1.5)
    assert attempts(db_url) == []


def test_a_stopped_engine_removes_its_live_counters(world, db_url, redis_url):
    """QA: `dialer status` showed a stopped campaign as running for the counters' 30-s expiry."""
    import redis as redis_lib
    engine = busy_campaign(world, db_url, "counters", ["+12125550170"], "agent-k")
    client = redis_lib.Redis.from_url(redis_url)
    assert wait_until(lambda: client.keys("dialer:campaign:counters:*"), 10)
    engine.stop(drain_timeout=2)
    assert client.keys("dialer:campaign:counters:*") == []


def test_a_restarted_runner_keeps_the_campaigns_live_counters(world, db_url):
    """QA: a pacing-loop crash restarted the runner and its counters from zero, so the live
    table disagreed with the report. The supervisor's restart carries them over."""
    engine = busy_campaign(world, db_url, "restart", [f"+121255501{n}" for n in range(71, 79)], "agent-r")
    assert wait_until(lambda: any(r.stats.originated >= 2 for r in engine.runners.values()), 20)
    runner = next(r for r in engine.runners.values() if r.name == "restart")
    before = runner.stats.originated
    gevent.kill(runner._greenlet, RuntimeError("a bug in the pacing loop"))
    assert wait_until(lambda: next(r for r in engine.runners.values() if r.name == "restart") is not runner, 10)
    assert next(r for r in engine.runners.values() if r.name == "restart").stats.originated >= before


def test_a_person_left_waiting_by_amd_who_hangs_up_is_abandoned(world, db_url):
    """47 CFR 64.1200(a)(7): a person not put through within 2 s of their greeting was abandoned,
    also when AMD has not decided yet. Here AMD is made slow (it waits 5 s of silence): the
    person who says hello and waits over 2 s, then hangs up, counts as live and abandoned; one
    who hangs up while still speaking or right after counts nowhere (not known to be a person)."""
    switch, make_engine = world
    waiting, quick = "+12125550181", "+12125550182"
    switch.model.script(waiting, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.HUMAN, stay_seconds=5.0))
    switch.model.script(quick, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.HUMAN, stay_seconds=0.6))
    slow_amd = dict(BASE_SETTINGS, amd={"enabled": True, "action": "hangup",
                                        "params": {"human_silence_short_ms": 5000, "human_silence_long_ms": 5000}})
    create_campaign(db_url, "slow-amd", slow_amd, [waiting, quick])
    engine = make_engine()
    engine.login_agent("agent-w", AGENT_PHONE, "slow-amd")
    assert wait_until(lambda: len(attempts(db_url)) == 2 and all(a[7] is not None for a in attempts(db_url)), 30)
    rows = {a[0]: a for a in attempts(db_url)}
    assert (rows[waiting][1], rows[waiting][5]) == ("abandoned", "hung_up_waiting_for_amd"), rows[waiting]
    assert (rows[quick][1], rows[quick][5]) == ("no_answer", "hung_up_during_amd"), rows[quick]


def test_placed_calls_are_recorded_so_counters_survive_a_redis_loss(world, db_url, redis_url):
    """Each placed call writes its compliance attempt (and then its outcome) to PostgreSQL, so
    `dialer compliance rebuild-counters` puts the frequency counters back after Redis lost them."""
    import redis as redis_lib
    from click.testing import CliRunner
    from cli import main
    busy_campaign(world, db_url, "records", [f"+121255501{n}" for n in range(90, 93)], "agent-rc")
    assert wait_until(lambda: len(attempts(db_url)) == 3 and all(a[7] is not None for a in attempts(db_url)), 30)
    with storage.connect_db(db_url) as conn:
        assert wait_until(lambda: conn.execute("SELECT count(*) FROM compliance_call_attempts"
                                               " WHERE outcome = 'no_connect'").fetchone()[0] == 3, 10)
    client = redis_lib.Redis.from_url(redis_url)
    before = {k: client.zrange(k, 0, -1) for k in client.keys("cmp:c:*")}
    assert before and all(before.values())
    client.delete(*before)                                       # Redis lost its data
    result = CliRunner().invoke(main, ["compliance", "rebuild-counters"],
                                env={"DATABASE_URL": db_url, "REDIS_URL": redis_url})
    assert result.exit_code == 0 and "from 3 placed calls" in result.output, result.output
    assert {k: client.zrange(k, 0, -1) for k in client.keys("cmp:c:*")} == before


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own, which the test can stop and restart (empty, as a
    Redis without persistence comes back)."""
    import shutil
    import socket
    import subprocess
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = []

    def start():
        procs.append(subprocess.Popen([shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port),
                                       "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                                      stdout=subprocess.DEVNULL))
        client = storage.connect_redis(f"redis://127.0.0.1:{port}/0")
        assert wait_until(lambda: _pings(client), 10)

    def stop():
        procs[-1].terminate()
        procs[-1].wait(10)

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _pings(client) -> bool:
    import redis as redis_lib
    try:
        return bool(client.ping())
    except redis_lib.RedisError:
        return False


def test_a_counter_store_outage_holds_dialing_and_keeps_every_lead(world, db_url, tmp_path, private_redis,
                                                                   redis_client):
    """The frequency counters' Redis goes down: each decision fails closed, the engine holds its
    dialing (probing with one lead at a time, /readyz says why) and closes no lead. Redis comes
    back empty (a restart): the engine rebuilds the counters from PostgreSQL, then dials again."""
    from dialer.compliance.service import live_gate
    switch, make_engine = world
    counters_url, start_redis, stop_redis = private_redis
    phones = [f"+121255502{n}" for n in range(10, 16)]
    for phone in phones:
        switch.model.script(phone, Behaviour(Outcome.BUSY, ring_seconds=0.3))
    create_campaign(db_url, "outage", BASE_SETTINGS, phones)
    gate = live_gate(db_url, counters_url, tmp_path, redis_timeout_s=0.3, redis_retries=0)
    engine = make_engine(gate=gate)
    assert gate.counters.loaded() is not None                   # the engine's start marked them
    engine.login_agent("agent-o", AGENT_PHONE, "outage")
    assert wait_until(lambda: len(attempts(db_url)) >= 1, 15)
    stop_redis()
    assert wait_until(lambda: engine.gate_probing, 15)
    refused_at = time.monotonic()
    assert not engine.may_dial()
    ready = engine.ops.checks.ready()
    assert not ready["ok"] and ready["compliance_stores"]["reasons"] == ["COUNTER_STORE_UNAVAILABLE"]
    # `dialer status` says why (the engine's live hash)
    assert wait_until(lambda: "COUNTER_STORE_UNAVAILABLE" in (
        redis_client.hget("dialer:campaign:outage:engine-1", "held") or ""), 5)
    gevent.sleep(3)
    assert not engine.ops.checks.ready()["ok"]          # also between two holds (QA: it flapped)
    rows = lead_rows(db_url)
    refused = [r for r in rows.values() if r[2] == "blocked:COUNTER_STORE_UNAVAILABLE"]
    # one lead, then another after 2 s held (the hold doubles): not a lead per tick
    assert 1 <= len(refused) <= 2 and all(r[0] == "callable" for r in refused), rows
    assert not [r for r in rows.values() if r[0] == "closed"], rows
    placed_before = len(attempts(db_url))
    start_redis()                                                # back, and empty
    assert wait_until(lambda: len(attempts(db_url)) > placed_before, 30)
    assert gate.counters.loaded() is not None and not engine.gate_probing
    assert time.monotonic() - refused_at < 30
    ready = engine.ops.checks.ready()
    assert ready["ok"] and ready["compliance_stores"] == {"ok": True, "held_s": 0.0, "reasons": []}
    assert not [r for r in lead_rows(db_url).values() if r[0] == "closed"]


def test_two_nodes_a_campaign_calls_where_its_agents_are(db_url, redis_url, tmp_path):
    """Two FreeSWITCH nodes on two addresses: agents' legs spread over them, a campaign's calls
    go to its agents' node (uuid_bridge joins two legs of one switch), and AMD hears that node's
    audio from its own address (a switch binds its side of the stream there)."""
    from dialer.compliance.service import live_gate
    from dialer.config import FreeswitchNode
    from dialer.engine.engine import Engine, EngineConfig
    from tests.engine_world import pinned_clock
    switches = [start_switch(host="127.0.0.1"), start_switch(host="127.0.0.2")]
    phone = "+12125550301"
    for switch in switches:
        switch.model.script(phone, Behaviour(Outcome.ANSWER, ring_seconds=0.5, party=Party.HUMAN, stay_seconds=4.0))
    import_registry(db_url, tmp_path, [REJECTED_DNC], PINNED.date() - timedelta(days=3))
    create_campaign(db_url, "two-idle", BASE_SETTINGS, [])
    create_campaign(db_url, "two-a", BASE_SETTINGS, [phone])
    cfg = EngineConfig(engine_id="engine-2n", database_url=db_url, redis_url=redis_url,
                       nodes=[FreeswitchNode(s.config.host, s.port, "ClueCon") for s in switches],
                       amd_listen=("127.0.0.1", 0), unicast_ports=range(41200, 41300), hook_listen=None,
                       metrics_listen=None, web_api=False)
    engine = Engine(cfg, live_gate(db_url, redis_url, tmp_path), clock=pinned_clock()).start()
    try:
        idle = engine.login_agent("agent-idle", AGENT_PHONE, "two-idle")
        agent = engine.login_agent("agent-a", AGENT_PHONE, "two-a")
        # the second leg goes to the node without one; the campaign's call follows its agent
        # (both nodes have no call: the least busy node would have been the first)
        assert (idle.node, agent.node) == tuple(engine.switchboard.clients)
        assert wait_until(lambda: len(attempts(db_url)) == 1 and attempts(db_url)[0][7] is not None, 30)
        (row,) = attempts(db_url)
        assert row[1:3] == ("human", "HUMAN") and row[4] == "agent-a", row
        assert switches[0].counters["originate_ok"] == 1                # the idle agent's leg only
        assert switches[1].counters["originate_ok"] == 2 and switches[1].counters["unicast_datagrams"] > 0
        # one node's reconnect checks its own legs only: the other node's agent keeps its leg
        for listener in list(switches[0].listeners):
            listener.close()
        client = engine.switchboard.clients[idle.node]
        assert wait_until(lambda: client.reconnects >= 1 and client.connected, 15)
        gevent.sleep(0.5)
        assert idle.leg_uuid is not None and agent.leg_uuid is not None
        # its agents' node gone, the campaign places no call (elsewhere none could be bridged);
        # a campaign with agents on a node still up goes on
        switches[1].stop()
        assert wait_until(lambda: not engine.switchboard.clients[agent.node].connected, 15)
        assert engine.node_for_calls("two-a") is None and engine.node_for_calls("two-idle") == idle.node
        # and pacing does not count the agent it cannot reach
        runners = {r.name: r for r in engine.runners.values()}
        assert runners["two-a"].snapshot().agents == () and len(runners["two-idle"].snapshot().agents) == 1
    finally:
        engine.stop(drain_timeout=10)
        for switch in switches:
            switch.stop()


def test_a_campaign_whose_settings_cannot_run_does_not_stop_the_engine(world, db_url):
    """QA: a running campaign whose gateways were removed made `dialer run` exit at start, and
    settings that crashed the pacer ended the engine's supervision. Such a campaign is not
    served (said once, with an event); the engine and its other campaigns go on."""
    broken = create_campaign(db_url, "cannot-run", BASE_SETTINGS, ["+12125550401"])
    with storage.connect_db(db_url) as conn:      # as settings stored before the check existed
        settings = dict(BASE_SETTINGS, gateways=[])
        conn.execute("UPDATE campaigns SET settings = %s WHERE id = %s", (json.dumps(settings), broken))
        conn.commit()
    engine = busy_campaign(world, db_url, "can-run", ["+12125550402"], "agent-cr")
    assert wait_until(lambda: [a[0] for a in attempts(db_url)] == ["+12125550402"], 15)
    assert broken not in engine.runners
    health = engine.ops.checks.health()
    assert health["checks"]["supervision"]["ok"], health


def test_engines_sharing_a_node_lease_disjoint_blocks_of_amd_ports(world):
    """Engines configured with the same DIALER_UNICAST_PORTS would ask a shared FreeSWITCH node
    for the same ports (the second bind fails and that call gets no AMD): each leases its own
    block of the range in Redis; with every block taken an engine does not dial; a stopped
    engine gives its block back."""
    switch, make_engine = world
    shared = range(43000, 44000)                                  # two blocks of 500
    first = make_engine(engine_id="engine-p1", ports=shared, web_api=False, metrics=False)
    second = make_engine(engine_id="engine-p2", ports=shared, web_api=False, metrics=False)
    assert first.amd.block and second.amd.block and not set(first.amd.block) & set(second.amd.block)
    third = make_engine(engine_id="engine-p3", ports=shared, web_api=False, metrics=False)
    assert third.amd.block is None and not third.may_dial()
    first.stop(drain_timeout=5)
    assert wait_until(lambda: third.amd.block is not None and third.may_dial(), 5)
    assert third.amd.block == first.amd.block


def test_new_settings_apply_to_the_next_call_while_calls_are_in_flight(world, db_url):
    """QA: a runner with a call in flight kept its old settings until it had none, which in a busy
    campaign is never (a new caller ID or an excluded date never took effect). The same runner now
    takes them at once: its next call uses them, calls in flight keep theirs."""
    from dialer import campaigns
    switch, make_engine = world
    ringing = "+12125550501"
    switch.model.script(ringing, Behaviour(Outcome.NO_ANSWER))
    campaign_id = create_campaign(db_url, "reload", BASE_SETTINGS, [ringing])
    engine = make_engine()
    engine.login_agent("agent-rl", AGENT_PHONE, "reload")
    assert wait_until(lambda: engine.runners[campaign_id].calls, 15)
    runner = engine.runners[campaign_id]
    with storage.connect_db(db_url) as conn:
        campaigns.update_settings(conn, "reload", [("caller_ids.pool", ["+13125550199"])])
        conn.commit()
    assert wait_until(lambda: runner.settings.caller_ids.pool == ("+13125550199",), 5)
    assert engine.runners[campaign_id] is runner and runner.calls          # same runner, call still up
    assert runner.flow_settings.ring_timeout_s == BASE_SETTINGS["ring_timeout_s"]
    assert next(runner._caller_ids) == "+13125550199"
    # a gateway kept by name keeps its count of channels in use (the ringing call's)
    with storage.connect_db(db_url) as conn:
        campaigns.update_settings(conn, "reload", [("gateways", [{"name": "gw1", "max_cps": 20, "max_channels": 5}])])
        conn.commit()
    assert wait_until(lambda: runner.pool.gateways[0].max_channels == 5, 5)
    assert runner.pool.gateways[0].in_use == len(runner.calls) == 1


def test_a_campaign_started_again_right_after_its_stop_completed_is_served(world, db_url):
    """QA: started within a second of its stop completing, a campaign kept its stopped runner
    (nothing dialed; a later stop stayed `stopping` for ever)."""
    from dialer import campaigns
    switch, make_engine = world
    campaign_id = create_campaign(db_url, "restart", BASE_SETTINGS, ["+12125550502"])
    switch.model.script("+12125550502", Behaviour(Outcome.BUSY, ring_seconds=0.3))
    engine = make_engine()
    stopped = engine.runners[campaign_id]
    stopped.status = CampaignStatus.STOPPED        # as its loop leaves it once the stop completed
    with storage.connect_db(db_url) as conn:
        conn.execute("UPDATE campaigns SET status = 'running' WHERE id = %s", (campaign_id,))
        conn.commit()
    assert wait_until(lambda: engine.runners.get(campaign_id) not in (None, stopped), 5)
    assert engine.runners[campaign_id].status is CampaignStatus.RUNNING


def test_a_machine_that_hangs_up_before_the_beep_is_a_machine(world, db_url):
    """QA: with voicemail_drop, a machine that hung up while the drop waited for its beep was
    recorded no_answer (retried under the no-answer rule, outside the machine count)."""
    switch, make_engine = world
    quick_machine = "+12125550503"
    # decided MACHINE on its first 0.2 s of silence, gone before its beep (0.3-0.8 s)
    switch.model.script(quick_machine, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.MACHINE,
                                                 stay_seconds=0.5))
    settings = {**BASE_SETTINGS, "amd": {"enabled": True, "action": "voicemail_drop",
                                         "voicemail_message": "ivr/leave-a-message.wav",
                                         "params": {"initial_silence_ms": 200, "initial_silence_result": "MACHINE"}}}
    create_campaign(db_url, "vm-early", settings, [quick_machine])
    engine = make_engine()
    engine.login_agent("agent-ve", AGENT_PHONE, "vm-early")
    assert wait_until(lambda: len(attempts(db_url)) == 1 and attempts(db_url)[0][7] is not None, 30)
    (row,) = attempts(db_url)
    assert (row[1], row[2], row[5]) == ("machine", "MACHINE", "hung_up_before_beep"), row


def test_after_a_redis_restart_the_engine_writes_its_live_state_again(world, db_url, redis_client, monkeypatch):
    """QA: agents that changed state while Redis was away (or all of them, after an empty
    restart) were missing from `dialer:agents` for good. The engine writes them again every
    AGENTS_REPUBLISH_S, and takes its AMD port block and the compliance counters back."""
    monkeypatch.setattr("dialer.engine.engine.AGENTS_REPUBLISH_S", 1.0)
    busy_campaign(world, db_url, "flushed", ["+12125550601"], "agent-fl")
    assert wait_until(lambda: redis_client.hget("dialer:agents", "agent-fl"), 5)
    redis_client.flushdb()                                       # Redis came back empty
    assert wait_until(lambda: redis_client.hget("dialer:agents", "agent-fl") and redis_client.get("cmp:loaded")
                      and redis_client.keys("dialer:unicast:*"), 10)
    assert json.loads(redis_client.hget("dialer:agents", "agent-fl"))["state"] == "ready"


def test_progressive_places_no_second_call_while_the_first_is_in_amd(world, db_url):
    # QA 6: calls answered and still in AMD were left out of the pacing snapshot, so one ready
    # agent got a new call every tick while the first was analysed, and people were abandoned
    from dialer.engine.calls import CallState
    switch, make_engine = world
    phones = [f"+121255502{n:02d}" for n in range(6)]
    for phone in phones:
        switch.model.script(phone, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.HUMAN, stay_seconds=4.0))
    create_campaign(db_url, "one-agent", BASE_SETTINGS, phones)
    engine = make_engine()
    agents = AgentSimulator(engine, wrap_mean_s=0.2, seed=3).start()
    engine.login_agent("solo", AGENT_PHONE, "one-agent")
    unresolved = (CallState.ORIGINATING, CallState.ANALYZING, CallState.WAITING_AGENT)
    most = 0
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            runner = engine.runners.get(next(iter(engine.runners), None))
            if runner is not None:
                most = max(most, sum(1 for c in runner.calls.values() if c.state in unresolved))
            gevent.sleep(0.02)
    finally:
        agents.stop()
    rows = attempts(db_url)
    assert rows, "no call was placed"
    assert most == 1
    assert all(r[1] != "abandoned" for r in rows), rows


def test_amd_calls_offer_g711_and_register_the_legs_read_rate(world, db_url):
    """A campaign with AMD asks for G.711 (the detector's telephone band; OPUS's 48 kHz L16 would
    not reach it), and the receiver gets the answered leg's read rate and ptime."""
    from dialer.engine.calls import Call
    from dialer.engine.flow import CallFlow, FlowSettings
    from esl.protocol import Event
    switch, make_engine = world
    create_campaign(db_url, "codecs", BASE_SETTINGS, [HUMAN])
    engine = make_engine()
    agents = AgentSimulator(engine, wrap_mean_s=0.2, seed=2).start()
    engine.login_agent("agent-c", AGENT_PHONE, "codecs")
    try:
        def dialed():
            return [ch for ch in list(switch.channels.values())
                    if ch.variables.get("dialer_campaign") == "codecs"]
        assert wait_until(lambda: dialed(), 20)
        assert dialed()[0].variables.get("absolute_codec_string") == "PCMU,PCMA"
    finally:
        agents.stop()

    call = Call(uuid="c0ffee00-0000-4000-8000-000000000001", campaign="codecs", lead_id=1, number=HUMAN,
                gateway="g", caller_id="+12125550199", node=next(iter(engine.switchboard.clients)))
    flow = CallFlow(call, FlowSettings(), engine.switchboard, engine.agents, engine.amd, recorder=None,
                    variables={}, dial_string="")
    flow.on_event(Event({"Event-Name": "CHANNEL_ANSWER", "Channel-Read-Codec-Rate": "16000",
                         "variable_rtp_use_codec_ptime": "30"}))
    assert (call.read_rate, call.read_ptime_ms) == (16000, 30)
    # a rate the receiver cannot take: no analysis, NOTSURE at once, nothing registered
    flow.on_event(Event({"Event-Name": "CHANNEL_ANSWER", "Channel-Read-Codec-Rate": "48000"}))
    verdict = flow._analyze()
    assert (verdict.result, verdict.cause) == ("NOTSURE", "UNSUPPORTED_AUDIO")
    assert engine.receiver.silence_after_speech_ms(call.uuid) is None
