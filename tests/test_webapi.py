"""The Redis API played by a web app with redis-py, against a real engine on the simulated switch,
a real PostgreSQL and a real Redis (docs/redis-api.md)."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import gevent
import pytest
import redis

from dialer import storage
from dialer.webapi import WebApiError
from dialer.webapi import consumer as webapi
from dialer.webapi.handlers import Context, handlers
from dialer.webapi.schema import _load, _validator, command_types
from esl.fakeswitch import Behaviour, Outcome, Party
from tests.engine_world import (AGENT_PHONE, BASE_SETTINGS, PINNED, import_registry, start_engine,
                                start_switch)

HUMAN, MACHINE, BUSY, DNC_LISTED = "+12125550100", "+12125550101", "+12125550102", "+12125550104"
NY = {"state": "NY", "line_type": "landline"}


def _iso(seconds_from_now: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)).isoformat()


def wait_until(predicate, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(step)
    return predicate()


class WebApp:
    """What a web app does: XADD a command, then read its reply by request id. It polls with
    XRANGE and gevent.sleep, so the engine in this process keeps running while it waits."""

    def __init__(self, client: redis.Redis, reply_to: str | None = None) -> None:
        self.redis = client
        self.reply_to = reply_to

    def send(self, kind: str, args: dict, request_id: str | None = None) -> str:
        request_id = request_id or uuid.uuid4().hex
        document = {"request_id": request_id, "type": kind, "args": args}
        if self.reply_to:
            document["reply_to"] = self.reply_to
        self.redis.xadd("dialer:commands", {"command": json.dumps(document)})
        return request_id

    def replies(self, request_id: str) -> list[dict]:
        entries = self.redis.xrange(self.reply_to or "dialer:replies")
        return [fields for _id, fields in entries if fields.get("request_id") == request_id]

    def reply(self, request_id: str, timeout: float = 15.0) -> dict:
        assert wait_until(lambda: self.replies(request_id), timeout), f"no reply to {request_id}"
        fields = dict(self.replies(request_id)[0])
        if "result" in fields:
            fields["result"] = json.loads(fields["result"])
        if "error" in fields:
            fields["error"] = json.loads(fields["error"])
        return fields

    def call(self, kind: str, args: dict, timeout: float = 15.0) -> dict:
        return self.reply(self.send(kind, args), timeout)

    def ok(self, kind: str, args: dict, timeout: float = 15.0) -> dict:
        reply = self.call(kind, args, timeout)
        assert reply["status"] == "ok", reply
        return reply["result"]

    def events(self, kind: str) -> list[dict]:
        return [fields for _id, fields in self.redis.xrange("dialer:events") if fields.get("type") == kind]


@pytest.fixture
def world(db_url, redis_url, tmp_path):
    switch = start_switch()
    switch.model.script(HUMAN, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.HUMAN, stay_seconds=4.0))
    switch.model.script(MACHINE, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.MACHINE, stay_seconds=30.0))
    import_registry(db_url, tmp_path, [DNC_LISTED], PINNED.date() - timedelta(days=3))
    started = []

    def make(url: str | None = None, **options):
        engine = start_engine(db_url, url or redis_url, switch, tmp_path, web_api=False)
        api = webapi.start(engine, **{"block_ms": 50, **options})
        started.append((engine, api))
        return engine, api

    yield switch, make
    for engine, api in started:
        api.stop()
        engine.stop(drain_timeout=2)
    switch.stop()


def test_every_command_type_has_a_valid_published_schema_and_a_handler():
    types = command_types()
    assert set(types) == set(handlers())
    for kind in types:
        schema = _load(f"commands/{kind}.json")
        _validator(f"commands/{kind}.json").check_schema(schema)
        assert schema["$id"].endswith(f"commands/{kind}.json") and schema.get("title")


def test_web_app_drives_a_campaign_from_creation_to_report(world, db_url, redis_client):
    switch, make = world
    engine, api = make()
    app = WebApp(redis_client)
    created = app.ok("campaign.create", {"name": "web", "settings": BASE_SETTINGS})
    assert created["status"] == "draft" and created["settings"]["ring_timeout_s"] == 15
    added = app.ok("leads.add", {"campaign": "web", "leads": [
        {"phone": HUMAN, **NY}, {"phone": BUSY, **NY}, {"phone": DNC_LISTED, **NY}, {"phone": "12345", **NY},
        {"phone": HUMAN}, {"phone": "+12125550188", "state": "ZZ"}]})
    assert (added["added"], added["duplicates"], [r["index"] for r in added["rejected"]]) == (3, 1, [3, 5])
    # as in a CSV import (QA: "ZZ" was stored, then closed by the gate as UNKNOWN_STATE)
    assert added["rejected"][1]["reason"] == "invalid_state"
    changed = app.ok("campaign.settings", {"campaign": "web", "set": {"ring_timeout_s": 20}})
    assert changed["settings_version"] == created["settings_version"] + 1
    login = app.ok("agent.login", {"agent_id": "a1", "endpoint": AGENT_PHONE, "campaign": "web"})
    assert login["state"] == "ready"
    started = app.ok("campaign.start", {"campaign": "web"})
    assert started["status"] == "running" and started["engine_applied"] is True

    # The human is bridged to the agent; after the hangup the agent is in wrap-up.
    assert wait_until(lambda: any(e.get("agent") == "a1" and e.get("state") == "wrap_up"
                                  for e in app.events("agent_state")), 30), [
        (f["type"], f.get("state"), f.get("outcome")) for _i, f in redis_client.xrange("dialer:events")
        if f["type"] != "campaign_stats"]
    disposed = app.ok("agent.disposition", {"agent_id": "a1", "disposition": "SALE"})
    assert disposed["state"] == "ready" and disposed["call_uuid"]
    assert wait_until(lambda: len(app.events("call_ended")) >= 2, 20)
    # (progressive: one call per free agent, so the listed lead may be decided after the others)
    assert wait_until(lambda: app.events("compliance_block"), 20)
    assert [json.loads(e["reasons"]) for e in app.events("compliance_block")] == [["US-DNC-1"]]

    # the live counters follow within a second
    assert wait_until(lambda: app.ok("stats.get", {"campaign": "web"})["campaigns"][0]["live"]["blocks"], 5)
    stats = app.ok("stats.get", {"campaign": "web"})
    (row,) = stats["campaigns"]
    assert row["live"]["originated"] == 2 and row["live"]["blocks"] == {"US-DNC-1": 1}
    assert row["agents"] == {"ready": 1}
    # Campaign statistics arrive on the event stream every second.
    ticks = app.events("campaign_stats")
    assert len(ticks) >= 2 and json.loads(ticks[-1]["originated"]) == 2
    assert ticks[-1].get("held", "") == ""       # nothing holds its dialing
    gaps = [float(b["at"]) - float(a["at"]) for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 2.5

    assert app.ok("campaign.pause", {"campaign": "web"})["status"] == "paused"
    assert app.ok("campaign.resume", {"campaign": "web"})["status"] == "running"
    assert app.ok("campaign.stop", {"campaign": "web"})["status"] in ("stopping", "stopped")
    assert app.ok("agent.pause", {"agent_id": "a1", "reason": "lunch"})["state"] == "paused"
    assert app.ok("agent.logout", {"agent_id": "a1"})["state"] == "logged_out"

    # The engine's calling-hours clock is pinned days ahead: the report's period covers it.
    report = app.ok("report.get", {"campaign": "web", "until": (PINNED + timedelta(hours=1)).isoformat()})
    assert report["outcomes"]["human"] == 1 and report["dispositions"] == {"SALE": 1}
    assert report["blocks_by_reason"] == {"US-DNC-1": 1}
    # Every command was acknowledged after its reply: nothing is pending.
    assert redis_client.xpending("dialer:commands", "engines")["pending"] == 0
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT status FROM campaigns WHERE name = 'web'").fetchone()[0] in ("stopping", "stopped")


def test_bad_commands_get_an_error_reply_and_are_never_acted_on(world, db_url, redis_client):
    _switch, make = world
    make()
    app = WebApp(redis_client)
    redis_client.xadd("dialer:commands", {"command": "{not json"})
    redis_client.xadd("dialer:commands", {"something": "else"})
    unknown = app.send("campaign.explode", {"campaign": "x"})
    bad_args = app.send("campaign.create", {"name": "bad name!", "settings": {}})
    extra = app.send("dnc.add", {"number": "+12125550123", "drop_table": True})
    bad_settings = app.send("campaign.create", {"name": "ok", "settings": {"ring_timeout_s": 3}})
    bad_time = app.send("callback.schedule", {"campaign": "ok", "lead_id": 1, "at": "tomorrow"})
    missing = app.send("campaign.start", {"campaign": "nope"})

    assert app.reply(unknown)["error"]["code"] == "unknown_command"
    assert app.reply(bad_args)["error"]["code"] == "invalid"
    assert "drop_table" in " ".join(app.reply(extra)["error"]["details"])
    error = app.reply(bad_settings)["error"]
    assert error["code"] == "invalid" and any("ring_timeout_s" in p for p in error["details"])
    assert app.reply(bad_time)["error"]["code"] in ("invalid", "not_found")
    assert app.reply(missing)["error"]["code"] == "not_found"
    anonymous = [f for _id, f in redis_client.xrange("dialer:replies") if f["request_id"] == ""]
    assert sorted(json.loads(f["error"])["code"] for f in anonymous) == ["malformed", "malformed"]
    assert all(f.get("entry_id") for f in anonymous)
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM campaigns").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM compliance_dnc_entries").fetchone()[0] == 0
    assert wait_until(lambda: redis_client.xpending("dialer:commands", "engines")["pending"] == 0, 5)


def test_redelivered_and_repeated_commands_act_once(world, db_url, redis_client):
    _switch, make = world
    app = WebApp(redis_client)
    # An engine read this command and died before acknowledging it.
    redis_client.xgroup_create("dialer:commands", "engines", id="0", mkstream=True)
    request = app.send("dnc.add", {"number": "(212) 555-0177", "reason": "asked on the phone"}, request_id="r-1")
    (_stream, [(entry_id, _fields)]), = redis_client.xreadgroup("engines", "dead-engine", {"dialer:commands": ">"})
    _engine, api = make(claim_idle_ms=200)
    first = app.reply(request)
    assert first["status"] == "ok" and first["result"]["changed"] is True
    assert first["result"]["number"] == "+12125550177"
    assert api.consumer.counts["reclaimed"] == 1
    # The web app, unsure, sends it again: the stored reply comes back, nothing is done twice.
    app.send("dnc.add", {"number": "(212) 555-0177", "reason": "asked on the phone"}, request_id="r-1")
    assert wait_until(lambda: len(app.replies("r-1")) == 2, 10)
    again = app.replies("r-1")[1]
    assert again["duplicate"] == "true" and json.loads(again["result"]) == first["result"]
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM compliance_dnc_entries").fetchone()[0] == 1
    assert app.ok("dnc.remove", {"number": "+12125550177"})["changed"] is True
    assert redis_client.ttl("dialer:request:r-1") > 3600
    assert wait_until(lambda: redis_client.xpending("dialer:commands", "engines")["pending"] == 0, 5)
    assert entry_id not in {e["message_id"] for e in redis_client.xpending_range(
        "dialer:commands", "engines", min="-", max="+", count=10)}


def test_dnc_add_to_a_campaign_list_needs_an_existing_campaign_name(world, db_url, redis_client):
    """The gate matches campaign entries by campaign name: an unknown scope is refused with
    nothing stored; an existing campaign's numeric id is stored as its name, with a note."""
    _switch, make = world
    make()
    app = WebApp(redis_client)
    app.ok("campaign.create", {"name": "web", "settings": BASE_SETTINGS})
    with storage.connect_db(db_url) as conn:
        web_id = conn.execute("SELECT id FROM campaigns WHERE name = 'web'").fetchone()[0]
    for scope in ("nope", str(web_id + 1000), ""):
        reply = app.call("dnc.add", {"number": "+12125550177", "list": "campaign", "scope": scope})
        assert reply["status"] == "error" and reply["error"]["code"] == "invalid", reply
        assert "campaign" in reply["error"]["message"]
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM compliance_dnc_entries").fetchone()[0] == 0
    result = app.ok("dnc.add", {"number": "+12125550177", "list": "campaign", "scope": str(web_id)})
    assert result["scope"] == "web" and result["changed"] is True
    assert f"{web_id} is the id of campaign 'web'" in result["note"]
    result = app.ok("dnc.add", {"number": "+12125550177", "list": "campaign", "scope": "web"})
    assert result == {"number": "+12125550177", "list": "campaign", "scope": "web", "changed": False}
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT list_kind, scope FROM compliance_dnc_entries").fetchall() == [("campaign", "web")]
    # removal resolves the id the same way (QA: it looked for an entry under "<id>")
    result = app.ok("dnc.remove", {"number": "+12125550177", "list": "campaign", "scope": str(web_id)})
    assert result["scope"] == "web" and result["changed"] is True and "note" in result


