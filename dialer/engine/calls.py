"""A call attempt as the engine follows it, from claim to CDR."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from dialer.campaigns import CallOutcome
from esl.causes import HangupCause


class CallState(enum.Enum):
    ORIGINATING = "originating"      # bgapi originate sent, ringing
    ANALYZING = "analyzing"          # answered and parked, audio going to AMD
    WAITING_AGENT = "waiting_agent"  # a live person, no agent yet (the 2-second window)
    BRIDGED = "bridged"              # talking to an agent
    SAFE_HARBOR = "safe_harbor"      # no agent within 2 s: the abandonment message plays
    VOICEMAIL = "voicemail"          # waiting for the beep, then the message
    ENDED = "ended"


# Causes after which the number itself is wrong: the lead is closed, never retried.
INVALID_NUMBER_CAUSES = frozenset({HangupCause.UNALLOCATED_NUMBER, HangupCause.INVALID_NUMBER_FORMAT,
                                   HangupCause.NUMBER_CHANGED})


def outcome_of_failure(cause: HangupCause | None) -> CallOutcome:
    """The outcome of an originate that never answered."""
    if cause is HangupCause.USER_BUSY:
        return CallOutcome.BUSY
    if cause in (HangupCause.NO_ANSWER, HangupCause.NO_USER_RESPONSE, HangupCause.ALLOTTED_TIMEOUT,
                 HangupCause.PROGRESS_TIMEOUT, HangupCause.ORIGINATOR_CANCEL):
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


@dataclass
class Call:
    uuid: str                            # our origination_uuid: every event is matched on it
    campaign: str
    lead_id: int
    number: str
    gateway: str
    caller_id: str
    attempt_id: int | None = None
    state: CallState = CallState.ORIGINATING
    started: float = field(default_factory=time.time)
    answered: float | None = None
    ended: float | None = None
    amd_result: str | None = None
    amd_cause: str | None = None
    amd_decision_ms: int | None = None
    amd_decided: float | None = None     # wall time of the AMD decision
    bridged: float | None = None         # wall time uuid_bridge joined the agent (call_attempts.bridged_at)
    safe_harbor_started: float | None = None   # wall time the safe-harbor message began to play
    agent_id: str | None = None
    outcome: CallOutcome | None = None
    detail: str | None = None            # voicemail_left, notsure_hangup, no_agent, ...
    hangup_cause: HangupCause | None = None
    node: str = ""
    reserved_agent: str | None = None    # a callback promised to this agent
    read_rate: int = 8000                # the answered leg's read codec rate and ptime: the
    read_ptime_ms: int = 20              # unicast L16 the AMD receiver gets (CHANNEL_ANSWER)

    @property
    def ring_age(self) -> float:
        return time.time() - self.started
