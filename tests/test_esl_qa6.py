"""QA 6 (Event Socket layer and simulated switch): one test per defect found, each failing
without its fix. Protocol cases on bytes; connection cases against scripted servers, the
fault-injecting proxy and the simulated switch (no mocks of PostgreSQL or Redis)."""
from __future__ import annotations

import json
import time
import uuid as uuidlib
import wave

import gevent
import pytest
from click.testing import CliRunner
from gevent import socket
from gevent.server import StreamServer

from esl import protocol
from esl.causes import HangupCause
from esl.cli import esl as esl_cli
from esl.connection import connect
from esl.errors import (CommandInjection, ConnectionLost, EventDecodeError, ESLTimeout, JobFailed,
                        ProtocolError)
from esl.fakeswitch import CalledPartyModel, FakeSwitch, FakeSwitchError
from esl.fakeswitch.cli import fake_switch
from esl.inbound import Backoff, InboundClient
from esl.outbound import OutboundServer
from esl.protocol import CommandParser, FrameParser, decode_event, encode_command
from tests.eslpeer import ScriptedPeer
from tests.faultproxy import FaultProxy
from tests.test_fakeswitch import ORIGINATE_06, RawClient, wait_until

DEEP_JSON = b"[" * 50_000


def event_frame(body: bytes, content_type: str = "text/event-json") -> bytes:
    return b"Content-Length: %d\nContent-Type: %s\n\n" % (len(body), content_type.encode()) + body


def json_event(headers: dict, body: str | None = None) -> bytes:
    data = dict(headers)
    if body is not None:
        data["_body"] = body
    return event_frame(json.dumps(data).encode())


def read_command(sock, buffer: bytearray) -> bytes | None:
    while b"\n\n" not in buffer:
        data = sock.recv(4096)
        if not data:
            return None
        buffer += data
    end = buffer.index(b"\n\n")
    block = bytes(buffer[:end])
    del buffer[:end + 2]
    return block


# -- 1: a malformed event never kills the reader -------------------------------------------------
def test_deeply_nested_json_is_an_event_decode_error():
    [frame] = FrameParser().feed(event_frame(DEEP_JSON))
    with pytest.raises(EventDecodeError):
        decode_event(frame)


def test_hangup_cause_parse_takes_ascii_digits_only():
    assert HangupCause.parse("-ERR \u00b2") is None            # '²'.isdigit() is True
    assert HangupCause.parse("-ERR \u0661\u0667") is None      # Arabic-Indic 17
    assert HangupCause.parse("-ERR 17") is HangupCause.USER_BUSY
    assert HangupCause.parse("-ERR USER_BUSY\n") is HangupCause.USER_BUSY
    assert HangupCause.parse(["USER_BUSY"]) is None            # a JSON array header value


def test_reader_drops_malformed_events_and_goes_on():
    """Deep JSON, a list as Job-UUID and a job body '-ERR ²' are dropped or settled; the
    connection stays up, the job fails at once with its result, later events still arrive."""
    def serve(sock, _address):
        buffer = bytearray()
        sock.sendall(b"Content-Type: auth/request\n\n")
        read_command(sock, buffer)
        sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
        block = read_command(sock, buffer)                     # bgapi with our Job-UUID
        job_uuid = block.decode().split("Job-UUID: ", 1)[1].split("\n", 1)[0]
        sock.sendall(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n"
                     % (job_uuid.encode(), job_uuid.encode()))
        sock.sendall(event_frame(DEEP_JSON))
        sock.sendall(json_event({"Event-Name": "BACKGROUND_JOB", "Job-UUID": [job_uuid]}, "+OK wrong\n"))
        sock.sendall(json_event({"Event-Name": "BACKGROUND_JOB", "Job-UUID": job_uuid}, "-ERR \u00b2\n"))
        for sequence in range(3):
            sock.sendall(json_event({"Event-Name": "HEARTBEAT", "Event-Sequence": str(sequence)}))
        gevent.sleep(3)
        sock.close()

    server = StreamServer(("127.0.0.1", 0), serve)
    server.start()
    events = []
    try:
        conn = connect("127.0.0.1", server.server_port, timeout=2.0, on_event=events.append)
        conn.authenticate("ClueCon")
        job = conn.bgapi("originate x &park()")
        started = time.monotonic()
        with pytest.raises(JobFailed) as failed:
            job.wait(2)
        assert time.monotonic() - started < 1.0
        assert failed.value.cause is None and "\u00b2" in failed.value.result
        wait_until(lambda: len([e for e in events if e.name == "HEARTBEAT"]) == 3, timeout=2)
        assert conn.events_undecodable == 2
        assert not conn.closed and not conn._reader.dead
        conn.close()
    finally:
        server.stop()


