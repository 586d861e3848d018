"""Typed errors of the Event Socket layer, part of the project's one error tree."""
from __future__ import annotations

from dialer.errors import DialerError


class ESLError(DialerError):
    """Root of every Event Socket error."""


class ProtocolError(ESLError):
    """Bytes that are not a valid Event Socket frame; the stream cannot be trusted after it.
    `frames`: the complete frames a parser had read before the bad bytes."""

    frames: list | tuple = ()


class TruncatedFrame(ProtocolError):
    """The stream ended inside a frame."""


class EventDecodeError(ProtocolError):
    """A complete frame whose event body could not be decoded (bad JSON or XML)."""


class CommandInjection(ESLError, ValueError):
    """A command, header or value would carry a newline onto the wire."""


class ConnectionLost(ESLError):
    """The socket closed or failed; every request pending on it fails with this."""


class ESLTimeout(ESLError):
    """A reply did not arrive in time; the connection is closed, since a late reply could
    otherwise reach the wrong caller."""


class AuthFailed(ESLError):
    """FreeSWITCH refused the password."""


class CommandFailed(ESLError):
    """A command/reply or api/response that starts with -ERR (or -USAGE)."""

    def __init__(self, command: str, reply_text: str) -> None:
        super().__init__(f"{command.split(' ', 1)[0]}: {reply_text}")
        self.command = command
        self.reply_text = reply_text


class JobFailed(ESLError):
    """A bgapi job whose BACKGROUND_JOB result is -ERR; carries the hangup cause when it names one."""

    def __init__(self, job_uuid: str, result: str, cause=None) -> None:
        super().__init__(f"job {job_uuid}: {result.strip()}")
        self.job_uuid = job_uuid
        self.result = result
        self.cause = cause
