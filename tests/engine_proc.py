"""An engine in its own process, for the fault test that kills it with SIGKILL mid-campaign.

    python -m tests.engine_proc DB_URL REDIS_URL SWITCH_PORT REGISTRY_DIR ENGINE_ID AGENT_ID CAMPAIGN
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402

from dialer.engine.simagents import AgentSimulator  # noqa: E402
from esl.fakeswitch import FakeSwitch  # noqa: E402,F401  (same imports as the test process)
from tests.engine_world import AGENT_PHONE, start_engine  # noqa: E402


class _Switch:
    def __init__(self, port: int) -> None:
        self.port = port


def main() -> None:
    db_url, redis_url, port, registry, engine_id, agent_id, campaign = sys.argv[1:8]
    engine = start_engine(db_url, redis_url, _Switch(int(port)), Path(registry), engine_id=engine_id,
                          ports=range(42000, 42200))
    AgentSimulator(engine, wrap_mean_s=0.2, seed=3).start()
    engine.login_agent(agent_id, AGENT_PHONE, campaign)
    print("ready", flush=True)
    while True:
        gevent.sleep(1)


if __name__ == "__main__":
    main()