def test_manual_and_preview_dial_pass_the_gate_and_bridge_the_agent(world, db_url, redis_client):
    _switch, make = world
    engine, _api = make()
    app = WebApp(redis_client, reply_to="dialer:replies:web-1")
    app.ok("campaign.create", {"name": "man", "settings": {**BASE_SETTINGS, "dial_mode": "preview",
                                                            "pacing": {"mode": "preview"}}})
    app.ok("leads.add", {"campaign": "man", "leads": [{"phone": HUMAN, "state": "NY", "line_type": "landline"}]})
    app.ok("campaign.start", {"campaign": "man"})
    app.ok("agent.login", {"agent_id": "m1", "endpoint": AGENT_PHONE, "campaign": "man"})

    blocked = app.call("call.manual", {"agent_id": "m1", "campaign": "man", "number": DNC_LISTED})
    assert blocked["status"] == "error" and blocked["error"]["code"] == "blocked"
    assert blocked["error"]["details"]["reasons"] == ["US-DNC-1"]

    preview = app.ok("lead.preview", {"agent_id": "m1", "campaign": "man"})
    assert preview["phone"] == HUMAN and preview["state"] == "NY"
    # reserved for the documented 5 minutes (QA: a dial's 60 s lease, gone while the agent read)
    with storage.connect_db(db_url) as conn:
        left = conn.execute("SELECT claimed_until - now() FROM leads WHERE id = %s", (preview["lead_id"],)).fetchone()[0]
    assert left.total_seconds() > 290
    assert engine.agents.get("m1").state.value == "paused"
    dialed = app.ok("call.dial", {"agent_id": "m1", "lead_id": preview["lead_id"]})
    assert wait_until(lambda: engine.agents.get("m1").state.value == "wrap_up", 20)
    # a callback in the past is refused and the agent stays in wrap-up to correct it
    past = app.call("agent.disposition", {"agent_id": "m1", "disposition": "CALLBACK",
                                          "callback_at": _iso(-3600), "callback_to_agent": True})
    assert past["status"] == "error" and past["error"]["code"] == "invalid" and "in the past" in past["error"]["message"]
    assert engine.agents.get("m1").state.value == "wrap_up"
    app.ok("agent.disposition", {"agent_id": "m1", "disposition": "CALLBACK",
                                 "callback_at": _iso(86400), "callback_to_agent": True})
    with storage.connect_db(db_url) as conn:
        attempts = conn.execute("SELECT origination_uuid::text, phone_e164, agent_id, outcome, decision_id"
                                " FROM call_attempts ORDER BY id").fetchall()
        lead = conn.execute("SELECT status, callback_agent, next_attempt_at FROM leads WHERE phone_e164 = %s",
                            (HUMAN,)).fetchone()
        blocked_lead = conn.execute("SELECT status, attempts FROM leads WHERE phone_e164 = %s",
                                    (DNC_LISTED,)).fetchone()
    assert [(a[0], a[1], a[2], a[3]) for a in attempts] == [(dialed["call_uuid"], HUMAN, "m1", "human")]
    assert attempts[0][4] == dialed["decision_id"]
    assert lead[0] == "callback" and lead[1] == "m1"
    assert blocked_lead == ("closed", 0)               # never dialed

    # A callback moved by the web app.
    ghost = app.call("callback.schedule", {"campaign": "man", "number": HUMAN, "at": _iso(2 * 86400),
                                           "agent_id": "ghost"})
    assert ghost["status"] == "error" and ghost["error"]["code"] == "not_found"      # QA: it was never dialed
    stale = app.call("callback.schedule", {"campaign": "man", "number": HUMAN, "at": "2026-01-26T16:00:00+00:00"})
    assert stale["status"] == "error" and stale["error"]["code"] == "invalid"
    # a few seconds behind (another machine's clock) is taken: the callback is due now
    app.ok("callback.schedule", {"campaign": "man", "number": HUMAN, "at": _iso(-30)})
    moved = app.ok("callback.schedule", {"campaign": "man", "number": HUMAN, "at": _iso(2 * 86400)})
    assert moved["previous_status"] == "callback" and moved["agent_id"] is None
    assert app.ok("stats.get", {})["campaigns"][0]["name"] == "man"


