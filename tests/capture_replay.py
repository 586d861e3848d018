"""Replays a real capture's server side against a client under test: the transcript's S->C
chunks are sent, in order, after the client's matching C->S command arrived."""
from __future__ import annotations

import re
from pathlib import Path

from esl.protocol import CommandParser

_MARKER = re.compile(rb"^### (C->S|S->C) t=([0-9.]+) len=(\d+)\n", re.MULTILINE)


def read_transcript(path: Path) -> list[tuple[str, bytes]]:
    """(direction, chunk) pairs: each marker line, the raw chunk of `len` bytes, one newline."""
    data = path.read_bytes()
    chunks, position = [], 0
    while position < len(data):
        match = _MARKER.match(data, position)
        if match is None:
            raise ValueError(f"{path.name}: no marker at byte {position}")
        length = int(match.group(3))
        start = match.end()
        chunks.append((match.group(1).decode(), data[start:start + length]))
        position = start + length + 1
    return chunks


def serve_transcript(sock, chunks: list[tuple[str, bytes]], received: list[str]) -> None:
    """Act as the server side: for each C->S chunk wait for one command from the client."""
    parser = CommandParser()
    backlog: list = []
    for direction, chunk in chunks:
        if direction == "S->C":
            sock.sendall(chunk)
            continue
        while not backlog:
            data = sock.recv(65536)
            if not data:
                return
            backlog.extend(parser.feed(data))
        received.append(backlog.pop(0).line)
