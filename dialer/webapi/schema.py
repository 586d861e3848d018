"""Command documents checked against the published JSON Schemas (draft 2020-12) in
dialer/webapi/schemas/: envelope.json for the frame, commands/<type>.json for each type's args.
A document that fails either is refused before anything is done with it."""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import jsonschema

from dialer.webapi import WebApiError

MAX_COMMAND_BYTES = 256 * 1024


@dataclass(frozen=True)
class Command:
    request_id: str
    type: str
    args: dict
    reply_to: str | None
    expires_at: float | None = None     # epoch seconds: not carried out after it (answered `expired`)


def _load(path: str) -> dict:
    return json.loads((resources.files("dialer.webapi") / "schemas" / path).read_text(encoding="utf-8"))


@cache
def _validator(path: str) -> jsonschema.protocols.Validator:
    schema = _load(path)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@cache
def command_types() -> tuple[str, ...]:
    folder = resources.files("dialer.webapi") / "schemas" / "commands"
    return tuple(sorted(f.name.removesuffix(".json") for f in folder.iterdir() if f.name.endswith(".json")))


MAX_PROBLEM_CHARS = 300      # a problem quotes the offending value: a huge one is cut


def _problems(validator, document) -> list[str]:
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))]
    return [p if len(p) <= MAX_PROBLEM_CHARS else p[:MAX_PROBLEM_CHARS] + f"... ({len(p)} characters)"
            for p in problems]


MAX_ECHOED_ID = 1024         # a readable but over-long (invalid) request id is still echoed up to this
# the id of a document that cannot be parsed (nested too deep, cut off) when it is the first member
_LEADING_ID = re.compile(r'\s*\{\s*"request_id"\s*:\s*"((?:[^"\\\x00-\x1f]|\\.){1,%d})"' % MAX_ECHOED_ID)


def best_request_id(raw: str | None) -> str | None:
    """The request id of a document that may be malformed, so its error reply can be correlated
    (docs: "with the request id when it can be read"): a string `request_id` member, whatever
    its pattern, up to MAX_ECHOED_ID characters; for a document that does not parse, a
    `request_id` written as its first member."""
    if not raw:
        return None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        match = _LEADING_ID.match(raw)
        if match is None:
            return None
        try:
            request_id = json.loads(f'"{match.group(1)}"')
        except ValueError:
            return None
    else:
        request_id = document.get("request_id") if isinstance(document, dict) else None
    return request_id if isinstance(request_id, str) and 0 < len(request_id) <= MAX_ECHOED_ID else None


def parse_command(raw: str | None) -> Command:
    """The command in a stream entry's `command` field; WebApiError (malformed, unknown_command,
    invalid) when it is not JSON, breaks the envelope, names no known type or has bad args."""
    if raw is None:
        raise WebApiError("malformed", "the stream entry has no `command` field")
    if len(raw.encode()) > MAX_COMMAND_BYTES:
        raise WebApiError("malformed", f"command larger than {MAX_COMMAND_BYTES} bytes")
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:     # RecursionError: nesting too deep to parse
        raise WebApiError("malformed", f"`command` is not JSON: {exc}") from None
    problems = _problems(_validator("envelope.json"), document)
    if problems:
        raise WebApiError("malformed", "the command breaks schemas/envelope.json", problems)
    # the envelope is sound from here: a refusal is answered on its reply_to, with its type
    expires_at = document.get("expires_at")
    if expires_at is not None and not math.isfinite(expires_at):
        raise WebApiError("malformed", "expires_at: must be a finite number of epoch seconds")
    command = Command(document["request_id"], document["type"], document["args"], document.get("reply_to"),
                      expires_at)
    if document["type"] not in command_types():
        raise WebApiError("unknown_command", f"unknown command type {document['type']!r}",
                          {"known": list(command_types())}, command=command)
    problems = _problems(_validator(f"commands/{document['type']}.json"), document["args"])
    if problems:
        raise WebApiError("invalid", f"args break schemas/commands/{document['type']}.json", problems,
                          command=command)
    return command