def test_redis_acl_users_for_the_engine_and_the_web_app(world, redis_url, redis_client):
    _switch, make = world
    suffix = uuid.uuid4().hex[:8]
    engine_user, web_user = f"dialer-engine-{suffix}", f"dialer-web-{suffix}"
    # The engine: its own keys only, no dangerous commands. The web app: write commands, read the rest.
    redis_client.acl_setuser(engine_user, enabled=True, passwords=["+engine-secret"],
                             keys=["~dialer:*", "~cmp:*"], commands=["+@all", "-@dangerous"])
    redis_client.acl_setuser(web_user, enabled=True, passwords=["+web-secret"],
                             keys=["%W~dialer:commands", "%R~dialer:*"],
                             commands=["+xadd", "+xrange", "+xread", "+hgetall", "+ping", "+select"])
    base, db = redis_url.rsplit("/", 1)
    host = base.removeprefix("redis://")
    try:
        bad = storage.connect_redis(f"redis://{web_user}:wrong@{host}/{db}", retries=0)
        with pytest.raises(redis.AuthenticationError):
            bad.ping()
        engine, _api = make(f"redis://{engine_user}:engine-secret@{host}/{db}")
        web = storage.connect_redis(f"redis://{web_user}:web-secret@{host}/{db}")
        app = WebApp(web)
        assert app.ok("campaign.create", {"name": "acl", "settings": BASE_SETTINGS})["name"] == "acl"
        with pytest.raises(redis.exceptions.NoPermissionError):
            web.xadd("dialer:events", {"type": "forged"})
        web.close()
    finally:
        redis_client.acl_deluser(engine_user, web_user)


