"""One call's flow, from originate to hangup, in its own greenlet.

1. bgapi originate with our origination_uuid (also the Job-UUID), ignore_early_media=true and
   the campaign's ring timeout, parked on answer (&park()).
2. Answered: unicast the parked leg's audio to the AMD receiver (mod_event_socket
   `call-command: unicast`; audio flows only while the leg is parked). L16 comes at the leg's
   read rate and ptime (CHANNEL_ANSWER's Channel-Read-Codec-Rate, variable_rtp_use_codec_ptime),
   so a campaign with AMD offers only G.711 (absolute_codec_string=PCMU,PCMA): the detector
   works on telephone-band 8 kHz audio, and OPUS at 48 kHz would not reach it.
3. HUMAN: bridge to the agent who has waited longest. If none is free within the rule's
   window (2 s from the end of the greeting, 47 CFR 64.1200(a)(7)), play the safe-harbor
   message and hang up: the call counts as abandoned. MACHINE: hang up, or wait for the beep
   and leave the campaign's message (voicemail drop), or pass to an agent. NOTSURE: as the
   campaign says.
4. CHANNEL_HANGUP_COMPLETE ends the flow; the recorder writes the CDR from it.

Everything the flow waits for (ESL events of its channel, the AMD decision, the beep) arrives
on one bounded inbox, so every wait is one timed get() and a hangup interrupts any of them.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import gevent
import gevent.queue

from dialer.engine.agents import Agent, AgentRegistry, AgentState
from amd.actions import MachineAction, NotSureAction
from dialer.campaigns import CallOutcome
from dialer.engine.calls import Call, CallState, outcome_of_failure
from dialer.engine.switchboard import Switchboard
from amd.errors import ReceiverError
from esl.causes import HangupCause
from esl.errors import ConnectionLost, ESLError, ESLTimeout, JobFailed
from esl.protocol import Event

log = logging.getLogger(__name__)

INBOX_SIZE = 1000
RULE_GREETING_WAIT_MS = 2000    # 47 CFR 64.1200(a)(7): an agent within 2 s of the completed greeting
# After a connection loss during originate: how often, and for how long, the flow tries to kill a
# channel that may have been left up (each try also waits for the reconnect, up to the client's timeout).
ORPHAN_KILL_ATTEMPTS = 5
ORPHAN_KILL_WINDOW_S = 30.0
ORPHAN_KILL_RETRY_S = 1.0


@dataclass(frozen=True)
class FlowSettings:
    ring_timeout_s: int = 25
    # The 2 s of 47 CFR 64.1200(a)(7) run from the end of the greeting, and AMD decides HUMAN only
    # after some of them went by in silence (human_silence_*_ms, 400-2500 ms): the flow waits for
    # an agent only what is left of them (QA 7: a fixed 1.2 s after the decision started the
    # message after 2 s). agent_wait_s is the wait of a campaign without AMD (no greeting end is
    # known); playback_margin_s is kept for the message's playback to start.
    agent_wait_s: float = 1.2
    playback_margin_s: float = 0.15
    machine_action: MachineAction = MachineAction.HANGUP
    notsure_action: NotSureAction = NotSureAction.AS_HUMAN
    safe_harbor_file: str = "ivr/safe_harbor.wav"
    voicemail_file: str = "ivr/voicemail_message.wav"
    amd_timeout_s: float = 10.0        # a safety net: the detector's own limits end it sooner
    beep_timeout_s: float = 30.0
    playback_timeout_s: float = 60.0
    agentless: bool = False            # a recorded-message campaign: no agent, the message plays


class AmdVerdict(Protocol):
    result: str        # HUMAN, MACHINE, NOTSURE
    cause: str
    decision_ms: int


class AmdTap(Protocol):
    """What the flow needs from the AMD receiver: start analysing a call's audio and deliver
    the decision and then the beep (or its absence) through callbacks."""

    def open(self, call_uuid: str, node: str, on_decision, on_beep, campaign: str | None = None,
             rate: int = 8000, ptime_ms: int = 20) -> tuple[str, int, str, int]:
        """Register the call of a node (its L16 audio at `rate`, `ptime_ms` per datagram);
        returns (switch_local_ip, switch_local_port, our_ip, our_port)."""

    def close(self, call_uuid: str) -> None: ...

    def silence_after_speech_ms(self, call_uuid: str) -> int | None:
        """The party's silence since they last spoke, as heard so far (None: no speech yet)."""


