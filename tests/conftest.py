"""Shared fixtures: real PostgreSQL and Redis started by scripts/test.sh (or given by
DATABASE_URL / REDIS_URL), and the shared ESL captures."""
from __future__ import annotations

import os
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


@pytest.fixture
def db_url():
    """A fresh, fully migrated database for one test, dropped afterwards."""
    base = config.database_url()
    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(base, dbname=name)
    try:
        storage.migrate(url)
        yield url
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(db_url):
    with storage.connect_db(db_url) as conn:
        yield conn


@pytest.fixture
def redis_client():
    """A Redis client on a flushed logical database (15) for one test."""
    url = os.environ.get("REDIS_URL") or config.DEFAULT_REDIS_URL
    client = storage.connect_redis(url.rsplit("/", 1)[0] + "/15")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()