def test_unexpected_reader_error_closes_fails_pending_and_the_client_reconnects(monkeypatch):
    peer = ScriptedPeer().start()
    client = InboundClient("127.0.0.1", peer.port, "ClueCon", events=["HEARTBEAT"], timeout=2.0,
                           backoff=Backoff(base_s=0.01, cap_s=0.05)).start()
    try:
        assert client.wait_connected(3)
        peer.api_delay_s["echo"] = 10
        slow_job = client.bgapi("echo slow")          # its result would come 10 s later
        real_decode = protocol.decode_event

        def broken(frame):
            raise RuntimeError("a bug nobody foresaw")

        monkeypatch.setattr(protocol, "decode_event", broken)
        started = time.monotonic()
        def flood():
            try:
                client.api("flood 1")             # an event reaches the broken decoder
            except ConnectionLost:
                pass                              # its reply may come after the close

        gevent.spawn(flood)
        with pytest.raises(ConnectionLost) as lost:
            slow_job.wait(5)
        assert time.monotonic() - started < 1.0
        assert "reader failed" in str(lost.value)
        monkeypatch.setattr(protocol, "decode_event", real_decode)
        peer.api_delay_s.clear()
        wait_until(lambda: client.connects >= 2 and client.connected, timeout=5)
        assert client.reconnects >= 1
        assert client.api("echo back", timeout=2) == "back"
    finally:
        client.stop()
        peer.stop()


# -- 2: a connection loss during originate leaves no unowned channel -----------------------------
class _Recorded:
    """The flow's Recorder interface, keeping what it is given (the engine's writes the CDR)."""

    def __init__(self) -> None:
        self.answered_calls = []
        self.ended_calls = []

    def answered(self, call) -> None:
        self.answered_calls.append(call)

    def ended(self, call, hangup_event) -> None:
        self.ended_calls.append((call, hangup_event))


def test_originate_cut_by_a_connection_loss_kills_the_channel_after_reconnect():
    from dialer.campaigns import CallOutcome
    from dialer.config import FreeswitchNode
    from dialer.engine.calls import Call, CallState
    from dialer.engine.flow import CallFlow, FlowSettings
    from dialer.engine.switchboard import Switchboard

    switch = FakeSwitch(port=0, model=CalledPartyModel(seed=3)).start()
    proxy = FaultProxy(switch.port).start()
    board = Switchboard([FreeswitchNode("127.0.0.1", proxy.port, "ClueCon")], timeout=3.0)
    for client in board.clients.values():
        client.backoff = Backoff(base_s=0.05, cap_s=0.2)
    board.start()
    try:
        assert board.wait_connected(5)
        node = next(iter(board.clients))
        call = Call(uuid=str(uuidlib.uuid4()), campaign="qa6", lead_id=1, number="7703",
                    gateway="external", caller_id="0000000000", node=node)
        recorder = _Recorded()
        # 7703 rings for an hour: only a kill ends it.
        flow = CallFlow(call, FlowSettings(ring_timeout_s=60), board, agents=None, amd=None,
                        recorder=recorder, variables={}, dial_string="sofia/external/7703@127.0.0.1")
        running = gevent.spawn(flow.run)
        wait_until(lambda: call.uuid in switch.channels, timeout=3)
        proxy.reset()                                   # the bgapi job is in flight
        ended = running.get(timeout=20)
        assert ended.outcome is CallOutcome.FAILED and ended.state is CallState.ENDED
        assert [c.uuid for c, _ in recorder.ended_calls] == [call.uuid]
        wait_until(lambda: call.uuid not in switch.channels, timeout=3)
        assert board.clients[node].reconnects >= 1
    finally:
        board.stop()
        proxy.stop()
        switch.stop()


