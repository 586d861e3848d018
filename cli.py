"""Entry point of the `dialer` command (click).

Each package contributes its own command group (esl, amd, pacing, dnc, ...); this module only
assembles them, so the packages stay independent of one another.
"""
from __future__ import annotations

import sys

# The engine's commands run on gevent: the standard library is patched before anything else
# is imported, since psycopg chooses its wait function (gevent-aware or not) at import time.
_GEVENT_COMMANDS = {"run", "demo", "fake-switch"}
if len(sys.argv) > 1 and sys.argv[1] in _GEVENT_COMMANDS:
    from gevent import monkey

    monkey.patch_all()

import importlib  # noqa: E402

import click  # noqa: E402

from dialer.errors import DialerError  # noqa: E402


def _missing_schema(exc: BaseException | None) -> str | None:
    """The message of a psycopg UndefinedTable error in an exception's cause chain."""
    while exc is not None:
        if type(exc).__name__ == "UndefinedTable" and type(exc).__module__.startswith("psycopg"):
            return str(exc).splitlines()[0]
        exc = exc.__cause__ or exc.__context__
    return None


class _DialerGroup(click.Group):
    """Turns a database without the dialer's tables into one clear instruction, whichever
    command met it first (QA: a fresh database gave raw tracebacks)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            missing = _missing_schema(exc)
            if missing is None:
                raise
            raise click.ClickException(f"the database has no dialer schema ({missing}): "
                                       "run `dialer db migrate` first") from exc


@click.group(cls=_DialerGroup)
def main() -> None:
    """Outbound dialer engine for FreeSWITCH."""


@main.group()
def db() -> None:
    """PostgreSQL schema."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations."""
    from dialer import storage
    try:
        applied = storage.migrate()
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"migrations applied: {', '.join(applied) if applied else 'none pending'}")


# (module, attribute) of each command group or command contributed by a package. A missing
# module is a packaging error and must fail loudly, so imports are not guarded.
_COMMANDS = [
    ("amd.cli", "amd"),
    ("pacing.cli", "simulate"),
    ("esl.fakeswitch.cli", "fake_switch"),
    ("dialer.compliance.cli", "dnc"),
    ("dialer.compliance.cli", "compliance"),
    ("dialer.compliance.cli", "scrub"),
    ("esl.cli", "esl"),
    ("dialer.engine.cli", "run"),
    ("dialer.engine.cli", "demo"),
    ("dialer.agent_cli", "agent"),
    ("dialer.campaign_cli", "campaign"),
    ("dialer.campaign_cli", "leads_group"),
    ("dialer.fsconf.cli", "freeswitch"),
    ("dialer.report_cli", "status"),
    ("dialer.report_cli", "report"),
]

for _module, _attr in _COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":
    main()
