"""The engine's side of AMD: one FreeSWITCH-side UDP port per call (the receiver tells calls
apart by the datagram's source address), the call registered with the unicast receiver, and
its decision and beep delivered to the call flow."""
from __future__ import annotations

import collections
from dataclasses import dataclass

from amd.audio import Codec
from amd.params import AmdParams
from amd.receiver import UnicastReceiver
from dialer.errors import ConfigError, DialerError


@dataclass(frozen=True)
class Verdict:
    result: str
    cause: str
    decision_ms: int


class ReceiverTap:
    """Hands out FreeSWITCH-side ports from a range and registers calls with the receiver.

    Ports are reused in FIFO order, so a port just freed (whose last datagrams may still be in
    flight) is the last to be handed out again. Engines that share a FreeSWITCH node need
    disjoint ranges (DIALER_UNICAST_PORTS)."""

    def __init__(self, receiver: UnicastReceiver, switch_ip: str, ports: range) -> None:
        if len(ports) < 1:
            raise ConfigError("the unicast port range is empty")
        self.receiver = receiver
        self.switch_ip = switch_ip
        self._free: collections.deque[int] = collections.deque(ports)
        self._in_use: dict[str, int] = {}
        self.params: dict[str, AmdParams] = {}      # per campaign

    @property
    def address(self) -> tuple[str, int]:
        return self.receiver.address[0], self.receiver.server_port

    def open(self, call_uuid: str, on_decision, on_beep, campaign: str | None = None) -> tuple[str, int, str, int]:
        if not self._free:
            raise ConfigError("no free unicast port: widen DIALER_UNICAST_PORTS")
        port = self._free.popleft()
        try:
            self.receiver.register(
                call_uuid, (self.switch_ip, port), Codec.L16, 8000, params=self.params.get(campaign or ""),
                on_decision=lambda _stream, d: on_decision(Verdict(d.result.value, d.cause.value, d.decision_ms)),
                on_done=lambda _stream, result: on_beep(result.beep_end_ms))
        except DialerError:
            self._free.append(port)
            raise
        self._in_use[call_uuid] = port
        host, our_port = self.address
        return self.switch_ip, port, host, our_port

    def silence_after_speech_ms(self, call_uuid: str) -> int | None:
        return self.receiver.silence_after_speech_ms(call_uuid)

    def close(self, call_uuid: str) -> None:
        port = self._in_use.pop(call_uuid, None)
        if port is None:
            return
        self.receiver.unregister(call_uuid)
        self._free.append(port)
