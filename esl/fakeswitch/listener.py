"""One Event Socket connection of the simulated switch (inbound client or outbound `socket` call).

Follows mod_event_socket.c: the listener answers one command at a time; a command runs inline, so
events raised while it runs are written after its reply (`api` stalls event delivery, `bgapi` does
not). Event delivery honours the subscription (`event`, `nixevent`, `noevents`, `myevents`), the
filters (OR of the positive filters; an event lacking the filtered header is dropped) and a bounded
queue: beyond `max_queue` queued events further ones are lost, and after more than `max_lost` lost
events the listener is disconnected, as FreeSWITCH does (MAX_QUEUE_LEN 100000, MAX_MISSED 500).
"""
from __future__ import annotations

import collections
import logging
import uuid as uuidlib
from typing import TYPE_CHECKING

import gevent
import gevent.event
import gevent.lock

from esl.errors import ProtocolError
from esl.protocol import (COMMAND_REPLY, EVENT_JSON, EVENT_PLAIN, EVENT_XML, CommandParser,
                          encode_frame, serialize_event_plain)

if TYPE_CHECKING:
    from esl.fakeswitch.switch import FakeSwitch, SimEvent
    from esl.fakeswitch.channel import Channel

log = logging.getLogger(__name__)

GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
FORMATS = {"plain": EVENT_PLAIN, "json": EVENT_JSON, "xml": EVENT_XML}
READ_SIZE = 65536


