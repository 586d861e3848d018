"""QA6 findings on the Redis API (docs/redis-api.md), each played as the web app or the operator
would: real PostgreSQL and Redis, the simulated switch, and engines either in this process or,
where the defect needs the engine's own gevent-patched sockets (commands overtaking each other
on the network), in a child process as `dialer run` starts them."""
from __future__ import annotations

import ast
import json
import os
import re
import sys
import time
import uuid
from pathlib import Path

import gevent
import pytest
from gevent import subprocess

from dialer import storage
from dialer.engine.agents import Agent, AgentError, AgentRegistry, AgentState
from dialer.webapi import consumer as webapi
from dialer.webapi.schema import best_request_id, parse_command
from tests.engine_world import AGENT_PHONE, BASE_SETTINGS, create_campaign, start_engine
from tests.test_webapi import WebApp, wait_until, world  # noqa: F401  (world: the fixture)

ROOT = Path(__file__).resolve().parents[1]
BUSY_PHONE = "sofia/internal/7702@127.0.0.1"       # the simulated switch answers 486 Busy Here

# An engine as `dialer run` starts one: gevent-patched sockets, the web API consuming.
ENGINE_PROCESS = """
from gevent import monkey
monkey.patch_all()
import sys
from pathlib import Path
import gevent
from tests.engine_world import start_engine
class Switch:
    port = int(sys.argv[3])
first = int(sys.argv[6])
engine = start_engine(sys.argv[1], sys.argv[2], Switch, Path(sys.argv[4]), engine_id=sys.argv[5],
                      ports=range(first, first + 200), metrics=False)
print("ready", flush=True)
while True:
    gevent.sleep(1)
"""