class Recorder(Protocol):
    def answered(self, call: Call) -> None: ...
    def ended(self, call: Call, hangup_event: Event | None) -> None: ...


@dataclass(frozen=True)
class Inbox:
    kind: str            # "esl", "amd", "beep"
    payload: object


# what a campaign with AMD offers the far end: the receiver takes L16 at 8 or 16 kHz, and the
# detector was built for telephone-band audio
AMD_CODECS = "PCMU,PCMA"


@dataclass(frozen=True)
class _Unanalysed:
    """The verdict of a call whose audio the receiver cannot take."""
    result: str = "NOTSURE"
    cause: str = "UNSUPPORTED_AUDIO"
    decision_ms: int = 0


_UNANALYSED = _Unanalysed()


def _int_header(event: Event, name: str, default: int) -> int:
    value = event.get(name)
    return int(value) if value is not None and value.isascii() and value.isdigit() else default


class CallFlow:
    def __init__(self, call: Call, settings: FlowSettings, switchboard: Switchboard, agents: AgentRegistry,
                 amd: AmdTap | None, recorder: Recorder, variables: dict[str, str], dial_string: str) -> None:
        self.call = call
        self.settings = settings
        self.switchboard = switchboard
        self.agents = agents
        self.amd = amd
        self.recorder = recorder
        self.variables = variables
        self.dial_string = dial_string
        self.inbox: gevent.queue.Queue = gevent.queue.Queue(maxsize=INBOX_SIZE)
        self.hangup_event: Event | None = None
        self._amd_heard: tuple[float, int | None] | None = None   # (monotonic time, silence ms) at AMD's decision

    # -- inputs -------------------------------------------------------------------------------

    def _put(self, kind: str, payload: object) -> None:
        try:
            self.inbox.put_nowait(Inbox(kind, payload))
        except gevent.queue.Full:
            log.error("call %s: inbox full, dropping %s", self.call.uuid, kind)

    def on_event(self, event: Event) -> None:
        if event.name == "CHANNEL_ANSWER":
            # read here, not in the flow's greenlet: the originate's job result that starts
            # AMD may be taken from the inbox before this event
            self.call.read_rate = _int_header(event, "Channel-Read-Codec-Rate", self.call.read_rate)
            self.call.read_ptime_ms = _int_header(event, "variable_rtp_use_codec_ptime", self.call.read_ptime_ms)
        self._put("esl", event)

    def on_amd(self, verdict: AmdVerdict) -> None:
        # Called by the receiver as it decides, before it drops the call's analysis: the silence
        # heard after the speech says when the greeting ended (the 2-s rule's start).
        if self.amd is not None and self._amd_heard is None:
            self._amd_heard = (time.monotonic(), self.amd.silence_after_speech_ms(self.call.uuid))
        self._put("amd", verdict)

    def on_beep(self, beep_end_ms: int | None) -> None:
        self._put("beep", beep_end_ms)

    def _wait(self, timeout: float, accept) -> Inbox | None:
        """The first inbox item `accept` takes, or None at the deadline. A hangup ends any wait."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                item = self.inbox.get(timeout=remaining)
            except gevent.queue.Empty:
                return None
            if item.kind == "esl" and item.payload.name == "CHANNEL_HANGUP_COMPLETE":
                self.hangup_event = item.payload
                raise _HungUp()
            if item.kind == "esl" and item.payload.name == "CHANNEL_HANGUP":
                self._note_cause(item.payload)
            if accept(item):
                return item

    def _note_cause(self, event: Event) -> None:
        self.call.hangup_cause = HangupCause.parse(event.get("Hangup-Cause")) or self.call.hangup_cause

    # -- the flow -----------------------------------------------------------------------------

    def run(self) -> Call:
        call = self.call
        self.switchboard.watch(call.uuid, self.on_event)
        self.switchboard.live_calls[call.node] += 1
        try:
            if self._originate():
                try:
                    self._answered()
                except _HungUp:
                    self._outcome_of_early_hangup()
                else:
                    self._wait_hangup()
        except ESLError as exc:
            log.warning("call %s: %s", call.uuid, exc)
            call.outcome = call.outcome or CallOutcome.FAILED
            self.switchboard.try_api(call.node, f"uuid_kill {call.uuid}")
        except Exception:  # noqa: BLE001 - whatever failed, nobody may be left on a parked leg
            log.exception("call %s: flow failed; hanging up", call.uuid)
            call.outcome = call.outcome or CallOutcome.FAILED
            self.switchboard.try_api(call.node, f"uuid_kill {call.uuid}")
        finally:
            if self.amd is not None:
                self.amd.close(call.uuid)
            self.switchboard.unwatch(call.uuid)
            self.switchboard.live_calls[call.node] -= 1
            self._release_agent()
            call.state = CallState.ENDED
            call.ended = call.ended or time.time()
            self.recorder.ended(call, self.hangup_event)
        return call

    def _originate(self) -> bool:
        call = self.call
        variables = {"ignore_early_media": "true", "originate_timeout": str(self.settings.ring_timeout_s),
                     "origination_caller_id_number": call.caller_id, **self.variables}
        if self.amd is not None:
            variables["absolute_codec_string"] = AMD_CODECS
        try:
            job = self.switchboard.originate(call.node, call.uuid, self.dial_string, variables)
        except ConnectionLost as exc:
            # The command may have reached the switch before the connection went: same as below.
            log.warning("call %s: connection lost while sending originate: %s", call.uuid, exc)
            self._kill_unowned_channel()
            call.outcome = CallOutcome.FAILED
            return False
        try:
            job.wait(self.settings.ring_timeout_s + 15)
        except JobFailed as failed:
            call.hangup_cause = failed.cause
            call.outcome = outcome_of_failure(failed.cause)
            return False
        except ESLTimeout:
            # No result: the channel may exist; never leave it ringing unowned.
            self.switchboard.try_api(call.node, f"uuid_kill {call.uuid}")
            call.outcome = CallOutcome.FAILED
            return False
        except ConnectionLost as exc:
            # FreeSWITCH runs a bgapi job on its own thread, whatever becomes of the connection
            # that asked for it: the call may be ringing, or answered and parked with nobody
            # controlling it (a person would pick up a silent call). Kill it once the node is
            # reachable again.
            log.warning("call %s: connection lost during originate: %s", call.uuid, exc)
            self._kill_unowned_channel()
            call.outcome = CallOutcome.FAILED
            return False
        call.answered = time.time()
        self.recorder.answered(call)
        return True

    def _kill_unowned_channel(self) -> None:
        """uuid_kill our origination_uuid after the node's connection was lost: each attempt
        waits for the inbound client's reconnect (up to its timeout); retried a bounded number
        of times, within ORPHAN_KILL_WINDOW_S. Any reply counts, `-ERR No such channel` too
        (the originate never ran, or the call already ended)."""
        call = self.call
        deadline = time.monotonic() + ORPHAN_KILL_WINDOW_S
        for _attempt in range(ORPHAN_KILL_ATTEMPTS):
            reply = self.switchboard.try_api(call.node, f"uuid_kill {call.uuid}")
            if reply is not None:
                log.info("call %s: killed after the connection loss: %s", call.uuid, reply.strip())
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            gevent.sleep(min(ORPHAN_KILL_RETRY_S, remaining))
        log.error("call %s: node %s unreachable; its channel may still be up, unowned",
                  call.uuid, call.node)

    def _answered(self) -> None:
        call = self.call
        call.state = CallState.ANALYZING
        if self.amd is None:           # AMD off for the campaign: every answer goes to an agent
            self._connect_live()
            return
        verdict = self._analyze()
        call.amd_decided = time.time()
        if verdict is None:
            call.amd_result, call.amd_cause = "NOTSURE", "ENGINE_TIMEOUT"
        else:
            call.amd_result, call.amd_cause, call.amd_decision_ms = verdict.result, verdict.cause, verdict.decision_ms
        result = call.amd_result
        if result == "NOTSURE":
            # The campaign's choice (amd.actions): by default a person, since hanging up on a
            # live person is the costly error.
            if self.settings.notsure_action is NotSureAction.HANGUP:
                call.outcome, call.detail = CallOutcome.MACHINE, "notsure_hangup"   # retried as a machine
                self._hangup(HangupCause.NORMAL_CLEARING)
                return
            result = "MACHINE" if self.settings.notsure_action is NotSureAction.AS_MACHINE else "HUMAN"
        if result == "HUMAN" or self.settings.machine_action is MachineAction.AGENT:
            self._connect_live()
        elif self.settings.machine_action is MachineAction.VOICEMAIL_DROP:
            self._voicemail_drop()
        else:
            call.outcome = CallOutcome.MACHINE
            self._hangup(HangupCause.NORMAL_CLEARING)

    def _analyze(self) -> AmdVerdict | None:
        call = self.call
        try:
            fs_ip, fs_port, our_ip, our_port = self.amd.open(
                call.uuid, call.node, self.on_amd, self.on_beep, campaign=call.campaign,
                rate=call.read_rate, ptime_ms=call.read_ptime_ms)
        except ReceiverError as exc:
            # audio the receiver cannot take (a codec the gateway forced past absolute_codec_string):
            # no analysis, the campaign's NOTSURE action decides
            log.warning("call %s: no AMD: %s", call.uuid, exc)
            return _UNANALYSED
        self.switchboard.client(call.node).connection().unicast(
            call.uuid, local_ip=fs_ip, local_port=fs_port, remote_ip=our_ip, remote_port=our_port)
        item = self._wait(self.settings.amd_timeout_s, lambda i: i.kind == "amd")
        return item.payload if item is not None else None

    def _connect_live(self) -> None:
        call = self.call
        if self.settings.agentless:
            # The campaign's recorded message is the call; nobody waits for an agent.
            self._play(self.settings.safe_harbor_file)
            call.outcome, call.detail = CallOutcome.HUMAN, "message_delivered"
            self._hangup(HangupCause.NORMAL_CLEARING)
            return
        call.state = CallState.WAITING_AGENT
        deadline = time.monotonic() + self._agent_window_s()
        agent = self.agents.take_ready(call.campaign, call.reserved_agent, node=call.node)
        while agent is None and time.monotonic() < deadline:
            # Poll in 50 ms steps, never past the deadline; a hangup in the meantime ends the flow.
            self._wait(min(0.05, max(0.0, deadline - time.monotonic())), lambda i: False)
            agent = self.agents.take_ready(call.campaign, call.reserved_agent, node=call.node)
        if agent is None:
            self._safe_harbor()
            return
        agent.call_uuid = call.uuid
        call.agent_id = agent.agent_id
        reply = self.switchboard.try_api(call.node, f"uuid_bridge {call.uuid} {agent.leg_uuid}")
        if reply is None or not reply.startswith("+OK"):
            log.info("call %s: bridge to agent %s failed: %s", call.uuid, agent.agent_id, (reply or "").strip())
            self.agents.transition(agent, AgentState.READY)
            call.agent_id = None
            # Most often the called person has just hung up: then the hangup ends the flow here
            # (counted as abandoned while waiting); otherwise the safe-harbor message plays.
            # Only within the rule's window: past it the message must already be playing.
            self._wait(min(0.5, max(0.0, deadline - time.monotonic())), lambda i: False)
            self._safe_harbor()
            return
        # the moment of the bridge, the end of the person's wait (call_attempts.bridged_at)
        call.bridged = time.time()
        call.state = CallState.BRIDGED
        call.outcome = CallOutcome.HUMAN

    def _agent_window_s(self) -> float:
        """How long an agent may still be looked for: 2 s from the end of the greeting (the AMD
        decision's moment less the silence heard after the speech by then), less the margin for
        the message's playback to start; 0 when nothing is left: the message plays at once.
        Without any speech heard (NOTSURE taken as a person, a silent answer) the answer is the
        only known start, so the window runs from it (fails closed)."""
        if self.amd is None:
            return self.settings.agent_wait_s       # no analysis: no greeting end is known
        heard = self._amd_heard
        if heard is None:                            # no decision from AMD (the engine's timeout)
            heard = (time.monotonic(), self.amd.silence_after_speech_ms(self.call.uuid))
        at, silent_ms = heard
        if silent_ms is None:
            since_answer = time.time() - (self.call.answered or time.time())
            greeting_end = time.monotonic() - max(since_answer, 0.0)
        else:
            greeting_end = at - silent_ms / 1000
        deadline = greeting_end + RULE_GREETING_WAIT_MS / 1000 - self.settings.playback_margin_s
        return max(0.0, deadline - time.monotonic())

    def _safe_harbor(self) -> None:
        call = self.call
        call.state = CallState.SAFE_HARBOR
        call.outcome, call.detail = CallOutcome.ABANDONED, "safe_harbor"
        call.safe_harbor_started = time.time()
        self._play(self.settings.safe_harbor_file)
        self._hangup(HangupCause.NORMAL_CLEARING)

    def _voicemail_drop(self) -> None:
        call = self.call
        call.state = CallState.VOICEMAIL
        self._wait(self.settings.beep_timeout_s, lambda i: i.kind == "beep")
        # Beep or silence fallback: either way the greeting is over and the message can start.
        call.outcome, call.detail = CallOutcome.MACHINE, "voicemail_left"
        self._play(self.settings.voicemail_file)
        self._hangup(HangupCause.NORMAL_CLEARING)

    def _play(self, path: str) -> None:
        """Play a file on the parked leg and wait for its end, matched on our Event-UUID."""
        call = self.call
        event_uuid = self.switchboard.client(call.node).connection().execute(
            call.uuid, "playback", path, event_lock=True)
        self._wait(self.settings.playback_timeout_s,
                   lambda i: i.kind == "esl" and i.payload.name == "CHANNEL_EXECUTE_COMPLETE"
                   and i.payload.get("Application-UUID") == event_uuid)

    def _hangup(self, cause: HangupCause) -> None:
        self.switchboard.try_api(self.call.node, f"uuid_kill {self.call.uuid} {cause.name}")

    def _wait_hangup(self) -> None:
        # A connected call lasts as long as the conversation; the switch ends it, and a lost
        # switch connection is noticed by the reconcile after reconnect.
        try:
            while True:
                self._wait(3600, lambda i: False)
        except _HungUp:
            pass

    def _outcome_of_early_hangup(self) -> None:
        """The far end hung up before the flow reached its outcome."""
        call = self.call
        if call.outcome is not None:
            return
        if call.state is CallState.WAITING_AGENT:
            # A live person left while no agent was free: counted as abandoned, the side of
            # the rule's arithmetic that never understates the rate.
            call.outcome, call.detail = CallOutcome.ABANDONED, "hung_up_waiting_for_agent"
        elif call.state is CallState.VOICEMAIL:
            # AMD said machine and the drop waited for the beep: a machine that hung up first is
            # still a machine (its retry rule and abandon account), not a call nobody answered
            call.outcome, call.detail = CallOutcome.MACHINE, "hung_up_before_beep"
        else:
            # While AMD listens. A person who spoke and then waited in silence longer than the
            # rule's 2 s after their greeting without being put through was abandoned, whatever
            # AMD would have said (47 CFR 64.1200(a)(7)); counted so, live and abandoned. Any
            # other hang-up here is not known to be a person, nor an abandonment: counted nowhere.
            silent_ms = self.amd.silence_after_speech_ms(call.uuid) if self.amd is not None else None
            if silent_ms is not None and silent_ms > RULE_GREETING_WAIT_MS:
                call.outcome, call.detail = CallOutcome.ABANDONED, "hung_up_waiting_for_amd"
            else:
                call.outcome, call.detail = CallOutcome.NO_ANSWER, "hung_up_during_amd"

    def _release_agent(self) -> None:
        agent_id = self.call.agent_id
        if not agent_id:
            return
        agent: Agent = self.agents.get(agent_id)
        if agent.call_uuid == self.call.uuid and agent.state is AgentState.ON_CALL:
            self.agents.transition(agent, AgentState.WRAP_UP)


class _HungUp(Exception):
    """The channel's CHANNEL_HANGUP_COMPLETE arrived: the flow ends wherever it was."""
