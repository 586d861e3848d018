"""Entry point of the `dialer` command (click).

Each package contributes its own command group (esl, amd, pacing, dnc, ...); this module only
assembles them, so the packages stay independent of one another.
"""
from __future__ import annotations

import importlib

import click

from dialer.errors import DialerError


@click.group()
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
    ("esl.cli", "esl"),
    ("dialer.campaign_cli", "campaign"),
    ("dialer.campaign_cli", "leads_group"),
    ("dialer.fsconf.cli", "freeswitch"),
]

for _module, _attr in _COMMANDS:
    main.add_command(getattr(importlib.import_module(_module), _attr))


if __name__ == "__main__":
    main()
