"""The site file (site.toml): what differs between FreeSWITCH installations of the dialer.

Read with tomllib and checked key by key, so that a typo or a dangerous value stops the render
with a message naming the key, instead of producing a configuration FreeSWITCH half-accepts.
Rules that matter for security or for the engine:
- the Event Socket listens on loopback or a private address; the unspecified address (0.0.0.0
  or ::) only with an explicit ACL; a public address never (mod_event_socket gives full control
  of the switch to whoever knows the password, `api system ...` included);
- a listen address other than loopback needs an ACL too: the rendered ACL allows loopback, and a
  socket bound to 10.20.0.5 never sees a loopback client (mod_event_socket.c listener_run
  rejects every address outside apply-inbound-acl), so nobody could connect (QA7 fsconf F1);
- the ACL's networks are private, loopback or link-local (PRIVATE_NETWORKS), like the listen
  address: two /1 entries or any public range would open the Event Socket to the Internet
  behind the password alone (QA7 fsconf F3);
- no value holds `${` or `$${`: FreeSWITCH's XML preprocessor expands $${var} in every file it
  loads (a trunk secret would silently become another credential) and `set` expands ${var} when
  the call runs (${system(...)} runs a shell command) (QA7 fsconf F2);
- the ESL password is never FreeSWITCH's default "ClueCon" and is at least 16 characters; when
  absent a strong one is generated (secrets.token_urlsafe);
- sessions-per-second and max-sessions are at least what the engine's gateways can use, because
  FreeSWITCH refuses an originate above either limit (switch.conf.xml, core session request).
Every option is documented in docs/freeswitch.md.
"""
from __future__ import annotations

import ipaddress
import math
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from dialer.config import ESL_HOST_PLACEHOLDER
from dialer.errors import ConfigError

DEFAULT_ESL_PASSWORD = "ClueCon"       # FreeSWITCH's built-in default: refused
MIN_PASSWORD_LENGTH = 16
VANILLA_SESSIONS_PER_SECOND = 30       # vanilla switch.conf.xml
VANILLA_MAX_SESSIONS = 1000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")
_MODULE = re.compile(r"^mod_[a-z0-9_]+$")
_PROMPT = re.compile(r"^\S+$")         # play_and_get_digits splits its arguments on spaces
_LOGLEVELS = ("debug", "info", "notice", "warning", "err", "crit", "alert")
# Where the Event Socket may listen and who may connect to it: RFC 1918, loopback, link-local
# (RFC 3927, RFC 4291), unique local (RFC 4193). Written out rather than ipaddress's is_private,
# which also counts documentation and reserved ranges (192.0.2.0/24, 240.0.0.0/4) as private.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16",
    "::1/128", "fc00::/7", "fe80::/10"))
_IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")


class SiteError(ConfigError):
    """The site file is unreadable or one of its values is refused; the message says which."""


@dataclass(frozen=True)
class Gateway:
    name: str
    proxy: str
    register: bool
    username: str | None
    password: str | None
    realm: str | None
    from_user: str | None
    from_domain: str | None
    caller_id_in_from: bool
    register_transport: str
    expire_seconds: int
    retry_seconds: int
    ping: int | None
    calls_per_second: float
    max_channels: int


@dataclass(frozen=True)
class Did:
    number: str                        # digits only, no leading +
    campaign: str | None               # None: the engine finds the campaign from the caller


