"""The engine's side of the dialplan hooks: FreeSWITCH's `socket <engine>:8084 async full`
hands calls to the engine's outbound socket server (esl/outbound.py), with the variables of
the contract in dialer/fsconf/contract.py (docs/freeswitch.md).

- `dialer_action=optout`: the number in `dialer_optout_number` goes to the internal do-not-call
  list at once (16 CFR 310.4(b)(1)(v); 47 CFR 64.1200(d)(3)); once the entry is committed the
  session sets `dialer_optout_recorded=true`, plays the confirmation and hangs up. If the write
  fails the variable stays unset and the dialplan plays its failure prompt.
- `dialer_action=inbound`: a returned call or a campaign's inbound number: bridged to a ready
  agent of the campaign (the one of the lead's campaign when the caller is a lead), else the
  caller hears the unavailable prompt from the dialplan.
Every session first sets `dialer_engine=<id>`, so the dialplan can tell "engine unreachable"
from "done".
"""
from __future__ import annotations

import logging

from dialer.compliance.records import opt_out_ivr
from dialer.errors import DialerError
from dialer.fsconf.contract import Action, Var
from esl.errors import ESLError
from esl.outbound import OutboundServer, OutboundSession

log = logging.getLogger(__name__)

PLAYBACK_TIMEOUT_S = 60.0


class HookHandler:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.optouts = 0
        self.inbound_bridged = 0

    def __call__(self, session: OutboundSession) -> None:
        channel = session.channel
        session.execute(None, "set", f"{Var.ENGINE}={self.engine.engine_id}", event_lock=True)
        session.myevents()
        action = channel.variable(Var.ACTION.value)
        if action == Action.OPTOUT.value:
            self._optout(session)
        elif action == Action.INBOUND.value:
            self._inbound(session)
        else:
            log.warning("outbound session %s: unknown %s=%r", session.uuid, Var.ACTION, action)

    def _optout(self, session: OutboundSession) -> None:
        channel = session.channel
        number = channel.variable(Var.OPTOUT_NUMBER.value) or channel.get("Caller-Caller-ID-Number")
        try:
            opt_out_ivr(self.engine.gate.records, number,
                        campaign_id=channel.variable(Var.CAMPAIGN.value) or "",
                        digit=channel.variable(Var.OPTOUT_DIGITS.value) or "", call_id=session.uuid)
        except DialerError as exc:
            # Not recorded: leave dialer_optout_recorded unset; the dialplan plays its failure
            # prompt and fires dialer::optout_unhandled for a later retry.
            log.error("opt-out of %s not recorded: %s", number, exc)
            return
        self.optouts += 1
        self.engine.publish("opt_out", source="ivr", uuid=session.uuid,
                            campaign=channel.variable(Var.CAMPAIGN.value))
        session.execute(None, "set", f"{Var.OPTOUT_RECORDED}=true", event_lock=True)
        confirm = channel.variable(Var.OPTOUT_CONFIRM_FILE.value)
        if confirm:
            session.execute_and_wait("playback", confirm, timeout=PLAYBACK_TIMEOUT_S)
        session.hangup(None)

    def _inbound(self, session: OutboundSession) -> None:
        channel = session.channel
        campaign = channel.variable(Var.CAMPAIGN.value)
        caller = channel.variable(Var.CALLER.value) or channel.get("Caller-Caller-ID-Number") or ""
        if not campaign:
            campaign = self.engine.store.campaign_of_number(caller)
        # an agent on the node this call is on (the hook's peer), as uuid_bridge needs
        node = self.engine.switchboard.node_at(session.peer_address)
        agent = self.engine.agents.take_ready(campaign, node=node) if campaign else None
        if agent is None:
            return          # the dialplan goes on: unavailable prompt or voicemail
        agent.call_uuid = session.uuid
        try:
            reply = session.api(f"uuid_bridge {session.uuid} {agent.leg_uuid}")
        except ESLError as exc:
            reply = str(exc)
        if not reply.startswith("+OK"):
            log.warning("inbound %s: bridge to %s failed: %s", session.uuid, agent.agent_id, reply)
            self.engine.agents.transition(agent, type(agent.state).READY)
            return
        self.inbound_bridged += 1
        self.engine.publish("inbound_bridged", uuid=session.uuid, agent=agent.agent_id, campaign=campaign)
        try:
            session.wait_for(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE", timeout=4 * 3600)
        finally:
            if agent.call_uuid == session.uuid and agent.state.value == "on_call":
                self.engine.agents.transition(agent, type(agent.state).WRAP_UP)


def start_hook_server(engine, host: str, port: int) -> OutboundServer:
    return OutboundServer(HookHandler(engine), host, port).start()