class Listener:
    """State and I/O of one connection; `run()` is its reader loop (one greenlet)."""

    def __init__(self, switch: FakeSwitch, sock, *, outbound_channel: Channel | None = None) -> None:
        self.switch = switch
        self.sock = sock
        self.outbound_channel = outbound_channel     # set for the dialplan `socket` application
        self.authed = outbound_channel is not None
        self.content_type: str | None = None
        self.all_events = False
        self.event_names: set[str] = set()
        self.custom_subclasses: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.my_uuid: str | None = None
        self.linger = False
        self.socket_mode, self.control = "async", "full"
        self.queue: collections.deque[SimEvent] = collections.deque()
        self.lost = 0
        self.closed = False
        self._write_lock = gevent.lock.Semaphore()
        self._idle = gevent.event.Event()            # set when no command is running
        self._idle.set()
        self._wake = gevent.event.Event()
        self._writer = gevent.spawn(self._write_events)

    # -- event delivery ----------------------------------------------------------------------
    def subscribed(self, name: str, subclass: str, unique_id: str) -> bool:
        """The subscription test alone (filters need the headers, see `wants`)."""
        if self.content_type is None or self.closed:
            return False
        if self.my_uuid is not None and unique_id != self.my_uuid:
            return False
        if not self.all_events:
            if name == "CUSTOM":
                return subclass in self.custom_subclasses
            return name in self.event_names
        return True

    def wants(self, event: SimEvent) -> bool:
        if not self.subscribed(event.name, event.subclass, event.unique_id):
            return False
        if self.filters:
            values = event.header_map
            return any(values.get(name) == value for name, value in self.filters)
        return True

    def deliver(self, event: SimEvent) -> None:
        if len(self.queue) >= self.switch.max_event_queue:
            self.lost += 1
            self.switch.counters["events_lost"] += 1
            if self.lost == self.switch.max_lost_events + 1:
                log.warning("listener lost %d events; disconnecting it", self.lost)
                self.switch.counters["listeners_dropped"] += 1
                gevent.spawn(self.close)
            return
        self.queue.append(event)
        self._wake.set()

    def _write_events(self) -> None:
        while not self.closed:
            self._wake.wait()
            self._wake.clear()
            while self.queue and not self.closed:
                self._idle.wait()
                batch = []
                while self.queue and len(batch) < 64:
                    event = self.queue.popleft()
                    batch.append(event.encoded(self.content_type or EVENT_PLAIN))
                self._send(b"".join(batch))

    # -- I/O ---------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            with self._write_lock:
                self.sock.sendall(data)
        except OSError:
            gevent.spawn(self.close)

    def reply(self, text: str, extra: list[tuple[str, str]] | None = None) -> None:
        self._send(encode_frame([("Content-Type", COMMAND_REPLY), ("Reply-Text", text), *(extra or [])]))

    def reply_connect(self) -> None:
        """The outbound `connect` reply: the whole channel data as one URL-encoded command/reply
        header block with no body (mod_event_socket.c parse_command, capture 30_outbound_socket)."""
        channel = self.outbound_channel
        headers = (self.switch.common_headers("CHANNEL_DATA") + channel.profile_headers("Channel")
                   + channel.basic_headers() + channel.variable_headers()
                   + [("Content-Type", COMMAND_REPLY), ("Reply-Text", "+OK\n"),
                      ("Socket-Mode", self.socket_mode), ("Control", self.control)])
        self._send(serialize_event_plain(headers))

    def api_response(self, body: str) -> None:
        self._send(encode_frame([("Content-Type", "api/response")], body))

    def disconnect_notice(self) -> None:
        channel = self.outbound_channel
        if channel is not None and self.linger:
            self._send(encode_frame([
                ("Content-Type", "text/disconnect-notice"), ("Controlled-Session-UUID", channel.uuid),
                ("Content-Disposition", "linger"), ("Channel-Name", channel.name),
                ("Linger-Time", "-1")], b""))
        elif channel is not None:
            self._send(encode_frame([
                ("Content-Type", "text/disconnect-notice"), ("Controlled-Session-UUID", channel.uuid),
                ("Content-Disposition", "disconnect")], GOODBYE))
        else:
            self._send(encode_frame([("Content-Type", "text/disconnect-notice")], GOODBYE))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake.set()
        self.switch._listener_closed(self)
        channel = self.outbound_channel
        if channel is not None and not channel.is_hungup:
            # The controlling socket went away: FreeSWITCH hangs the call up (with `resume` the
            # dialplan would continue, and after `&socket()` nothing is left to run either).
            self.switch.calls.spawn(self.switch.calls.hangup, channel, "NORMAL_CLEARING")
        try:
            self.sock.close()
        except OSError:
            pass
        if gevent.getcurrent() is not self._writer:
            self._writer.kill(block=False)

    def channel_gone(self, channel: Channel) -> None:
        """The controlled channel of an outbound connection hung up: flush events, say goodbye."""
        gevent.spawn(self._finish_outbound)

    def _finish_outbound(self) -> None:
        # Let the hangup events already queued reach the client before the notice.
        for _ in range(200):
            if not self.queue or self.closed:
                break
            gevent.sleep(0.005)
        self.disconnect_notice()
        if not self.linger:
            self.close()
        else:
            gevent.sleep(0.05)
            self.close()

    # -- reader loop -------------------------------------------------------------------------
    def run(self) -> None:
        parser = CommandParser()
        if self.outbound_channel is None:
            self._send(encode_frame([("Content-Type", "auth/request")]))
        try:
            while not self.closed:
                try:
                    data = self.sock.recv(READ_SIZE)
                except OSError:
                    break
                if not data:
                    break
                try:
                    commands = parser.feed(data)
                except ProtocolError as exc:
                    log.info("closing a connection that sent a malformed command: %s", exc)
                    break
                for command in commands:
                    self._idle.clear()
                    try:
                        keep = self.switch.commands.handle(self, command)
                    finally:
                        self._idle.set()
                    if not keep:
                        self.close()
                        return
        finally:
            self.close()

    # -- subscription commands (called by the command table) ----------------------------------
    def subscribe(self, args: list[str]) -> str:
        fmt = "plain"
        if args and args[0].lower() in FORMATS:
            fmt = args.pop(0).lower()
        self.content_type = FORMATS[fmt]
        custom = False
        for name in args:
            upper = name.upper()
            if upper == "CUSTOM":
                custom = True
            elif custom and upper not in self.switch.event_types:
                self.custom_subclasses.add(name)
            elif upper == "ALL":
                self.all_events = True
            elif upper in self.switch.event_types:
                self.event_names.add(upper)
        return f"+OK event listener enabled {fmt}"

    def unsubscribe(self, args: list[str]) -> str:
        custom = False
        for name in args:
            upper = name.upper()
            if upper == "CUSTOM":
                custom = True
            elif custom:
                self.custom_subclasses.discard(name)
            elif upper == "ALL":
                self.all_events = False
                self.event_names.clear()
                self.custom_subclasses.clear()
            else:
                self.event_names.discard(upper)
        return "+OK events nixed"

    def no_events(self) -> str:
        self.content_type = None
        self.all_events = False
        self.event_names.clear()
        self.custom_subclasses.clear()
        self.queue.clear()
        return "+OK no longer listening for events"

    def add_filter(self, args: str) -> str:
        parts = args.split(" ", 1)
        if parts[0].lower() == "delete" and len(parts) == 2:
            name, _, value = parts[1].partition(" ")
            if name.lower() == "all":
                self.filters.clear()
                return "+OK filter deleted. [all]=[]"
            self.filters = [(n, v) for n, v in self.filters if not (n == name and (not value or v == value))]
            return f"+OK filter deleted. [{name}]=[{value}]"
        if len(parts) != 2:
            return "-ERR invalid syntax"
        name, value = parts
        self.filters.append((name, value))
        return f"+OK filter added. [{name}]=[{value}]"


def new_uuid() -> str:
    return str(uuidlib.uuid4())

