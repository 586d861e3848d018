"""The operational surface: Prometheus metrics from a real campaign on the simulated switch,
health and readiness over HTTP, JSON logs with masked phone numbers."""
from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

import gevent
import gevent.socket
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dialer import observability
from dialer.engine.simagents import AgentSimulator
from dialer.observability import JsonFormatter, mask_numbers
from esl.fakeswitch import Behaviour, Outcome, Party
from tests.engine_world import (AGENT_PHONE, BASE_SETTINGS, PINNED, create_campaign, import_registry,
                                start_engine, start_switch)
from tests.test_webapi import wait_until

HUMAN, MACHINE, DNC_LISTED = "+12125550100", "+12125550101", "+12125550104"


def http_get(address, path: str) -> tuple[int, str]:
    """A cooperative HTTP/1.0 GET (the server runs in this process's hub)."""
    sock = gevent.socket.create_connection(address[:2], timeout=5)
    try:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def engine_with_ops(db_url, redis_url, tmp_path):
    switch = start_switch()
    switch.model.script(HUMAN, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.HUMAN, stay_seconds=4.0))
    switch.model.script(MACHINE, Behaviour(Outcome.ANSWER, ring_seconds=0.3, party=Party.MACHINE, stay_seconds=30.0))
    import_registry(db_url, tmp_path, [DNC_LISTED], PINNED.date() - timedelta(days=3))
    create_campaign(db_url, "obs", BASE_SETTINGS, [HUMAN, MACHINE, DNC_LISTED])
    engine = start_engine(db_url, redis_url, switch, tmp_path, metrics=False)
    ops = observability.start(engine, ("127.0.0.1", 0))
    yield switch, engine, ops
    ops.stop()
    engine.stop(drain_timeout=2)
    switch.stop()


def test_metrics_follow_a_campaign_and_health_reports_each_part(engine_with_ops):
    switch, engine, ops = engine_with_ops
    status, body = http_get(ops.address, "/healthz")
    health = json.loads(body)
    assert status == 200 and health["ok"], health
    assert set(health["checks"]) == {"postgresql", "redis", "clock", "freeswitch", "supervision"}
    assert abs(health["checks"]["clock"]["skew_s"]) < 2
    assert http_get(ops.address, "/readyz")[0] == 200

    # an agent who dispositions: a progressive campaign dials the next lead only when the agent is
    # free again (the second call once came while the first was in AMD: QA 6's overdial)
    agents = AgentSimulator(engine, wrap_mean_s=0.2, seed=4).start()
    engine.login_agent("agent-1", AGENT_PHONE, "obs")
    runner = next(iter(engine.runners.values()))
    try:
        assert wait_until(lambda: sum(runner.stats.outcomes.values()) >= 2 and sum(runner.stats.blocks.values()) >= 1,
                          30)
    finally:
        agents.stop()
    status, text = http_get(ops.address, "/metrics")
    assert status == 200
    values = samples(text)
    c = (("campaign", "obs"),)
    assert values[("dialer_calls_total", c)] == 2
    assert values[("dialer_answers_total", c)] == 2
    assert values[("dialer_amd_results_total", (("campaign", "obs"), ("result", "MACHINE")))] == 1
    assert values[("dialer_compliance_blocks_total", (("campaign", "obs"), ("reason", "US-DNC-1")))] == 1
    assert values.get(("dialer_call_outcomes_total", (("campaign", "obs"), ("outcome", "human")))) == 1, runner.stats.outcomes
    assert values[("dialer_abandons_total", c)] == 0
    assert values[("dialer_clock_ok", ())] == 1
    node = ((("node", f"127.0.0.1:{switch.port}"),))
    assert values[("dialer_freeswitch_up", node)] == 1
    assert ("dialer_pacing_lines_per_agent", c) in values
    # A second scrape does not count the same calls again.
    assert samples(http_get(ops.address, "/metrics")[1])[("dialer_calls_total", c)] == 2

    # The switch goes away: health and readiness say so, the reconnect attempts are counted.
    switch.stop()
    assert wait_until(lambda: http_get(ops.address, "/healthz")[0] == 503, 10)
    health = json.loads(http_get(ops.address, "/healthz")[1])
    assert health["checks"]["freeswitch"]["ok"] is False and health["checks"]["postgresql"]["ok"] is True
    assert http_get(ops.address, "/readyz")[0] == 503
    assert samples(http_get(ops.address, "/metrics")[1])[("dialer_freeswitch_up", node)] == 0
    assert http_get(ops.address, "/nope")[0] == 404


def test_json_log_lines_mask_phone_numbers():
    stream = io.StringIO()
    logger = logging.getLogger("test.masking")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("call to %s failed", "+12125550100", extra={"number": "+442071234567", "campaign": "c1"})
        try:
            raise ValueError("bad number +35312345678 in sofia/gateway/gw1/+12125550199")
        except ValueError:
            logger.exception("originate failed")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "call to +1********00 failed" and first["level"] == "WARNING"
    assert first["number"] == "+44********67" and first["campaign"] == "c1"
    assert first["ts"].endswith("Z") and first["logger"] == "test.masking"
    assert "+353******78" in second["exc"] and "+1********99" in second["exc"]
    assert "12125550199" not in stream.getvalue() and "2071234567" not in stream.getvalue()


def test_masking_keeps_what_is_not_a_phone_number():
    assert mask_numbers("uuid 1f2e-3d4c epoch 1763778317 port +5060") == "uuid 1f2e-3d4c epoch 1763778317 port +5060"
    assert mask_numbers("+8613912345678") == "+86*********78"
