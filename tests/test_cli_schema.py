"""A database without the dialer's tables: every command says to migrate, no traceback."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from cli import main


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
