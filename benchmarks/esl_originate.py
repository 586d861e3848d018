"""bgapi originate round trips per second against the simulated switch.

A round trip is one `bgapi originate` with our Job-UUID and origination_uuid, from the moment
it is written to the moment its BACKGROUND_JOB result is read. The called numbers are the
simulator's scripted immediate answers, so the figure measures the Event Socket path (our
client, the simulator's command handling and event fan-out), not ring time. Each answered
channel is killed with uuid_kill after its result, outside the timed path. The switch's
sessions-per-second and max-sessions limits are raised so they do not cap the rate.
"""
from __future__ import annotations

import statistics
import time
import uuid

import gevent
import gevent.pool

from esl.connection import connect
from esl.errors import ESLError
from esl.fakeswitch import CalledPartyModel, FakeSwitch

SCRIPTED_HUMAN_NOW = "+12125550100"


def run_originates(count: int, concurrency: int) -> dict:
    switch = FakeSwitch(port=0, model=CalledPartyModel(seed=1, time_scale=0.001),
                        max_sessions=100_000, sessions_per_second=100_000, heartbeat_seconds=0).start()
    try:
        conn = connect("127.0.0.1", switch.port, timeout=30)
        conn.authenticate("ClueCon")
        conn.subscribe(["BACKGROUND_JOB"])
        latencies: list[float] = []
        failures: list[str] = []

        def one_call(_i: int) -> None:
            call_uuid = str(uuid.uuid4())
            started = time.perf_counter()
            job = conn.bgapi(f"originate {{origination_uuid={call_uuid},ignore_early_media=true,"
                             f"originate_timeout=25}}sofia/gateway/bench/{SCRIPTED_HUMAN_NOW} &park()")
            try:
                job.wait(30)
            except ESLError as exc:  # counted and reported, the run goes on
                failures.append(type(exc).__name__)
                return
            latencies.append(time.perf_counter() - started)
            conn.api(f"uuid_kill {call_uuid}", check=False)

        pool = gevent.pool.Pool(concurrency)
        wall, cpu = time.perf_counter(), time.process_time()
        pool.map(one_call, range(count))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        conn.close()
    finally:
        switch.stop()
    latencies.sort()
    return {"originates": count, "ok": len(latencies), "failed": len(failures), "concurrency": concurrency,
            "round_trips_per_s": round(len(latencies) / wall, 1),
            "cpu_s_client_and_switch": round(cpu, 3), "wall_s": round(wall, 3),
            "latency_ms_p50": round(statistics.median(latencies) * 1000, 2) if latencies else None,
            "latency_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2) if latencies else None}
