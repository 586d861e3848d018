"""The web app's interface to the engine over Redis (docs/redis-api.md).

Commands arrive on the stream `dialer:commands`, read by the consumer group `engines`; each is
validated against its published JSON Schema (dialer/webapi/schemas/), acted on once per
request id, acknowledged only after it took effect, and answered on a reply stream.
"""
from dialer.errors import DialerError


class WebApiError(DialerError):
    """A command that is refused; `code` is the machine-readable reason in the error reply."""

    def __init__(self, code: str, message: str, details: object = None, command=None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.command = command      # the refused command, when its envelope was sound

    def to_dict(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return error
