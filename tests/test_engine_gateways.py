"""Gateway limits: the local token bucket, channel caps, failover causes, and the calls-per-second
budget shared by several engines through Redis."""
from __future__ import annotations

import time

import pytest

from dialer import storage
from dialer.engine.gateways import Gateway, GatewayPool, SharedTokenBucket, TokenBucket
from dialer.errors import ConfigError, StorageError
from esl.causes import HangupCause


def test_token_bucket_rate_and_burst():
    bucket = TokenBucket(rate=10, burst=2, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [True, True, False]
    assert bucket.wait_time(0.0) == pytest.approx(0.1)
    assert bucket.take(0.1) and not bucket.take(0.1)
    with pytest.raises(ConfigError):
        TokenBucket(rate=0)


def test_pool_respects_channels_priority_and_exclusion():
    pool = GatewayPool([Gateway("a", max_channels=1, calls_per_second=100), Gateway("b", max_channels=1, calls_per_second=100)])
    first, second = pool.acquire(), pool.acquire()
    assert (first.name, second.name) == ("a", "b") and pool.acquire() is None
    pool.release(first)
    assert pool.acquire(exclude=frozenset({"a"})) is None and pool.acquire().name == "a"
    assert GatewayPool.should_fail_over(HangupCause.NORMAL_TEMPORARY_FAILURE)
    assert not GatewayPool.should_fail_over(HangupCause.USER_BUSY)
    with pytest.raises(ConfigError):
        Gateway("bad name")


def test_two_engines_share_one_calls_per_second_budget(redis_url):
    engine_a, engine_b = storage.connect_redis(redis_url), storage.connect_redis(redis_url)
    bucket_a = SharedTokenBucket(engine_a, "trunk1", rate=5, burst=5)
    bucket_b = SharedTokenBucket(engine_b, "trunk1", rate=5, burst=5)
    taken = sum(bucket.take() for bucket in (bucket_a, bucket_b) for _ in range(10))
    assert taken == 5                      # one budget, not one each
    time.sleep(0.45)
    refilled = sum(bucket_b.take() for _ in range(5))
    assert 1 <= refilled <= 3              # about 5 per second came back


def test_shared_budget_fails_closed_when_redis_is_down():
    dead = storage.connect_redis("redis://127.0.0.1:1/0", timeout_s=0.2, retries=1)
    bucket = SharedTokenBucket(dead, "trunk1", rate=5)
    with pytest.raises(StorageError):
        bucket.take()
