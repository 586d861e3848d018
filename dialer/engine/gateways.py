"""Gateways (SIP trunks) and the limits the engine keeps per gateway: a calls-per-second token
bucket (in Redis, shared by every engine, when the engine has Redis), a channel cap per engine,
and failover to the next gateway on causes that point at the trunk."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import redis

from dialer.errors import ConfigError, StorageError
from dialer.rediskeys import CPS_BUCKET
from esl.causes import GATEWAY_FAILOVER_CAUSES, HangupCause


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; take() never waits."""

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float | None = None, now: float | None = None) -> None:
        if rate <= 0:
            raise ConfigError("calls per second must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._tokens = self.burst
        self._stamp = time.monotonic() if now is None else now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def take(self, now: float | None = None) -> bool:
        self._refill(time.monotonic() if now is None else now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until a token is available."""
        self._refill(time.monotonic() if now is None else now)
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self.rate


@dataclass
class Gateway:
    name: str
    max_channels: int = 100
    calls_per_second: float = 10.0
    endpoint: str = "sofia/gateway/{gateway}/{number}"
    in_use: int = 0
    bucket: TokenBucket = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or " " in self.name:
            raise ConfigError(f"bad gateway name {self.name!r}")
        if self.max_channels < 1:
            raise ConfigError(f"gateway {self.name}: max_channels must be at least 1")
        if "{number}" not in self.endpoint:
            raise ConfigError(f"gateway {self.name}: endpoint must contain {{number}}")
        self.bucket = TokenBucket(self.calls_per_second)

    def dial_string(self, number: str) -> str:
        return self.endpoint.format(gateway=self.name, number=number)


# A token bucket kept in Redis, so that every engine dialing through a gateway draws on one
# calls-per-second budget. The script runs atomically on the server with the server's clock
# (TIME), so engines' clocks do not matter.
_SHARED_BUCKET = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local taken = 0
if tokens >= 1 then tokens = tokens - 1; taken = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], 60000)
return taken
"""


class SharedTokenBucket:
    """The calls-per-second budget of one gateway, shared by every engine through Redis.
    take() raises StorageError when Redis cannot answer: the caller places no call."""

    def __init__(self, client, gateway: str, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ConfigError("calls per second must be positive")
        self.client = client
        self.key = CPS_BUCKET.format(gateway=gateway)
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._script = client.register_script(_SHARED_BUCKET)

    def take(self, now: float | None = None) -> bool:
        try:
            return bool(self._script(keys=[self.key], args=[self.rate, self.burst]))
        except redis.RedisError as exc:
            raise StorageError(f"shared calls-per-second budget unavailable: {exc}") from exc


class GatewayPool:
    """The campaign's gateways in priority order."""

    def __init__(self, gateways: list[Gateway], redis_client=None) -> None:
        if not gateways:
            raise ConfigError("a campaign needs at least one gateway")
        self.gateways = gateways
        if redis_client is not None:
            for gateway in gateways:
                gateway.bucket = SharedTokenBucket(redis_client, gateway.name, gateway.calls_per_second)

    def acquire(self, exclude: frozenset[str] = frozenset(), now: float | None = None) -> Gateway | None:
        """The first gateway with a free channel and a calls-per-second token, reserved."""
        for gateway in self.gateways:
            if gateway.name in exclude or gateway.in_use >= gateway.max_channels:
                continue
            if gateway.bucket.take(now):
                gateway.in_use += 1
                return gateway
        return None

    def release(self, gateway: Gateway) -> None:
        gateway.in_use = max(0, gateway.in_use - 1)

    @property
    def free_channels(self) -> int:
        return sum(max(0, g.max_channels - g.in_use) for g in self.gateways)

    @property
    def calls_per_second(self) -> float:
        return sum(g.calls_per_second for g in self.gateways)

    @staticmethod
    def should_fail_over(cause: HangupCause | None) -> bool:
        """Causes that say the trunk failed, not the called party: try the next gateway."""
        return cause in GATEWAY_FAILOVER_CAUSES
