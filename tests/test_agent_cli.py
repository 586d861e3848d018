"""`dialer agent ...` from another process, through the engine's command stream."""
from __future__ import annotations

import json
import os
import sys
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
