"""What each command does, through the engine's public pieces and the project's own functions
(dialer.campaigns, dialer.compliance.records, dialer.reporting). A handler returns the reply's
`result` once the command has taken effect, or raises: WebApiError, or a DialerError that the
consumer maps to an error code (errors.py)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import gevent
import psycopg
import redis

from dialer import campaigns, reporting
from dialer.campaigns import CampaignStatus
from dialer.compliance.geo import normalize, valid_number
from dialer.compliance.model import DialMode
from dialer.compliance.records import PgRecords
from dialer.engine.agents import AgentState
from dialer.engine.store import EngineStore
from dialer.leads import LeadImportError, PhoneNormalizer, state_code
from dialer.webapi import WebApiError

APPLY_WAIT_S = 3.0          # a status change reaches this engine's runner within one supervision round
LOGOUT_WAIT_S = 5.0
AGENT_PUBLISH_WAIT_S = 3.0  # the engine's agent writer records a login in milliseconds normally


@dataclass
class Context:
    engine: object                       # dialer.engine.engine.Engine
    conn: psycopg.Connection             # the consumer's own autocommit connection
    store: EngineStore                   # the consumer's own store (same engine id, own connection)
    redis: redis.Redis


def parse_time(text: str, field: str) -> datetime:
    """RFC 3339 with an offset; the schema's format check is advisory, this one is not."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise WebApiError("invalid", f"{field}: {text!r} is not an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise WebApiError("invalid", f"{field}: {text!r} has no UTC offset")
    return moment


# A callback a little in the past is dialed at once (clocks differ, a form sat open); one further
# back is a wrong date or offset, which would silently become "call now"
CALLBACK_PAST_SLACK = timedelta(minutes=5)


def parse_callback_time(text: str, field: str) -> datetime:
    moment = parse_time(text, field)
    if moment < datetime.now(timezone.utc) - CALLBACK_PAST_SLACK:
        raise WebApiError("invalid", f"{field}: {text!r} is in the past; a callback needs a time to come")
    return moment


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        gevent.sleep(step)
    return True


# -- campaigns ----------------------------------------------------------------------------------

def campaign_create(ctx: Context, args: dict) -> dict:
    settings = campaigns.CampaignSettings.from_dict(args["settings"])
    return campaigns.create_campaign(ctx.conn, args["name"], settings).to_dict()


_EXPECTED = {"start": {CampaignStatus.RUNNING}, "pause": {CampaignStatus.PAUSED},
             "resume": {CampaignStatus.RUNNING}, "stop": {CampaignStatus.STOPPING, CampaignStatus.STOPPED}}


def _campaign_command(verb: str):
    def handler(ctx: Context, args: dict) -> dict:
        campaign = campaigns.apply_command(ctx.conn, args["campaign"], verb)
        # PostgreSQL holds the status every engine follows; this engine's runner shows it within
        # one supervision round, and the reply says whether it did.
        applied = wait_for(lambda: _runner_status(ctx, campaign.id) in _EXPECTED[verb], APPLY_WAIT_S)
        return {**campaign.to_dict(), "engine_applied": applied}
    return handler


def _runner_status(ctx: Context, campaign_id: int) -> CampaignStatus | None:
    runner = ctx.engine.runners.get(campaign_id)
    if runner is None:
        return CampaignStatus.STOPPED      # no runner: the engine does not (or no longer) run it
    return runner.status


def campaign_settings(ctx: Context, args: dict) -> dict:
    return campaigns.update_settings(ctx.conn, args["campaign"], args["set"].items()).to_dict()


