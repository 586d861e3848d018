"""A small scripted Event Socket server for connection tests: it answers like FreeSWITCH
(auth, api, bgapi with BACKGROUND_JOB, event subscription, show channels) and can be told to
delay replies, flood events or stay silent. The full simulated switch lives in esl.fakeswitch;
this peer only exists to drive the connection layer into its corner cases."""
from __future__ import annotations

import json

import gevent
import gevent.lock
from gevent.server import StreamServer

from esl import protocol

CAPTURES_EVENT_HEADERS = [("Event-Name", "HEARTBEAT"), ("Core-UUID", "c0ffee"),
                          ("Event-Info", "System Ready"), ("Up-Time", "0 years, 0 days")]


class ScriptedPeer:
    def __init__(self, password: str = "ClueCon") -> None:
        self.password = password
        self.api_delay_s: dict[str, float] = {}
        self.big_api_bytes = 200_000
        self.channels: list[dict[str, str]] = []
        self.commands: list[str] = []
        self.connections = 0
        self.silent = False
        self._server = StreamServer(("127.0.0.1", 0), self._handle)

    def start(self) -> "ScriptedPeer":
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(timeout=1)

    @property
    def port(self) -> int:
        return self._server.server_port

    def _handle(self, sock, _address) -> None:
        self.connections += 1
        lock = gevent.lock.Semaphore()
        fmt = {"value": protocol.EVENT_PLAIN}

        def send(data: bytes) -> None:
            with lock:
                sock.sendall(data)

        def reply(text: str, extra: list[tuple[str, str]] = ()) -> None:
            send(protocol.encode_frame([("Content-Type", "command/reply"), ("Reply-Text", text), *extra]))

        def api_response(body: str) -> None:
            send(protocol.encode_frame([("Content-Type", "api/response")], body))

        def event(headers, body=None) -> None:
            send(protocol.encode_event(fmt["value"], headers, body))

        def run_api(command: str) -> str:
            name, _, arg = command.partition(" ")
            if name == "echo":
                return arg
            if name == "big":
                return "x" * self.big_api_bytes
            if name == "show" and arg == "channels as json":
                if not self.channels:
                    return json.dumps({"row_count": 0})
                return json.dumps({"row_count": len(self.channels), "rows": self.channels})
            if name == "flood":
                count = int(arg)
                for i in range(count):
                    event([*CAPTURES_EVENT_HEADERS, ("Event-Sequence", str(i))])
                    if i % 50 == 49:
                        gevent.sleep(0)  # the peer shares the hub with the client under test
                return f"+OK {count}"
            if name == "fail":
                return f"-ERR {arg}"
            return f"-ERR {name} Command not found!"

        send(protocol.encode_frame([("Content-Type", "auth/request")]))
        parser = protocol.CommandParser()
        authed = False
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                for command in parser.feed(data):
                    self.commands.append(command.line)
                    if self.silent:
                        continue
                    if not authed:
                        if command.line == f"auth {self.password}":
                            authed = True
                            reply("+OK accepted")
                        else:
                            reply("-ERR invalid")
                            send(protocol.encode_frame([("Content-Type", "text/disconnect-notice")],
                                                       "Disconnected, goodbye.\n"))
                            return
                        continue
                    if command.name == "api":
                        delay = self.api_delay_s.get(command.args.split(" ", 1)[0], 0)
                        if delay:
                            gevent.sleep(delay)
                        api_response(run_api(command.args))
                    elif command.name == "bgapi":
                        job_uuid = command.headers.get("Job-UUID", "server-chosen")
                        reply(f"+OK Job-UUID: {job_uuid}", [("Job-UUID", job_uuid)])

                        def finish(job_uuid=job_uuid, args=command.args):
                            gevent.sleep(0.01)
                            name, _, rest = args.partition(" ")
                            event([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", job_uuid),
                                   ("Job-Command", name), ("Job-Command-Arg", rest)],
                                  run_api(args) + "\n")
                        gevent.spawn(finish)
                    elif command.name == "event":
                        kind = command.args.split(" ", 1)[0]
                        fmt["value"] = f"text/event-{kind}"
                        reply(f"+OK event listener enabled {kind}")
                    elif command.name in ("filter", "nixevent", "noevents", "myevents", "linger"):
                        reply("+OK")
                    elif command.name == "exit":
                        reply("+OK bye")
                        return
                    else:
                        reply("-ERR command not found")
        except OSError:
            return
        finally:
            sock.close()
