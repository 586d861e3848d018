"""Where the engine finds its servers: DATABASE_URL, REDIS_URL and FREESWITCH_URL.

FREESWITCH_URL is `esl://:PASSWORD@HOST:PORT`, comma-separated for several nodes. When it is
unset the embedded default, the simulated FreeSWITCH, is used. A host that cannot be one (a
placeholder left from `dialer freeswitch render`, spaces, `<>`) is refused with a message saying
what to put there: bad input gets a clear error, not a DNS failure at every reconnect.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from dialer.errors import ConfigError

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:54329/dialer"
DEFAULT_REDIS_URL = "redis://127.0.0.1:63799/0"
DEFAULT_ESL_PASSWORD = "ClueCon"
DEFAULT_ESL_PORT = 8021
# The host `dialer freeswitch render` writes when FreeSWITCH listens on every interface: not a
# valid host name (underscores), and refused by name below, so an .env nobody filled in stops
# the engine with a message instead of a DNS failure at every reconnect (QA7 fsconf F4).
ESL_HOST_PLACEHOLDER = "FILL_IN_FREESWITCH_HOST_ADDRESS"
# A host name as resolvers take it (letters, digits, '-', '.', and '_' for container names).
_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?")


@dataclass(frozen=True)
class FreeswitchNode:
    host: str
    port: int
    password: str

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


def database_url() -> str:
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def parse_freeswitch_urls(value: str) -> list[FreeswitchNode]:
    """Parse `esl://:PASSWORD@HOST:PORT[,esl://...]` into nodes; raise ConfigError on bad input."""
    nodes = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        split = urlsplit(part)
        if split.scheme != "esl":
            raise ConfigError(f"FREESWITCH_URL entry {part!r}: scheme must be esl://")
        if not split.hostname:
            raise ConfigError(f"FREESWITCH_URL entry {part!r}: no host")
        _check_host(split.hostname)
        try:
            port = split.port or DEFAULT_ESL_PORT
        except ValueError as exc:
            raise ConfigError(f"FREESWITCH_URL entry {part!r}: {exc}") from None
        password = unquote(split.password) if split.password is not None else DEFAULT_ESL_PASSWORD
        nodes.append(FreeswitchNode(split.hostname, port, password))
    if not nodes:
        raise ConfigError("FREESWITCH_URL names no node")
    return nodes


def _check_host(host: str) -> None:
    if host.lower() == ESL_HOST_PLACEHOLDER.lower():
        raise ConfigError(f"FREESWITCH_URL: replace {ESL_HOST_PLACEHOLDER} with the address of the FreeSWITCH "
                          "host (its Event Socket listens on every interface, so the render could not know "
                          "which address the engine reaches)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.fullmatch(host):
            # e.g. an older render's "<address of this FreeSWITCH host>": a placeholder, not a host
            raise ConfigError(f"FREESWITCH_URL: host {host!r} is neither an IP address nor a host name; "
                              "put the address of the FreeSWITCH host there") from None


def freeswitch_nodes() -> list[FreeswitchNode] | None:
    """The configured nodes, or None when the embedded simulated switch should be used."""
    value = os.environ.get("FREESWITCH_URL")
    return parse_freeswitch_urls(value) if value else None
