"""An Event Socket server that sends a stream of events as fast as the socket takes them.

Run as a separate process (`python -m benchmarks.blaster PASSES SOURCE`), it prints its port,
accepts one client, answers its auth, then writes the event frames of SOURCE PASSES times and
waits for the client to close. SOURCE is a capture file (its event frames are replayed byte
for byte) or `synthetic-plain` / `synthetic-json` (10 events of 60 variables). Used by the
throughput benchmark and by the hub-stall test, so both measure a stream arriving from
outside the process.
"""
from __future__ import annotations

import socket
import sys
from pathlib import Path

from esl import protocol


def event_frames(source: str) -> list[bytes]:
    if source.startswith("synthetic-"):
        content_type = f"text/event-{source.removeprefix('synthetic-')}"
        headers = [("Event-Name", "CHANNEL_STATE"), ("Core-UUID", "d8c88c67"), ("Channel-State", "CS_ROUTING"),
                   ("Unique-ID", "28c4f78f-60d3-47d5-af77-faaedf3eb41a")] + [
                  (f"variable_v{i}", f"value {i} with spaces/and:colons") for i in range(60)]
        return [protocol.encode_event(content_type, headers + [("Event-Sequence", str(i))]) for i in range(10)]
    data = Path(source).read_bytes()
    parser = protocol.FrameParser()
    frames = [f for f in parser.feed(data) if f.is_event]
    return [protocol.encode_frame([("Content-Type", f.content_type)], f.body, length_first=True) for f in frames]


def main() -> None:
    passes, source = int(sys.argv[1]), sys.argv[2]
    frames = event_frames(source)
    block = b"".join(frames)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    print(server.getsockname()[1], len(frames) * passes, flush=True)
    conn, _ = server.accept()
    conn.sendall(b"Content-Type: auth/request\n\n")
    conn.recv(1000)
    conn.sendall(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
    for _ in range(passes):
        conn.sendall(block)
    conn.recv(10)  # until the client closes
    conn.close()


if __name__ == "__main__":
    main()
