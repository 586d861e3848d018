"""The engine's side of AMD: one FreeSWITCH-side UDP port per call (the receiver tells calls
apart by the datagram's source address: the node's address and that port), the call registered
with the unicast receiver, and its decision and beep delivered to the call flow."""
from __future__ import annotations

import collections
from dataclasses import dataclass

import redis

from amd.audio import Codec
from amd.params import AmdParams
from amd.receiver import UnicastReceiver
from dialer.errors import ConfigError, DialerError, StorageError
from dialer.rediskeys import UNICAST_BLOCK


@dataclass(frozen=True)
class Verdict:
    result: str
    cause: str
    decision_ms: int


PORT_BLOCK = 500          # ports an engine leases at a time: its concurrent AMD calls per node, with room
PORT_LEASE_S = 30         # renewed every second by the engine's supervision


def port_blocks(ports: range) -> list[range]:
    """The range cut into blocks of PORT_BLOCK (the last one takes the rest; a short range is one)."""
    count = max(1, len(ports) // PORT_BLOCK)
    size = len(ports) // count
    return [ports[i * size:(i + 1) * size if i < count - 1 else len(ports)] for i in range(count)]


class ReceiverTap:
    """Hands out FreeSWITCH-side ports and registers calls with the receiver.

    Each node has its own pool of ports (a port is a resource of the node's host), and its
    calls are registered under its own address: the datagrams come from there. Ports are reused
    in FIFO order, so a port just freed (whose last datagrams may still be in flight) is the last
    to be handed out again. Engines that share a node would ask it for the same ports: with Redis,
    each engine leases one block of the range (lease()), so engines configured with the same
    DIALER_UNICAST_PORTS never collide; without it the whole range is used."""

    def __init__(self, receiver: UnicastReceiver, node_addresses: dict[str, str], ports: range,
                 redis_client=None, owner: str = "") -> None:
        if len(ports) < 1:
            raise ConfigError("the unicast port range is empty")
        self.receiver = receiver
        self.node_addresses = node_addresses
        self._redis = redis_client
        self._owner = owner
        self._blocks = port_blocks(ports)
        self.block: range | None = None              # the ports this engine may use now
        self._free: dict[str, collections.deque[int]] = {node: collections.deque() for node in node_addresses}
        self._in_use: dict[str, tuple[str, int]] = {}
        self.params: dict[str, AmdParams] = {}      # per campaign
        if redis_client is None:
            self._use(ports)

    def lease(self) -> bool:
        """Keep this engine's block of ports, or lease a free one; False when none is free.
        Raises StorageError when Redis does not answer (the block in use is kept meanwhile)."""
        if self._redis is None:
            return True
        try:
            if self.block is not None:
                key = self._key(self.block)
                if self._redis.get(key) == self._owner and self._redis.expire(key, PORT_LEASE_S):
                    return True
            for block in self._blocks:
                if self._redis.set(self._key(block), self._owner, nx=True, ex=PORT_LEASE_S):
                    self._use(block)
                    return True
        except redis.RedisError as exc:
            raise StorageError(f"unicast port lease: {exc}") from exc
        return False

    def release_lease(self) -> None:
        if self._redis is None or self.block is None:
            return
        try:
            if self._redis.get(self._key(self.block)) == self._owner:
                self._redis.delete(self._key(self.block))
        except redis.RedisError:
            pass            # it expires by itself

    @staticmethod
    def _key(block: range) -> str:
        return UNICAST_BLOCK.format(low=block.start, high=block[-1])

    def _use(self, block: range) -> None:
        if block == self.block:
            return
        self.block = block
        busy = set(self._in_use.values())
        for node, free in self._free.items():
            free.clear()
            free.extend(port for port in block if (node, port) not in busy)

    @property
    def address(self) -> tuple[str, int]:
        return self.receiver.address[0], self.receiver.server_port

    def open(self, call_uuid: str, node: str, on_decision, on_beep, campaign: str | None = None,
             rate: int = 8000, ptime_ms: int = 20) -> tuple[str, int, str, int]:
        free = self._free[node]
        if not free:
            raise ConfigError("no free unicast port: widen DIALER_UNICAST_PORTS"
                              if self.block is not None else "no unicast port block leased (Redis)")
        port = free.popleft()
        switch_ip = self.node_addresses[node]
        try:
            self.receiver.register(
                call_uuid, (switch_ip, port), Codec.L16, rate, params=self.params.get(campaign or ""),
                ptime_ms=ptime_ms,
                on_decision=lambda _stream, d: on_decision(Verdict(d.result.value, d.cause.value, d.decision_ms)),
                on_done=lambda _stream, result: on_beep(result.beep_end_ms))
        except DialerError:
            free.append(port)
            raise
        self._in_use[call_uuid] = (node, port)
        host, our_port = self.address
        return switch_ip, port, host, our_port

    def silence_after_speech_ms(self, call_uuid: str) -> int | None:
        return self.receiver.silence_after_speech_ms(call_uuid)

    def close(self, call_uuid: str) -> None:
        in_use = self._in_use.pop(call_uuid, None)
        if in_use is None:
            return
        self.receiver.unregister(call_uuid)
        node, port = in_use
        if self.block is not None and port in self.block:     # not a port of a block given up
            self._free[node].append(port)
