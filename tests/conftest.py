"""Shared fixtures: real PostgreSQL and Redis started by scripts/test.sh (or given by
DATABASE_URL / REDIS_URL), and the shared ESL captures."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from dialer import config, storage

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "esl-captures"


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    if not CAPTURES.is_dir():
        pytest.fail(f"shared captures not found at {CAPTURES}")
    return CAPTURES


def _scratch_database(migrated: bool):
    """A fresh database for one test (with the schema or without), dropped afterwards."""
    base = config.database_url()
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(base, dbname=name)
    try:
        if migrated:
            storage.migrate(url)
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url():
    """A fresh, fully migrated database for one test, dropped afterwards."""
    yield from _scratch_database(migrated=True)


@pytest.fixture
def empty_db_url():
    """A fresh database without the dialer's schema (as before `dialer db migrate`)."""
    yield from _scratch_database(migrated=False)


@pytest.fixture
def db(db_url):
    with storage.connect_db(db_url) as conn:
        yield conn


@pytest.fixture
def redis_url():
    """A Redis URL on a logical database (1-15) claimed for this test alone and flushed.

    Several test runs may share one Redis server, so each test claims a database number with
    SET NX on a lease key in database 0 and gives it back afterwards.
    """
    base = (os.environ.get("REDIS_URL") or config.DEFAULT_REDIS_URL).rsplit("/", 1)[0]
    control = storage.connect_redis(base + "/0")
    token = uuid.uuid4().hex
    deadline = time.monotonic() + 30
    while True:
        for number in range(1, 16):
            if control.set(f"test-db-lease:{number}", token, nx=True, ex=300):
                break
        else:
            if time.monotonic() > deadline:
                pytest.fail("no free Redis test database within 30 s")
            time.sleep(0.05)
            continue
        break
    url = f"{base}/{number}"
    client = storage.connect_redis(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if control.get(f"test-db-lease:{number}") == token:
            control.delete(f"test-db-lease:{number}")
        control.close()


@pytest.fixture
def redis_client(redis_url):
    client = storage.connect_redis(redis_url)
    yield client
    client.close()