def test_agent_command_read_by_another_engine_is_forwarded_to_the_agents_engine(world, db_url, redis_url,
                                                                                 redis_client, tmp_path):
    switch, make = world
    holder, _api = make()
    app = WebApp(redis_client)
    app.ok("campaign.create", {"name": "fwd", "settings": BASE_SETTINGS})
    holder.login_agent("f1", AGENT_PHONE, "fwd")
    # A second engine (not consuming on its own here) reads the agent's command first.
    other = start_engine(db_url, redis_url, switch, tmp_path, engine_id="engine-2", ports=range(41200, 41400),
                         web_api=False)
    reader = webapi.CommandConsumer(other)
    try:
        reader._ensure_groups()
        request = app.send("agent.pause", {"agent_id": "f1", "reason": "coaching"})
        entries = []
        assert wait_until(lambda: entries.extend(
            reader.redis.xreadgroup("engines", "engine-2", {"dialer:commands": ">"}, count=1) or []) or entries, 5)
        (_stream, [(entry_id, fields)]), = entries
        reader.handle("dialer:commands", entry_id, fields)
        assert reader.counts["forwarded"] == 1
        reply = app.reply(request)
        assert reply["status"] == "ok" and reply["engine"] == holder.engine_id
        assert reply["result"]["state"] == "paused" and holder.agents.get("f1").pause_reason == "coaching"
        assert "f1" not in other.agents.agents
        # Logging the same agent in again anywhere is refused: one phone leg per agent.
        with pytest.raises(WebApiError) as refused:
            handlers()["agent.login"](Context(other, reader._db(), reader.store, reader.redis),
                                      {"agent_id": "f1", "endpoint": AGENT_PHONE, "campaign": "fwd"})
        assert refused.value.code == "conflict" and holder.engine_id in refused.value.message
    finally:
        reader.stop()
        other.stop(drain_timeout=1)


