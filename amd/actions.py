"""What a campaign does with a call once AMD has decided: a pure function over enums.

HUMAN goes to a free agent; when none is free within `agent_wait_s` (2 s: the TCPA/FCC
abandoned-call rule counts a live person not connected to an agent within 2 s of their greeting
as abandoned, so the safe-harbor message plays instead). MACHINE is hung up, or gets a recorded
message after the beep (voicemail drop: the engine waits for `beep_end_ms` or the silence
fallback before playing), or goes to an agent. NOTSURE does what the campaign configured (by
default treated as a person: hanging up on a live person is the costly error).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from amd.detector import AmdResult


class MachineAction(enum.Enum):
    HANGUP = "hangup"
    VOICEMAIL_DROP = "voicemail_drop"
    AGENT = "agent"


class NotSureAction(enum.Enum):
    AS_HUMAN = "as_human"
    AS_MACHINE = "as_machine"
    HANGUP = "hangup"


class CallAction(enum.Enum):
    CONNECT_AGENT = "connect_agent"            # bridge to the agent now
    WAIT_FOR_AGENT = "wait_for_agent"          # none free yet, still inside agent_wait_s
    SAFE_HARBOR = "safe_harbor"                # play the safe-harbor message, then hang up
    WAIT_FOR_BEEP = "wait_for_beep"            # voicemail drop: beep stage still listening
    PLAY_MESSAGE = "play_message"              # voicemail drop: beep ended (or fallback)
    HANGUP = "hangup"


@dataclass(frozen=True)
class CampaignActions:
    on_machine: MachineAction = MachineAction.HANGUP
    on_notsure: NotSureAction = NotSureAction.AS_HUMAN
    agent_wait_s: float = 2.0
    has_voicemail_message: bool = False


def decide_action(result: AmdResult, config: CampaignActions, *, agent_free: bool,
                  seconds_since_decision: float, beep_stage_done: bool = False) -> CallAction:
    """The next step for a call, given the AMD result and the live situation.

    The engine calls it on the decision and again on each change (an agent frees up, the
    2 s run out, the beep stage ends) until it returns a terminal action.
    """
    if result is AmdResult.NOTSURE:
        if config.on_notsure is NotSureAction.HANGUP:
            return CallAction.HANGUP
        result = AmdResult.HUMAN if config.on_notsure is NotSureAction.AS_HUMAN else AmdResult.MACHINE
    if result is AmdResult.MACHINE:
        if config.on_machine is MachineAction.HANGUP:
            return CallAction.HANGUP
        if config.on_machine is MachineAction.VOICEMAIL_DROP:
            if not config.has_voicemail_message:
                return CallAction.HANGUP
            return CallAction.PLAY_MESSAGE if beep_stage_done else CallAction.WAIT_FOR_BEEP
        result = AmdResult.HUMAN            # MachineAction.AGENT: treated like a person
    if agent_free:
        return CallAction.CONNECT_AGENT
    if seconds_since_decision < config.agent_wait_s:
        return CallAction.WAIT_FOR_AGENT
    return CallAction.SAFE_HARBOR
