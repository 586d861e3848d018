"""A database without the dialer's tables: every command says to migrate, no traceback."""
from __future__ import annotations

import uuid

import psycopg
import pytest
from click.testing import CliRunner

from cli import main
from dialer import config


@pytest.fixture
def empty_db_url():
    base = config.database_url()
    name = f"test_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield psycopg.conninfo.make_conninfo(base, dbname=name)
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("args", [["campaign", "list"], ["status"], ["report", "--campaign", "x"],
                                  ["dnc", "check", "+12125550127"]])
def test_commands_on_an_unmigrated_database_say_to_migrate(empty_db_url, redis_url, args):
    env = {"DATABASE_URL": empty_db_url, "REDIS_URL": redis_url}
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code != 0
    assert "run `dialer db migrate`" in result.output, result.output
    assert "Traceback" not in result.output
    migrated = CliRunner().invoke(main, ["db", "migrate"], env=env)
    assert migrated.exit_code == 0 and "migrations applied: 0001" in migrated.output