def leads_add(ctx: Context, args: dict) -> dict:
    """Leads given in the command: E.164-normalised, deduplicated within the campaign."""
    region = args.get("region", "US")
    try:
        normalizer = PhoneNormalizer(region, fast_path=False)
    except LeadImportError as exc:
        raise WebApiError("invalid", str(exc)) from None
    added, duplicates, rejected = 0, 0, []
    with ctx.conn.transaction():
        campaign = campaigns.get_campaign(ctx.conn, args["campaign"])
        list_name = args.get("list", "webapi")
        row = ctx.conn.execute("SELECT id FROM lead_lists WHERE campaign_id = %s AND name = %s",
                               (campaign.id, list_name)).fetchone()
        list_id = row[0] if row else ctx.conn.execute(
            "INSERT INTO lead_lists (campaign_id, name, source_file) VALUES (%s, %s, 'webapi') RETURNING id",
            (campaign.id, list_name)).fetchone()[0]
        for index, lead in enumerate(args["leads"]):
            # the CSV import's reason codes (docs/campaigns.md), so one reader handles both
            phone, problem = normalizer.normalize(lead["phone"])
            if problem:
                rejected.append({"index": index, "reason": problem[0], "detail": problem[1]})
                continue
            # as a CSV import checks it (the schema checks the ZIP code): a state the gate cannot
            # place would close the lead (UNKNOWN_STATE)
            state, problem = state_code(lead["state"]) if lead.get("state") else (None, None)
            if problem:
                rejected.append({"index": index, "reason": problem[0], "detail": problem[1]})
                continue
            inserted = ctx.conn.execute(
                "INSERT INTO leads (campaign_id, list_id, phone_e164, phone_raw, state, zip, first_name, last_name,"
                " line_type) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (campaign_id, phone_e164)"
                " DO NOTHING RETURNING id",
                (campaign.id, list_id, phone, lead["phone"], state,
                 lead.get("zip"), lead.get("first_name"), lead.get("last_name"),
                 lead.get("line_type", "unknown"))).fetchone()
            if inserted:
                added += 1
            else:
                duplicates += 1
    return {"campaign": campaign.name, "list": list_name, "added": added, "duplicates": duplicates,
            "rejected": rejected}


# -- agents -------------------------------------------------------------------------------------

def local_agent(ctx: Context, agent_id: str):
    agent = ctx.engine.agents.agents.get(agent_id)
    if agent is None:
        raise WebApiError("not_found", f"agent {agent_id!r} is not logged in on this engine")
    return agent


def agent_login(ctx: Context, args: dict) -> dict:
    campaign = campaigns.get_campaign(ctx.conn, args["campaign"])   # CampaignNotFound before ringing a phone
    if campaign.settings.dial_mode is DialMode.AGENTLESS:
        raise WebApiError("conflict", f"campaign {campaign.name} is agentless: its calls play a message, no agent"
                                      " takes them")
    agent = ctx.engine.agents.agents.get(args["agent_id"])
    if agent is not None and agent.state is not AgentState.LOGGED_OUT:
        raise WebApiError("conflict", f"agent {agent.agent_id} is already logged in ({agent.state.value})")
    from dialer.engine.engine import AGENTS_HASH        # here: engine.py starts the web API
    try:
        elsewhere = json.loads(ctx.redis.hget(AGENTS_HASH, args["agent_id"]) or "{}")
    except ValueError:
        elsewhere = {}
    if isinstance(elsewhere, dict) and elsewhere.get("state", "logged_out") != "logged_out" \
            and elsewhere.get("engine") != ctx.engine.engine_id:
        raise WebApiError("conflict", f"agent {args['agent_id']} is logged in on engine {elsewhere.get('engine')}")
    agent = ctx.engine.login_agent(args["agent_id"], args["endpoint"], args["campaign"])
    # The reply only once `dialer:agents` names this engine: another engine reading the web
    # app's next command about the agent forwards it here by that entry (QA6: it answered
    # not_found when the entry was still being written).
    if not wait_for(lambda: _published_here(ctx, agent), AGENT_PUBLISH_WAIT_S, step=0.01):
        _publish_owner(ctx, agent)
    return _agent_view(agent)


def _published_here(ctx: Context, agent) -> bool:
    """`dialer:agents` has the agent on this engine in its present state (the engine's writer
    records the changes in order: then the login's own change is written)."""
    from dialer.engine.engine import AGENTS_HASH
    try:
        live = json.loads(ctx.redis.hget(AGENTS_HASH, agent.agent_id) or "{}")
    except ValueError:
        return False
    return isinstance(live, dict) and live.get("engine") == ctx.engine.engine_id \
        and live.get("state") == agent.state.value


