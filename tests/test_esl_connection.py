"""The gevent connection layer through a fault-injecting proxy: no hang, no misrouted reply,
every pending request failed on interruption, reconnect with resubscription."""
from __future__ import annotations

import time

import gevent
import pytest

from esl.causes import HangupCause
from esl.connection import connect
from esl.errors import AuthFailed, CommandFailed, ConnectionLost, ESLTimeout, JobFailed
from esl.inbound import Backoff, InboundClient
from tests.eslpeer import ScriptedPeer
from tests.faultproxy import FaultProxy


@pytest.fixture
def peer():
    peer = ScriptedPeer().start()
    yield peer
    peer.stop()


@pytest.fixture
def proxy(peer):
    proxy = FaultProxy(peer.port).start()
    yield proxy
    proxy.stop()


def open_conn(port, **kwargs):
    conn = connect("127.0.0.1", port, timeout=kwargs.pop("timeout", 2.0), **kwargs)
    conn.authenticate("ClueCon")
    return conn


def test_api_bgapi_and_job_correlation(peer):
    conn = open_conn(peer.port)
    assert conn.api("echo hello") == "hello"
    with pytest.raises(CommandFailed) as failed:
        conn.api("nosuch")
    assert "Command not found" in failed.value.reply_text
    conn.subscribe(["CHANNEL_ANSWER"])
    assert peer.commands[-1] == "event json CHANNEL_ANSWER BACKGROUND_JOB"
    job = conn.bgapi("echo +OK 42", job_uuid="ours-1")
    assert job.wait(2) == "+OK 42\n"
    failing = conn.bgapi("fail USER_BUSY")
    with pytest.raises(JobFailed) as failed_job:
        failing.wait(2)
    assert failed_job.value.cause is HangupCause.USER_BUSY
    conn.close()


def test_wrong_password_is_auth_failed(peer):
    conn = connect("127.0.0.1", peer.port, timeout=2.0)
    with pytest.raises(AuthFailed):
        conn.authenticate("wrong")
    assert conn.closed


def test_concurrent_requests_each_get_their_own_reply(peer):
    conn = open_conn(peer.port)
    peer.api_delay_s["echo"] = 0.02
    results = {}

    def ask(i):
        results[i] = conn.api(f"echo value-{i}")

    gevent.joinall([gevent.spawn(ask, i) for i in range(30)], timeout=10, raise_error=True)
    assert results == {i: f"value-{i}" for i in range(30)}
    conn.close()


def test_drop_mid_frame_fails_pending_requests_and_jobs(peer, proxy):
    conn = open_conn(proxy.port)
    assert conn.bgapi("echo +OK first").wait(2) == "+OK first\n"  # the job path works
    peer.api_delay_s["echo"] = 5  # this job's result would come late
    slow_job = conn.bgapi("echo slow")
    proxy.cut_after(5_000)  # inside the body of the 200 kB api/response below
    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        conn.api("big")
    with pytest.raises(ConnectionLost):
        slow_job.wait(2)
    assert time.monotonic() - started < 2
    assert conn.closed
    with pytest.raises(ConnectionLost):
        conn.api("echo after")


def test_stall_times_out_closes_and_never_misroutes(peer, proxy):
    conn = open_conn(proxy.port, timeout=0.3)
    proxy.stalled = True
    started = time.monotonic()
    with pytest.raises(ESLTimeout):
        conn.api("echo late-reply")
    assert time.monotonic() - started < 1.5
    assert conn.closed  # the late reply can never be taken for the next command's answer
    proxy.stalled = False
    fresh = open_conn(proxy.port)
    assert fresh.api("echo mine") == "mine"
    fresh.close()


def test_reset_fails_pending(peer, proxy):
    conn = open_conn(proxy.port)
    peer.api_delay_s["echo"] = 1.0
    waiter = gevent.spawn(conn.api, "echo x")
    gevent.sleep(0.1)
    proxy.reset()
    with pytest.raises(ConnectionLost):
        waiter.get(timeout=2)


