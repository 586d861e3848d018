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

A Redis that restarted or was flushed answers, but with every counter at zero: calls over a cap
would pass. So the counters only count once LOADED_KEY says they hold the record (written by
attempts.rebuild_counters() after replaying PostgreSQL's attempts); without it the script
refuses (CountersNotLoaded) and the gate fails closed. A blocked counter also says when its
oldest counted attempt leaves the window, so the lead is requeued for then, not closed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import redis

from dialer.errors import StorageError

LOADED_KEY = "cmp:loaded"
REBUILD_LOCK_KEY = "cmp:rebuilding"

_CHECK_AND_COUNT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOTLOADED the frequency counters hold no record')
end
local now = tonumber(ARGV[1])
local commit = ARGV[2] == '1'
local member = ARGV[3]
local ncounters = tonumber(ARGV[4])
local counts = {}
local frees = {}
local blocked = {}
for i = 1, ncounters do
  local key = KEYS[1 + i]
  local window = tonumber(ARGV[3 + 2 * i])
  local limit = tonumber(ARGV[4 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local n = redis.call('ZCARD', key)
  counts[i] = n
  frees[i] = -1
  if limit >= 0 and n >= limit then
    blocked[#blocked + 1] = i
    if limit > 0 then
      -- the slot frees when the attempt that keeps the count at the limit leaves the window
      local oldest = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
      frees[i] = tonumber(oldest[2]) + window
    end
  end
end
for j = ncounters + 1, #KEYS - 1 do
  local expiry = tonumber(redis.call('GET', KEYS[1 + j]) or '0')
  counts[j] = math.max(0, expiry - now)
  frees[j] = expiry
  if expiry > now then blocked[#blocked + 1] = j end
end
if commit and #blocked == 0 then
  for i = 1, ncounters do
    redis.call('ZADD', KEYS[1 + i], now, member)
    redis.call('PEXPIRE', KEYS[1 + i], tonumber(ARGV[3 + 2 * i]))
  end
end
return {counts, blocked, frees}
"""

# KEYS: the counters attempts go back into, then the keys of the changes. ARGV[1]: how many of
# KEYS are additions; then (time, id) per addition; then (kind, a, b) per change: z = take the
# attempt a out of the counter, l = a lock whose value is a, expiring in b ms.
_APPLY = """
local nadds = tonumber(ARGV[1])
local a = 2
for i = 1, nadds do
  redis.call('ZADD', KEYS[i], ARGV[a], ARGV[a + 1])
  a = a + 2
end
for i = nadds + 1, #KEYS do
  if ARGV[a] == 'z' then
    redis.call('ZREM', KEYS[i], ARGV[a + 1])
  else
    redis.call('SET', KEYS[i], ARGV[a + 1], 'PX', ARGV[a + 2])
  end
  a = a + 3
end
return #KEYS
"""


class CounterCheck(NamedTuple):
    rule_id: str
    key: str
    limit: int            # -1: count only, never block
    window_ms: int


class LockCheck(NamedTuple):
    rule_id: str
    key: str


class CounterChange(NamedTuple):
    """What an outcome does to the store: take an attempt out of a counter, or set a lock."""
    key: str
    member: str | None = None         # the attempt (decision id) to take out of the counter ...
    lock_from_ms: int = 0             # ... or a lock from this time
    lock_ms: int = 0                  # for this long


@dataclass(frozen=True)
class CounterResult:
    counts: dict[str, int]            # rule id -> calls in window (locks: remaining ms)
    blocked: tuple[str, ...]          # rule ids
    frees_ms: dict[str, int] = field(default_factory=dict)   # blocked rule id -> when it passes again


class CountersNotLoaded(StorageError):
    """The counter store answers but does not hold the record of past attempts (a Redis restart
    or flush): its counts would be too low."""


def counter_key(rule_id: str, part: str) -> str:
    return f"cmp:c:{rule_id}:{part}"


def lock_key(rule_id: str, part: str) -> str:
    return f"cmp:l:{rule_id}:{part}"


def _passes_at(frees: list[tuple[str, int]]) -> dict[str, int]:
    """Per blocked rule, when its last blocking key lets a call through (ms); rules whose key
    never does (a limit of 0, reported as -1) are left out."""
    at: dict[str, int] = {}
    never = {rule_id for rule_id, ms in frees if ms < 0}
    for rule_id, ms in frees:
        if rule_id not in never:
            at[rule_id] = max(at.get(rule_id, 0), ms)
    return at


class RedisCounters:
    def __init__(self, client: redis.Redis):
        self.client = client
        self._script = client.register_script(_CHECK_AND_COUNT)
        self._apply = client.register_script(_APPLY)

    def check_and_count(self, counters: list[CounterCheck], locks: list[LockCheck], now_ms: int,
                        member: str, commit: bool) -> CounterResult:
        keys = [LOADED_KEY] + [c.key for c in counters] + [lk.key for lk in locks]
        args: list = [now_ms, "1" if commit else "0", member, len(counters)]
        for c in counters:
            args += [c.window_ms, c.limit]
        try:
            counts, blocked, frees = self._script(keys=keys, args=args)
        except redis.ResponseError as exc:
            if str(exc).startswith("NOTLOADED"):
                raise CountersNotLoaded("the frequency counters hold no record of past calls (Redis restarted"
                                        " or was flushed): they are rebuilt by a running engine or by"
                                        " `dialer compliance rebuild-counters`") from exc
            raise StorageError(f"counter store error: {exc}") from exc
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc
        names = [c.rule_id for c in counters] + [lk.rule_id for lk in locks]
        labels = [c.rule_id for c in counters] + [f"{lk.rule_id}:lock_ms" for lk in locks]
        return CounterResult({labels[i]: int(n) for i, n in enumerate(counts)},
                             tuple(dict.fromkeys(names[i - 1] for i in blocked)),
                             _passes_at([(names[i - 1], int(frees[i - 1])) for i in blocked]))

    def loaded(self) -> str | None:
        """What the last rebuild wrote to the marker, or None when the counters hold no record."""
        try:
            return self.client.get(LOADED_KEY)
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc

    def mark_loaded(self, note: str) -> None:
        try:
            self.client.set(LOADED_KEY, note)
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc

    def try_lock_rebuild(self, owner: str, ttl_ms: int) -> bool:
        """One rebuild at a time across engines; the owner calls again to extend its lock, and
        the lock of a rebuilder that died expires."""
        try:
            if self.client.set(REBUILD_LOCK_KEY, owner, nx=True, px=ttl_ms):
                return True
            return self.client.get(REBUILD_LOCK_KEY) == owner and bool(self.client.pexpire(REBUILD_LOCK_KEY, ttl_ms))
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc

    def unlock_rebuild(self, owner: str) -> None:
        try:
            if self.client.get(REBUILD_LOCK_KEY) == owner:
                self.client.delete(REBUILD_LOCK_KEY)
        except redis.RedisError as exc:
            raise StorageError(f"counter store unavailable: {exc}") from exc

    def apply(self, changes: list[CounterChange], adds: list[tuple[list[str], int, str]] = ()) -> None:
        """Outcomes' changes, and attempts put back into counters (a rebuild: (keys, time, id)),
        in one script call: a rebuild's batch of thousands of rows is one round trip (and one
        command for redis-py to encode). A lock's value is its expiry on the decision clock; the
        key's own TTL only cleans up. Counters expire on their own windows."""
        keys: list[str] = []
        args: list = [0]
        for add_keys, at_ms, member in adds:
            for key in add_keys:
                keys.append(key)
                args += [at_ms, member]
        args[0] = len(keys)
        for change in changes:
            keys.append(change.key)
            if change.member is not None:
                args += ["z", change.member, 0]
            else:
                args += ["l", change.lock_from_ms + change.lock_ms, max(1, change.lock_ms)]
        if not keys:
            return
        try:
            self._apply(keys=keys, args=args)
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
        frees: list[tuple[str, int]] = []
        for c in counters:
            members = self.sets.setdefault(c.key, {})
            for m in [m for m, t in members.items() if t <= now_ms - c.window_ms]:
                del members[m]
            counts[c.rule_id] = len(members)
            if 0 <= c.limit <= len(members):
                blocked.append(c.rule_id)
                times = sorted(members.values())
                frees.append((c.rule_id, times[len(times) - c.limit] + c.window_ms if c.limit > 0 else -1))
        for lk in locks:
            expiry = self.locks.get(lk.key)
            if expiry is not None and expiry > now_ms:
                counts[f"{lk.rule_id}:lock_ms"] = expiry - now_ms
                blocked.append(lk.rule_id)
                frees.append((lk.rule_id, expiry))
        if commit and not blocked:
            for c in counters:
                self.sets[c.key][member] = now_ms
        return CounterResult(counts, tuple(dict.fromkeys(blocked)), _passes_at(frees))

    def loaded(self) -> str | None:
        return "memory"          # one process's counters start with it: nothing to lose

    def mark_loaded(self, note: str) -> None:
        pass

    def try_lock_rebuild(self, owner: str, ttl_ms: int) -> bool:
        return True

    def unlock_rebuild(self, owner: str) -> None:
        pass

    def apply(self, changes: list[CounterChange], adds: list[tuple[list[str], int, str]] = ()) -> None:
        for keys, at_ms, member in adds:
            for key in keys:
                self.sets.setdefault(key, {})[member] = at_ms
        for change in changes:
            if change.member is not None:
                self.uncount(change.key, change.member)
            else:
                self.locks[change.key] = change.lock_from_ms + change.lock_ms

    def uncount(self, key: str, member: str) -> None:
        self.sets.get(key, {}).pop(member, None)