def test_a_command_that_cannot_take_effect_stays_pending_then_gets_an_error(world, redis_client):
    _switch, make = world
    # This engine's consumer reaches no PostgreSQL (nothing listens on port 9).
    engine, api = make(database_url="postgresql://postgres@127.0.0.1:9/dialer", claim_idle_ms=300,
                       max_deliveries=2)
    app = WebApp(redis_client)
    request = app.send("campaign.start", {"campaign": "acme"})
    assert wait_until(lambda: api.consumer.counts["retry_later"] >= 1, 15)
    pending = redis_client.xpending("dialer:commands", "engines")["pending"]
    assert pending == 1 and not app.replies(request)       # not acknowledged, not answered
    reply = app.reply(request, timeout=20)
    assert reply["error"]["code"] == "unavailable" and "PostgreSQL" in reply["error"]["message"]
    assert wait_until(lambda: redis_client.xpending("dialer:commands", "engines")["pending"] == 0, 5)


def test_poisonous_entries_are_answered_and_the_api_keeps_serving(world, redis_client):
    """QA: an entry that is not UTF-8 killed every engine's command reader (each claimed it in
    turn), and JSON nested too deep was never answered and came back forever. Both get a
    `malformed` reply and are acknowledged; a refused command with a sound envelope is answered
    on its own reply_to, with its type."""
    _switch, make = world
    make()
    redis_client.xadd("dialer:commands", {"command": b"\xff\xfe\x00garbage"})
    deep = json.dumps({"request_id": "deep-1", "type": "stats.get", "args": {}})[:-1] + \
        ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    redis_client.xadd("dialer:commands", {"command": deep})
    app = WebApp(redis_client, reply_to="dialer:replies:webapp-7")
    refused = app.send("campaign.start", {})
    # both answered with the entry id; the one too deep to parse with its request id, its first
    # member (QA6: "with the request id when it can be read"), the other anonymously
    assert wait_until(lambda: len([f for _id, f in redis_client.xrange("dialer:replies")
                                   if f.get("entry_id")]) == 2, 15)
    errors = {f["request_id"]: json.loads(f["error"])["message"]
              for _id, f in redis_client.xrange("dialer:replies") if f.get("entry_id")}
    assert errors["deep-1"].startswith("`command` is not JSON: maximum recursion depth")
    assert errors[""] == "`command` is not UTF-8 text"
    reply = app.reply(refused)
    assert (reply["type"], reply["error"]["code"]) == ("campaign.start", "invalid") and "entry_id" not in reply
    # and the reader still serves
    assert WebApp(redis_client).ok("stats.get", {}) is not None
    assert wait_until(lambda: redis_client.xpending("dialer:commands", "engines")["pending"] == 0, 5)