def _publish_owner(ctx: Context, agent) -> None:
    """The agent's entry in `dialer:agents` written now, when the engine's writer is slow (a
    PostgreSQL write queued before it): the writer's own write of the same change follows."""
    from dialer.engine.engine import AGENTS_HASH
    live = {"state": agent.state.value, "campaign": agent.campaign, "engine": ctx.engine.engine_id,
            "since": round(time.time() - agent.time_in_state(), 3), "reason": agent.pause_reason}
    ctx.redis.hset(AGENTS_HASH, agent.agent_id, json.dumps(live))


def logged_in_agent(ctx: Context, agent_id: str):
    """The agent, logged in on this engine. A failed login or a logout leaves a logged-out agent
    in the registry: it has no phone leg, so it must not become ready or paused (QA6: pacing
    dialed for such a ghost and every live answer was abandoned)."""
    agent = ctx.engine.agents.agents.get(agent_id)
    # (one answer whichever engine reads it: one that never had the agent says the same)
    if agent is None or agent.state is AgentState.LOGGED_OUT or not agent.leg_uuid:
        raise WebApiError("conflict", f"agent {agent_id} is logged out: log in first (agent.login)")
    return agent


def agent_ready(ctx: Context, args: dict) -> dict:
    agent = logged_in_agent(ctx, args["agent_id"])
    ctx.engine.agents.transition(agent, AgentState.READY)
    return _agent_view(agent)


def agent_pause(ctx: Context, args: dict) -> dict:
    agent = logged_in_agent(ctx, args["agent_id"])
    ctx.engine.agents.transition(agent, AgentState.PAUSED, reason=args["reason"])
    return _agent_view(agent)


def agent_logout(ctx: Context, args: dict) -> dict:
    agent = local_agent(ctx, args["agent_id"])
    if agent.state is AgentState.ON_CALL:
        raise WebApiError("conflict", f"agent {agent.agent_id} is on a call: log out after the call")
    if agent.state is AgentState.LOGGED_OUT:
        return _agent_view(agent)
    if agent.leg_uuid:
        # The leg's hangup logs the agent out (Engine._agent_leg_event): wait for it.
        ctx.engine.hang_up_agent_leg(agent)
        if wait_for(lambda: agent.state is AgentState.LOGGED_OUT, LOGOUT_WAIT_S):
            return _agent_view(agent)
    ctx.engine.agents.transition(agent, AgentState.LOGGED_OUT)
    return _agent_view(agent)


def agent_disposition(ctx: Context, args: dict) -> dict:
    local_agent(ctx, args["agent_id"])
    callback_at = parse_callback_time(args["callback_at"], "callback_at") if "callback_at" in args else None
    then = AgentState(args.get("then", "ready"))
    if then is AgentState.PAUSED and not args.get("reason"):
        raise WebApiError("invalid", "then=paused needs a reason")
    agent = ctx.engine.agents.get(args["agent_id"])
    call_uuid = agent.call_uuid
    ctx.engine.disposition(args["agent_id"], args["disposition"], callback_at=callback_at,
                           callback_to_agent=args.get("callback_to_agent", False), then=then,
                           reason=args.get("reason"))
    return {**_agent_view(agent), "call_uuid": call_uuid, "disposition": args["disposition"],
            "callback_at": callback_at.isoformat() if callback_at else None}


def _agent_view(agent) -> dict:
    return {"agent_id": agent.agent_id, "campaign": agent.campaign, "state": agent.state.value,
            "reason": agent.pause_reason}


# -- do-not-call --------------------------------------------------------------------------------

def _entry(args: dict, number=normalize) -> tuple[str, str, str, str, str]:
    kind, scope = args.get("list", "internal"), args.get("scope", "")
    if kind == "internal" and scope:
        # the internal list has no scope: an entry filed under one would be one nobody removes
        raise WebApiError("invalid", "the internal list takes no scope")
    return (number(args["number"], args.get("region", "US")), kind, scope, args.get("by", "webapi"),
            args.get("reason", ""))


def dnc_add(ctx: Context, args: dict) -> dict:
    """A campaign entry's scope must be an existing campaign's name (the gate matches names); an
    existing campaign's numeric id is taken as that campaign, its name stored and a `note` added
    to the result. Anything else is refused (`invalid`), nothing stored."""
    # only a complete, valid number (a truncated one would protect nobody); removal takes any
    # number an entry may hold
    phone, kind, scope, by, reason = _entry(args, valid_number)
    records = PgRecords(ctx.conn)
    note = None
    if kind == "campaign":
        scope, note = records.campaign_scope(scope)
    added = records.add_dnc(phone, kind, scope=scope, added_by=by, source="webapi", reason=reason)
    if added:       # an event says something changed (QA6: a repeat published one too)
        ctx.engine.publish("dnc_added", number=phone, list=kind, scope=scope, by=by)
    result = {"number": phone, "list": kind, "scope": scope, "changed": added}
    if note:
        result["note"] = note
    return result