def test_engine_kills_the_channel_of_an_originate_cut_by_a_connection_loss(db_url, redis_url, tmp_path):
    """End to end: the engine's node connection is reset while a call rings; after the reconnect
    the channel is gone from the switch and the attempt is recorded as failed."""
    from dialer import storage
    from esl.fakeswitch import Behaviour, Outcome
    from datetime import timedelta

    from tests.engine_world import (BASE_SETTINGS, PINNED, create_campaign, import_registry, start_engine,
                                    start_switch)

    switch = start_switch()
    ringing = "+12125550103"                              # rings for an hour: only a kill ends it
    switch.model.script(ringing, Behaviour(Outcome.NO_ANSWER, ring_seconds=3600.0))
    proxy = FaultProxy(switch.port).start()

    class ThroughProxy:                                   # the engine reaches the node through the proxy
        port = proxy.port

    engine = None
    try:
        # the gate fails closed without a registry copy (one unrelated number on it)
        import_registry(db_url, tmp_path, ["+12125550177"], PINNED.date() - timedelta(days=3))
        create_campaign(db_url, "cut", BASE_SETTINGS, [ringing])
        engine = start_engine(db_url, redis_url, ThroughProxy, tmp_path)
        engine.login_agent("agent-cut", "sofia/internal/7700@127.0.0.1", "cut")
        wait_until(lambda: any(ringing[-10:] in c.name for c in switch.channels.values()), timeout=30)
        [uuid] = [u for u, c in switch.channels.items() if ringing[-10:] in c.name]
        proxy.reset()
        wait_until(lambda: uuid not in switch.channels, timeout=8)
        with storage.connect_db(db_url) as conn:
            wait_until(lambda: conn.execute("SELECT count(*) FROM call_attempts WHERE ended_at IS NOT NULL"
                                            " AND outcome = 'failed'").fetchone()[0] >= 1, timeout=10)
            lead = conn.execute("SELECT attempts, last_outcome FROM leads WHERE phone_e164 = %s",
                                (ringing,)).fetchone()
        assert lead[0] >= 1 and lead[1] == "failed"
    finally:
        if engine is not None:
            engine.stop(drain_timeout=2)
        proxy.stop()
        switch.stop()


# -- 3: outbound waits end on a closed connection ------------------------------------------------
def test_outbound_wait_raises_connection_lost_once_events_are_used_up():
    seen = {}

    def handler(session):
        seen["first"] = session.next_event(5).name      # queued before the close: delivered
        started = time.monotonic()
        try:
            session.wait_for(lambda e: False, timeout=8)
        except Exception as exc:  # noqa: BLE001 - the test records what was raised
            seen["error"] = exc
        seen["waited"] = time.monotonic() - started
        try:
            session.next_event(8)
        except Exception as exc:  # noqa: BLE001
            seen["again"] = exc

    server = OutboundServer(handler, "127.0.0.1", 0).start()
    try:
        switch_side = socket.create_connection(server.address, timeout=5)
        buffer = bytearray()
        assert read_command(switch_side, buffer) == b"connect"
        switch_side.sendall(b"Content-Type: command/reply\nReply-Text: +OK\nUnique-ID: u-1\n"
                            b"Event-Name: CHANNEL_DATA\n\n")
        switch_side.sendall(protocol.encode_event(protocol.EVENT_PLAIN,
                                                  [("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", "u-1")]))
        gevent.sleep(0.5)
        switch_side.close()                              # the caller is gone
        wait_until(lambda: "again" in seen, timeout=10)
    finally:
        server.stop()
    assert seen["first"] == "CHANNEL_ANSWER"
    assert isinstance(seen["error"], ConnectionLost), seen["error"]
    assert seen["waited"] < 1.5
    assert isinstance(seen["again"], ConnectionLost)


def test_outbound_wait_still_times_out_on_an_open_connection():
    seen = {}

    def handler(session):
        try:
            session.wait_for(lambda e: False, timeout=0.3)
        except Exception as exc:  # noqa: BLE001
            seen["error"] = exc

    server = OutboundServer(handler, "127.0.0.1", 0).start()
    try:
        switch_side = socket.create_connection(server.address, timeout=5)
        buffer = bytearray()
        read_command(switch_side, buffer)
        switch_side.sendall(b"Content-Type: command/reply\nReply-Text: +OK\nUnique-ID: u-2\n\n")
        wait_until(lambda: "error" in seen, timeout=3)
        switch_side.close()
    finally:
        server.stop()
    assert isinstance(seen["error"], ESLTimeout)


