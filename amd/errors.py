"""Errors raised by the AMD package, all under dialer.errors.DialerError."""
from __future__ import annotations

from dialer.errors import DialerError


class AmdError(DialerError):
    """Root of the answering-machine-detection errors."""


class AudioFormatError(AmdError):
    """Audio that cannot be decoded: unknown codec, malformed WAV, wrong payload size."""


class ParameterError(AmdError):
    """A detector or campaign parameter is unknown or out of range."""


class ReceiverError(AmdError):
    """The unicast receiver cannot do what was asked (port in use, call already registered)."""
