"""`dialer esl ...`: tools on raw Event Socket streams."""
from __future__ import annotations

import json
import sys

import click

from esl.errors import EventDecodeError, ProtocolError
from esl.protocol import FrameParser, decode_event

READ_SIZE = 1 << 16


@click.group()
def esl() -> None:
    """Event Socket tools."""


def frame_to_json(frame) -> dict:
    """The JSON form of one frame: outer type and headers, the event headers, the body."""
    if frame.is_event:
        event = decode_event(frame)
        return {"type": frame.content_type, "headers": frame.headers,
                "event": event.headers, "body": event.body}
    return {"type": frame.content_type, "headers": frame.headers, "event": None,
            "body": frame.body_text() if frame.body else None}


@esl.command("decode")
@click.argument("source", type=click.File("rb"), default="-")
def decode(source) -> None:
    """Decode a raw ESL byte stream as FreeSWITCH sent it: one JSON object per frame per line.

    SOURCE is a file, or - for standard input. A truncated final frame is reported on stderr
    and the exit code is 1, after every complete frame was printed.
    """
    parser = FrameParser()
    failed = False
    out = sys.stdout

    def write(frames) -> None:
        nonlocal failed
        for frame in frames:
            try:
                record = frame_to_json(frame)
            except EventDecodeError as exc:
                click.echo(f"esl decode: {exc}", err=True)
                record = {"type": frame.content_type, "headers": frame.headers,
                          "event": None, "body": frame.body_text()}
                failed = True
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

    try:
        while chunk := source.read(READ_SIZE):
            write(parser.feed(chunk))
        parser.close()
    except ProtocolError as exc:
        write(exc.frames)              # the complete frames of the chunk before the bad bytes
        out.flush()
        click.echo(f"esl decode: {exc}", err=True)
        raise SystemExit(1) from None  # click command: the exit status is the interface
    if failed:
        raise SystemExit(1)