@pytest.fixture
def engines(db_url, redis_url, tmp_path):
    """start(engine_id, first_port): an engine in a child process; all stopped at the end."""
    children = []

    def start(switch, engine_id: str, first_port: int):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen([sys.executable, "-c", ENGINE_PROCESS, db_url, redis_url, str(switch.port),
                                  str(tmp_path), engine_id, str(first_port)], cwd=ROOT, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        children.append(child)
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read() if child.poll() is not None else line
        return child

    yield start
    for child in children:
        child.kill()
        child.wait(10)


def agents_hash(redis_client) -> dict:
    return {k: json.loads(v) for k, v in redis_client.hgetall("dialer:agents").items()}


# -- 1: a logged-out agent is never ready or paused ---------------------------------------------

def test_the_state_machine_refuses_a_logged_out_agent_without_a_leg():
    registry = AgentRegistry()
    ghost = registry.add(Agent("ghost", "none", "c"))
    for state in (AgentState.READY, AgentState.PAUSED):
        with pytest.raises(AgentError, match="log in first"):
            registry.transition(ghost, state, reason="x")
    assert ghost.state is AgentState.LOGGED_OUT
    # the login: the answered leg first, then ready
    ghost.leg_uuid, ghost.node = "leg-1", "n1"
    registry.transition(ghost, AgentState.READY)
    assert [s.state.value for s in registry.pacing_snapshot("c")] == ["ready"]
    # a ready agent whose leg is gone is counted by nobody: no call is placed for it
    ghost.leg_uuid = None
    assert registry.pacing_snapshot("c") == ()


def test_a_failed_login_or_a_logout_leaves_an_agent_that_cannot_be_made_ready(world, db_url, redis_client):
    _switch, make = world
    engine, _api = make()
    app = WebApp(redis_client)
    app.ok("campaign.create", {"name": "ghosts", "settings": BASE_SETTINGS})
    failed = app.call("agent.login", {"agent_id": "g1", "endpoint": BUSY_PHONE, "campaign": "ghosts"}, timeout=40)
    assert failed["status"] == "error" and failed["error"]["code"] == "failed", failed
    assert engine.agents.get("g1").state is AgentState.LOGGED_OUT
    app.ok("agent.login", {"agent_id": "g2", "endpoint": AGENT_PHONE, "campaign": "ghosts"})
    assert app.ok("agent.logout", {"agent_id": "g2"})["state"] == "logged_out"
    for agent_id in ("g1", "g2"):
        for kind, args in (("agent.ready", {}), ("agent.pause", {"reason": "lunch"})):
            reply = app.call(kind, {"agent_id": agent_id, **args})
            assert reply["status"] == "error" and reply["error"]["code"] == "conflict", reply
            assert "log in first" in reply["error"]["message"]
        assert engine.agents.get(agent_id).state is AgentState.LOGGED_OUT
    assert engine.agents.pacing_snapshot("ghosts") == ()
    assert engine.agent_changes_written(5)
    assert {row["state"] for row in agents_hash(redis_client).values()} == {"logged_out"}
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM agents WHERE state <> 'logged_out'").fetchone()[0] == 0
    # logging in again is what makes the agent ready
    assert app.ok("agent.login", {"agent_id": "g1", "endpoint": AGENT_PHONE, "campaign": "ghosts"})["state"] == "ready"


# -- 3: one agent's commands take effect in the order they were read -----------------------------

def burst_of_pause_and_ready(app: WebApp, redis_client, agent_id: str) -> None:
    """20 alternating pause/ready written at once (a burst of clicks): all take effect, in order."""
    pipe = redis_client.pipeline(transaction=False)
    sent = []
    for i in range(10):
        for kind, args in (("agent.pause", {"reason": f"r{i}"}), ("agent.ready", {})):
            request_id = uuid.uuid4().hex
            sent.append(request_id)
            pipe.xadd("dialer:commands", {"command": json.dumps(
                {"request_id": request_id, "type": kind, "args": {"agent_id": agent_id, **args}})})
    pipe.execute()
    replies = [app.reply(r, timeout=30) for r in sent]
    refused = [(i, r["type"], r["engine"], r["error"]) for i, r in enumerate(replies) if r["status"] != "ok"]
    assert refused == []
    assert [r["result"]["state"] for r in replies] == ["paused", "ready"] * 10
    assert [r["result"]["reason"] for r in replies[::2]] == [f"r{i}" for i in range(10)]
    assert wait_until(lambda: agents_hash(redis_client)[agent_id]["state"] == "ready", 5)


def test_alternating_pause_and_ready_sent_at_once_take_effect_in_order(world, engines, db_url, redis_client):
    switch, _make = world
    create_campaign(db_url, "order", BASE_SETTINGS, [])
    engines(switch, "engine-p", 43000)
    app = WebApp(redis_client)
    assert app.ok("agent.login", {"agent_id": "alice", "endpoint": AGENT_PHONE, "campaign": "order"},
                  timeout=40)["state"] == "ready"
    for _round in range(2):
        burst_of_pause_and_ready(app, redis_client, "alice")


def test_with_two_engines_an_agents_commands_still_take_effect_in_order(world, engines, db_url, redis_client):
    """Half of the burst is read by the engine that does not hold the agent and forwarded: the
    holder still carries them out in the order they were written."""
    switch, _make = world
    create_campaign(db_url, "order2", BASE_SETTINGS, [])
    engines(switch, "engine-x", 43000)
    engines(switch, "engine-y", 43200)
    app = WebApp(redis_client)
    assert app.ok("agent.login", {"agent_id": "bob", "endpoint": AGENT_PHONE, "campaign": "order2"},
                  timeout=40)["state"] == "ready"
    for _round in range(3):
        burst_of_pause_and_ready(app, redis_client, "bob")
    (holder,) = {f["engine"] for _i, f in redis_client.xrange("dialer:replies")}    # it answered every one
    assert redis_client.xlen(f"dialer:commands:engine:{holder}") > 0     # (the other engine forwarded some)


# -- 4: two engines: a command right after the login reply reaches the agent's engine --------------

def test_a_command_right_after_the_login_reply_is_forwarded_to_the_agents_engine(world, engines, db_url,
                                                                               redis_client):
    switch, _make = world
    create_campaign(db_url, "pair", BASE_SETTINGS, [])
    engines(switch, "engine-a", 43200)
    engines(switch, "engine-b", 43400)
    app = WebApp(redis_client)
    holders = set()
    for i in range(6):
        agent_id = f"fw-{i}"
        last = redis_client.xadd("dialer:replies", {"request_id": "", "note": "mark"})
        request_id = app.send("agent.login", {"agent_id": agent_id, "endpoint": AGENT_PHONE, "campaign": "pair"})
        login, deadline = None, time.monotonic() + 40
        while login is None and time.monotonic() < deadline:
            # as a web app blocked on XREAD: the reply is seen the moment it is written (polled
            # every millisecond, so the simulated switch in this process keeps running)
            for entry_id, fields in redis_client.xrange("dialer:replies", min=f"({last}"):
                last = entry_id
                if fields["request_id"] == request_id:
                    login = fields
                    break
            else:
                gevent.sleep(0.001)
        # at that moment the entry names the agent's engine, and a command sent now gets there
        owner = json.loads(redis_client.hget("dialer:agents", agent_id) or "{}")
        pause = app.send("agent.pause", {"agent_id": agent_id, "reason": "x"})
        assert login is not None and login["status"] == "ok", login
        holders.add(login["engine"])
        assert owner.get("engine") == login["engine"] and owner.get("state") == "ready", owner
        pause = app.reply(pause)
        assert pause["status"] == "ok" and pause["engine"] == login["engine"], pause
        assert app.call("agent.logout", {"agent_id": agent_id})["status"] == "ok"
    assert holders <= {"engine-a", "engine-b"}


# -- 5: a repeated request id is answered as soon as the original is --------------------------------

def test_a_repeat_sent_while_the_original_runs_is_answered_when_it_ends(world, db_url, redis_client):
    _switch, make = world
    _engine, api = make()
    app = WebApp(redis_client)
    app.ok("campaign.create", {"name": "dup", "settings": BASE_SETTINGS})
    args = {"agent_id": "d1", "endpoint": AGENT_PHONE, "campaign": "dup"}
    started = time.monotonic()
    app.send("agent.login", args, request_id="login-d1")     # the phone rings: it runs a while
    app.send("agent.login", args, request_id="login-d1")     # the web app's retry
    assert wait_until(lambda: len(app.replies("login-d1")) == 2, 20), app.replies("login-d1")
    assert time.monotonic() - started < 20
    first, again = app.replies("login-d1")
    assert first["status"] == "ok" and "duplicate" not in first
    assert again["duplicate"] == "true" and again["result"] == first["result"]
    # a stats.get (no subject: no queue) repeated at once, and once more after it ended
    app.send("stats.get", {}, request_id="stats-1")
    app.send("stats.get", {}, request_id="stats-1")
    assert wait_until(lambda: len(app.replies("stats-1")) == 2, 10)
    app.send("stats.get", {}, request_id="stats-1")
    assert wait_until(lambda: len(app.replies("stats-1")) == 3, 5)
    assert [r.get("duplicate") for r in app.replies("stats-1")] == [None, "true", "true"]
    assert api.consumer.counts["reclaimed"] == 0
    assert wait_until(lambda: redis_client.xpending("dialer:commands", "engines")["pending"] == 0, 5)


# -- 6: every example of the doc is a valid command; the campaign example starts --------------------

DOC = ROOT / "docs" / "redis-api.md"


def doc_examples() -> list[dict]:
    text = DOC.read_text()
    documents = [json.loads(m) for m in re.findall(r"XADD dialer:commands '\*' command '(\{.*\})'", text)]
    for kind, literal in re.findall(r'send\("([a-z.]+)", (\{.*?\})\)', text, re.S):
        try:
            args = ast.literal_eval(literal)
        except ValueError:
            continue            # built from an earlier reply (lead["lead_id"])
        documents.append({"request_id": f"py-{len(documents)}", "type": kind, "args": args})
    return documents


def test_every_command_example_in_the_doc_is_valid():
    documents = doc_examples()
    kinds = {d["type"] for d in documents}
    assert len(documents) > 30 and "campaign.create" in kinds and "agent.disposition" in kinds
    for document in documents:
        if document["type"] == "campaign.explode":
            continue            # the doc's example of an unknown command
        parse_command(json.dumps(document))


def test_the_docs_campaign_example_can_be_started(world, redis_client):
    _switch, make = world
    make()
    app = WebApp(redis_client)
    created = [d for d in doc_examples() if d["type"] == "campaign.create"]
    assert len(created) == 2 and created[0]["args"] == created[1]["args"]
    assert app.ok("campaign.create", created[0]["args"])["name"] == "acme"
    for verb in ("start", "pause", "resume", "stop"):
        assert app.call(f"campaign.{verb}", {"campaign": "acme"})["status"] == "ok"


def test_the_docs_web_app_user_may_run_the_docs_reads(redis_url, redis_client):
    """The ACL rules of the doc's web app user, taken from the doc, allow every read its examples
    make (QA6 check of the examples: the live counters' SCAN was not allowed)."""
    rules = re.search(r"ACL SETUSER dialer-web on '>web-secret' (.*?)\n(.*?)\n", DOC.read_text())
    keys = re.findall(r"'(%[RW]~[^']+)'", rules.group(1))
    commands = rules.group(2).split()
    user = f"dialer-web-{uuid.uuid4().hex[:8]}"
    redis_client.acl_setuser(user, enabled=True, passwords=["+web-secret"], keys=keys, commands=commands)
    base, db = redis_url.rsplit("/", 1)
    web = storage.connect_redis(f"redis://{user}:web-secret@{base.removeprefix('redis://')}/{db}")
    try:
        redis_client.hset("dialer:campaign:acme:engine-1", mapping={"status": "running"})
        redis_client.hset("dialer:agents", "alice", json.dumps({"state": "ready"}))
        web.xadd("dialer:commands", {"command": "{}"}, maxlen=100_000, approximate=True)
        assert [web.hgetall(k) for k in web.scan_iter("dialer:campaign:acme:*")] == [{"status": "running"}]
        assert {k: json.loads(v) for k, v in web.hgetall("dialer:agents").items()} == {"alice": {"state": "ready"}}
        web.xread({"dialer:events": "0"}, block=10)
        web.xrevrange("dialer:commands", count=1)
    finally:
        web.close()
        redis_client.acl_deluser(user)


# -- 7: dnc events only for a change -------------------------------------------------------------

def test_dnc_events_only_when_something_changed(world, redis_client):
    _switch, make = world
    make()
    app = WebApp(redis_client)
    assert [app.ok("dnc.add", {"number": "+12125550177"})["changed"] for _ in range(2)] == [True, False]
    assert [app.ok("dnc.remove", {"number": "+12125550177"})["changed"] for _ in range(2)] == [True, False]
    app.ok("campaign.create", {"name": "scoped", "settings": BASE_SETTINGS})
    assert app.ok("dnc.remove", {"number": "+12125550177", "list": "campaign", "scope": "scoped"})["changed"] is False
    assert len(app.events("dnc_added")) == 1 and len(app.events("dnc_removed")) == 1


# -- 8: a command whose sender gave up is not carried out later -------------------------------------

def cli(redis_url, db_url, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=ROOT)


def test_a_cli_command_that_timed_out_is_not_carried_out_later(world, db_url, redis_url, redis_client, tmp_path):
    switch, make = world
    create_campaign(db_url, "late", BASE_SETTINGS, [])
    # an engine with a heartbeat whose command API is not reading (stuck, or about to start)
    engine = start_engine(db_url, redis_url, switch, tmp_path, engine_id="engine-slow", ports=range(43600, 43800),
                          web_api=False, metrics=False)
    api = None
    try:
        engine.login_agent("ann", AGENT_PHONE, "late")
        result = cli(redis_url, db_url, "agent", "pause", "ann", "--reason", "lunch", "--timeout", "2")
        assert result.returncode == 1 and "will not be carried out" in result.stderr, result.stderr
        ((_id, fields),) = redis_client.xrange("dialer:commands")
        document = json.loads(fields["command"])
        assert document["expires_at"] <= time.time()
        reply_stream = document["reply_to"]
        assert 0 < redis_client.ttl(reply_stream) <= 120            # the CLI's reply stream goes away
        api = webapi.start(engine, block_ms=50)
        assert wait_until(lambda: api.consumer.counts["expired"] == 1, 10)
        assert engine.agents.get("ann").state is AgentState.READY      # not paused behind its back
        (reply,) = [f for _i, f in redis_client.xrange(reply_stream) if f.get("request_id") == document["request_id"]]
        assert json.loads(reply["error"])["code"] == "expired"
        assert 0 < redis_client.ttl(reply_stream) <= 120
        assert wait_until(lambda: redis_client.xpending("dialer:commands", "engines")["pending"] == 0, 5)
        # a command sent in time is carried out as before
        result = cli(redis_url, db_url, "agent", "pause", "ann", "--reason", "lunch", "--timeout", "20")
        assert result.returncode == 0, result.stderr
        assert engine.agents.get("ann").state is AgentState.PAUSED
    finally:
        if api is not None:
            api.stop()
        engine.stop(drain_timeout=1)


def test_a_command_past_its_deadline_is_answered_expired(world, redis_client):
    _switch, make = world
    make()
    app = WebApp(redis_client, reply_to="dialer:replies:web-9")
    redis_client.xadd("dialer:replies:web-9", {"request_id": "", "note": "the web app's stream"})
    late = json.dumps({"request_id": "late-1", "type": "campaign.create", "expires_at": time.time() - 1,
                       "reply_to": "dialer:replies:web-9", "args": {"name": "never", "settings": BASE_SETTINGS}})
    redis_client.xadd("dialer:commands", {"command": late})
    reply = app.reply("late-1")
    assert reply["error"]["code"] == "expired"
    in_time = json.dumps({"request_id": "in-time-1", "type": "campaign.create", "expires_at": time.time() + 60,
                          "reply_to": "dialer:replies:web-9", "args": {"name": "soon", "settings": BASE_SETTINGS}})
    redis_client.xadd("dialer:commands", {"command": in_time})
    assert app.reply("in-time-1")["status"] == "ok"
    assert [r["name"] for r in [app.ok("stats.get", {})][0]["campaigns"]] == ["soon"]


# -- 9: the operator's `dialer agent` commands are documented where the README points ----------

def test_every_dialer_agent_command_and_option_is_documented():
    from dialer.agent_cli import agent
    text = DOC.read_text()
    section = text[text.index("## The operator's agent commands"):text.index("## Events")]
    for name, command in agent.commands.items():
        assert f"`dialer agent {name}" in section, name
        for param in command.params:
            for option in param.opts:
                if option.startswith("--"):
                    assert option in section, (name, option)
    assert "Exit codes" in section and "expires_at" in section


# -- 10: small inconsistencies -------------------------------------------------------------------

def test_leads_add_rejects_with_the_csv_imports_reason_codes(world, redis_client):
    _switch, make = world
    make()
    app = WebApp(redis_client)
    app.ok("campaign.create", {"name": "codes", "settings": BASE_SETTINGS})
    added = app.ok("leads.add", {"campaign": "codes", "leads": [
        {"phone": "not a number"}, {"phone": "+1 212 055 0100"}, {"phone": "+12125550100", "state": "ZZ"},
        {"phone": "(212) 555-0101"}]})
    assert [(r["index"], r["reason"]) for r in added["rejected"]] == [
        (0, "unparseable_phone"), (1, "invalid_phone"), (2, "invalid_state")]
    assert all(r["detail"] for r in added["rejected"]) and added["added"] == 1


def test_a_malformed_commands_reply_carries_its_request_id_when_it_can_be_read():
    assert best_request_id(json.dumps({"request_id": "x" * 129, "type": "stats.get"})) == "x" * 129
    deep = '{"request_id": "deep1", "type": "stats.get", "args": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    assert best_request_id(deep) == "deep1"
    assert best_request_id('{"request_id": "cut-1", "type": "stats') == "cut-1"
    assert best_request_id('{"type": "x", "args": ' + "[" * 100_000) is None
    assert best_request_id("{not json") is None