# -- 4: a failing on_reconcile does not end the supervisor ---------------------------------------
def test_reconcile_callback_error_closes_and_retries():
    peer = ScriptedPeer().start()
    calls = []

    def reconcile(client, rows):
        calls.append(rows)
        if len(calls) == 1:
            raise KeyError("application bug")

    client = InboundClient("127.0.0.1", peer.port, "ClueCon", on_reconcile=reconcile, timeout=2.0,
                           backoff=Backoff(base_s=0.01, cap_s=0.05)).start()
    try:
        assert client.wait_connected(5)
        assert len(calls) == 2 and not client._supervisor.dead
        assert peer.connections == 2          # the first socket was closed, not left open
        assert client.api("echo fine") == "fine"
    finally:
        client.stop()
        peer.stop()


# -- 5: `dialer esl decode` on a malformed event -------------------------------------------------
def test_esl_decode_reports_a_malformed_event_and_goes_on(tmp_path):
    stream = tmp_path / "deep.raw"
    stream.write_bytes(event_frame(DEEP_JSON) + json_event({"Event-Name": "HEARTBEAT"}))
    result = CliRunner().invoke(esl_cli, ["decode", str(stream)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "esl decode: event-json body is not JSON" in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["event"] for line in lines] == [None, {"Event-Name": "HEARTBEAT"}]
    assert lines[0]["body"] == DEEP_JSON.decode()


# -- 6, 8: fake switch command input -------------------------------------------------------------
@pytest.fixture
def switch():
    fake = FakeSwitch(port=0, model=CalledPartyModel(seed=7, time_scale=0.01)).start()
    yield fake
    fake.stop()


@pytest.fixture
def client(switch):
    raw = RawClient(switch.port)
    yield raw
    raw.close()


def parked_call(client) -> str:
    uuid = str(uuidlib.uuid4())
    client.command("event plain CHANNEL_PARK")
    client.command(f"bgapi {ORIGINATE_06 % uuid}")
    client.wait_for(lambda f: f.is_event and decode_event(f).name == "CHANNEL_PARK"
                    and decode_event(f).unique_id == uuid)
    return uuid


@pytest.mark.parametrize("headers, reply", [
    ("call-command: execute\nexecute-app-name: playback\nexecute-app-arg: x.wav\nloops: abc", "-ERR invalid loops"),
    ("call-command: execute\nexecute-app-name: playback\nexecute-app-arg: x.wav\nloops: 1000000000",
     "-ERR invalid loops"),
    ("call-command: unicast\nlocal-ip: 127.0.0.1\nlocal-port: 99999\nremote-ip: 127.0.0.1\nremote-port: 9",
     "-ERR invalid unicast port"),
    ("call-command: unicast\nlocal-ip: 127.0.0.1\nlocal-port: 0\nremote-ip: 127.0.0.1\nremote-port: 70000",
     "-ERR invalid unicast port"),
    ("call-command: unicast\nlocal-ip: 127.0.0.1\nlocal-port: -1\nremote-ip: 127.0.0.1\nremote-port: 9",
     "-ERR invalid unicast port"),
])
def test_fake_switch_bad_sendmsg_numbers_get_err_and_keep_the_connection(switch, client, headers, reply):
    uuid = parked_call(client)
    assert client.command(f"sendmsg {uuid}\n{headers}").reply_text.startswith(reply)
    assert not client.closed
    assert client.command("api uuid_exists " + uuid).body == b"true"


def test_command_parser_reads_header_names_in_any_case():
    commands = CommandParser().feed(b"sendmsg u-1\ncontent-length: 5\nCALL-COMMAND: hangup\n\nhello"
                                    b"api status\n\n")
    assert [c.line for c in commands] == ["sendmsg u-1", "api status"]
    assert commands[0].body == b"hello"
    assert commands[0].headers.get("call-command") == "hangup"
    assert commands[0].headers["Content-Length"] == "5" and "Call-Command" in commands[0].headers


def test_fake_switch_sendmsg_headers_in_any_case(switch, client):
    uuid = parked_call(client)
    client.command("event plain CHANNEL_HANGUP_COMPLETE")
    client.send(f"sendmsg {uuid}\ncontent-length: 5\nCall-Command: hangup\nHangup-Cause: USER_BUSY\n\nhello")
    assert client.next_reply().reply_text == "+OK"
    assert client.command("api uuid_exists nothing").body == b"false"     # no body left over
    done = client.wait_for(lambda f: f.is_event and decode_event(f).name == "CHANNEL_HANGUP_COMPLETE")
    assert decode_event(done).get("Hangup-Cause") == "USER_BUSY"


# -- 7: audio files are checked at startup -------------------------------------------------------
def write_wav(path, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * (channels * rate // 10))


def test_fake_switch_refuses_an_unusable_audio_file_at_startup(tmp_path):
    wide = tmp_path / "hello16k.wav"
    write_wav(wide, 16000)
    text = tmp_path / "notes.txt"
    text.write_text("not audio\n")
    good = tmp_path / "hello8k.wav"
    write_wav(good, 8000)
    with pytest.raises(FakeSwitchError, match="16-bit mono 8000 Hz"):
        FakeSwitch(port=0, audio_files={"machine": str(wide)}).start()
    with pytest.raises(FakeSwitchError, match="not a readable WAV"):
        FakeSwitch(port=0, audio_files={"human": [str(good), str(text)]}).start()
    runner = CliRunner()
    for option, path in (("--machine-wav", wide), ("--human-wav", text)):
        result = runner.invoke(fake_switch, ["--port", "0", option, str(path)])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and str(path) in result.output
        assert "Traceback" not in result.output
    assert "16-bit mono 8000 Hz" in runner.invoke(fake_switch, ["--help"]).output
    FakeSwitch(port=0, audio_files={"human": str(good)}).start().stop()


# -- 9: a refused auth line does not carry the password ------------------------------------------
def test_line_break_in_auth_does_not_reveal_the_password():
    for line in ("auth S3cretPass\n", "auth S3cret\nPass", "userauth me@example:S3cretPass\r"):
        with pytest.raises(CommandInjection) as refused:
            encode_command(line)
        assert "S3cret" not in str(refused.value)
        assert "line break" in str(refused.value)
    with pytest.raises(CommandInjection, match="api status"):
        encode_command("api status\n")


# -- 10: a raw NUL in a value stays in its header ------------------------------------------------
def test_raw_nul_in_a_value_does_not_move_text_between_headers():
    [frame] = FrameParser().feed(b"Content-Type: command/reply\nReply-Text: a\x00b%41\nJob-UUID: c%42\n\n")
    assert frame.headers["Job-UUID"] == "cB"
    assert frame.headers["Reply-Text"] == "a\x00bA"


# -- 11: JSON events keep the first value of a repeated key --------------------------------------
def test_json_event_keeps_the_first_of_a_repeated_key_like_the_plain_decoder():
    plain = event_frame(b"Event-Name: CODEC\nChannel-Write-Codec-Name: PCMU\nChannel-Write-Codec-Name: L16\n\n",
                        "text/event-plain")
    as_json = event_frame(b'{"Event-Name":"CODEC","Channel-Write-Codec-Name":"PCMU",'
                          b'"Channel-Write-Codec-Name":"L16"}')
    decoded = [decode_event(frame) for frame in FrameParser().feed(plain + as_json)]
    assert [event.get("Channel-Write-Codec-Name") for event in decoded] == ["PCMU", "PCMU"]


# -- 12: Content-Length is ASCII digits -----------------------------------------------------------
@pytest.mark.parametrize("length", ["1_0", "+10", "\u0661\u0660", "10 ", "0x0a"])
def test_content_length_must_be_ascii_digits(length):
    data = f"Content-Type: api/response\nContent-Length: {length}\n\n0123456789".encode()
    with pytest.raises(ProtocolError, match="Content-Length is not a number"):
        FrameParser().feed(data)
    with pytest.raises(ProtocolError):
        CommandParser().feed(f"sendmsg x\nContent-Length: {length}\n\n0123456789".encode())
