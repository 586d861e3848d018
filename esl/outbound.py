"""The outbound Event Socket server: FreeSWITCH's dialplan `socket host:port async full`
connects here once per call (mod_event_socket outbound mode, default port 8084).

The session sends `connect` first; the command/reply to it carries the whole channel data as
one URL-encoded header block. `myevents` then subscribes to that channel's events, `linger`
keeps the socket open after hangup so the last events arrive, and in `async` mode every
sendmsg returns at once (the channel stays parked until told otherwise).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import gevent
import gevent.queue
from gevent.server import StreamServer

from esl.connection import DEFAULT_TIMEOUT_S, EVENT_QUEUE_PUT_TIMEOUT_S, ESLConnection
from esl.errors import ConnectionLost, ESLError, ESLTimeout
from esl.protocol import Event

log = logging.getLogger(__name__)


INBOX_SIZE = 1000
# How long the end-of-events marker may wait for room in a full inbox (a handler not reading).
END_MARKER_PUT_TIMEOUT_S = 60.0


class _EndOfEvents:
    """The inbox item that says: the connection closed and every event before it was queued."""

    name = ""

    def __repr__(self) -> str:
        return "<end of events>"


_END_OF_EVENTS = _EndOfEvents()


class OutboundSession(ESLConnection):
    """One call handed to us by the `socket` application; its events queue up in `inbox`."""

    channel: Event | None = None

    def __init__(self, sock, **kwargs) -> None:
        self.inbox: gevent.queue.Queue = gevent.queue.Queue(maxsize=INBOX_SIZE)
        super().__init__(sock, on_event=self._to_inbox, **kwargs)

    def _to_inbox(self, event: Event) -> None:
        try:
            self.inbox.put(event, timeout=EVENT_QUEUE_PUT_TIMEOUT_S)
        except gevent.queue.Full:
            self.close(ConnectionLost(f"{self.name}: session handler is not reading its events"))

    def close(self, reason: ESLError | None = None) -> None:
        first = not self.closed
        super().close(reason)
        if first:
            gevent.spawn(self._mark_end_of_events)

    def _mark_end_of_events(self) -> None:
        """After close: once every event received has reached the inbox, queue the end marker,
        so that a handler waiting for an event of a call that is gone wakes at once with the
        close reason (docs/esl.md: nothing hangs) instead of at the end of its timeout."""
        self.wait_dispatched(EVENT_QUEUE_PUT_TIMEOUT_S + 1.0)
        try:
            # A full inbox means a handler that is not reading: it finds the events, and then
            # next_event's closed check, when it reads again.
            self.inbox.put(_END_OF_EVENTS, timeout=END_MARKER_PUT_TIMEOUT_S)
        except gevent.queue.Full:
            pass

    def next_event(self, timeout: float) -> Event:
        """The next event of this call. The events received before the connection closed are
        all delivered; after them ConnectionLost (the close reason) at once. ESLTimeout when
        none comes in time on an open connection."""
        try:
            event = self.inbox.get(timeout=timeout)
        except gevent.queue.Empty:
            if self.closed:
                raise self._lost() from None
            raise ESLTimeout(f"{self.name}: no event within {timeout}s") from None
        if event is _END_OF_EVENTS:
            self.inbox.put_nowait(event)     # every later call ends the same way
            raise self._lost()
        return event

    def _lost(self) -> ESLError:
        return self.close_reason or ConnectionLost(f"{self.name}: closed")

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """Skip events until one matches; ESLTimeout at the deadline (overall, not per event),
        ConnectionLost as soon as the connection is closed and its events are used up."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if self.closed and self.inbox.empty():
                    raise self._lost()
                raise ESLTimeout(f"{self.name}: awaited event not seen within {timeout}s")
            try:
                event = self.next_event(remaining)
            except ESLTimeout:
                raise ESLTimeout(f"{self.name}: awaited event not seen within {timeout}s") from None
            if predicate(event):
                return event

    def execute_and_wait(self, app: str, arg: str = "", *, timeout: float) -> Event:
        """Execute an application on this call and wait for its CHANNEL_EXECUTE_COMPLETE,
        matched on our Event-UUID (Application-UUID), never on the application name."""
        event_uuid = self.execute(None, app, arg, event_lock=True)
        return self.wait_for(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE"
                             and e.get("Application-UUID") == event_uuid, timeout)

    def connect_channel(self, *, timeout: float | None = None) -> Event:
        """Send `connect`; return the channel data as an Event (Unique-ID, Caller-*, variable_*)."""
        reply = self.request("connect", timeout=timeout)
        self.channel = Event(dict(reply.headers))
        return self.channel

    @property
    def uuid(self) -> str:
        return self.channel.unique_id if self.channel is not None else ""

    def myevents(self, *, fmt: str = "json", timeout: float | None = None) -> str:
        return self.command(f"myevents {fmt}", timeout=timeout)

    def linger(self, seconds: int | None = None, *, timeout: float | None = None) -> str:
        return self.command("linger" if seconds is None else f"linger {seconds}", timeout=timeout)

    def resume(self, *, timeout: float | None = None) -> str:
        return self.command("resume", timeout=timeout)


SessionHandler = Callable[[OutboundSession], None]


class OutboundServer:
    """A gevent StreamServer running `handler(session)` for each call, in its own greenlet.

    The handler gets a session already connected (channel data read); when it returns, the
    socket is closed. A handler's error is logged and ends only its own call.
    """

    def __init__(self, handler: SessionHandler, host: str = "127.0.0.1", port: int = 8084, *,
                 timeout: float = DEFAULT_TIMEOUT_S, max_sessions: int = 10_000) -> None:
        self.handler = handler
        self.timeout = timeout
        self._server = StreamServer((host, port), self._handle, spawn=max_sessions)
        self.sessions_started = 0
        self.sessions_failed = 0

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address[0], self._server.server_port

    def start(self) -> "OutboundServer":
        self._server.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._server.stop(timeout=timeout)

    def _handle(self, sock, address) -> None:
        session = OutboundSession(sock, name=f"outbound {address[0]}:{address[1]}", timeout=self.timeout)
        self.sessions_started += 1
        try:
            session.connect_channel()
            self.handler(session)
        except ESLError as exc:
            self.sessions_failed += 1
            log.warning("%s: session ended: %s", session.name, exc)
        except gevent.GreenletExit:
            raise
        except Exception:  # the handler is application code: its bug ends only this call
            self.sessions_failed += 1
            log.exception("%s: handler failed", session.name)
        finally:
            session.close()
