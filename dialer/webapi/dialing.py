"""Preview and manual dial for one agent, through the same steps as the engine's own dialing
(dialer/engine/runner.py `_dial`): the lead is leased to this engine, the compliance gate
decides immediately before the originate (a block is recorded and nothing is dialed), the
attempt with our origination_uuid is written before bgapi originate, and the call counts in the
campaign's statistics, CDRs and abandon account like any other.

The difference is the agent: it is reserved (on_call) before the originate, so the answered call
is bridged to that agent at once, without AMD (the agent hears a machine and dispositions it).
A live answer the bridge fails for hears the safe-harbor message and counts as abandoned.
"""
from __future__ import annotations

import logging
import time
import uuid

import psycopg

from dialer import campaigns
from dialer.compliance.geo import normalize
from dialer.compliance.model import Outcome as GateOutcome
from dialer.engine.agents import AgentError, AgentState
from dialer.engine.calls import Call, CallState
from dialer.campaigns import CallOutcome
from dialer.engine.flow import CallFlow
from dialer.engine.runner import _Recorder
from dialer.engine.store import ClaimedLead
from dialer.errors import DialerError
from dialer.webapi import WebApiError
from dialer.webapi.handlers import Context, local_agent

log = logging.getLogger(__name__)

_LEAD_COLUMNS = "id, campaign_id, phone_e164, attempts, state, zip, tz_hint, person_id, debt_id, line_type"
PREVIEW_REASON = "preview"
PREVIEW_RESERVE_S = 300          # how long a previewed lead stays reserved for its agent


