"""Sans-I/O core of the FreeSWITCH Event Socket protocol: bytes in, frames and events out.

Framing follows libesl (libs/esl/src/esl.c, esl_recv_event): a frame is header lines
`Name: value\\n` up to a blank line, each split at its first ':' with the spaces after it
skipped and its value URL-decoded on its own ('%XX' only; '+' stays '+', as esl_url_decode
does), then exactly Content-Length bytes of body. Text is decoded only after framing, since a
TCP read can end inside a multi-byte character; invalid UTF-8 is replaced, never fatal.

Event bodies (mod_event_socket.c, switch_event.c):
- text/event-plain: the body is itself a header block, values URL-encoded one by one, then an
  optional inner Content-Length and inner body (BACKGROUND_JOB results, log text).
- text/event-json: one JSON object, values not encoded, inner body under `_body`, array
  headers as JSON arrays.
- text/event-xml: <event><headers><Name>url-encoded value</Name>...</headers>
  <Content-Length>n</Content-Length><body>text</body></event> (switch_event_xmlize).
For a header that appears twice, the first value is kept; the inner Content-Length and the
JSON `_body` are not event headers.

Client commands (the other direction) are one command line, optional header lines, a blank
line, and a body when a Content-Length header is given (sendmsg). The same framing parses
them on the server side (our simulated switch).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from esl.errors import CommandInjection, EventDecodeError, ProtocolError, TruncatedFrame

# Content types FreeSWITCH sends.
AUTH_REQUEST = "auth/request"
COMMAND_REPLY = "command/reply"
API_RESPONSE = "api/response"
EVENT_PLAIN = "text/event-plain"
EVENT_JSON = "text/event-json"
EVENT_XML = "text/event-xml"
DISCONNECT_NOTICE = "text/disconnect-notice"
RUDE_REJECTION = "text/rude-rejection"
LOG_DATA = "log/data"
EVENT_TYPES = frozenset({EVENT_PLAIN, EVENT_JSON, EVENT_XML})

MAX_HEADER_BLOCK = 1 << 20       # no real header block comes near 1 MiB
MAX_CONTENT_LENGTH = 256 << 20   # `show channels as json` on a loaded switch stays far below this

_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def url_decode(value: str) -> str:
    """Decode %XX escapes only, as esl_url_decode does ('+' stays '+'); bad UTF-8 is replaced."""
    return percent_decode(value) if "%" in value else value


def url_encode(value: str) -> str:
    """Encode a value the way switch_url_encode does for plain events: SWITCH_URL_UNSAFE
    (`\\r\\n #%&+:;<=>?@[\\]^`{|}"`), control characters and non-ASCII bytes are escaped;
    the captures show e.g. `fd00%3A%3A2`, `%2BOK%0A`, `0000000000%40127.0.0.1`."""
    return quote(value, safe="!$'()*,/")


def _is_ascii_number(text: str) -> bool:
    """A decimal number of ASCII digits only (str.isdigit alone accepts '²' and '١٠')."""
    return text.isascii() and text.isdigit()


def _parse_header_lines(text: str, decode: bool) -> dict[str, str]:
    """Parse `Name: value` lines as libesl does: split at the first ':', skip the spaces after
    it, ignore a line with no ':'. For a repeated name the first value wins."""
    try:
        # Fast path for what FreeSWITCH writes: every line exactly `Name: value`.
        if ":  " in text:
            raise ValueError("extra spaces after a colon")
        pairs = [line.split(": ", 1) for line in text.split("\n")]
        headers = dict(pairs)
        if len(headers) != len(pairs):
            raise ValueError("a repeated header")
    except ValueError:
        headers = {}
        for line in text.split("\n"):
            name, colon, value = line.partition(":")
            if colon and name not in headers:
                headers[name] = value.lstrip(" ")
    if decode and "%" in text:
        _decode_values(headers)
    return headers


# The escapes switch_url_encode writes for ASCII characters (SWITCH_URL_UNSAFE plus control
# characters events carry). Replacing these with str.replace is several times faster than
# urllib's unquote; unquote still decodes whatever remains (UTF-8 sequences, lower-case hex).
_ASCII_ESCAPES = tuple((f"%{ord(c):02X}", c) for c in ' :@+;=&?#[]"<>{}|^`\\\r\n\t,/!$\'()*~')


def percent_decode(text: str) -> str:
    """%XX decoding exactly as unquote(text, errors="replace"), faster on FreeSWITCH's output."""
    if "%25" in text:            # "%2541" must give "%41", not "A": leave such text to unquote
        return unquote(text, encoding="utf-8", errors="replace")
    for escape, char in _ASCII_ESCAPES:
        if escape in text:
            text = text.replace(escape, char)
    if "%" in text:
        text = unquote(text, encoding="utf-8", errors="replace")
    return text


def _decode_values(headers: dict[str, str]) -> None:
    """URL-decode, in place, every value that has an escape, each value on its own.

    A channel event has dozens of encoded values, so they are joined with NUL and decoded in
    one pass. NUL cannot occur in an encoded value FreeSWITCH writes (its strings are C
    strings), and a decoded %00 would end the value in libesl too; a value with %00 or a raw
    NUL falls back to one call per value so that the split stays exact.
    """
    names = [name for name, value in headers.items() if "%" in value]
    if not names:
        return
    joined = "\0".join(headers[name] for name in names)
    # A raw NUL in a value (garbage on the wire) would shift the split by one and hand a value
    # to the wrong header: more NULs than separators also means one value per call.
    if "%00" in joined or joined.count("\0") != len(names) - 1:
        for name in names:
            headers[name] = percent_decode(headers[name])
        return
    for name, value in zip(names, percent_decode(joined).split("\0")):
        headers[name] = value


@dataclass(slots=True)
class Frame:
    """One Event Socket frame: decoded outer headers and the raw body (None when absent)."""

    headers: dict[str, str]
    body: bytes | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def is_event(self) -> bool:
        return self.content_type in EVENT_TYPES

    def body_text(self) -> str | None:
        return None if self.body is None else self.body.decode("utf-8", errors="replace")


class FrameParser:
    """Incremental frame parser: feed it whatever a read returned, get complete frames back.

    Frames split across reads are held until complete; several frames in one read all come
    out. A malformed header block raises ProtocolError and the parser must be discarded with
    its connection. `close()` raises TruncatedFrame when bytes of an unfinished frame remain.
    """

    __slots__ = ("_buffer", "_pending_headers", "_pending_length", "max_content_length")

    def __init__(self, max_content_length: int = MAX_CONTENT_LENGTH) -> None:
        self._buffer = bytearray()
        self._pending_headers: dict[str, str] | None = None
        self._pending_length = 0
        self.max_content_length = max_content_length

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        buffer = self._buffer
        start = 0
        try:
            while True:
                if self._pending_headers is None:
                    # libesl skips stray blank lines between frames.
                    while start < len(buffer) and buffer[start] == 0x0A:
                        start += 1
                    end = buffer.find(b"\n\n", start)
                    if end < 0:
                        if len(buffer) - start > MAX_HEADER_BLOCK:
                            raise ProtocolError("header block larger than 1 MiB without a blank line")
                        break
                    block = bytes(buffer[start:end]).decode("utf-8", errors="replace")
                    start = end + 2
                    headers = _parse_header_lines(block, decode=True)
                    length_text = headers.get("Content-Length")
                    if length_text is None:
                        frames.append(Frame(headers))
                        continue
                    # ASCII digits only: int() would also take '1_0', '+10', ' 10' and other
                    # scripts' digits, which no switch writes (libesl's atoi would read '1_0'
                    # as 1 and lose the framing).
                    if not _is_ascii_number(length_text):
                        raise ProtocolError(f"Content-Length is not a number: {length_text!r}")
                    length = int(length_text)
                    if length < 0 or length > self.max_content_length:
                        raise ProtocolError(f"Content-Length out of range: {length}")
                    if length == 0:
                        frames.append(Frame(headers, b""))
                        continue
                    self._pending_headers, self._pending_length = headers, length
                if len(buffer) - start < self._pending_length:
                    break
                body = bytes(buffer[start:start + self._pending_length])
                start += self._pending_length
                frames.append(Frame(self._pending_headers, body))
                self._pending_headers = None
        except ProtocolError as exc:
            exc.frames = frames       # the complete frames before the bad bytes
            raise
        if start:
            del buffer[:start]
        return frames

    def close(self) -> None:
        """Call at end of stream: raises TruncatedFrame when a frame was left unfinished."""
        if self._pending_headers is not None:
            raise TruncatedFrame(
                f"stream ended {self._pending_length - len(self._buffer)} bytes short of a "
                f"{self._pending_headers.get('Content-Type', 'frame')} body")
        if self._buffer.strip(b"\n"):
            raise TruncatedFrame(f"stream ended inside a header block ({len(self._buffer)} bytes)")


@dataclass(slots=True)
class Event:
    """A FreeSWITCH event: its headers (str, or list for JSON array headers) and inner body."""

    headers: dict[str, str | list[str]]
    body: str | None = None

    @property
    def name(self) -> str:
        return self.headers.get("Event-Name", "")  # type: ignore[return-value]

    @property
    def subclass(self) -> str:
        return self.headers.get("Event-Subclass", "")  # type: ignore[return-value]

    @property
    def unique_id(self) -> str:
        return self.headers.get("Unique-ID", "")  # type: ignore[return-value]

    def get(self, name: str, default=None):
        return self.headers.get(name, default)

    def variable(self, name: str, default=None):
        return self.headers.get("variable_" + name, default)


def decode_event(frame: Frame) -> Event:
    """Decode the event carried by a text/event-* frame; EventDecodeError when it is malformed."""
    content_type = frame.content_type
    text = frame.body_text() or ""
    if content_type == EVENT_PLAIN:
        return _decode_plain_event(text)
    if content_type == EVENT_JSON:
        return _decode_json_event(text)
    if content_type == EVENT_XML:
        return _decode_xml_event(text)
    raise EventDecodeError(f"not an event frame: {content_type!r}")


def _decode_plain_event(text: str) -> Event:
    block, separator, rest = text.partition("\n\n")
    headers = _parse_header_lines(block, decode=True)
    inner_length = headers.pop("Content-Length", None)
    body = None
    if inner_length is not None and separator:
        try:
            body = rest[: int(inner_length)] if _is_ascii_number(inner_length) else rest
        except ValueError:
            body = rest
    return Event(headers, body)


def _first_value_wins(pairs: list[tuple[str, object]]) -> dict:
    """JSON object hook: for a repeated key keep the first value, as libesl does (it adds every
    member as a header and esl_event_get_header returns the first) and as the plain and XML
    decoders do; capture 04 repeats Hangup-Cause and Channel-Write-Codec-*."""
    data = dict(pairs)
    if len(data) == len(pairs):
        return data
    data = {}
    for name, value in pairs:
        data.setdefault(name, value)
    return data


# One decoder for every event: json.loads with a hook would build a new decoder per call.
_JSON_EVENT_DECODER = json.JSONDecoder(object_pairs_hook=_first_value_wins)


def _decode_json_event(text: str) -> Event:
    try:
        data = _JSON_EVENT_DECODER.decode(text)
    except (ValueError, RecursionError, TypeError) as exc:
        # RecursionError: deeply nested arrays ('[' x 50 000) exhaust the decoder's stack;
        # the event is malformed like any other, and must not reach the reader as a crash.
        raise EventDecodeError(f"event-json body is not JSON: {type(exc).__name__}: {exc}") from None
    if not isinstance(data, dict):
        raise EventDecodeError("event-json body is not a JSON object")
    body = data.pop("_body", None)
    data.pop("Content-Length", None)
    # FreeSWITCH writes every value as a JSON string or an array of strings (cJSON_CreateString),
    # so the object is used as it is: re-checking each value would halve the parse rate.
    return Event(data, body if body is None or isinstance(body, str) else json.dumps(body))


def _decode_xml_event(text: str) -> Event:
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as exc:
        raise EventDecodeError(f"event-xml body is not XML: {exc}") from None
    headers: dict[str, str | list[str]] = {}
    container = root.find("headers")
    for element in (container if container is not None else []):
        if element.tag not in headers:
            headers[element.tag] = url_decode(element.text or "")
    body_element = root.find("body")
    return Event(headers, None if body_element is None else (body_element.text or ""))


# ---------------------------------------------------------------------------------------------
# Client -> server commands


class HeaderMap(dict):
    """Command headers as a server reads them: names keep their spelling, lookups ignore case.

    mod_event_socket reads a command's headers through switch_event_get_header, which compares
    names case-insensitively: `content-length`, `Call-Command` and `CALL-COMMAND` are one header.
    For a repeated name (in any case) the first value is the one looked up."""

    __slots__ = ("_folded",)

    def __init__(self, items=()) -> None:
        super().__init__(items)
        self._folded: dict[str, str] = {}
        for name in self:
            self._folded.setdefault(name.lower(), name)

    def __setitem__(self, name: str, value: str) -> None:
        existing = self._folded.setdefault(name.lower(), name)
        super().__setitem__(existing, value)

    def _key(self, name):
        return self._folded.get(name.lower(), name) if isinstance(name, str) else name

    def __getitem__(self, name):
        return super().__getitem__(self._key(name))

    def __contains__(self, name) -> bool:
        return super().__contains__(self._key(name))

    def get(self, name, default=None):
        return super().get(self._key(name), default)


@dataclass(slots=True)
class Command:
    """A command as a server receives it: the command line, header lines and optional body.
    `headers` is a HeaderMap when the CommandParser built it (case-insensitive lookups)."""

    line: str
    headers: dict[str, str] = field(default_factory=HeaderMap)
    body: bytes | None = None

    @property
    def name(self) -> str:
        return self.line.split(" ", 1)[0].lower()

    @property
    def args(self) -> str:
        parts = self.line.split(" ", 1)
        return parts[1] if len(parts) > 1 else ""


# Commands whose argument is a secret: a refused line is named without it, since error
# messages end up in logs (a trailing newline from a secrets file is the usual cause).
_SECRET_COMMANDS = ("auth", "userauth")


def _check_line(text: str, what: str) -> str:
    if "\n" in text or "\r" in text:
        shown = text
        words = text.split(None, 1)
        if what == "command" and words and words[0].lower() in _SECRET_COMMANDS:
            shown = f"{words[0]} <secret withheld>"
        raise CommandInjection(f"{what} contains a line break: {shown!r}")
    return text


def encode_command(line: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> bytes:
    """Encode one command. Line breaks in the line or header values are refused, since they
    would let data (a phone number, a caller name) inject commands onto the socket."""
    parts = [_check_line(line, "command")]
    for name, value in (headers or {}).items():
        parts.append(f"{_check_line(name, 'header name')}: {_check_line(str(value), f'header {name}')}")
    if body is not None:
        parts.append(f"Content-Length: {len(body)}")
        return ("\n".join(parts) + "\n\n").encode() + body
    return ("\n".join(parts) + "\n\n").encode()


class CommandParser:
    """Server-side incremental parser of client commands (the simulated switch uses it)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pending: Command | None = None
        self._pending_length = 0

    def feed(self, data: bytes) -> list[Command]:
        self._buffer += data
        commands: list[Command] = []
        while True:
            if self._pending is None:
                # mod_event_socket tolerates CRLF line ends from hand-typed telnet sessions.
                while self._buffer[:1] in (b"\n", b"\r"):
                    del self._buffer[:1]
                end = self._buffer.find(b"\n\n")
                crlf = self._buffer.find(b"\r\n\r\n")
                if crlf >= 0 and (end < 0 or crlf < end):
                    end, skip = crlf, 4
                else:
                    skip = 2
                if end < 0:
                    if len(self._buffer) > MAX_HEADER_BLOCK:
                        raise ProtocolError("command larger than 1 MiB without a blank line")
                    break
                block = bytes(self._buffer[:end]).decode("utf-8", errors="replace").replace("\r", "")
                del self._buffer[: end + skip]
                line, _, rest = block.partition("\n")
                command = Command(line.strip(), HeaderMap(_parse_header_lines(rest, decode=False)))
                length_text = command.headers.get("Content-Length")
                if not length_text:
                    commands.append(command)
                    continue
                if not _is_ascii_number(length_text) or int(length_text) > MAX_CONTENT_LENGTH:
                    raise ProtocolError(f"bad command Content-Length: {length_text!r}")
                self._pending, self._pending_length = command, int(length_text)
            if len(self._buffer) < self._pending_length:
                break
            self._pending.body = bytes(self._buffer[: self._pending_length])
            del self._buffer[: self._pending_length]
            commands.append(self._pending)
            self._pending = None
        return commands


# ---------------------------------------------------------------------------------------------
# Server -> client encoding (the simulated switch speaks with these)


def encode_frame(headers: list[tuple[str, str]] | dict[str, str], body: bytes | str | None = None,
                 *, length_first: bool = False) -> bytes:
    """Encode an outer frame. FreeSWITCH puts Content-Length before Content-Type on event
    frames and after it on api/response: `length_first` picks the order."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers)
    if isinstance(body, str):
        body = body.encode()
    if body is not None:
        length = ("Content-Length", str(len(body)))
        items = [length, *items] if length_first else [*items, length]
    text = "".join(f"{name}: {value}\n" for name, value in items) + "\n"
    return text.encode() + (body or b"")


def serialize_event_plain(headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """switch_event_serialize: URL-encoded values, then inner Content-Length and body."""
    text = "".join(f"{name}: {url_encode(value)}\n" for name, value in headers)
    if body:
        encoded = body.encode()
        return text.encode() + f"Content-Length: {len(encoded)}\n\n".encode() + encoded
    return (text + "\n").encode()


def serialize_event_json(headers: list[tuple[str, str | list[str]]], body: str | None = None) -> bytes:
    """switch_event_serialize_json: unencoded values, arrays as arrays, body under _body."""
    data: dict[str, str | list[str]] = {}
    for name, value in headers:
        data.setdefault(name, value)
    if body is not None:
        data["Content-Length"] = str(len(body.encode()))
        data["_body"] = body
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def serialize_event_xml(headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """switch_event_xmlize: one element per header with its URL-encoded value."""
    root = ElementTree.Element("event")
    container = ElementTree.SubElement(root, "headers")
    for name, value in headers:
        ElementTree.SubElement(container, name).text = url_encode(value)
    if body:
        ElementTree.SubElement(root, "Content-Length").text = str(len(body.encode()))
        ElementTree.SubElement(root, "body").text = body
    return ElementTree.tostring(root, encoding="utf-8", xml_declaration=False)


def encode_event(content_type: str, headers: list[tuple[str, str]], body: str | None = None) -> bytes:
    """A whole event frame as mod_event_socket writes it (Content-Length first)."""
    serializers = {EVENT_PLAIN: serialize_event_plain, EVENT_JSON: serialize_event_json,
                   EVENT_XML: serialize_event_xml}
    payload = serializers[content_type](headers, body)
    return encode_frame([("Content-Type", content_type)], payload, length_first=True)
