"""Frequency caps and quiet-period locks, checked and counted in one atomic step (Redis Lua).

Counters are sorted sets of attempt ids scored by time (sliding windows): Fla. Stat. 501.616(6)
and its OK/MD twins (3 calls per 24 h per number and subject), Reg F 12 CFR 1006.14(b)(2)
(7 calls in 7 days per person per debt), 47 CFR 64.1200(a)(3) (3 exempt prerecorded calls in
30 days). Locks are keys with an expiry set by call outcomes: 7 days after a conversation about
a debt, 72 h after an abandoned call and the rest of the day after an AMD machine result (Ofcom),
12 months after a "no" (RCW 19.158.040). The script checks every counter and lock and, only if
none blocks and the caller asks to commit, adds the attempt to every counter: two engines can
never both take the last slot. Every allowed call also enters a per-number 24 h attempt log, so
the counter store is consulted on every decision and its absence always blocks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import redis

from dialer.errors import StorageError

_CHECK_AND_COUNT = """
local now = tonumber(ARGV[1])
local commit = ARGV[2] == '1'
local member = ARGV[3]
local ncounters = tonumber(ARGV[4])
local counts = {}
local blocked = {}
for i = 1, ncounters do
  local window = tonumber(ARGV[3 + 2 * i])
  local limit = tonumber(ARGV[4 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[i])
  counts[i] = n
  if limit >= 0 and n >= limit then blocked[#blocked + 1] = i end
end
for j = ncounters + 1, #KEYS do
  local expiry = tonumber(redis.call('GET', KEYS[j]) or '0')
  counts[j] = math.max(0, expiry - now)
  if expiry > now then blocked[#blocked + 1] = j end
end
if commit and #blocked == 0 then
  for i = 1, ncounters do
    redis.call('ZADD', KEYS[i], now, member)
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + 2 * i]))
  end
end
return {counts, blocked}
"""


class CounterCheck(NamedTuple):
    rule_id: str
    key: str
    limit: int            # -1: count only, never block
    window_ms: int


class LockCheck(NamedTuple):
    rule_id: str
    key: str


@dataclass(frozen=True)
class CounterResult:
    counts: dict[str, int]            # rule id -> calls in window (locks: remaining ms)
    blocked: tuple[str, ...]          # rule ids


def counter_key(rule_id: str, part: str) -> str:
    return f"cmp:c:{rule_id}:{part}"


def lock_key(rule_id: str, part: str) -> str:
    return f"cmp:l:{rule_id}:{part}"


class RedisCounters:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._script = client.register_script(_CHECK_AND_COUNT)

    def check_and_count(self, counters: list[CounterCheck], locks: list[LockCheck], now_ms: int,
                        member: str, commit: bool) -> CounterResult:
        keys = [c.key for c in counters] + [lk.key for lk in locks]
        args: list = [now_ms, "1" if commit else "0", member, len(counters)]
        for c in counters:
            args += [c.window_ms, c.limit]
        try:
            counts, blocked = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc
        names = [c.rule_id for c in counters] + [lk.rule_id for lk in locks]
        labels = [c.rule_id for c in counters] + [f"{lk.rule_id}:lock_ms" for lk in locks]
        return CounterResult({labels[i]: int(n) for i, n in enumerate(counts)},
                             tuple(dict.fromkeys(names[i - 1] for i in blocked)))

    def set_lock(self, key: str, now_ms: int, ttl_ms: int) -> None:
        # The value is the expiry on the decision clock; the key's own TTL only cleans up.
        try:
            self.client.set(key, str(now_ms + ttl_ms), px=max(1, ttl_ms))
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc

    def add(self, keys: list[str], at_ms: int, member: str) -> None:
        """Put an attempt back into counters (rebuild); counters expire on their own windows."""
        try:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.zadd(key, {member: at_ms})
            pipe.execute()
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc

    def uncount(self, key: str, member: str) -> None:
        try:
            self.client.zrem(key, member)
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc


class MemoryCounters:
    """The same semantics in one process: for dry runs and benchmarks (not shared between engines)."""

    def __init__(self):
        self.sets: dict[str, dict[str, int]] = {}
        self.locks: dict[str, int] = {}

    def check_and_count(self, counters: list[CounterCheck], locks: list[LockCheck], now_ms: int,
                        member: str, commit: bool) -> CounterResult:
        counts: dict[str, int] = {}
        blocked: list[str] = []
        for c in counters:
            members = self.sets.setdefault(c.key, {})
            for m in [m for m, t in members.items() if t <= now_ms - c.window_ms]:
                del members[m]
            counts[c.rule_id] = len(members)
            if 0 <= c.limit <= len(members):
                blocked.append(c.rule_id)
        for lk in locks:
            expiry = self.locks.get(lk.key)
            if expiry is not None and expiry > now_ms:
                counts[f"{lk.rule_id}:lock_ms"] = expiry - now_ms
                blocked.append(lk.rule_id)
        if commit and not blocked:
            for c in counters:
                self.sets[c.key][member] = now_ms
        return CounterResult(counts, tuple(dict.fromkeys(blocked)))

    def set_lock(self, key: str, now_ms: int, ttl_ms: int) -> None:
        self.locks[key] = now_ms + ttl_ms

    def add(self, keys: list[str], at_ms: int, member: str) -> None:
        for key in keys:
            self.sets.setdefault(key, {})[member] = at_ms

    def uncount(self, key: str, member: str) -> None:
        self.sets.get(key, {}).pop(member, None)
