import pytest

from dialer import config, storage
from dialer.errors import ConfigError, StorageError


def test_migrations_recorded_and_idempotent(db_url, db):
    versions = [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [v for v, _ in storage.migration_files()]
    assert storage.migrate(db_url) == []


def test_connect_db_unreachable_raises_storage_error():
    with pytest.raises(StorageError):
        storage.connect_db("postgresql://postgres@127.0.0.1:1/none")


def test_redis_roundtrip_and_unreachable(redis_client):
    redis_client.set("k", "v")
    assert redis_client.get("k") == "v"
    dead = storage.connect_redis("redis://127.0.0.1:1/0", timeout_s=0.2, retries=1)
    with pytest.raises(StorageError):
        storage.check_redis(dead)


def test_parse_freeswitch_urls():
    nodes = config.parse_freeswitch_urls("esl://:s%40cret@10.0.0.5:8021, esl://:pw@fs2")
    assert [(n.host, n.port, n.password) for n in nodes] == [("10.0.0.5", 8021, "s@cret"), ("fs2", 8021, "pw")]
    for bad in ["http://x:1", "esl://", ""]:
        with pytest.raises(ConfigError):
            config.parse_freeswitch_urls(bad)
