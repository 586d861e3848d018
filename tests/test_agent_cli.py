"""`dialer agent ...` from another process, through the engine's command stream."""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta

from gevent import subprocess

from dialer.engine.agents import AgentState
from tests.engine_world import AGENT_PHONE, BASE_SETTINGS, PINNED, create_campaign, import_registry, start_engine, start_switch
from tests.test_engine import wait_until


def dialer(redis_url, db_url, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env, timeout=60)


def test_agent_commands_reach_the_engine(db_url, redis_url, tmp_path):
    switch = start_switch()
    import_registry(db_url, tmp_path, ["+12125550199"], PINNED.date() - timedelta(days=1))
    create_campaign(db_url, "desk", BASE_SETTINGS, [])
    engine = start_engine(db_url, redis_url, switch, tmp_path)
    try:
        result = dialer(redis_url, db_url, "agent", "login", "ann", "--endpoint", AGENT_PHONE, "--campaign", "desk")
        assert result.returncode == 0, result.stderr
        agent = engine.agents.get("ann")
        assert agent.state is AgentState.READY and agent.leg_uuid
        result = dialer(redis_url, db_url, "agent", "pause", "ann", "--reason", "lunch")
        assert result.returncode == 0, result.stderr
        assert agent.state is AgentState.PAUSED and agent.pause_reason == "lunch"
        listed = json.loads(dialer(redis_url, db_url, "agent", "list", "--json").stdout)
        assert listed["ann"]["state"] == "paused" and listed["ann"]["reason"] == "lunch"
        refused = dialer(redis_url, db_url, "agent", "disposition", "ann", "SALE")
        assert refused.returncode == 1 and "refused" in refused.stderr
        assert dialer(redis_url, db_url, "agent", "logout", "ann").returncode == 0
        assert wait_until(lambda: agent.state is AgentState.LOGGED_OUT, 5)
    finally:
        engine.stop(drain_timeout=2)
        switch.stop()


def test_every_agent_command_has_a_help_description():
    """`dialer agent --help` lists ready, pause and logout with a description (they had none)."""
    from click.testing import CliRunner
    from cli import main
    runner = CliRunner()
    listing = runner.invoke(main, ["agent", "--help"]).output
    lines = {line.split()[0]: line.split()[1:] for line in listing.split("Commands:")[1].splitlines() if line.strip()}
    assert set(lines) >= {"login", "ready", "pause", "logout", "disposition", "list"}
    assert all(lines[name] for name in lines), lines
    for name, words in (("ready", "ready"), ("pause", "Pause"), ("logout", "Log AGENT_ID out")):
        result = runner.invoke(main, ["agent", name, "--help"])
        assert result.exit_code == 0 and words in result.output, result.output


def test_agent_command_without_a_running_engine_is_refused_at_once(db_url, redis_url):
    """QA: with no engine, `agent ready` waited out its 40-s timeout, and the command stayed on
    the stream for the next engine to carry out whenever it started."""
    import redis as redis_lib
    from dialer.rediskeys import COMMANDS_STREAM
    client = redis_lib.Redis.from_url(redis_url)
    before = client.xlen(COMMANDS_STREAM)
    started = time.monotonic()
    result = dialer(redis_url, db_url, "agent", "ready", "nobody")
    assert result.returncode == 1 and "no engine is running" in result.stderr, result.stderr
    assert time.monotonic() - started < 20
    assert client.xlen(COMMANDS_STREAM) == before         # nothing left for a later engine
