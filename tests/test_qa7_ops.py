"""QA7 findings on the engine's start-up, on a real PostgreSQL and Redis (no mocks):
- ops 1: Redis unreachable at start-up ended `dialer run` with a redis ConnectionError traceback
  (CommandConsumer._ensure_groups); the engine must run fail-closed, report Redis down on
  /healthz, and create its consumer groups once Redis answers;
- ops 2: /healthz and /readyz refused connections while the engine waited for FreeSWITCH;
- fsconf F6: a fresh engine on an empty Redis logged an ERROR about lost counters although
  PostgreSQL held no placed call to rebuild them from."""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import urlsplit

import gevent
import pytest

from dialer import storage
from dialer.compliance.service import live_gate
from dialer.config import FreeswitchNode
from dialer.engine.engine import Engine, EngineConfig
from dialer.rediskeys import COMMANDS_STREAM
from dialer.webapi.consumer import GROUP, CommandConsumer
from tests.engine_world import BASE_SETTINGS, PINNED, create_campaign, pinned_clock, start_engine, start_switch
from tests.test_observability import http_get


def closed_port() -> int:
    """A local TCP port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """Forwards 127.0.0.1:port to a target in OS threads: the clients under test use blocking
    sockets (the test process is not monkey-patched), so a proxy in the gevent hub would stall."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", port))
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        gevent.sleep(0.05)
    return predicate()


def test_engine_starts_with_redis_unreachable_and_reports_it_instead_of_dying(db_url, tmp_path):
    """ops 1: Engine.start raised redis.ConnectionError from the command consumer."""
    down = f"redis://127.0.0.1:{closed_port()}/0"
    create_campaign(db_url, "qa7r", BASE_SETTINGS, ["+12125550100"])     # a runner starts with Redis down too
    switch = start_switch()
    gate = live_gate(db_url, down, tmp_path, redis_timeout_s=0.5, redis_retries=0)
    engine = start_engine(db_url, down, switch, tmp_path, gate=gate)     # web_api and metrics on
    try:
        assert engine.webapi is not None and engine.ops is not None
        status, body = http_get(engine.ops.address, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["checks"]["redis"]["ok"] is False
        assert "connecting" in health["checks"]["redis"]["error"]
        assert health["checks"]["postgresql"]["ok"] and health["checks"]["freeswitch"]["ok"]
        status, body = http_get(engine.ops.address, "/readyz")
        assert status == 503 and json.loads(body)["may_dial"] is False      # fail-closed: no port block
        # the command consumer keeps trying instead of having ended; the campaign is served, no call placed
        gevent.sleep(0.3)
        assert not engine.webapi.consumer._greenlet.dead
        assert [r.name for r in engine.runners.values()] == ["qa7r"]
        assert next(iter(engine.runners.values())).stats.originated == 0
    finally:
        engine.stop(drain_timeout=1)
        switch.stop()


def test_command_consumer_creates_its_groups_once_redis_answers(db_url, redis_url, redis_client):
    """ops 1: the consumer started while Redis was down serves commands once it is back."""
    port = closed_port()
    engine = SimpleNamespace(engine_id="qa7-consumer",
                             cfg=SimpleNamespace(redis_url=f"redis://127.0.0.1:{port}/{urlsplit(redis_url).path[1:]}",
                                                 database_url=db_url))
    consumer = CommandConsumer(engine, block_ms=100).start()      # raised ConnectionError before
    proxy = None
    try:
        gevent.sleep(0.3)
        assert not consumer._greenlet.dead
        assert not redis_client.exists(COMMANDS_STREAM)
        target = urlsplit(redis_url)
        proxy = TcpProxy(port, (target.hostname, target.port))
        assert wait_for(lambda: redis_client.exists(COMMANDS_STREAM)
                        and GROUP in {g["name"] for g in redis_client.xinfo_groups(COMMANDS_STREAM)}, 15)
        assert not consumer._greenlet.dead
    finally:
        consumer.stop(timeout=2)
        if proxy is not None:
            proxy.close()


def test_health_answers_503_while_the_engine_waits_for_freeswitch(db_url, redis_url, tmp_path):
    """ops 2: the ops listener started only after wait_connected (10 s of connection refused)."""
    cfg = EngineConfig(engine_id="qa7-nofs", database_url=db_url, redis_url=redis_url,
                       nodes=[FreeswitchNode("127.0.0.1", closed_port(), "ClueCon")],
                       amd_listen=("127.0.0.1", 0), unicast_ports=range(43300, 43400), hook_listen=("127.0.0.1", 0),
                       metrics_listen=("127.0.0.1", 0), web_api=False, spool_dir=tmp_path / "spool")
    engine = Engine(cfg, live_gate(db_url, redis_url, tmp_path), clock=pinned_clock())
    starting = gevent.spawn(engine.start, 4.0)
    try:
        assert wait_for(lambda: engine.ops is not None and engine.ops.server is not None or starting.dead, 10)
        assert not starting.dead, "the listener came up only after the wait for FreeSWITCH"
        status, body = http_get(engine.ops.address, "/healthz")
        health = json.loads(body)
        assert status == 503 and health["checks"]["freeswitch"]["ok"] is False
        assert list(health["checks"]["freeswitch"]["nodes"].values())[0]["ok"] is False
        assert http_get(engine.ops.address, "/readyz")[0] == 503
        assert not starting.dead                     # all of this during the wait
        starting.get(timeout=15)
    finally:
        starting.join(15)
        engine.stop(drain_timeout=1)


def _counter_messages(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "dialer.engine.engine" and "frequency counters" in r.getMessage()]


def test_a_fresh_engine_with_nothing_to_rebuild_logs_no_error(db_url, redis_url, tmp_path, caplog):
    """F6: every fresh demo printed 'ERROR ... hold no record (Redis restarted or was flushed)'."""
    caplog.set_level(logging.INFO, logger="dialer.engine.engine")
    switch = start_switch()
    engine = start_engine(db_url, redis_url, switch, tmp_path, web_api=False, metrics=False)
    try:
        assert wait_for(lambda: engine.gate.counters.loaded() is not None, 10)
    finally:
        engine.stop(drain_timeout=1)
        switch.stop()
    messages = _counter_messages(caplog)
    assert messages and all(r.levelno < logging.WARNING for r in messages), [(r.levelname, r.getMessage()) for r in messages]
    assert "Redis restarted" not in " ".join(r.getMessage() for r in messages)


def test_counters_lost_while_postgresql_holds_placed_calls_is_still_an_error(db_url, redis_url, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="dialer.engine.engine")
    with storage.connect_db(db_url) as conn:
        conn.execute("INSERT INTO compliance_call_attempts (decision_id, phone_e164, campaign_id, attempted_at)"
                     " VALUES ('qa7-d1', '+12125550100', 'c1', %s)", (PINNED - timedelta(days=3),))
        conn.commit()
    switch = start_switch()
    engine = start_engine(db_url, redis_url, switch, tmp_path, web_api=False, metrics=False)
    try:
        assert wait_for(lambda: engine.gate.counters.loaded() is not None, 10)
    finally:
        engine.stop(drain_timeout=1)
        switch.stop()
    errors = [r.getMessage() for r in _counter_messages(caplog) if r.levelno == logging.ERROR]
    assert any("Redis restarted or was flushed" in m for m in errors), errors
    assert any("rebuilt from 1 placed calls" in r.getMessage() and r.levelno == logging.WARNING
               for r in _counter_messages(caplog))
