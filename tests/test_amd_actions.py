"""Campaign actions after the AMD decision."""
from __future__ import annotations

import pytest

from amd.actions import CallAction, CampaignActions, MachineAction, NotSureAction, decide_action
from amd.detector import AmdResult

H, M, N = AmdResult.HUMAN, AmdResult.MACHINE, AmdResult.NOTSURE


@pytest.mark.parametrize("agent_free,elapsed,expected", [
    (True, 0.0, CallAction.CONNECT_AGENT),
    (False, 0.5, CallAction.WAIT_FOR_AGENT),
    (False, 1.99, CallAction.WAIT_FOR_AGENT),
    (False, 2.0, CallAction.SAFE_HARBOR),          # nobody free within 2 s: safe-harbor message
    (True, 1.5, CallAction.CONNECT_AGENT),
])
def test_human(agent_free, elapsed, expected):
    assert decide_action(H, CampaignActions(), agent_free=agent_free, seconds_since_decision=elapsed) is expected


def test_machine_actions():
    hang = CampaignActions(on_machine=MachineAction.HANGUP)
    assert decide_action(M, hang, agent_free=True, seconds_since_decision=0) is CallAction.HANGUP
    drop = CampaignActions(on_machine=MachineAction.VOICEMAIL_DROP, has_voicemail_message=True)
    assert decide_action(M, drop, agent_free=False, seconds_since_decision=0) is CallAction.WAIT_FOR_BEEP
    assert decide_action(M, drop, agent_free=False, seconds_since_decision=9, beep_stage_done=True) is CallAction.PLAY_MESSAGE
    no_message = CampaignActions(on_machine=MachineAction.VOICEMAIL_DROP, has_voicemail_message=False)
    assert decide_action(M, no_message, agent_free=True, seconds_since_decision=0) is CallAction.HANGUP
    agent = CampaignActions(on_machine=MachineAction.AGENT)
    assert decide_action(M, agent, agent_free=True, seconds_since_decision=0) is CallAction.CONNECT_AGENT


def test_notsure_is_configurable():
    assert decide_action(N, CampaignActions(), agent_free=True, seconds_since_decision=0) is CallAction.CONNECT_AGENT
    as_machine = CampaignActions(on_notsure=NotSureAction.AS_MACHINE, on_machine=MachineAction.VOICEMAIL_DROP,
                                 has_voicemail_message=True)
    assert decide_action(N, as_machine, agent_free=True, seconds_since_decision=0) is CallAction.WAIT_FOR_BEEP
    hang = CampaignActions(on_notsure=NotSureAction.HANGUP)
    assert decide_action(N, hang, agent_free=True, seconds_since_decision=0) is CallAction.HANGUP