def test_inbound_client_reconnects_resubscribes_and_reconciles(peer, proxy):
    peer.channels = [{"uuid": "11111111-0000-0000-0000-000000000001", "state": "CS_PARK"}]
    reconciled = []
    events = []
    client = InboundClient("127.0.0.1", proxy.port, "ClueCon", events=["CHANNEL_ANSWER", "HEARTBEAT"],
                           filters=[("Event-Name", "HEARTBEAT")], on_event=events.append,
                           on_reconcile=lambda c, rows: reconciled.append(rows), timeout=1.0,
                           backoff=Backoff(base_s=0.01, cap_s=0.1)).start()
    try:
        assert client.wait_connected(3)
        assert client.api("echo one") == "one"
        proxy.reset()
        deadline = time.monotonic() + 5
        while client.connects < 2 and time.monotonic() < deadline:
            gevent.sleep(0.02)
        assert client.connects == 2 and client.reconnects >= 1
        assert client.api("echo two") == "two"
        assert peer.commands.count("event json CHANNEL_ANSWER HEARTBEAT BACKGROUND_JOB") == 2
        assert peer.commands.count("filter Event-Name HEARTBEAT") == 2
        assert reconciled == [peer.channels, peer.channels]
        client.api("flood 5")
        deadline = time.monotonic() + 2
        while len(events) < 5 and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert [e.get("Event-Sequence") for e in events] == ["0", "1", "2", "3", "4"]
    finally:
        client.stop()


def test_inbound_client_backs_off_while_switch_is_down():
    client = InboundClient("127.0.0.1", 1, "x", timeout=0.2, backoff=Backoff(base_s=0.01, cap_s=0.05)).start()
    try:
        assert not client.wait_connected(0.3)
        assert isinstance(client.last_error, ConnectionLost)
        with pytest.raises(ConnectionLost):
            client.api("status", timeout=0.1)
    finally:
        client.stop()


def test_backoff_has_full_jitter_and_cap():
    import random
    rng = random.Random(1)
    delays = [Backoff(base_s=0.1, cap_s=2.0).delay(attempt, rng) for attempt in range(20)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert len(set(round(d, 6) for d in delays)) == 20


def test_rude_rejection_is_reported():
    from gevent.server import StreamServer

    def reject(sock, _address):
        sock.sendall(b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n")
        gevent.sleep(0.2)
        sock.close()

    server = StreamServer(("127.0.0.1", 0), reject)
    server.start()
    try:
        conn = connect("127.0.0.1", server.server_port, timeout=2.0)
        with pytest.raises(ConnectionLost) as lost:
            conn.authenticate("ClueCon")
        assert "Access Denied" in str(lost.value)
    finally:
        server.stop()


def test_undecodable_event_is_dropped_and_the_stream_goes_on():
    from gevent.server import StreamServer

    def serve(sock, _address):
        sock.sendall(b"Content-Type: auth/request\n\n")
        sock.recv(100)
        sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
                     b"Content-Length: 5\nContent-Type: text/event-json\n\n{bad}"
                     b"Content-Length: 24\nContent-Type: text/event-json\n\n{\"Event-Name\":\"CUSTOM\"}\n"
                     b"Content-Type: log/data\nContent-Length: 4\n\nlog\n")
        gevent.sleep(0.5)
        sock.close()

    server = StreamServer(("127.0.0.1", 0), serve)
    server.start()
    events = []
    try:
        conn = connect("127.0.0.1", server.server_port, timeout=2.0, on_event=events.append)
        conn.authenticate("ClueCon")
        deadline = time.monotonic() + 2
        while not events and time.monotonic() < deadline:
            gevent.sleep(0.01)
        assert [e.name for e in events] == ["CUSTOM"]
        assert conn.events_undecodable == 1 and not conn.closed
        conn.close()
    finally:
        server.stop()