def dnc_remove(ctx: Context, args: dict) -> dict:
    """A campaign entry's scope is resolved as `dnc.add` stores it (a campaign's id -> its name)."""
    phone, kind, scope, by, reason = _entry(args)
    records = PgRecords(ctx.conn)
    note = None
    if kind == "campaign":
        scope, note = records.removal_scope(scope)
    removed = records.remove_dnc(phone, kind, scope=scope, removed_by=by, reason=reason)
    if removed:     # nothing was on the list: no event (QA6: one came for a scope never used)
        ctx.engine.publish("dnc_removed", number=phone, list=kind, scope=scope, by=by)
    result = {"number": phone, "list": kind, "scope": scope, "changed": removed}
    if note:
        result["note"] = note
    return result


# -- callbacks and figures ----------------------------------------------------------------------

def callback_schedule(ctx: Context, args: dict) -> dict:
    """The lead is set aside (status callback) until `at`, for one agent or anyone. A lead an
    engine is dialing now is refused: its call's disposition decides what follows."""
    at = parse_callback_time(args["at"], "at")
    campaign = campaigns.get_campaign(ctx.conn, args["campaign"])
    if "lead_id" in args:
        where, key = "id = %s", args["lead_id"]
    else:
        where, key = "phone_e164 = %s", normalize(args["number"], args.get("region", "US"))
    with ctx.conn.transaction():
        row = ctx.conn.execute(f"SELECT id, status FROM leads WHERE campaign_id = %s AND {where} FOR UPDATE",
                               (campaign.id, key)).fetchone()
        if row is None:
            raise WebApiError("not_found", f"campaign {campaign.name} has no lead {key}")
        if row[1] == "in_progress":
            raise WebApiError("conflict", f"lead {row[0]} is being dialed now; schedule with its disposition")
        agent_id = args.get("agent_id")
        if agent_id and ctx.conn.execute("SELECT 1 FROM agents WHERE agent_id = %s", (agent_id,)).fetchone() is None:
            # a callback reserved for an agent who never logs in would never be dialed
            raise WebApiError("not_found", f"no agent {agent_id!r} has ever logged in; nothing scheduled")
        ctx.conn.execute("UPDATE leads SET status = 'callback', next_attempt_at = %s, callback_agent = %s,"
                         " close_reason = NULL WHERE id = %s", (at, args.get("agent_id"), row[0]))
    return {"campaign": campaign.name, "lead_id": row[0], "at": at.isoformat(), "agent_id": args.get("agent_id"),
            "previous_status": row[1]}


def stats_get(ctx: Context, args: dict) -> dict:
    return reporting.status_snapshot(ctx.conn, ctx.redis, args.get("campaign")).to_dict()


def report_get(ctx: Context, args: dict) -> dict:
    since = parse_time(args["since"], "since") if "since" in args else None
    until = parse_time(args["until"], "until") if "until" in args else None
    return reporting.campaign_report(ctx.conn, args["campaign"], since, until).to_dict()


def handlers() -> dict[str, Callable[[Context, dict], dict]]:
    from dialer.webapi import dialing
    table = {"campaign.create": campaign_create, "campaign.settings": campaign_settings, "leads.add": leads_add,
             "agent.login": agent_login, "agent.ready": agent_ready, "agent.pause": agent_pause,
             "agent.logout": agent_logout, "agent.disposition": agent_disposition,
             "dnc.add": dnc_add, "dnc.remove": dnc_remove, "callback.schedule": callback_schedule,
             "stats.get": stats_get, "report.get": report_get,
             "lead.preview": dialing.lead_preview, "lead.skip": dialing.lead_skip,
             "call.dial": dialing.call_dial, "call.manual": dialing.call_manual}
    table.update({f"campaign.{verb}": _campaign_command(verb) for verb in _EXPECTED})
    return table
