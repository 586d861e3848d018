"""PostgreSQL (system of record) and Redis (shared live state) connections.

Migrations are the numbered SQL files in dialer/migrations/, applied in order inside one
transaction each and recorded in schema_migrations; an advisory lock keeps two engines from
migrating at once. Redis connections carry socket timeouts and a retry policy with exponential
backoff, after redis-py's own Retry/Backoff objects.
"""
from __future__ import annotations

import hashlib
from importlib import resources

import psycopg
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from dialer import config
from dialer.errors import MigrationError, StorageError

_MIGRATION_LOCK_KEY = 0x6469616C6572  # "dialer"
CONNECT_TIMEOUT_S = 5


def connect_db(url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a PostgreSQL connection with a connect timeout; StorageError when it cannot."""
    try:
        return psycopg.connect(url or config.database_url(), autocommit=autocommit,
                               connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as exc:
        raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) pairs from dialer/migrations, ordered by file name."""
    folder = resources.files("dialer") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def migrate(url: str | None = None) -> list[str]:
    """Apply every migration not yet applied; return the versions applied now."""
    applied_now = []
    with connect_db(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())")
            done = dict(conn.execute("SELECT version, checksum FROM schema_migrations").fetchall())
            for version, sql in migration_files():
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in done:
                    if done[version] != checksum:
                        raise MigrationError(f"migration {version} changed after it was applied")
                    continue
                try:
                    with conn.transaction():
                        conn.execute(sql)
                        conn.execute("INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)",
                                     (version, checksum))
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {version} failed: {exc}") from exc
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return applied_now


def connect_redis(url: str | None = None, *, timeout_s: float = 2.0, retries: int = 3,
                  decode: bool = True) -> redis.Redis:
    """A Redis client with socket timeouts and retries with exponential backoff on connection errors."""
    return redis.Redis.from_url(
        url or config.redis_url(),
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
        decode_responses=decode,
    )


def check_redis(client: redis.Redis) -> None:
    try:
        client.ping()
    except redis.RedisError as exc:
        raise StorageError(f"cannot reach Redis: {exc}") from exc
