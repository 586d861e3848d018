"""One Event Socket connection on gevent: the I/O layer around esl.protocol.

Discipline (after psycopg's and redis-py's connection handling):
- One reader greenlet owns recv(); it parses frames and routes them. It never runs user code:
  events go to a bounded queue drained by a dispatcher greenlet, so a slow handler cannot stall
  the reading of replies.
- Replies (command/reply, api/response) come back in the order commands were sent, so a FIFO
  of pending requests matches them. A writer lock covers "append to the FIFO + sendall", so
  the FIFO order is the wire order.
- Every wait has a timeout. A timed-out request closes the connection: its reply may still
  arrive, and on a reused connection it would be taken as the answer to the next command.
- When I/O is interrupted every pending request and job fails with ConnectionLost.
- A malformed event is dropped and logged (EventDecodeError); any other error in the reader
  closes the connection with ConnectionLost, so that nothing waits on a dead reader and the
  inbound client reconnects (docs/esl.md).
- bgapi jobs carry our own Job-UUID (mod_event_socket accepts it as a header) and are settled
  by the BACKGROUND_JOB event with that Job-UUID; sendmsg carries our own Event-UUID, which
  comes back as Application-UUID on CHANNEL_EXECUTE(_COMPLETE).
"""
from __future__ import annotations

import collections
import logging
import time
import uuid
from typing import Callable, Iterable

import gevent
import gevent.event
import gevent.lock
import gevent.queue
from gevent import socket

from esl import protocol
from esl.causes import HangupCause
from esl.errors import (AuthFailed, CommandFailed, ConnectionLost, ESLError, ESLTimeout,
                        EventDecodeError, JobFailed, ProtocolError)
from esl.protocol import Event, Frame

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
READ_SIZE = 1 << 18
# The event queue holds the events of one read per item (at most READ_SIZE bytes of frames),
# so it is bounded in bytes too: 1000 reads of 256 KiB. Batching keeps the queue's cost off
# each single event.
EVENT_QUEUE_SIZE = 1000
# How long the reader may wait for room in a full event queue before it declares the consumer
# stalled and drops the connection (the inbound client then reconnects and reconciles).
EVENT_QUEUE_PUT_TIMEOUT_S = 5.0

# Longest stretch the reader may parse without letting the event loop iterate.
BUSY_SLICE_S = 0.005

EventHandler = Callable[[Event], None]


class CooperativeSlicer:
    """Yield points for a loop that may find work ready every time it looks (a socket that
    always has data, a queue that is never empty), so that it never yields on its own.

    Yielding costs a hub round trip, so the loop yields only once it has been busy for
    BUSY_SLICE_S, and then with a tiny real sleep: sleep(0) would let ready greenlets run but
    not the loop's timers and I/O polling."""

    __slots__ = ("_busy_since", "_wait_started")

    def __init__(self) -> None:
        self._busy_since = self._wait_started = time.perf_counter()

    def waiting(self) -> None:
        """Call just before a call that may block."""
        self._wait_started = time.perf_counter()

    def woke(self) -> None:
        """Call just after it: if it really blocked, the loop was free and a new stretch starts."""
        now = time.perf_counter()
        if now - self._wait_started > 0.0005:
            self._busy_since = now

    def yield_now(self) -> None:
        if time.perf_counter() - self._busy_since > BUSY_SLICE_S:
            gevent.sleep(0.0005)
            self._busy_since = time.perf_counter()


class Job:
    """A bgapi job: settled by the BACKGROUND_JOB event carrying our Job-UUID."""

    __slots__ = ("job_uuid", "command", "_result")

    def __init__(self, job_uuid: str, command: str) -> None:
        self.job_uuid = job_uuid
        self.command = command
        self._result = gevent.event.AsyncResult()

    def _settle(self, body: str) -> None:
        if self._result.ready():
            return
        if body.startswith("-"):
            self._result.set_exception(JobFailed(self.job_uuid, body, HangupCause.parse(body)))
        else:
            self._result.set(body)

    def _fail(self, exc: ESLError) -> None:
        if not self._result.ready():
            self._result.set_exception(exc)

    def ready(self) -> bool:
        return self._result.ready()

    def wait(self, timeout: float) -> str:
        """The job's result text (`+OK ...`); JobFailed on -ERR, ESLTimeout, ConnectionLost."""
        try:
            return self._result.get(timeout=timeout)
        except gevent.Timeout:
            raise ESLTimeout(f"job {self.job_uuid} ({self.command.split(' ', 1)[0]}) "
                             f"gave no result within {timeout}s") from None

    def link(self, callback: Callable[["Job"], None]) -> None:
        """Call callback(job) in its own greenlet once the job is settled or failed."""
        self._result.rawlink(lambda _result: gevent.spawn(callback, self))

    def exception(self) -> BaseException | None:
        return self._result.exception

    def value(self) -> str | None:
        return self._result.value