@dataclass(frozen=True)
class Site:
    name: str
    esl_listen_ip: str
    esl_listen_port: int
    esl_password: str
    esl_password_generated: bool
    esl_acl: tuple[str, ...]            # CIDRs allowed besides loopback
    engine_host: str
    engine_socket_port: int
    max_sessions: int
    sessions_per_second: int
    rtp_start_port: int
    rtp_end_port: int
    loglevel: str
    gateways: tuple[Gateway, ...]
    dids: tuple[Did, ...]
    optout_dids: tuple[str, ...]
    trunk_acl: tuple[str, ...]
    agent_login_prefix: str
    agent_id_min_digits: int
    agent_id_max_digits: int
    max_agents: int
    optout_key: str
    optout_menu_tries: int
    optout_wait_ms: int
    customer_park_timeout: int
    prompts: dict[str, str] = field(default_factory=dict)
    avmd: bool = False
    extra_modules: tuple[str, ...] = ()

    @property
    def esl_host_unknown(self) -> bool:
        """Listening on every interface: which address the engine should use is the operator's to say."""
        return ipaddress.ip_address(self.esl_listen_ip).is_unspecified

    def freeswitch_url_with(self, password: str) -> str:
        """FREESWITCH_URL with this password (the CLI prints it with `<password>`). With every
        interface, the host is ESL_HOST_PLACEHOLDER, which dialer.config refuses until it is
        replaced: an unfilled .env stops the engine with a clear error (QA7 fsconf F4)."""
        host = self.esl_listen_ip
        if self.esl_host_unknown:
            host = ESL_HOST_PLACEHOLDER
        elif ":" in host:
            host = f"[{host}]"
        return f"esl://:{password}@{host}:{self.esl_listen_port}"

    @property
    def freeswitch_url(self) -> str:
        """What the engine's FREESWITCH_URL must be (dialer.config parses it)."""
        return self.freeswitch_url_with(quote(self.esl_password, safe=''))

    @property
    def engine_socket(self) -> str:
        """`host:port` for the socket application, which takes the port after the last ':'
        (mod_event_socket.c socket_function), so an IPv6 address goes without brackets."""
        return f"{self.engine_host}:{self.engine_socket_port}"


# Prompt files: key -> default (paths relative to FreeSWITCH's sounds directory, or any
# file/stream string FreeSWITCH's playback accepts).
PROMPT_DEFAULTS = {
    "safe_harbor": "dialer/safe_harbor.wav",
    "voicemail": "dialer/voicemail.wav",
    "optout_menu": "dialer/optout_menu.wav",
    "optout_invalid": "dialer/optout_invalid.wav",
    "optout_confirm": "dialer/optout_confirm.wav",
    "optout_failed": "dialer/optout_failed.wav",
    "unavailable": "dialer/unavailable.wav",
    "goodbye": "dialer/goodbye.wav",
    "agent_login_tone": "tone_stream://%(200,0,800)",
}


# -- value checks: each returns the cleaned value or raises SiteError --------------------------

