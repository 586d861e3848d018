"""The outbound socket server against FreeSWITCH's real side of a `socket ... async full` call
(capture 30_outbound_socket), replayed byte for byte."""
from __future__ import annotations

import gevent
from gevent import socket

from esl.causes import HangupCause
from esl.outbound import OutboundServer
from tests.capture_replay import read_transcript, serve_transcript


def test_outbound_session_against_real_capture(captures_dir):
    chunks = read_transcript(captures_dir / "30_outbound_socket.transcript")
    seen = {}

    def handler(session):
        seen["uuid"] = session.uuid
        seen["destination"] = session.channel.get("Channel-Destination-Number")
        seen["caller"] = session.channel.get("Caller-Caller-ID-Number")
        session.myevents(fmt="plain")
        session.linger()
        # The captured answer carried no Event-UUID, so FreeSWITCH chose the Application-UUID.
        session.execute(None, "answer", event_lock=True)
        answered = session.wait_for(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE", timeout=5)
        seen["answer_complete"] = answered.get("Application")
        session.execute(None, "playback", "/opt/fsw-1.10/sounds/hello.wav", event_lock=True, event_uuid="play-1")
        done = session.wait_for(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE"
                                and e.get("Application-UUID") == "play-1", timeout=5)
        seen["playback_response"] = done.get("Application-Response")
        seen["uptime"] = session.api("uptime").strip()
        session.hangup(None, HangupCause.NORMAL_CLEARING)
        hangup = session.wait_for(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE", timeout=5)
        seen["cause"] = HangupCause[hangup.get("Hangup-Cause")]
        seen["closed_after_linger"] = session.wait_closed(5)
        seen["notice"] = session.disconnect_notice.headers.get("Content-Disposition")

    server = OutboundServer(handler, "127.0.0.1", 0).start()
    received: list[str] = []
    try:
        switch_side = socket.create_connection(server.address, timeout=5)
        replay = gevent.spawn(serve_transcript, switch_side, chunks, received)
        replay.join(timeout=10)
        switch_side.close()
        deadline = gevent.Timeout(5)
        with deadline:
            while "notice" not in seen:
                gevent.sleep(0.01)
    finally:
        server.stop()
    assert received[:3] == ["connect", "myevents plain", "linger"]
    assert seen["uuid"] == "d90254b7-7fba-4343-9163-b9ebcd88a3cd"
    assert seen["destination"] == "7710" and seen["caller"] == "0000000000"
    assert seen["answer_complete"] == "answer"
    assert seen["playback_response"] == "FILE PLAYED"
    assert seen["uptime"].isdigit()
    assert seen["cause"] is HangupCause.NORMAL_CLEARING
    assert seen["closed_after_linger"] and seen["notice"] == "linger"
    assert server.sessions_started == 1 and server.sessions_failed == 0