def test_dnc_add_refuses_a_number_that_is_not_complete(world, db_url, redis_client):
    """QA: a truncated number was stored (as "+1212555017"), protecting nobody; a scope on the
    internal list made an entry nobody removes. Both are refused, nothing stored."""
    _switch, make = world
    make()
    app = WebApp(redis_client)
    for args in ({"number": "212555017"}, {"number": "555"}, {"number": "+12125550177", "scope": "x"}):
        reply = app.call("dnc.add", args)
        assert reply["status"] == "error" and reply["error"]["code"] == "invalid", reply
    assert "too short" in app.call("dnc.add", {"number": "212555017"})["error"]["message"]
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM compliance_dnc_entries").fetchone()[0] == 0


def test_agents_cannot_log_in_to_an_agentless_campaign(world, redis_client):
    """QA: an agent logged in to a recorded-message campaign, where no call ever reaches an agent."""
    _switch, make = world
    make()
    app = WebApp(redis_client)
    settings = {**BASE_SETTINGS, "dial_mode": "agentless", "pacing": {"mode": "agentless"}, "voice": "prerecorded",
                "call_purpose": "informational"}
    app.ok("campaign.create", {"name": "robo", "settings": settings})
    reply = app.call("agent.login", {"agent_id": "r1", "endpoint": AGENT_PHONE, "campaign": "robo"})
    assert reply["status"] == "error" and reply["error"]["code"] == "conflict" and "agentless" in reply["error"]["message"]