class AgentCallFlow(CallFlow):
    """A call placed for one agent: answered means bridged to that agent."""

    def __init__(self, *args, agent, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.agent = agent

    def _answered(self) -> None:
        call = self.call
        reply = self.switchboard.try_api(call.node, f"uuid_bridge {call.uuid} {self.agent.leg_uuid}")
        if reply is None or not reply.startswith("+OK"):
            call.agent_id = None
            if self.agent.state is AgentState.ON_CALL and self.agent.call_uuid == call.uuid:
                self.agents.transition(self.agent, AgentState.READY)
            self._safe_harbor()
            return
        call.state = CallState.BRIDGED
        call.outcome = CallOutcome.HUMAN

    def _release_agent(self) -> None:
        agent = self.agent
        if self.call.answered is None and agent.state is AgentState.ON_CALL and agent.call_uuid == self.call.uuid:
            self.agents.transition(agent, AgentState.READY)    # nothing was said: nothing to disposition
            return
        super()._release_agent()


def _runner(ctx: Context, campaign_id: int):
    runner = ctx.engine.runners.get(campaign_id)
    if runner is None or runner.status not in (campaigns.CampaignStatus.RUNNING, campaigns.CampaignStatus.PAUSED):
        raise WebApiError("conflict", "the campaign is not running or paused on this engine")
    return runner


def _claimed(ctx: Context, lead_id: int) -> ClaimedLead:
    row = ctx.conn.execute(f"SELECT {_LEAD_COLUMNS} FROM leads WHERE id = %s AND status = 'in_progress'"
                           " AND claimed_by = %s", (lead_id, ctx.engine.engine_id)).fetchone()
    if row is None:
        raise WebApiError("not_found", f"lead {lead_id} is not reserved on this engine (preview it first)")
    return ClaimedLead(*row)


def lead_preview(ctx: Context, args: dict) -> dict:
    agent = local_agent(ctx, args["agent_id"])
    if agent.state not in (AgentState.READY, AgentState.PAUSED) or not agent.leg_uuid:
        raise WebApiError("conflict", f"agent {agent.agent_id} is {agent.state.value}: preview needs a ready or"
                                      " paused agent with a phone leg")
    campaign = campaigns.get_campaign(ctx.conn, args["campaign"])
    runner = _runner(ctx, campaign.id)
    if agent.campaign != runner.name:
        raise WebApiError("conflict", f"agent {agent.agent_id} works on campaign {agent.campaign}")
    leads = ctx.store.claim_leads(campaign.id, 1)
    if not leads:
        raise WebApiError("not_found", f"campaign {campaign.name} has no callable lead now")
    lead = leads[0]
    ctx.store.extend_claim(lead.id, PREVIEW_RESERVE_S)    # a claim's own lease is a dial's: 60 s
    if agent.state is AgentState.READY:
        # While the agent looks at the lead no predictive call is bridged to them.
        ctx.engine.agents.transition(agent, AgentState.PAUSED, reason=PREVIEW_REASON)
    row = ctx.conn.execute("SELECT first_name, last_name, address, city, state, zip, custom, attempts,"
                           " last_outcome, claimed_until FROM leads WHERE id = %s", (lead.id,)).fetchone()
    keys = ("first_name", "last_name", "address", "city", "state", "zip", "custom", "attempts", "last_outcome")
    return {"lead_id": lead.id, "campaign": campaign.name, "phone": lead.phone_e164, **dict(zip(keys, row)),
            "reserved_until": campaigns.iso_utc(row[9]), "agent_id": agent.agent_id}


def lead_skip(ctx: Context, args: dict) -> dict:
    lead = _claimed(ctx, args["lead_id"])
    ctx.store.requeue(lead.id, None, "preview_skipped")
    return {"lead_id": lead.id, "status": "callable"}


def call_dial(ctx: Context, args: dict) -> dict:
    agent = local_agent(ctx, args["agent_id"])
    lead = _claimed(ctx, args["lead_id"])
    return _dial(ctx, _runner(ctx, lead.campaign_id), lead, agent)


def call_manual(ctx: Context, args: dict) -> dict:
    agent = local_agent(ctx, args["agent_id"])
    phone = normalize(args["number"], args.get("region", "US"))
    campaign = campaigns.get_campaign(ctx.conn, args["campaign"])
    runner = _runner(ctx, campaign.id)
    with ctx.conn.transaction():
        list_id = ctx.conn.execute(
            "INSERT INTO lead_lists (campaign_id, name, source_file) SELECT %s, 'manual', 'webapi'"
            " WHERE NOT EXISTS (SELECT 1 FROM lead_lists WHERE campaign_id = %s AND name = 'manual') RETURNING id",
            (campaign.id, campaign.id)).fetchone() or ctx.conn.execute(
            "SELECT id FROM lead_lists WHERE campaign_id = %s AND name = 'manual'", (campaign.id,)).fetchone()
        ctx.conn.execute("INSERT INTO leads (campaign_id, list_id, phone_e164, phone_raw) VALUES (%s, %s, %s, %s)"
                         " ON CONFLICT (campaign_id, phone_e164) DO NOTHING",
                         (campaign.id, list_id[0], phone, args["number"]))
        row = ctx.conn.execute(
            f"UPDATE leads SET status = 'in_progress', claimed_by = %s, claimed_until = now() + interval '5 minutes'"
            f" WHERE campaign_id = %s AND phone_e164 = %s AND status <> 'in_progress' RETURNING {_LEAD_COLUMNS}",
            (ctx.engine.engine_id, campaign.id, phone)).fetchone()
    if row is None:
        raise WebApiError("conflict", f"{phone} is being dialed now in campaign {campaign.name}")
    return _dial(ctx, runner, ClaimedLead(*row), agent)


def _dial(ctx: Context, runner, lead: ClaimedLead, agent) -> dict:
    engine = ctx.engine
    if agent.campaign != runner.name:
        ctx.store.requeue(lead.id, None, "agent_not_on_campaign")
        raise WebApiError("conflict", f"agent {agent.agent_id} works on campaign {agent.campaign}")
    if not agent.leg_uuid or agent.state not in (AgentState.READY, AgentState.PAUSED):
        ctx.store.requeue(lead.id, None, "agent_unavailable")
        raise WebApiError("conflict", f"agent {agent.agent_id} is {agent.state.value} without a free phone leg")
    caller_id = runner._caller_id(lead)      # the campaign's rotation rules
    request = runner.gate_request(lead, caller_id)
    decision = runner.decide(request)
    if not decision.allowed:
        runner.refused(ctx.store, lead, decision, agent.agent_id)
        raise WebApiError("blocked", f"the compliance gate refused the call: {', '.join(decision.reasons)}",
                          {"reasons": list(decision.reasons), "decision_id": decision.decision_id,
                           "next_allowed_at": campaigns.iso_utc(decision.next_allowed_at)})
    try:
        # Reserved (on_call) before anything is dialed: no predictive call takes the agent.
        if agent.state is AgentState.PAUSED:
            engine.agents.transition(agent, AgentState.READY)
        engine.agents.transition(agent, AgentState.ON_CALL)
    except AgentError as exc:
        # A predictive call was bridged to the agent in between.
        ctx.store.requeue(lead.id, None, "agent_unavailable")
        raise WebApiError("conflict", f"agent {agent.agent_id} was taken by another call: {exc}") from exc
    gateway = runner.pool.acquire() if engine.may_dial() else None
    # the call goes where the agent's leg is: the two are bridged on that switch
    node = engine.switchboard.pick_node(among={agent.node}) if gateway is not None else None
    if gateway is None or node is None:
        if gateway is not None:
            runner.pool.release(gateway)
        engine.agents.transition(agent, AgentState.READY)
        ctx.store.requeue(lead.id, None, "no_capacity")
        try:        # the decision counted a call that was never placed
            engine.gate.record_outcome(request, decision.decision_id, GateOutcome.NOT_PLACED, engine.clock())
        except DialerError as exc:
            log.warning("lead %s: compliance counters not corrected: %s", lead.id, exc)
        raise WebApiError("unavailable", "no gateway channel, FreeSWITCH node or clock agreement to dial now")
    call = Call(uuid=str(uuid.uuid4()), campaign=runner.name, lead_id=lead.id, number=lead.phone_e164,
                gateway=gateway.name, caller_id=caller_id, node=node)
    agent.call_uuid, call.agent_id = call.uuid, agent.agent_id
    try:
        call.attempt_id = ctx.store.create_attempt(call, lead, runner.campaign_id, decision.decision_id,
                                                   compliance=(request, decision))
    except (DialerError, psycopg.Error):
        # No attempt recorded: no originate. The lead's lease runs out and the agent is free again.
        runner.pool.release(gateway)
        engine.agents.transition(agent, AgentState.READY)
        raise
    runner.calls[call.uuid] = call
    runner.stats.originated += 1
    runner.stats.started_times.append(time.monotonic())
    flow = AgentCallFlow(call, runner.flow_settings, engine.switchboard, engine.agents, None,
                         # Every gateway counted as tried: a trunk failure is not redialed by the
                         # runner's own flow, which would not bridge to this agent.
                         _Recorder(runner, request, decision.decision_id, lead,
                                   frozenset(g.name for g in runner.pool.gateways)),
                         {"dialer_campaign": runner.name, "dialer_lead": str(lead.id), "dialer_number": lead.phone_e164,
                          "dialer_agent_call": agent.agent_id, "origination_caller_id_name": runner.name},
                         engine.dial_string(gateway, lead.phone_e164), agent=agent)
    runner.flows.spawn(flow.run).link(lambda _g: runner.pool.release(gateway))
    engine.publish("call_dialed", campaign=runner.name, uuid=call.uuid, lead_id=lead.id, agent=agent.agent_id,
                   mode="agent")
    return {"call_uuid": call.uuid, "lead_id": lead.id, "agent_id": agent.agent_id, "campaign": runner.name,
            "decision_id": decision.decision_id, "attempt_id": call.attempt_id}