class ESLConnection:
    """An authenticated or outbound Event Socket connection over a connected socket."""

    def __init__(self, sock: socket.socket, *, name: str = "esl",
                 timeout: float = DEFAULT_TIMEOUT_S,
                 on_event: EventHandler | None = None,
                 on_close: Callable[["ESLConnection", ESLError], None] | None = None,
                 event_queue_size: int = EVENT_QUEUE_SIZE) -> None:
        self.name = name
        self.timeout = timeout
        self._sock = sock
        self._sock.settimeout(None)  # waits are bounded by gevent.Timeout, per operation
        self._parser = protocol.FrameParser()
        self._write_lock = gevent.lock.Semaphore()
        self._pending: collections.deque[tuple[str, gevent.event.AsyncResult]] = collections.deque()
        self._jobs: dict[str, Job] = {}
        self._events: gevent.queue.Queue = gevent.queue.Queue(maxsize=event_queue_size)
        self._on_event = on_event
        self._on_close = on_close
        self._greeting = gevent.event.AsyncResult()
        self._closed = gevent.event.Event()
        self.close_reason: ESLError | None = None
        self.disconnect_notice: Frame | None = None
        self.events_received = 0
        self.events_undecodable = 0
        self._reader = gevent.spawn(self._read_loop)
        self._dispatcher = gevent.spawn(self._dispatch_loop)

    # -- life cycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def wait_closed(self, timeout: float | None = None) -> bool:
        return self._closed.wait(timeout)

    @property
    def peer_address(self) -> str | None:
        """The other end's IP address (None once the socket is gone)."""
        try:
            return self._sock.getpeername()[0]
        except (OSError, IndexError, TypeError):
            return None

    def wait_dispatched(self, timeout: float) -> bool:
        """After close: wait until every event received has been handed to the handler."""
        self._dispatcher.join(timeout)
        return self._dispatcher.dead

    def close(self, reason: ESLError | None = None) -> None:
        """Close the socket and fail every pending request and job. Idempotent."""
        if self._closed.is_set():
            return
        reason = reason or ConnectionLost(f"{self.name}: closed")
        self.close_reason = reason
        self._closed.set()
        try:
            self._sock.close()
        except OSError:
            pass
        while self._pending:
            _, result = self._pending.popleft()
            result.set_exception(reason)
        for job in list(self._jobs.values()):
            job._fail(reason)
        self._jobs.clear()
        if not self._greeting.ready():
            self._greeting.set_exception(reason)
        if gevent.getcurrent() is not self._reader:
            self._reader.kill(block=False)
        try:
            # Wake the dispatcher so that it ends as soon as the events already received are
            # handed over (an outbound session's waits end on that, not on a poll).
            self._events.put_nowait([])
        except gevent.queue.Full:
            pass              # it has batches to deliver and checks for the close after them
        if self._on_close is not None:
            gevent.spawn(self._on_close, self, reason)

    # -- reading ------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        slicer = CooperativeSlicer()
        try:
            while True:
                slicer.waiting()
                data = self._sock.recv(READ_SIZE)
                slicer.woke()
                if not data:
                    detail = "after disconnect-notice" if self.disconnect_notice else "by peer"
                    self._parser.close()
                    self.close(ConnectionLost(f"{self.name}: connection closed {detail}"))
                    return
                batch = [event for frame in self._parser.feed(data)
                         if (event := self._route(frame)) is not None]
                if batch:
                    try:
                        self._events.put(batch, timeout=EVENT_QUEUE_PUT_TIMEOUT_S)
                    except gevent.queue.Full:
                        self.close(ConnectionLost(f"{self.name}: event consumer stalled, queue full"))
                        return
                slicer.yield_now()
        except ProtocolError as exc:
            self.close(ConnectionLost(f"{self.name}: protocol error: {exc}"))
        except OSError as exc:
            self.close(ConnectionLost(f"{self.name}: {exc}"))
        except Exception as exc:  # noqa: BLE001
            # A reader that died silently would leave the connection "open" but deaf: no events,
            # pending requests failing only at their timeouts, no reconnect. Whatever broke, the
            # stream can no longer be trusted: close it, so every pending request and job fails
            # at once and the inbound client reconnects and reconciles.
            log.exception("%s: reader failed; closing the connection", self.name)
            self.close(ConnectionLost(f"{self.name}: reader failed: {type(exc).__name__}: {exc}"))

    def _route(self, frame: Frame) -> Event | None:
        """Settle the reply or job a frame answers; return the event it carries, if any."""
        content_type = frame.content_type
        if frame.is_event:
            try:
                event = protocol.decode_event(frame)
            except EventDecodeError as exc:
                # One bad event loses nothing else: the framing is intact.
                self.events_undecodable += 1
                log.warning("%s: dropped undecodable event: %s", self.name, exc)
                return None
            self.events_received += 1
            if event.name == "BACKGROUND_JOB":
                job_uuid = event.get("Job-UUID")
                # A JSON event may carry any JSON value here; only a string can be our id (a
                # list would not even hash). Anything else is a malformed event: dropped.
                if job_uuid is not None and not isinstance(job_uuid, str):
                    self.events_undecodable += 1
                    log.warning("%s: dropped BACKGROUND_JOB whose Job-UUID is not a string: %r",
                                self.name, job_uuid)
                    return None
                job = self._jobs.pop(job_uuid or "", None)
                if job is not None:
                    job._settle(event.body or "")
            return event
        if content_type in (protocol.COMMAND_REPLY, protocol.API_RESPONSE):
            if self._pending:
                _, result = self._pending.popleft()
                result.set(frame)
            else:
                log.warning("%s: reply with no pending request: %r", self.name, frame.headers)
        elif content_type == protocol.AUTH_REQUEST:
            if not self._greeting.ready():
                self._greeting.set(frame)
        elif content_type == protocol.DISCONNECT_NOTICE:
            # With linger the channel's last events still follow; FreeSWITCH closes the socket.
            self.disconnect_notice = frame
        elif content_type == protocol.RUDE_REJECTION:
            self.close(ConnectionLost(f"{self.name}: rejected by FreeSWITCH ACL: "
                                      f"{(frame.body_text() or '').strip()}"))
        elif content_type == protocol.LOG_DATA:
            log.debug("%s: log: %s", self.name, (frame.body_text() or "").rstrip())
        else:
            log.warning("%s: ignored frame of type %r", self.name, content_type)
        return None

    def _dispatch_loop(self) -> None:
        slicer = CooperativeSlicer()
        while True:
            slicer.yield_now()
            if self._closed.is_set() and self._events.empty():
                return  # every event received before the close was delivered
            try:
                slicer.waiting()
                batch = self._events.get(timeout=0.5)
                slicer.woke()
            except gevent.queue.Empty:
                continue
            handler = self._on_event
            if handler is None:
                continue
            for event in batch:
                try:
                    handler(event)
                except Exception:  # a handler's bug must not end event delivery for the connection
                    log.exception("%s: event handler failed on %s", self.name, event.name)

    # -- writing ------------------------------------------------------------------------------

    def _send(self, data: bytes, description: str, expect_reply: bool,
              timeout: float | None) -> gevent.event.AsyncResult | None:
        if self._closed.is_set():
            raise self.close_reason or ConnectionLost(f"{self.name}: closed")
        timeout = self.timeout if timeout is None else timeout
        result = gevent.event.AsyncResult() if expect_reply else None
        with self._write_lock:
            if self._closed.is_set():
                raise self.close_reason or ConnectionLost(f"{self.name}: closed")
            if result is not None:
                self._pending.append((description, result))
            try:
                with gevent.Timeout(timeout, ESLTimeout(f"{self.name}: send of {description} timed out")):
                    self._sock.sendall(data)
            except ESLTimeout as exc:
                self.close(exc)
                raise
            except OSError as exc:
                lost = ConnectionLost(f"{self.name}: send failed: {exc}")
                self.close(lost)
                raise lost from exc
        return result

    def _wait_reply(self, result: gevent.event.AsyncResult, description: str, timeout: float | None) -> Frame:
        timeout = self.timeout if timeout is None else timeout
        try:
            return result.get(timeout=timeout)
        except gevent.Timeout:
            exc = ESLTimeout(f"{self.name}: no reply to {description} within {timeout}s")
            self.close(exc)
            raise exc from None

    def request(self, line: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                *, timeout: float | None = None) -> Frame:
        """Send one command and return its reply frame (command/reply or api/response)."""
        description = line.split(" ", 1)[0] if not line.startswith("auth ") else "auth"
        result = self._send(protocol.encode_command(line, headers, body), description, True, timeout)
        return self._wait_reply(result, description, timeout)

    def command(self, line: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                *, timeout: float | None = None) -> str:
        """A command whose command/reply must be +OK; returns the Reply-Text."""
        reply = self.request(line, headers, body, timeout=timeout).reply_text
        if not reply.startswith("+OK"):
            raise CommandFailed(line if not line.startswith("auth ") else "auth", reply)
        return reply

    # -- authentication -----------------------------------------------------------------------

    def authenticate(self, password: str, *, timeout: float | None = None) -> None:
        """Wait for auth/request and answer it; AuthFailed when the password is refused."""
        timeout = self.timeout if timeout is None else timeout
        try:
            self._greeting.get(timeout=timeout)
        except gevent.Timeout:
            exc = ESLTimeout(f"{self.name}: no auth/request within {timeout}s")
            self.close(exc)
            raise exc from None
        reply = self.request(f"auth {password}", timeout=timeout).reply_text
        if not reply.startswith("+OK"):
            self.close(AuthFailed(f"{self.name}: {reply or 'auth refused'}"))
            raise AuthFailed(f"{self.name}: {reply or 'auth refused'}")

    # -- api, bgapi, events -------------------------------------------------------------------

    def api(self, command: str, *, timeout: float | None = None, check: bool = True) -> str:
        """Run an api command inline; its text. CommandFailed on -ERR/-USAGE when check is set."""
        body = self.request(f"api {command}", timeout=timeout).body_text() or ""
        if check and (body.startswith("-ERR") or body.startswith("-USAGE")):
            raise CommandFailed(command, body.strip())
        return body

    def bgapi(self, command: str, *, job_uuid: str | None = None, timeout: float | None = None) -> Job:
        """Start a background api command with our own Job-UUID; returns the Job to wait on."""
        job = Job(job_uuid or str(uuid.uuid4()), command)
        self._jobs[job.job_uuid] = job
        try:
            reply = self.request(f"bgapi {command}", {"Job-UUID": job.job_uuid}, timeout=timeout)
        except ESLError:
            self._jobs.pop(job.job_uuid, None)
            raise
        if not reply.reply_text.startswith("+OK"):
            self._jobs.pop(job.job_uuid, None)
            raise CommandFailed(command, reply.reply_text)
        returned = reply.headers.get("Job-UUID")
        if returned and returned != job.job_uuid:
            # An old switch that ignores our Job-UUID: correlation on our id is impossible.
            self._jobs.pop(job.job_uuid, None)
            raise ProtocolError(f"bgapi answered Job-UUID {returned}, not ours {job.job_uuid}")
        return job

    def forget_job(self, job: Job) -> None:
        """Stop tracking a job whose caller gave up on it: a late result is then just an event."""
        self._jobs.pop(job.job_uuid, None)

    def subscribe(self, events: Iterable[str] = ("ALL",), *, fmt: str = "json",
                  timeout: float | None = None) -> str:
        names = list(events)
        if "ALL" not in names and "BACKGROUND_JOB" not in names:
            names.append("BACKGROUND_JOB")  # bgapi results arrive as events
        return self.command(f"event {fmt} {' '.join(names)}", timeout=timeout)

    def filter(self, header: str, value: str, *, timeout: float | None = None) -> str:
        return self.command(f"filter {header} {value}", timeout=timeout)

    def sendmsg(self, uuid_: str | None, headers: dict[str, str], body: bytes | None = None,
                *, timeout: float | None = None) -> str:
        line = f"sendmsg {uuid_}" if uuid_ else "sendmsg"
        return self.command(line, headers, body, timeout=timeout)

    def execute(self, uuid_: str | None, app: str, arg: str = "", *, event_lock: bool = False,
                run_async: bool = False, loops: int | None = None, event_uuid: str | None = None,
                timeout: float | None = None) -> str:
        """sendmsg call-command execute; returns our Event-UUID, echoed as Application-UUID."""
        event_uuid = event_uuid or str(uuid.uuid4())
        headers = {"call-command": "execute", "execute-app-name": app}
        if arg:
            headers["execute-app-arg"] = arg
        if event_lock:
            headers["event-lock"] = "true"
        if run_async:
            headers["async"] = "true"
        if loops is not None:
            headers["loops"] = str(loops)
        headers["Event-UUID"] = event_uuid
        self.sendmsg(uuid_, headers, timeout=timeout)
        return event_uuid

    def hangup(self, uuid_: str | None, cause: HangupCause = HangupCause.NORMAL_CLEARING,
               *, timeout: float | None = None) -> str:
        return self.sendmsg(uuid_, {"call-command": "hangup", "hangup-cause": cause.name}, timeout=timeout)

    def unicast(self, uuid_: str, *, local_ip: str, local_port: int, remote_ip: str, remote_port: int,
                native: bool = False, timeout: float | None = None) -> str:
        """Start unicast audio of a parked leg to our UDP receiver (L16 unless native)."""
        headers = {"call-command": "unicast", "local-ip": local_ip, "local-port": str(local_port),
                   "remote-ip": remote_ip, "remote-port": str(remote_port), "transport": "udp"}
        if native:
            headers["flags"] = "native"
        return self.sendmsg(uuid_, headers, timeout=timeout)


def connect(host: str, port: int, *, timeout: float = DEFAULT_TIMEOUT_S, name: str | None = None,
            **kwargs) -> ESLConnection:
    """Open a TCP connection (bounded by timeout) and wrap it; authentication is separate."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ConnectionLost(f"cannot connect to {host}:{port}: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return ESLConnection(sock, name=name or f"{host}:{port}", timeout=timeout, **kwargs)
