"""Simulated agents for the demo and the tests: each one's phone is a leg on the (simulated)
switch that answers and stays up all shift; after each call it spends a wrap-up time and
dispositions the call, as a person at a desk would."""
from __future__ import annotations

import random

import gevent

from dialer.engine.agents import AgentState
from dialer.errors import DialerError

DISPOSITIONS = ("SALE", "NOT_INTERESTED", "CALLBACK_LATER", "INFO_SENT")


class AgentSimulator:
    def __init__(self, engine, wrap_mean_s: float = 3.0, seed: int = 0) -> None:
        self.engine = engine
        self.wrap_mean_s = wrap_mean_s
        self.rng = random.Random(seed)
        self._wrap_until: dict[str, float] = {}
        self._greenlet: gevent.Greenlet | None = None
        self.dispositions = 0
        self._halted = False

    def start(self) -> "AgentSimulator":
        self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        """End between two rounds (never inside a database write)."""
        self._halted = True
        if self._greenlet is not None:
            self._greenlet.join(2.0)

    def _run(self) -> None:
        while not self._halted:
            gevent.sleep(0.1)
            now = gevent.get_hub().loop.now()
            for agent in list(self.engine.agents.agents.values()):
                if agent.state is not AgentState.WRAP_UP:
                    self._wrap_until.pop(agent.agent_id, None)
                    continue
                until = self._wrap_until.setdefault(
                    agent.agent_id, now + self.rng.expovariate(1 / self.wrap_mean_s) if self.wrap_mean_s else now)
                if now >= until:
                    try:
                        self.engine.disposition(agent.agent_id, self.rng.choice(DISPOSITIONS))
                        self.dispositions += 1
                    except DialerError:
                        self.engine.agents.transition(agent, AgentState.READY)
