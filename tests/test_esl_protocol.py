"""The sans-I/O protocol core against the real FreeSWITCH captures and generated streams."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from esl import protocol
from esl.causes import HangupCause
from esl.errors import CommandInjection, EventDecodeError, ProtocolError, TruncatedFrame
from esl.protocol import CommandParser, FrameParser, decode_event, encode_command, encode_event


def parse_all(data: bytes, chunk: int | None = None) -> list[protocol.Frame]:
    parser = FrameParser()
    frames = []
    step = chunk or len(data) or 1
    for i in range(0, len(data), step):
        frames.extend(parser.feed(data[i:i + step]))
    parser.close()
    return frames


def capture_files(captures_dir):
    files = sorted(captures_dir.glob("*.s2c.raw"))
    assert len(files) >= 11
    return files


def test_every_capture_decodes_completely(captures_dir):
    for path in capture_files(captures_dir):
        data = path.read_bytes()
        frames = parse_all(data)
        events = [decode_event(f) for f in frames if f.is_event]
        # Independent count: every event frame has this header line (FreeSWITCH puts it on
        # the outer block only; event bodies carry no Content-Type).
        expected_events = data.count(b"\nContent-Type: text/event-")
        assert len(events) == expected_events, path.name
        assert all(f.content_type in {
            "auth/request", "command/reply", "api/response", "text/event-plain", "text/event-json",
            "text/disconnect-notice"} for f in frames), path.name
        assert all(e.name for e in events), path.name


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_split_reads_give_the_same_frames(captures_dir, chunk):
    data = (captures_dir / "02_auth_api_bgapi.s2c.raw").read_bytes()
    assert parse_all(data, chunk) == parse_all(data)


def test_auth_api_bgapi_capture_values(captures_dir):
    frames = parse_all((captures_dir / "02_auth_api_bgapi.s2c.raw").read_bytes())
    assert frames[0].content_type == "auth/request"
    assert frames[1].reply_text == "+OK accepted"
    assert frames[4].body == b"-ERR no reply\n"
    assert frames[5].body == b"-ERR no_such_command Command not found!\n"
    job_reply = next(f for f in frames if f.reply_text.startswith("+OK Job-UUID"))
    assert job_reply.headers["Job-UUID"] == "11111111-2222-3333-4444-555555555555"
    job = decode_event(next(f for f in frames if f.is_event))
    assert job.name == "BACKGROUND_JOB"
    assert job.get("Job-UUID") == "11111111-2222-3333-4444-555555555555"
    assert job.body.startswith("UP 0 years") and len(job.body.encode()) == 368
    assert "Content-Length" not in job.headers
    assert job.get("FreeSWITCH-IPv6") == "fd00::2"  # per-value URL decoding
    assert frames[-1].content_type == "text/disconnect-notice"


def test_plain_and_json_captures_agree(captures_dir):
    plain = [decode_event(f) for f in parse_all((captures_dir / "03_loopback_call_plain_ALL.s2c.raw").read_bytes()) if f.is_event]
    js = [decode_event(f) for f in parse_all((captures_dir / "04_loopback_call_json_ALL.s2c.raw").read_bytes()) if f.is_event]
    assert [e.name for e in plain][:5] == [e.name for e in js][:5]
    hangup = next(e for e in plain if e.name == "CHANNEL_HANGUP_COMPLETE")
    assert hangup.get("Hangup-Cause") in HangupCause.__members__
    assert hangup.variable("billsec") is not None
    assert "Event-Date-Local" in js[0].headers and " " in js[0].get("Event-Date-Local")


def test_outbound_connect_reply_is_one_header_block(captures_dir):
    frames = parse_all((captures_dir / "30_outbound_socket.s2c.raw").read_bytes())
    connect = frames[0]
    assert connect.content_type == "command/reply"
    assert connect.reply_text == "+OK\n"
    assert connect.headers["Socket-Mode"] == "async" and connect.headers["Control"] == "full"
    assert connect.headers["Channel-Destination-Number"] == "7710"
    assert connect.headers["Channel-Name"] == "sofia/internal/0000000000@127.0.0.1"
    assert frames[-1].content_type == "text/disconnect-notice"
    assert frames[-1].headers["Content-Disposition"] == "linger" and frames[-1].body == b""


def test_originate_error_causes(captures_dir):
    frames = parse_all((captures_dir / "10_originate_errors.s2c.raw").read_bytes())
    jobs = {e.get("Job-UUID"): e.body for e in map(decode_event, filter(lambda f: f.is_event, frames))
            if e.name == "BACKGROUND_JOB"}
    causes = {k: HangupCause.parse(v) for k, v in jobs.items()}
    assert HangupCause.USER_BUSY in causes.values()
    assert HangupCause.NO_ANSWER in causes.values()
    assert all(c is not None for c in causes.values()), jobs


def test_repeated_header_first_value_kept_and_plus_stays():
    body = b"Event-Name: CUSTOM\nHangup-Cause: USER_BUSY\nHangup-Cause: NORMAL_CLEARING\nX: a+b%20c\nARR: ARRAY::a|:b\n\n"
    frame = parse_all(protocol.encode_frame([("Content-Type", "text/event-plain")], body, length_first=True))[0]
    event = decode_event(frame)
    assert event.get("Hangup-Cause") == "USER_BUSY"
    assert event.get("X") == "a+b c"
    assert event.get("ARR") == "ARRAY::a|:b"


@pytest.mark.parametrize("fmt", [protocol.EVENT_PLAIN, protocol.EVENT_JSON, protocol.EVENT_XML])
def test_encode_decode_roundtrip(fmt):
    headers = [("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "j-1"), ("Odd", "a:b\nc %41 +é <&>")]
    event = decode_event(parse_all(encode_event(fmt, headers, "+OK 1234\n"))[0])
    assert event.headers == dict(headers)
    assert event.body == "+OK 1234\n"


def test_json_arrays_stay_arrays():
    payload = json.dumps({"Event-Name": "CUSTOM", "list": ["a", "b"], "_body": "x", "Content-Length": "1"})
    frame = parse_all(protocol.encode_frame([("Content-Type", "text/event-json")], payload, length_first=True))[0]
    event = decode_event(frame)
    assert event.headers == {"Event-Name": "CUSTOM", "list": ["a", "b"]} and event.body == "x"


def test_malformed_event_bodies_raise_decode_error():
    for ctype, body in [("text/event-json", b"{nope"), ("text/event-json", b"[1]"), ("text/event-xml", b"<event>")]:
        frame = parse_all(protocol.encode_frame([("Content-Type", ctype)], body, length_first=True))[0]
        with pytest.raises(EventDecodeError):
            decode_event(frame)


def test_bad_content_length_and_truncation():
    with pytest.raises(ProtocolError):
        FrameParser().feed(b"Content-Type: api/response\nContent-Length: ten\n\n")
    with pytest.raises(ProtocolError):
        FrameParser().feed(b"Content-Type: api/response\nContent-Length: -5\n\n")
    parser = FrameParser()
    assert parser.feed(b"Content-Type: api/response\nContent-Length: 10\n\nabc") == []
    with pytest.raises(TruncatedFrame):
        parser.close()
    parser = FrameParser()
    parser.feed(b"Content-Type: command/re")
    with pytest.raises(TruncatedFrame):
        parser.close()


def test_invalid_utf8_is_replaced_not_fatal():
    frame = parse_all(b"Content-Type: api/response\nContent-Length: 3\n\n\xff\xfeA")[0]
    assert frame.body_text() == "\ufffd\ufffdA"


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_random_cuts_never_lose_or_merge_frames(data):
    headers = [("Event-Name", "CHANNEL_ANSWER"), ("Unique-ID", "u"), ("Caller-Caller-ID-Name", "Zoë 100%")]
    stream = b"".join([
        protocol.encode_frame([("Content-Type", "command/reply"), ("Reply-Text", "+OK accepted")]),
        encode_event(protocol.EVENT_PLAIN, headers, "body\n"),
        encode_event(protocol.EVENT_JSON, headers),
        protocol.encode_frame([("Content-Type", "api/response")], "é" * 50),
        encode_event(protocol.EVENT_XML, headers, "x"),
    ])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    parser = FrameParser()
    frames, last = [], 0
    for cut in [*cuts, len(stream)]:
        frames.extend(parser.feed(stream[last:cut]))
        last = cut
    parser.close()
    assert [f.content_type for f in frames] == ["command/reply", "text/event-plain", "text/event-json",
                                                "api/response", "text/event-xml"]
    assert frames[3].body_text() == "é" * 50
    assert decode_event(frames[1]).headers == dict(headers)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_random_bytes_raise_only_protocol_errors(blob, chunk):
    parser = FrameParser(max_content_length=1000)
    try:
        for i in range(0, len(blob), chunk):
            for frame in parser.feed(blob[i:i + chunk]):
                if frame.is_event:
                    try:
                        decode_event(frame)
                    except EventDecodeError:
                        pass
        parser.close()
    except ProtocolError:
        pass


def test_command_encoding_refuses_injection():
    assert encode_command("api status") == b"api status\n\n"
    assert encode_command("bgapi originate x", {"Job-UUID": "j"}) == b"bgapi originate x\nJob-UUID: j\n\n"
    for bad in [("api status\n\nevent plain ALL", None), ("sendmsg u", {"execute-app-arg": "a\nb"})]:
        with pytest.raises(CommandInjection):
            encode_command(*bad)


def test_command_parser_with_body_and_crlf():
    parser = CommandParser()
    data = encode_command("sendmsg abc", {"call-command": "execute"}, b"hello") + b"auth x\r\n\r\n"
    commands = [c for i in range(len(data)) for c in parser.feed(data[i:i + 1])]
    assert [(c.name, c.args) for c in commands] == [("sendmsg", "abc"), ("auth", "x")]
    assert commands[0].headers["call-command"] == "execute" and commands[0].body == b"hello"


def test_hangup_cause_enum():
    assert HangupCause.USER_BUSY == 17 and HangupCause.USER_BUSY.q850 == 17
    assert HangupCause.GATEWAY_DOWN.q850 == 16
    assert HangupCause.parse("-ERR NO_ANSWER\n") is HangupCause.NO_ANSWER
    assert HangupCause.parse("+OK abc") is None and HangupCause.parse("") is None


def run_decode(path_or_bytes):
    if isinstance(path_or_bytes, bytes):
        return subprocess.run([sys.executable, "-m", "cli", "esl", "decode", "-"], input=path_or_bytes,
                              capture_output=True, check=False)
    return subprocess.run([sys.executable, "-m", "cli", "esl", "decode", str(path_or_bytes)],
                          capture_output=True, check=False)


def test_cli_decode_every_capture(captures_dir):
    for path in capture_files(captures_dir):
        result = run_decode(path)
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
        assert len(lines) == len(parse_all(path.read_bytes())), path.name
        for record in lines:
            assert set(record) == {"type", "headers", "event", "body"}
            assert (record["event"] is not None) == record["type"].startswith("text/event-")
    first_job = next(json.loads(line) for line in run_decode(captures_dir / "02_auth_api_bgapi.s2c.raw").stdout.decode().splitlines()
                     if '"BACKGROUND_JOB"' in line)
    assert first_job["body"].startswith("UP 0 years") and "Content-Length" not in first_job["event"]


def test_cli_decode_truncated_stream(captures_dir):
    data = (captures_dir / "02_auth_api_bgapi.s2c.raw").read_bytes()
    result = run_decode(data[:300])
    assert result.returncode == 1
    assert len(result.stdout.decode().splitlines()) == 2
    assert b"short" in result.stderr


def test_cli_decode_prints_every_complete_frame_before_a_protocol_error(captures_dir):
    """QA: the frames of the last read chunk before bad bytes were dropped (0 printed when the
    bad header was early in the stream)."""
    data = (captures_dir / "03_loopback_call_plain_ALL.s2c.raw").read_bytes()
    result = run_decode(data + b"Content-Type: api/response\nContent-Length: abc\n\n")
    assert result.returncode == 1 and b"Content-Length is not a number" in result.stderr
    assert len(result.stdout.decode().splitlines()) == len(parse_all(data))
    parser = protocol.FrameParser()
    with pytest.raises(ProtocolError) as caught:
        parser.feed(b"Content-Type: auth/request\n\n" + b"Content-Length: -1\n\n")
    assert [f.content_type for f in caught.value.frames] == ["auth/request"]


def test_cli_decode_random_garbage_does_not_crash():
    rng = random.Random(7)
    result = run_decode(bytes(rng.randrange(256) for _ in range(2000)))
    assert result.returncode in (0, 1)
    assert b"Traceback" not in result.stderr


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["%20", "%3A", "%25", "%41", "%C3%A9", "%c3%a9", "%0A", "%2", "%", "%ZZ",
                                 "a", "+", " ", "é", "%FF", "%E2%82", "%2541", "%00", "%7C"]), max_size=14))
def test_percent_decode_equals_unquote(pieces):
    from urllib.parse import unquote
    text = "".join(pieces)
    assert protocol.percent_decode(text) == unquote(text, encoding="utf-8", errors="replace")
