"""The one tree of typed errors raised by the dialer's libraries.

Every package (esl, amd, pacing, compliance, storage, engine) derives its errors from
DialerError, so a caller can catch the project's failures without a bare except.
"""


class DialerError(Exception):
    """Root of every error the project raises on purpose."""


class ConfigError(DialerError):
    """A setting, URL or parameter is missing or malformed."""


class StorageError(DialerError):
    """PostgreSQL or Redis could not do what was asked."""


class MigrationError(StorageError):
    """A schema migration failed or the migration history is inconsistent."""
