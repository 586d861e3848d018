"""A persistent inbound Event Socket client for one FreeSWITCH node.

It keeps one authenticated connection up: after any loss it reconnects with exponential
backoff and full jitter (so a fleet of engines does not reconnect in lockstep), subscribes to
the same events and filters again, then reconciles: it asks `show channels as json` and hands
the live channels to the application, since events that fired while we were away are lost.
"""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from typing import Callable, Iterable

import gevent
import gevent.event

from esl.connection import DEFAULT_TIMEOUT_S, ESLConnection, EventHandler, Job, connect
from esl.errors import AuthFailed, ConnectionLost, ESLError, ProtocolError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: sleep uniform(0, min(cap, base * 2**attempt))."""

    base_s: float = 0.1
    cap_s: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap_s, self.base_s * (2 ** min(attempt, 30))))


def parse_show_channels(text: str) -> list[dict[str, str]]:
    """Rows of `show channels as json` ({"row_count": 0} when there are none)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(f"show channels as json: not JSON: {exc}") from None
    rows = data.get("rows", []) if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ProtocolError("show channels as json: no rows list")
    return rows


class InboundClient:
    """Keeps a connection to one node; api/bgapi/sendmsg go through the current connection."""

    def __init__(self, host: str, port: int, password: str, *,
                 events: Iterable[str] = ("ALL",), event_format: str = "json",
                 filters: Iterable[tuple[str, str]] = (),
                 on_event: EventHandler | None = None,
                 on_reconcile: Callable[["InboundClient", list[dict[str, str]]], None] | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S, backoff: Backoff = Backoff(),
                 name: str | None = None, rng: random.Random | None = None) -> None:
        self.host, self.port, self._password = host, port, password
        self.name = name or f"{host}:{port}"
        self.events = list(events)
        self.event_format = event_format
        self.filters = list(filters)
        self.on_event = on_event
        self.on_reconcile = on_reconcile
        self.timeout = timeout
        self.backoff = backoff
        self._rng = rng or random.Random()
        self._conn: ESLConnection | None = None
        self._connected = gevent.event.Event()
        self._stopping = False
        self._supervisor: gevent.Greenlet | None = None
        self.connects = 0
        self.reconnects = 0
        self.last_error: ESLError | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> "InboundClient":
        if self._supervisor is None:
            self._supervisor = gevent.spawn(self._supervise)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection; returns once the events already received were handled."""
        self._stopping = True
        if self._conn is not None:
            self._conn.close(ConnectionLost(f"{self.name}: client stopped"))
            self._conn.wait_dispatched(timeout)
        if self._supervisor is not None:
            self._supervisor.kill(timeout=timeout)
        self._connected.clear()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def connected(self) -> bool:
        return self._connected.is_set() and self._conn is not None and not self._conn.closed

    def _supervise(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                conn = self._open()
            except AuthFailed as exc:
                # A wrong password will not fix itself quickly; keep trying, but slowly.
                self.last_error = exc
                log.error("%s: %s", self.name, exc)
                gevent.sleep(self.backoff.cap_s)
                continue
            except ESLError as exc:
                self.last_error = exc
                delay = self.backoff.delay(attempt, self._rng)
                attempt += 1
                log.warning("%s: connect failed (%s); retrying in %.2fs", self.name, exc, delay)
                gevent.sleep(delay)
                continue
            except Exception as exc:  # noqa: BLE001
                # Nothing may end the supervisor but stop(): a client that gave up would stay
                # disconnected for good. Logged with its traceback, then retried like a failure.
                self.last_error = ConnectionLost(f"{self.name}: connect failed: {type(exc).__name__}: {exc}")
                delay = self.backoff.delay(attempt, self._rng)
                attempt += 1
                log.exception("%s: connect failed unexpectedly; retrying in %.2fs", self.name, delay)
                gevent.sleep(delay)
                continue
            attempt = 0
            self._conn = conn
            self._connected.set()
            conn.wait_closed()
            self._connected.clear()
            self.last_error = conn.close_reason
            if not self._stopping:
                self.reconnects += 1
                log.warning("%s: connection lost (%s); reconnecting", self.name, conn.close_reason)

    def _open(self) -> ESLConnection:
        conn = connect(self.host, self.port, timeout=self.timeout, name=self.name,
                       on_event=self._deliver)
        try:
            conn.authenticate(self._password)
            conn.subscribe(self.events, fmt=self.event_format)
            for header, value in self.filters:
                conn.filter(header, value)
            rows = parse_show_channels(conn.api("show channels as json"))
        except ESLError as exc:
            conn.close(exc if isinstance(exc, ConnectionLost) else ConnectionLost(str(exc)))
            raise
        except Exception as exc:  # noqa: BLE001 - never leave an authenticated socket behind
            conn.close(ConnectionLost(f"{self.name}: {type(exc).__name__}: {exc}"))
            raise
        self.connects += 1
        if self.on_reconcile is not None:
            try:
                self.on_reconcile(self, rows)
            except Exception as exc:  # noqa: BLE001 - application code
                # The application has not taken over the live channels: this connection must
                # not be used as if it had. Close it and let the supervisor retry with backoff
                # (an escaped exception would end the supervisor for good).
                log.exception("%s: reconcile callback failed; closing the connection", self.name)
                lost = ConnectionLost(f"{self.name}: reconcile failed: {type(exc).__name__}: {exc}")
                conn.close(lost)
                raise lost from exc
        return conn

    def _deliver(self, event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- requests -----------------------------------------------------------------------------

    def connection(self, timeout: float | None = None) -> ESLConnection:
        """The live connection, waiting up to timeout for one; ConnectionLost when none."""
        if not self._connected.wait(self.timeout if timeout is None else timeout) or self._conn is None:
            raise ConnectionLost(f"{self.name}: not connected ({self.last_error})")
        return self._conn

    def api(self, command: str, **kwargs) -> str:
        return self.connection().api(command, **kwargs)

    def bgapi(self, command: str, **kwargs) -> Job:
        return self.connection().bgapi(command, **kwargs)

    def sendmsg(self, uuid_: str, headers: dict[str, str], **kwargs) -> str:
        return self.connection().sendmsg(uuid_, headers, **kwargs)

    def execute(self, uuid_: str, app: str, arg: str = "", **kwargs) -> str:
        return self.connection().execute(uuid_, app, arg, **kwargs)