def _where(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


def _str(section: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SiteError(f"{_where(section, key)}: expected a non-empty string, got {value!r}")
    if any(ch in value for ch in "\r\n\0"):
        raise SiteError(f"{_where(section, key)}: line breaks are not allowed")
    if "${" in value:          # also catches $${
        # Every string of the site file ends up in the XML: $${var} is replaced when FreeSWITCH
        # loads the file, ${var} when the call runs (${system(...)} would run a command).
        raise SiteError(f"{_where(section, key)}: no ${{...}} or $${{...}} (FreeSWITCH would expand it: "
                        "$${...} when it loads the file, ${...} when the call runs); write the value itself")
    return value


def _bool(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SiteError(f"{_where(section, key)}: expected true or false, got {value!r}")
    return value


def _int(lo: int, hi: int) -> Callable[[str, str, Any], int]:
    def check(section: str, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise SiteError(f"{_where(section, key)}: expected a whole number from {lo} to {hi}, got {value!r}")
        return value
    return check


def _positive_float(section: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 10_000:
        raise SiteError(f"{_where(section, key)}: expected a number above 0, got {value!r}")
    return float(value)


def _name(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    if not _NAME.match(value):
        raise SiteError(f"{_where(section, key)}: {value!r} may use letters, digits, '_', '.', '-' only")
    return value


def _ip(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise SiteError(f"{_where(section, key)}: {value!r} is not an IP address") from None


def _host(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value):
            raise SiteError(f"{_where(section, key)}: {value!r} is neither an IP address nor a host name") from None
        return value
    if address.is_unspecified:
        raise SiteError(f"{_where(section, key)}: {value!r} is not an address one can connect to")
    return str(address)


def _host_port(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    host, port = value, None
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if not rest else "bad")
    elif value.count(":") == 1:
        host, port = value.split(":")
    if port is not None and (not port.isdigit() or not 1 <= int(port) <= 65535):
        raise SiteError(f"{_where(section, key)}: bad port in {value!r}")
    _host(section, key, host)
    return value


def _cidr(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise SiteError(f"{_where(section, key)}: {value!r} is not a network ({exc})") from None
    if network.prefixlen == 0:
        raise SiteError(f"{_where(section, key)}: {value!r} would allow every address")
    return str(network)


def is_private_network(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Inside one of PRIVATE_NETWORKS (an IPv4-mapped IPv6 network is judged as IPv4)."""
    if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
        network = ipaddress.ip_network((network.network_address.ipv4_mapped, network.prefixlen - 96))
    return any(network.version == p.version and network.subnet_of(p) for p in PRIVATE_NETWORKS)


def _private_cidr(section: str, key: str, value: Any) -> str:
    cidr = _cidr(section, key, value)
    if not is_private_network(ipaddress.ip_network(cidr)):
        # not only /0: 0.0.0.0/1 + 128.0.0.0/1, or any public range, opens the Event Socket
        raise SiteError(f"{_where(section, key)}: {cidr!r} is not a private network: the Event Socket "
                        "may be opened to private (RFC 1918, fc00::/7), loopback or link-local networks only")
    return cidr


def _number(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value).strip()
    if not _NUMBER.match(value):
        raise SiteError(f"{_where(section, key)}: {value!r} is not a phone number (digits, optional leading +)")
    return value.lstrip("+")


def _prompt(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    if not _PROMPT.match(value):
        raise SiteError(f"{_where(section, key)}: {value!r} contains spaces, which FreeSWITCH's "
                        "play_and_get_digits would split into separate arguments")
    return value


def _list_of(check: Callable[[str, str, Any], Any]) -> Callable[[str, str, Any], tuple]:
    def checked(section: str, key: str, value: Any) -> tuple:
        if not isinstance(value, list):
            raise SiteError(f"{_where(section, key)}: expected a list, got {value!r}")
        return tuple(check(section, f"{key}[{i}]", item) for i, item in enumerate(value))
    return checked


def _one_of(*choices: str) -> Callable[[str, str, Any], str]:
    def check(section: str, key: str, value: Any) -> str:
        if value not in choices:
            raise SiteError(f"{_where(section, key)}: expected one of {', '.join(choices)}, got {value!r}")
        return value
    return check


def _module(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    if not _MODULE.match(value):
        raise SiteError(f"{_where(section, key)}: {value!r} is not a FreeSWITCH module name (mod_...)")
    return value


def _login_prefix(section: str, key: str, value: Any) -> str:
    value = _str(section, key, value)
    if not re.fullmatch(r"[0-9*#]{1,6}", value):
        raise SiteError(f"{_where(section, key)}: {value!r} must be 1 to 6 of 0-9 * #")
    return value


# section -> key -> (check, default). A default of ... means required.
Spec = dict[str, tuple[Callable[[str, str, Any], Any], Any]]

SCHEMA: dict[str, Spec] = {
    "site": {
        "name": (_name, "dialer"),
        "loglevel": (_one_of(*_LOGLEVELS), "warning"),
    },
    "event_socket": {
        "listen_ip": (_ip, "127.0.0.1"),
        "listen_port": (_int(1, 65535), 8021),
        "password": (_str, None),
        "acl": (_list_of(_private_cidr), ()),
    },
    "engine": {
        "host": (_host, "127.0.0.1"),
        "socket_port": (_int(1, 65535), 8084),
    },
    "limits": {
        "max_sessions": (_int(1, 1_000_000), None),
        "sessions_per_second": (_int(1, 100_000), None),
        "rtp_start_port": (_int(1024, 65534), 16384),
        "rtp_end_port": (_int(1025, 65535), 32768),
        "customer_park_timeout": (_int(5, 3600), 120),
    },
    "inbound": {
        "dids": (None, ()),             # checked by _dids
        "optout_dids": (_list_of(_number), ()),
        "trunk_acl": (_list_of(_cidr), ()),
    },
    "agents": {
        "login_prefix": (_login_prefix, "*9"),
        "id_min_digits": (_int(1, 12), 3),
        "id_max_digits": (_int(1, 12), 8),
        "max_agents": (_int(0, 100_000), 50),
    },
    "optout": {
        "key": (_one_of(*"0123456789"), "9"),
        "menu_tries": (_int(1, 5), 3),
        "wait_ms": (_int(1000, 30_000), 5000),
    },
    "prompts": {key: (_prompt, default) for key, default in PROMPT_DEFAULTS.items()},
    "modules": {
        "avmd": (_bool, False),
        "extra": (_list_of(_module), ()),
    },
}

GATEWAY_SCHEMA: Spec = {
    "name": (_name, ...),
    "proxy": (_host_port, ...),
    "register": (_bool, True),
    "username": (_str, None),
    "password": (_str, None),
    "realm": (_host_port, None),
    "from_user": (_str, None),
    "from_domain": (_host, None),
    "caller_id_in_from": (_bool, True),
    "register_transport": (_one_of("udp", "tcp", "tls"), "udp"),
    "expire_seconds": (_int(60, 86_400), 600),
    "retry_seconds": (_int(5, 3600), 30),
    "ping": (_int(5, 3600), None),
    "calls_per_second": (_positive_float, 10.0),
    "max_channels": (_int(1, 100_000), 100),
}

def _campaign(section: str, key: str, value: Any) -> str:
    # Campaign ids may be numbers in the engine's database; the dialplan carries text.
    return _name(section, key, str(value) if isinstance(value, int) and not isinstance(value, bool) else value)


DID_SCHEMA: Spec = {
    "number": (_number, ...),
    "campaign": (_campaign, None),
}


def _section(section: str, table: Any, spec: Spec) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise SiteError(f"[{section}] must be a table, got {table!r}")
    unknown = sorted(set(table) - set(spec))
    if unknown:
        raise SiteError(f"[{section}]: unknown key{'s' if len(unknown) > 1 else ''} "
                        f"{', '.join(unknown)} (known: {', '.join(spec)})")
    values = {}
    for key, (check, default) in spec.items():
        if key in table:
            values[key] = check(section, key, table[key]) if check else table[key]
        elif default is ...:
            raise SiteError(f"[{section}] {key} is required")
        else:
            values[key] = default
    return values


def _dids(value: Any) -> tuple[Did, ...]:
    if not isinstance(value, (list, tuple)):
        raise SiteError(f"[inbound] dids: expected a list, got {value!r}")
    dids = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"number": item}
        values = _section(f"inbound.dids[{i}]", item, DID_SCHEMA)
        dids.append(Did(values["number"], values["campaign"]))
    return tuple(dids)


def _gateways(value: Any) -> tuple[Gateway, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SiteError(f"[[gateways]]: expected an array of tables, got {value!r}")
    gateways = []
    for i, table in enumerate(value):
        values = _section(f"gateways[{i}]", table, GATEWAY_SCHEMA)
        if values["register"] and not (values["username"] and values["password"]):
            raise SiteError(f"gateway {values['name']}: register = true needs username and password")
        if bool(values["username"]) != bool(values["password"]):
            raise SiteError(f"gateway {values['name']}: give both username and password, or neither")
        gateways.append(Gateway(**values))
    names = [g.name for g in gateways]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SiteError(f"[[gateways]]: duplicate name {', '.join(duplicates)}")
    return tuple(gateways)


def _check_password(password: str) -> str:
    if password.lower() == DEFAULT_ESL_PASSWORD.lower():
        raise SiteError("[event_socket] password: FreeSWITCH's default ClueCon is refused; "
                        "remove the key to have a strong one generated")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SiteError(f"[event_socket] password: at least {MIN_PASSWORD_LENGTH} characters "
                        "(remove the key to have a strong one generated)")
    if any(ch.isspace() for ch in password) or not password.isprintable():
        raise SiteError("[event_socket] password: no spaces or control characters")
    if "$${" in password or "${" in password:
        # FreeSWITCH expands variables when it loads the XML: the switch would hold another
        # password than the engine's .env
        raise SiteError("[event_socket] password: no ${...} or $${...} (FreeSWITCH would expand it)")
    return password


def _check_listen_address(ip: str, acl: tuple[str, ...], engine_host: str) -> None:
    address = ipaddress.ip_address(ip)
    if address.is_unspecified:
        if not acl:
            raise SiteError(f"[event_socket] listen_ip = {ip!r} listens on every interface: refused "
                            "unless [event_socket] acl lists the networks allowed to connect")
    elif not is_private_network(ipaddress.ip_network(address)):
        raise SiteError(f"[event_socket] listen_ip = {ip!r} is a public address: the Event Socket "
                        "must listen on loopback or a private address")
    elif not address.is_loopback and not acl:
        # The ACL allows loopback only, and a socket bound to this address never sees a
        # loopback client: every connection, the engine's and fs_cli's, would be refused.
        example = str(ipaddress.ip_network(address))
        try:
            engine = ipaddress.ip_network(engine_host)
        except ValueError:
            pass                # a host name
        else:
            if not engine.network_address.is_loopback and is_private_network(engine):
                example = str(engine)
        raise SiteError(f"[event_socket] listen_ip = {ip!r} without acl: only loopback would be allowed, "
                        f"and a socket on {ip} never sees a loopback client, so nobody could connect "
                        "(neither the engine nor fs_cli); list the engines' addresses or network in "
                        f"[event_socket] acl, e.g. acl = [\"{example}\"] (include {ip}/{address.max_prefixlen} "
                        "for fs_cli on this host)")


def parse_site(data: dict[str, Any]) -> Site:
    """Check a parsed site file and fill in defaults; SiteError names the first bad key."""
    known = set(SCHEMA) | {"gateways"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SiteError(f"unknown section{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                        f"(known: {', '.join(sorted(known))})")
    sections = {name: _section(name, data.get(name, {}), spec) for name, spec in SCHEMA.items()}
    gateways = _gateways(data.get("gateways"))
    esl, limits, agents = sections["event_socket"], sections["limits"], sections["agents"]
    inbound = sections["inbound"]

    _check_listen_address(esl["listen_ip"], esl["acl"], sections["engine"]["host"])
    generated = esl["password"] is None
    password = secrets.token_urlsafe(32) if generated else _check_password(esl["password"])

    if limits["rtp_start_port"] >= limits["rtp_end_port"]:
        raise SiteError("[limits] rtp_start_port must be below rtp_end_port")
    if agents["id_min_digits"] > agents["id_max_digits"]:
        raise SiteError("[agents] id_min_digits must not exceed id_max_digits")

    # The engine can start sum(calls_per_second) new legs a second and hold sum(max_channels)
    # customer legs plus one leg per agent; FreeSWITCH must allow at least that.
    total_cps = sum(g.calls_per_second for g in gateways)
    needed_sessions = sum(g.max_channels for g in gateways) + agents["max_agents"]
    sps = limits["sessions_per_second"]
    if sps is None:
        sps = max(VANILLA_SESSIONS_PER_SECOND, math.ceil(total_cps * 1.5))
    elif sps < math.ceil(total_cps):
        raise SiteError(f"[limits] sessions_per_second = {sps} is below the gateways' total "
                        f"calls_per_second ({total_cps:g}): FreeSWITCH would refuse the engine's originates")
    max_sessions = limits["max_sessions"]
    if max_sessions is None:
        max_sessions = max(VANILLA_MAX_SESSIONS, 2 * needed_sessions)
    elif max_sessions < needed_sessions:
        raise SiteError(f"[limits] max_sessions = {max_sessions} is below the gateways' max_channels "
                        f"plus max_agents ({needed_sessions})")

    dids = _dids(inbound["dids"])
    numbers = [d.number for d in dids] + list(inbound["optout_dids"])
    duplicates = sorted({n for n in numbers if numbers.count(n) > 1})
    if duplicates:
        raise SiteError(f"[inbound]: number listed twice: {', '.join(duplicates)}")

    optout = sections["optout"]
    return Site(
        name=sections["site"]["name"], loglevel=sections["site"]["loglevel"],
        esl_listen_ip=esl["listen_ip"], esl_listen_port=esl["listen_port"],
        esl_password=password, esl_password_generated=generated, esl_acl=esl["acl"],
        engine_host=sections["engine"]["host"], engine_socket_port=sections["engine"]["socket_port"],
        max_sessions=max_sessions, sessions_per_second=sps,
        rtp_start_port=limits["rtp_start_port"], rtp_end_port=limits["rtp_end_port"],
        customer_park_timeout=limits["customer_park_timeout"],
        gateways=gateways, dids=dids, optout_dids=inbound["optout_dids"], trunk_acl=inbound["trunk_acl"],
        agent_login_prefix=agents["login_prefix"], agent_id_min_digits=agents["id_min_digits"],
        agent_id_max_digits=agents["id_max_digits"], max_agents=agents["max_agents"],
        optout_key=optout["key"], optout_menu_tries=optout["menu_tries"], optout_wait_ms=optout["wait_ms"],
        prompts=dict(sections["prompts"]),
        avmd=sections["modules"]["avmd"], extra_modules=sections["modules"]["extra"],
    )


def load_site(path: Path | str | None) -> Site:
    """Read and check a site file; None gives the all-defaults site (loopback Event Socket,
    engine on 127.0.0.1, no SIP trunk)."""
    if path is None:
        return parse_site({})
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SiteError(f"{path}: no such file") from None
    except OSError as exc:
        raise SiteError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise SiteError(f"{path}: not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise SiteError(f"{path}: not valid TOML ({exc})") from None
    try:
        return parse_site(data)
    except SiteError as exc:
        raise SiteError(f"{path}: {exc}") from None
