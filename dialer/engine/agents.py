"""Agents and their states. An agent's FreeSWITCH leg stays up for the whole shift (parked,
with park_after_bridge), so a live answer is bridged at once; the time each agent has spent in
its state feeds pacing.

Rule (QA6 finding 1): only a login leaves `logged_out`, and a login is the answered phone leg:
an agent without a leg is never ready or paused, and pacing never counts an agent without a leg
(a call placed for it would find nobody to bridge to and be abandoned)."""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from dialer.errors import DialerError
from pacing.model import AgentSnapshot
from pacing.model import AgentState as PacingAgentState


class AgentError(DialerError):
    """An agent operation that the agent's state does not allow."""


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    PAUSED = "paused"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"


# Which states may follow which: anything else is an operator or web-app error. LOGGED_OUT ->
# READY is the login only: transition() refuses it for an agent without a phone leg.
TRANSITIONS = {
    AgentState.LOGGED_OUT: {AgentState.READY},
    AgentState.READY: {AgentState.PAUSED, AgentState.ON_CALL, AgentState.LOGGED_OUT},
    AgentState.PAUSED: {AgentState.READY, AgentState.LOGGED_OUT},
    AgentState.ON_CALL: {AgentState.WRAP_UP, AgentState.READY},  # READY: the bridge failed
    AgentState.WRAP_UP: {AgentState.READY, AgentState.PAUSED, AgentState.LOGGED_OUT},
}

_TO_PACING = {AgentState.READY: PacingAgentState.READY, AgentState.PAUSED: PacingAgentState.PAUSED,
              AgentState.ON_CALL: PacingAgentState.TALKING, AgentState.WRAP_UP: PacingAgentState.WRAP}


@dataclass
class Agent:
    agent_id: str
    endpoint: str                      # FreeSWITCH dial string of the agent's phone
    campaign: str | None = None
    state: AgentState = AgentState.LOGGED_OUT
    state_since: float = field(default_factory=time.monotonic)
    leg_uuid: str | None = None        # the agent's always-up leg
    node: str | None = None            # the FreeSWITCH node that leg is on: calls bridge there
    pause_reason: str | None = None
    call_uuid: str | None = None       # the customer leg bridged to the agent

    def time_in_state(self, now: float | None = None) -> float:
        # never negative: a caller's `now` may predate a state change made while it waited
        # on I/O (the pacer's tables are indexed by this time)
        return max(0.0, (time.monotonic() if now is None else now) - self.state_since)


@dataclass(frozen=True)
class AgentChange:
    """A state change as it was at the moment it happened (written to the stores later)."""
    agent_id: str
    endpoint: str
    campaign: str | None
    state: AgentState
    previous: AgentState
    pause_reason: str | None
    leg_uuid: str | None
    at: float                          # wall time (epoch s)

    @classmethod
    def of(cls, agent: Agent, previous: AgentState) -> "AgentChange":
        return cls(agent.agent_id, agent.endpoint, agent.campaign, agent.state, previous, agent.pause_reason,
                   agent.leg_uuid, time.time())


class AgentRegistry:
    """The engine's live agents. Every change goes through transition()."""

    def __init__(self) -> None:
        self.agents: dict[str, Agent] = {}
        self.listeners: list = []      # callables(agent, old_state) told of every change

    def add(self, agent: Agent) -> Agent:
        self.agents[agent.agent_id] = agent
        return agent

    def get(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            raise AgentError(f"unknown agent {agent_id!r}") from None

    def transition(self, agent: Agent, state: AgentState, *, reason: str | None = None) -> None:
        if state not in TRANSITIONS[agent.state]:
            if agent.state is AgentState.LOGGED_OUT:
                raise AgentError(f"agent {agent.agent_id} is logged out: log in first")
            raise AgentError(f"agent {agent.agent_id}: {agent.state.value} -> {state.value} is not allowed")
        if agent.state is AgentState.LOGGED_OUT and not agent.leg_uuid:
            # Engine.login_agent sets the answered leg before this transition: anything else
            # asking a logged-out agent to be ready (a failed login, a logout) is refused
            raise AgentError(f"agent {agent.agent_id} is logged out (no phone leg): log in first")
        old = agent.state
        agent.state = state
        agent.state_since = time.monotonic()
        agent.pause_reason = reason if state is AgentState.PAUSED else None
        if state is not AgentState.ON_CALL and state is not AgentState.WRAP_UP:
            agent.call_uuid = None
        for listener in self.listeners:
            listener(agent, old)

    def take_ready(self, campaign: str, agent_id: str | None = None, node: str | None = None) -> Agent | None:
        """Reserve `agent_id` if given (a callback promised to that agent), else the agent of
        the campaign who has waited longest (fair, and the pacing model assumes it); only an
        agent whose leg is on `node` when given (uuid_bridge joins two legs of one switch). The
        caller bridges at once."""
        ready = [a for a in self.agents.values() if a.campaign == campaign
                 and a.state is AgentState.READY and a.leg_uuid
                 and (agent_id is None or a.agent_id == agent_id) and (node is None or a.node == node)]
        if not ready:
            return None
        agent = min(ready, key=lambda a: a.state_since)
        self.transition(agent, AgentState.ON_CALL)
        return agent

    def nodes_of(self, campaign: str) -> dict[str, int]:
        """The nodes holding the campaign's logged-in agents: node -> agents ready there."""
        nodes: dict[str, int] = {}
        for a in self.agents.values():
            if a.campaign == campaign and a.leg_uuid and a.node and a.state is not AgentState.LOGGED_OUT:
                nodes[a.node] = nodes.get(a.node, 0) + (a.state is AgentState.READY)
        return nodes

    def legs_by_node(self) -> dict[str, int]:
        legs: dict[str, int] = {}
        for a in self.agents.values():
            if a.leg_uuid and a.node:
                legs[a.node] = legs.get(a.node, 0) + 1
        return legs

    def by_leg(self, leg_uuid: str) -> Agent | None:
        return next((a for a in self.agents.values() if a.leg_uuid == leg_uuid), None)

    def pacing_snapshot(self, campaign: str, now: float | None = None,
                        reachable=lambda node: True) -> tuple[AgentSnapshot, ...]:
        """The campaign's agents for pacing; those without a phone leg or on a node that cannot
        be reached are left out (no call can be bridged to them: counting them would overdial,
        and every live answer dialed for them would be abandoned)."""
        now = time.monotonic() if now is None else now
        return tuple(AgentSnapshot(_TO_PACING[a.state], a.time_in_state(now))
                     for a in self.agents.values()
                     if a.campaign == campaign and a.state in _TO_PACING and a.leg_uuid
                     and (a.node is None or reachable(a.node)))

    def count(self, campaign: str, state: AgentState) -> int:
        return sum(1 for a in self.agents.values() if a.campaign == campaign and a.state is state)
