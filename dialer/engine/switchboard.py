"""The engine's FreeSWITCH nodes: one persistent inbound connection per node, events routed to
the call that owns the channel by the origination_uuid we gave it.

A call stays on the node that placed it: every later command for it (unicast, bridge,
playback, kill) goes to that node. Nodes are chosen by fewest live calls.
"""
from __future__ import annotations

import logging
import socket
from typing import Callable

from dialer.config import FreeswitchNode
from esl.connection import Job
from esl.errors import ESLError
from esl.inbound import InboundClient
from esl.protocol import Event

log = logging.getLogger(__name__)

# The events the engine acts on (BACKGROUND_JOB is added by subscribe()).
ENGINE_EVENTS = ("CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
                 "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE",
                 "PLAYBACK_STOP", "DTMF")

EventCallback = Callable[[Event], None]


def originate_command(call_uuid: str, dial_string: str, variables: dict[str, str], app: str = "&park()") -> str:
    """`originate {vars}endpoint &app()`: values are quoted so commas or spaces stay inside."""
    def quote(value: str) -> str:
        text = str(value)
        if any(c in text for c in ",{}'\n\r"):
            if "'" in text or "\n" in text or "\r" in text:
                raise ValueError(f"unsafe channel variable value {text!r}")
            return f"'{text}'"
        return text
    pairs = {"origination_uuid": call_uuid, **variables}
    inner = ",".join(f"{name}={quote(value)}" for name, value in pairs.items())
    if " " in dial_string:
        raise ValueError(f"dial string must not contain spaces: {dial_string!r}")
    return f"originate {{{inner}}}{dial_string} {app}"


class Switchboard:
    def __init__(self, nodes: list[FreeswitchNode], *, timeout: float = 10.0,
                 on_reconcile: Callable[[str, list[dict[str, str]]], None] | None = None) -> None:
        self._watchers: dict[str, EventCallback] = {}
        self._on_reconcile = on_reconcile
        self.clients: dict[str, InboundClient] = {}
        self.live_calls: dict[str, int] = {}
        # Each node's IP address: its unicast audio comes from there (it binds its side of the
        # stream to it), and so does its dialplan's `socket` connection.
        self.addresses: dict[str, str] = {node.name: _address_of(node.host) for node in nodes}
        for node in nodes:
            self.clients[node.name] = InboundClient(
                node.host, node.port, node.password, events=ENGINE_EVENTS, event_format="json",
                on_event=self._route, on_reconcile=self._reconciled, timeout=timeout, name=node.name)
            self.live_calls[node.name] = 0
        self.unrouted_events = 0

    def start(self) -> "Switchboard":
        for client in self.clients.values():
            client.start()
        return self

    def stop(self) -> None:
        for client in self.clients.values():
            client.stop()

    def wait_connected(self, timeout: float) -> bool:
        return all(client.wait_connected(timeout) for client in self.clients.values())

    def _reconciled(self, client: InboundClient, rows: list[dict[str, str]]) -> None:
        if self._on_reconcile is not None:
            self._on_reconcile(client.name, rows)

    # -- event routing ------------------------------------------------------------------------

    def watch(self, channel_uuid: str, callback: EventCallback) -> None:
        self._watchers[channel_uuid] = callback

    def unwatch(self, channel_uuid: str) -> None:
        self._watchers.pop(channel_uuid, None)

    def _route(self, event: Event) -> None:
        callback = self._watchers.get(event.unique_id)
        if callback is None:
            self.unrouted_events += 1
            return
        callback(event)

    def deliver_lost(self, channel_uuid: str) -> None:
        """Tell a call's owner that its channel is gone although no hangup event came (it ended
        while the node was unreachable): a CHANNEL_HANGUP_COMPLETE without timing variables."""
        self._route(Event({"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": channel_uuid,
                           "Hangup-Cause": "UNKNOWN", "variable_dialer_lost": "true"}))

    # -- commands -----------------------------------------------------------------------------

    def pick_node(self, among=None, load: dict[str, int] | None = None) -> str | None:
        """The connected node (of `among`, when given) with the fewest live calls (plus `load`)."""
        connected = [name for name, client in self.clients.items()
                     if client.connected and (among is None or name in among)]
        load = load or {}
        return (min(connected, key=lambda name: (self.live_calls[name] + load.get(name, 0), name))
                if connected else None)

    def node_at(self, address: str | None) -> str | None:
        """The node whose address this is (a dialplan hook's peer), when exactly one has it."""
        names = [name for name, ip in self.addresses.items() if ip == address]
        return names[0] if len(names) == 1 else None

    def client(self, node: str) -> InboundClient:
        return self.clients[node]

    def originate(self, node: str, call_uuid: str, dial_string: str, variables: dict[str, str],
                  app: str = "&park()") -> Job:
        return self.clients[node].bgapi(originate_command(call_uuid, dial_string, variables, app),
                                        job_uuid=call_uuid)

    def api(self, node: str, command: str, **kwargs) -> str:
        return self.clients[node].api(command, **kwargs)

    def try_api(self, node: str, command: str) -> str | None:
        """An api command whose failure is logged, not raised (cleanup paths)."""
        try:
            return self.clients[node].api(command, check=False)
        except ESLError as exc:
            log.warning("%s: %s failed: %s", node, command.split(" ", 1)[0], exc)
            return None


def _address_of(host: str) -> str:
    try:
        return socket.gethostbyname(host)
    except OSError:
        log.warning("FreeSWITCH node %s: address not resolved; using the name as given", host)
        return host
