"""Render the FreeSWITCH configuration and dialplans of one site, in FreeSWITCH's own layout.

Templates live in freeswitch-conf/ and dialplans/ at the project root. A placeholder is
`{{name}}` (FreeSWITCH itself uses ${var} and $${var}, which pass through untouched). Every
value is XML-escaped (xml.sax.saxutils) before it goes in, except fragments built here with
xml.etree.ElementTree, which escapes them itself; an unknown placeholder is an error, so a
template cannot silently render an empty attribute.

Output (relative to --out), matching the vanilla configuration's includes:
  autoload_configs/{event_socket,acl,switch,modules}.conf.xml   replace the vanilla files
  sip_profiles/external/dialer_<gateway>.xml                    inside the external profile's <gateways>
  dialplan/dialer_{outbound,inbound,agents}.xml                 contexts (freeswitch.xml includes dialplan/*.xml)
  dialplan/public/00_dialer_dids.xml                            public context -> inbound context
  dialplan/default/00_dialer_agents.xml                         default context -> agents' context
  dialer-engine.env                                             FREESWITCH_URL for the engine
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from dialer.config import ESL_HOST_PLACEHOLDER
from dialer.errors import ConfigError
from dialer.fsconf.contract import AGENTS_CONTEXT, INBOUND_CONTEXT, OUTBOUND_CONTEXT
from dialer.fsconf.site import Gateway, Site

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ESL_ACL_NAME = "dialer_esl"
ENV_FILE = "dialer-engine.env"

_PLACEHOLDER = re.compile(r"\{\{([a-z_][a-z0-9_]*)\}\}")
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "'": "&apos;"}


class RenderError(ConfigError):
    """A template refers to a value the renderer does not have, or cannot be read."""


class Markup(str):
    """An XML fragment already built (and escaped) by ElementTree: inserted as it is."""


def fill(text: str, values: dict[str, object], source: str = "template") -> str:
    """Replace every {{name}} in text; values are escaped unless they are Markup."""
    missing = sorted({m for m in _PLACEHOLDER.findall(text) if m not in values})
    if missing:
        raise RenderError(f"{source}: no value for {', '.join('{{' + m + '}}' for m in missing)}")

    def substitute(match: re.Match) -> str:
        value = values[match.group(1)]
        return value if isinstance(value, Markup) else escape(str(value), _ATTRIBUTE_ENTITIES)
    return _PLACEHOLDER.sub(substitute, text)


def _fragment(elements: list[ET.Element], indent: str) -> Markup:
    lines = []
    for element in elements:
        ET.indent(element, space="  ")
        for line in ET.tostring(element, encoding="unicode").splitlines():
            lines.append(indent + line)
    return Markup("\n".join(lines))


def _acl_nodes(cidrs: tuple[str, ...], comment_if_empty: str) -> Markup:
    if not cidrs:
        return Markup(f"      <!-- {comment_if_empty} -->")
    return _fragment([ET.Element("node", type="allow", cidr=c) for c in cidrs], "      ")


def _esl_acl(site: Site) -> tuple[str, ...]:
    # Loopback: fs_cli and an engine on this host, when the socket listens on loopback or on
    # every interface. A socket bound to one other address never sees a loopback client, so
    # site.py refuses that address without an acl listing who connects (QA7 fsconf F1).
    loopback = ("127.0.0.0/8", "::1/128")
    return loopback + tuple(c for c in site.esl_acl if c not in loopback)


def _gateway_params(gateway: Gateway) -> Markup:
    params: list[tuple[str, str]] = [("proxy", gateway.proxy), ("register", str(gateway.register).lower())]
    optional = [("realm", gateway.realm), ("username", gateway.username), ("password", gateway.password),
                ("from-user", gateway.from_user), ("from-domain", gateway.from_domain)]
    params += [(name, value) for name, value in optional if value]
    # No `context`: calls from the trunk run in the external profile's context (public), where
    # dialplan/public/00_dialer_dids.xml sends the dialer's numbers on.
    params.append(("caller-id-in-from", str(gateway.caller_id_in_from).lower()))
    if gateway.register:
        params += [("register-transport", gateway.register_transport),
                   ("expire-seconds", str(gateway.expire_seconds)),
                   ("retry-seconds", str(gateway.retry_seconds))]
    if gateway.ping is not None:
        params.append(("ping", str(gateway.ping)))
    return _fragment([ET.Element("param", name=n, value=v) for n, v in params], "    ")


def _did_extensions(site: Site) -> Markup:
    """One extension per number of [inbound]: remember the number called and the campaign."""
    extensions = []
    for number, campaign, target in (
            [(d.number, d.campaign, "dialer_to_engine") for d in site.dids]
            + [(n, None, "dialer_optout") for n in site.optout_dids]):
        extension = ET.Element("extension", name=f"dialer_did_{number}")
        condition = ET.SubElement(extension, "condition", field="destination_number",
                                  expression=rf"^\+?{number}$")
        actions = [("set", "dialer_did=${destination_number}")]
        if campaign:
            actions.append(("set", f"dialer_campaign={campaign}"))
        actions.append(("transfer", f"{target} XML {INBOUND_CONTEXT}"))
        for app, data in actions:
            ET.SubElement(condition, "action", application=app, data=data)
        extensions.append(extension)
    if not extensions:
        return Markup("    <!-- no numbers in the site file's [inbound] -->")
    return _fragment(extensions, "    ")


def _optional_modules(site: Site) -> Markup:
    modules = (["mod_avmd"] if site.avmd else []) + [m for m in site.extra_modules if m != "mod_avmd"]
    if not modules:
        return Markup("    <!-- none -->")
    return _fragment([ET.Element("load", module=m) for m in modules], "    ")


def template_values(site: Site) -> dict[str, object]:
    """Every placeholder the templates may use, for this site."""
    prompts = site.prompts
    prefix = re.escape(site.agent_login_prefix)
    agent_id = rf"\d{{{site.agent_id_min_digits},{site.agent_id_max_digits}}}"
    return {
        "switchname": site.name, "loglevel": site.loglevel,
        "esl_listen_ip": site.esl_listen_ip, "esl_listen_port": site.esl_listen_port,
        "esl_password": site.esl_password, "esl_acl_name": ESL_ACL_NAME,
        "esl_acl_nodes": _acl_nodes(_esl_acl(site), "loopback only"),
        "trunk_acl_nodes": _acl_nodes(site.trunk_acl, "no trunk sends calls by IP address"),
        "max_sessions": site.max_sessions, "sessions_per_second": site.sessions_per_second,
        "rtp_start_port": site.rtp_start_port, "rtp_end_port": site.rtp_end_port,
        "optional_modules": _optional_modules(site),
        "outbound_context": OUTBOUND_CONTEXT, "inbound_context": INBOUND_CONTEXT,
        "agents_context": AGENTS_CONTEXT,
        "engine_socket": site.engine_socket,
        "customer_park_timeout": site.customer_park_timeout,
        "voicemail_file": prompts["voicemail"], "safe_harbor_file": prompts["safe_harbor"],
        "optout_menu_file": prompts["optout_menu"], "optout_invalid_file": prompts["optout_invalid"],
        "optout_confirm_file": prompts["optout_confirm"], "optout_failed_file": prompts["optout_failed"],
        "unavailable_file": prompts["unavailable"], "goodbye_file": prompts["goodbye"],
        "agent_login_tone": prompts["agent_login_tone"],
        "optout_key": site.optout_key, "optout_menu_tries": site.optout_menu_tries,
        "optout_wait_ms": site.optout_wait_ms,
        # wait_for_silence: energy threshold, 25 silent frames (0.5 s at 20 ms), 10 noisy frames
        # before listening, give up after 20 s.
        "vm_silence_thresh": 200, "vm_silence_hits": 25, "vm_listen_hits": 10, "vm_wait_timeout_ms": 20000,
        "did_extensions": _did_extensions(site),
        # $1 keeps the '+' the trunk sent: the inbound extension's dialer_did is the number
        # called as the trunk sent it (docs/freeswitch.md, Variables; QA7 fsconf F5).
        "did_regex": r"^(\+?(?:" + "|".join([d.number for d in site.dids] + list(site.optout_dids)) + "))$",
        "agent_login_prefix": site.agent_login_prefix,
        "agent_login_regex": rf"^{prefix}({agent_id})$",      # agents' context: captures the id
        "agent_dial_regex": rf"^({prefix}{agent_id})$",       # default context: captures it all
    }


@dataclass(frozen=True)
class Output:
    path: str                  # relative to the output directory
    text: str
    secret: bool = False       # holds a password: written 0600


# output path -> template path (relative to the project root), secret
_TEMPLATES = [
    ("autoload_configs/event_socket.conf.xml", "freeswitch-conf/autoload_configs/event_socket.conf.xml", True),
    ("autoload_configs/acl.conf.xml", "freeswitch-conf/autoload_configs/acl.conf.xml", False),
    ("autoload_configs/switch.conf.xml", "freeswitch-conf/autoload_configs/switch.conf.xml", False),
    ("autoload_configs/modules.conf.xml", "freeswitch-conf/autoload_configs/modules.conf.xml", False),
    (f"dialplan/{OUTBOUND_CONTEXT}.xml", "dialplans/outbound.xml", False),
    (f"dialplan/{INBOUND_CONTEXT}.xml", "dialplans/inbound.xml", False),
    (f"dialplan/{AGENTS_CONTEXT}.xml", "dialplans/agents.xml", False),
    ("dialplan/default/00_dialer_agents.xml", "dialplans/default-agents.xml", False),
]
GATEWAY_TEMPLATE = "freeswitch-conf/sip_profiles/external/gateway.xml"
PUBLIC_DIDS_TEMPLATE = "dialplans/public-dids.xml"


def _read(root: Path, relative: str) -> str:
    try:
        return (root / relative).read_text(encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"template {root / relative}: {exc.strerror}") from None


def render(site: Site, root: Path = PROJECT_ROOT) -> list[Output]:
    """Every file of the site, in memory (nothing is written)."""
    values = template_values(site)
    outputs = [Output(out, fill(_read(root, src), values, src), secret) for out, src, secret in _TEMPLATES]
    if site.dids or site.optout_dids:
        outputs.append(Output("dialplan/public/00_dialer_dids.xml",
                              fill(_read(root, PUBLIC_DIDS_TEMPLATE), values, PUBLIC_DIDS_TEMPLATE)))
    gateway_template = _read(root, GATEWAY_TEMPLATE)
    for gateway in site.gateways:
        gateway_values = {**values, "gateway_name": gateway.name, "gateway_params": _gateway_params(gateway)}
        outputs.append(Output(f"sip_profiles/external/dialer_{gateway.name}.xml",
                              fill(gateway_template, gateway_values, GATEWAY_TEMPLATE),
                              secret=gateway.password is not None))
    fill_in = (f"# listen_ip {site.esl_listen_ip} is every interface: replace {ESL_HOST_PLACEHOLDER} with an\n"
               "# address of this FreeSWITCH host the engine can reach (the engine refuses the placeholder)\n"
               if site.esl_host_unknown else "")
    outputs.append(Output(ENV_FILE, f"# FreeSWITCH Event Socket of site {site.name} for the dialer engine\n"
                                    f"{fill_in}FREESWITCH_URL={site.freeswitch_url}\n", secret=True))
    return outputs


# Files only some sites have: a re-render into the same directory removes the ones this site
# no longer has (a gateway taken out of the site file must not stay configured).
_OPTIONAL_OUTPUTS = ("sip_profiles/external/dialer_*.xml", "dialplan/public/00_dialer_dids.xml")


def stale_outputs(outputs: list[Output], out_dir: Path) -> list[Path]:
    """Files an earlier render left in out_dir that this site no longer has (write() removes them)."""
    current = {out_dir / o.path for o in outputs}
    return sorted(stale for pattern in _OPTIONAL_OUTPUTS for stale in out_dir.glob(pattern) if stale not in current)


def write(outputs: list[Output], out_dir: Path) -> list[Path]:
    """Write the files under out_dir (created if needed); files with a password get mode 0600.

    All or nothing: every file is first written beside its target under a temporary name, and
    only when all of them are written are they renamed over the targets (one rename each, on the
    same file system) and stale files removed. A render that fails half way (a target that is a
    directory, a full disk) leaves the earlier render as it was: the switch's Event Socket
    password and the engine's .env never disagree."""
    staged: list[tuple[Path, Path]] = []
    try:
        for output in outputs:
            path = out_dir / output.path
            if path.is_dir():
                raise RenderError(f"cannot write {path}: it is a directory")
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.rendering-{os.getpid()}")
            mode = 0o600 if output.secret else 0o644
            # Created with the final mode, so a password is never readable by others, even briefly.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            staged.append((temporary, path))
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(output.text)
            os.chmod(temporary, mode)
    except OSError as exc:
        _discard(staged)
        raise RenderError(f"cannot write {exc.filename or out_dir}: {exc.strerror}") from None
    except RenderError:
        _discard(staged)
        raise
    stale = stale_outputs(outputs, out_dir)
    try:
        for temporary, path in staged:
            os.replace(temporary, path)
        for path in stale:
            path.unlink()
    except OSError as exc:
        _discard(staged)
        raise RenderError(f"cannot write {exc.filename or out_dir}: {exc.strerror}") from None
    return [path for _temporary, path in staged]


def _discard(staged: list[tuple[Path, Path]]) -> None:
    for temporary, _path in staged:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass
