"""FreeSWITCH configuration and dialplans (dialer.fsconf): well-formed XML, the site's values in
the right places, the ESL password rules, refused site files, and the dialplans' routing checked
by a small model of mod_dialplan_xml's hunt (conditions ANDed, $1 captures, continue="true")."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from dialer import config
from dialer.errors import ConfigError
from dialer.fsconf.applications import APPLICATIONS
from dialer.fsconf.cli import freeswitch
from dialer.fsconf.contract import (
    AGENTS_CONTEXT, INBOUND_CONTEXT, OPTOUT_UNHANDLED_SUBCLASS, OUTBOUND_CONTEXT, Action, Destination, OptoutSource,
    Role, Var,
)
from dialer.fsconf.render import PROJECT_ROOT, Markup, RenderError, fill, render, write
from dialer.fsconf.site import SiteError, load_site, parse_site

EXAMPLE = PROJECT_ROOT / "freeswitch-conf" / "site.example.toml"
DOCS = PROJECT_ROOT / "docs" / "freeswitch.md"
TEMPLATES = sorted((PROJECT_ROOT / "freeswitch-conf").rglob("*.xml")) + sorted((PROJECT_ROOT / "dialplans").glob("*.xml"))
REQUIRED_MODULES = {"mod_event_socket", "mod_sofia", "mod_dptools", "mod_commands", "mod_dialplan_xml",
                    "mod_sndfile", "mod_native_file", "mod_tone_stream", "mod_loopback"}


@pytest.fixture(scope="module")
def site():
    return load_site(EXAMPLE)


@pytest.fixture(scope="module")
def files(site):
    return {o.path: o for o in render(site)}


def xml(files, path) -> ET.Element:
    return ET.fromstring(files[path].text)


def params(root: ET.Element) -> dict[str, str]:
    return {p.get("name"): p.get("value") for p in root.iter("param")}


# -- well-formedness ----------------------------------------------------------------------------

@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_every_template_is_well_formed_xml(template):
    ET.parse(template)


def test_every_rendered_file_is_well_formed_and_in_freeswitch_layout(files):
    xml_files = [p for p in files if p.endswith(".xml")]
    for path in xml_files:
        ET.fromstring(files[path].text)
        assert "{{" not in files[path].text, path
    assert set(xml_files) >= {
        "autoload_configs/event_socket.conf.xml", "autoload_configs/acl.conf.xml",
        "autoload_configs/switch.conf.xml", "autoload_configs/modules.conf.xml",
        "dialplan/dialer_outbound.xml", "dialplan/dialer_inbound.xml", "dialplan/dialer_agents.xml",
        "dialplan/public/00_dialer_dids.xml", "dialplan/default/00_dialer_agents.xml",
        "sip_profiles/external/dialer_carrier_a.xml", "sip_profiles/external/dialer_carrier_b.xml"}


def test_the_default_site_renders_well_formed_files_without_trunks_or_numbers():
    outputs = {o.path: o.text for o in render(parse_site({}))}
    for path, text in outputs.items():
        if path.endswith(".xml"):
            ET.fromstring(text)
    assert not any(p.startswith("sip_profiles/") for p in outputs)
    assert "dialplan/public/00_dialer_dids.xml" not in outputs
    assert params(ET.fromstring(outputs["autoload_configs/event_socket.conf.xml"]))["listen-ip"] == "127.0.0.1"


# -- values of the sample site ------------------------------------------------------------------

def test_event_socket_and_acl_values(files, site):
    esl = params(xml(files, "autoload_configs/event_socket.conf.xml"))
    assert esl["listen-ip"] == "10.20.0.5" and esl["listen-port"] == "8021"
    assert esl["apply-inbound-acl"] == "dialer_esl"
    assert esl["password"] == site.esl_password and site.esl_password_generated
    acl = xml(files, "autoload_configs/acl.conf.xml")
    lists = {lst.get("name"): lst for lst in acl.iter("list")}
    assert lists["dialer_esl"].get("default") == "deny"
    assert [n.get("cidr") for n in lists["dialer_esl"]] == ["127.0.0.0/8", "::1/128", "10.20.0.0/24"]
    assert [n.get("cidr") for n in lists["dialer_trunks"]] == ["203.0.113.0/28"]
    assert "domains" in lists         # the vanilla internal profile applies it


def test_switch_limits_and_modules(files):
    switch = params(xml(files, "autoload_configs/switch.conf.xml"))
    assert (switch["max-sessions"], switch["sessions-per-second"]) == ("600", "60")
    assert (switch["rtp-start-port"], switch["rtp-end-port"], switch["switchname"]) == ("16384", "32768", "nyc-fs1")
    modules = {m.get("module") for m in xml(files, "autoload_configs/modules.conf.xml").iter("load")}
    assert modules >= REQUIRED_MODULES | {"mod_avmd"}


def test_limits_derived_from_gateways_when_absent():
    site = parse_site({"gateways": [{"name": "a", "proxy": "10.0.0.1", "register": False,
                                     "calls_per_second": 40, "max_channels": 700}],
                       "agents": {"max_agents": 100}})
    assert site.sessions_per_second == 60          # 1.5 x 40 calls per second
    assert site.max_sessions == 1600               # 2 x (700 channels + 100 agents)
    assert parse_site({}).sessions_per_second == 30 and parse_site({}).max_sessions == 1000


def test_gateway_files(files):
    a = xml(files, "sip_profiles/external/dialer_carrier_a.xml").find("gateway")
    assert a.get("name") == "carrier_a"
    assert params(a) == {"proxy": "sip.carrier-a.example:5060", "register": "true", "realm": "sip.carrier-a.example",
                         "username": "acct1001", "password": "trunk-secret-1", "caller-id-in-from": "true",
                         "register-transport": "udp", "expire-seconds": "600", "retry-seconds": "30", "ping": "30"}
    b = params(xml(files, "sip_profiles/external/dialer_carrier_b.xml"))
    assert b == {"proxy": "203.0.113.20", "register": "false", "caller-id-in-from": "true"}
    assert files["sip_profiles/external/dialer_carrier_a.xml"].secret
    assert not files["sip_profiles/external/dialer_carrier_b.xml"].secret


def test_engine_env_file_is_a_valid_freeswitch_url(files, site):
    line = [ln for ln in files["dialer-engine.env"].text.splitlines() if ln.startswith("FREESWITCH_URL=")][0]
    [node] = config.parse_freeswitch_urls(line.split("=", 1)[1])
    assert (node.host, node.port, node.password) == ("10.20.0.5", 8021, site.esl_password)


# -- the ESL password ---------------------------------------------------------------------------

def test_password_generated_strong_fresh_and_never_the_default():
    passwords = {parse_site({}).esl_password for _ in range(5)}
    assert len(passwords) == 5
    for password in passwords:
        assert len(password) >= 40 and password.lower() != "clucon" and "cluecon" not in password.lower()


def test_password_from_site_is_kept_and_escaped(tmp_path):
    password = 'a"b&c<d>e\'f-long-enough'
    site = parse_site({"event_socket": {"password": password}})
    assert not site.esl_password_generated
    outputs = render(site)
    esl = next(o for o in outputs if o.path == "autoload_configs/event_socket.conf.xml")
    assert params(ET.fromstring(esl.text))["password"] == password
    write(outputs, tmp_path)
    assert (tmp_path / "autoload_configs/event_socket.conf.xml").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "dialer-engine.env").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "autoload_configs/switch.conf.xml").stat().st_mode & 0o777 == 0o644
    [node] = config.parse_freeswitch_urls((tmp_path / "dialer-engine.env").read_text().split("=", 1)[1].strip())
    assert node.password == password


# -- refused site files -------------------------------------------------------------------------

GW = '[[gateways]]\nname = "g"\nproxy = "10.0.0.1"\nregister = false\n'


@pytest.mark.parametrize("text, message", [
    ('[sip]\nx = 1\n', "unknown section sip"),
    ('[event_socket]\nlisten_adress = "127.0.0.1"\n', "unknown key listen_adress"),
    ('[event_socket]\nlisten_ip = "10.0.0.300"\n', "not an IP address"),
    ('[event_socket]\nlisten_ip = "8.8.8.8"\n', "public address"),
    ('[event_socket]\nlisten_ip = "0.0.0.0"\n', "unless [event_socket] acl"),
    ('[event_socket]\nlisten_ip = "::"\n', "unless [event_socket] acl"),
    ('[event_socket]\npassword = "ClueCon"\n', "ClueCon is refused"),
    ('[event_socket]\npassword = "cluecon"\n', "ClueCon is refused"),
    ('[event_socket]\npassword = "short"\n', "at least 16 characters"),
    ('[event_socket]\npassword = "has a space in it ok"\n', "no spaces"),
    ('[event_socket]\npassword = "abcdefghijklmnop$${x}"\n', "FreeSWITCH would expand it"),
    ('[event_socket]\nacl = ["10.0.0.1/24"]\n', "host bits set"),
    ('[event_socket]\nacl = ["0.0.0.0/0"]\nlisten_ip = "0.0.0.0"\n', "every address"),
    ('[event_socket]\nlisten_port = 70000\n', "from 1 to 65535"),
    ('[event_socket]\nlisten_port = "8021"\n', "whole number"),
    ('[engine]\nhost = "0.0.0.0"\n', "not an address one can connect to"),
    ('[engine]\nhost = "bad host!"\n', "neither an IP address nor a host name"),
    (GW + 'calls_per_second = 50\n[limits]\nsessions_per_second = 40\n', "below the gateways' total calls_per_second"),
    (GW + 'max_channels = 500\n[limits]\nmax_sessions = 100\n', "below the gateways' max_channels"),
    (GW + GW, "duplicate name g"),
    ('[[gateways]]\nname = "g"\nproxy = "10.0.0.1"\n', "register = true needs username and password"),
    ('[[gateways]]\nname = "g/x"\nproxy = "10.0.0.1"\nregister = false\n', "letters, digits"),
    ('[[gateways]]\nname = "g"\n', "proxy is required"),
    (GW + 'flavour = 1\n', "unknown key flavour"),
    ('[prompts]\nvoicemail = "my message.wav"\n', "contains spaces"),
    ('[optout]\nkey = "#"\n', "expected one of"),
    ('[limits]\nrtp_start_port = 30000\nrtp_end_port = 20000\n', "rtp_start_port must be below"),
    ('[inbound]\ndids = ["12ab"]\n', "not a phone number"),
    ('[inbound]\ndids = ["+12125550100"]\noptout_dids = ["12125550100"]\n', "listed twice"),
    ('[agents]\nlogin_prefix = "9a"\n', "0-9 * #"),
    ('[modules]\nextra = ["avmd"]\n', "not a FreeSWITCH module name"),
    ('[event_socket\n', "not valid TOML"),
])
def test_bad_site_files_are_refused_with_a_clear_message(tmp_path, text, message):
    path = tmp_path / "site.toml"
    path.write_text(text)
    with pytest.raises(SiteError) as caught:
        load_site(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_a_site_file_that_is_not_utf8_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "site.toml"
    path.write_bytes(b'[site]\nname = "\xff\xfe"\n')
    with pytest.raises(SiteError, match="not UTF-8"):
        load_site(path)


def test_unspecified_listen_address_accepted_with_an_acl():
    site = parse_site({"event_socket": {"listen_ip": "0.0.0.0", "acl": ["10.1.0.0/16"]}})
    assert site.esl_listen_ip == "0.0.0.0"
    assert config.ESL_HOST_PLACEHOLDER in site.freeswitch_url


# -- QA7 fsconf findings ------------------------------------------------------------------------

@pytest.mark.parametrize("listen_ip", ["10.20.0.5", "fd00::5", "169.254.1.2"])
def test_a_private_listen_address_without_acl_is_refused_nobody_could_connect(listen_ip):
    """QA7 F1: the ACL allowed loopback only, and a socket bound to a private address never
    sees a loopback client: every connection (the engine's, fs_cli's) would be rude-rejected."""
    with pytest.raises(SiteError, match="without acl") as caught:
        parse_site({"event_socket": {"listen_ip": listen_ip}, "engine": {"host": "10.20.0.10"}})
    assert "acl = [" in str(caught.value) and "nobody could connect" in str(caught.value)
    site = parse_site({"event_socket": {"listen_ip": listen_ip, "acl": ["10.20.0.0/24"]}})
    assert site.esl_acl == ("10.20.0.0/24",)
    assert parse_site({"event_socket": {"listen_ip": "127.0.0.2"}}).esl_acl == ()   # loopback: no acl needed


def test_the_refusal_suggests_the_engine_address_for_the_acl(tmp_path):
    path = tmp_path / "site.toml"
    path.write_text('[event_socket]\nlisten_ip = "10.20.0.5"\n[engine]\nhost = "10.20.0.10"\n')
    result = CliRunner().invoke(freeswitch, ["render", "--out", str(tmp_path / "fs"), "--site", str(path)])
    assert result.exit_code == 1 and 'acl = ["10.20.0.10/32"]' in result.output
    assert "Traceback" not in result.output and not (tmp_path / "fs").exists()


HOSTILE = ["acct$${domain}", "p4ss$${hold_music}word", "${system(id)}", "$${sound_prefix}/bye.wav", "a${x}"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("where", [
    ("gateways", "username"), ("gateways", "password"), ("gateways", "from_user"),
    ("prompts", "safe_harbor"), ("prompts", "goodbye"), ("prompts", "agent_login_tone"),
])
def test_freeswitch_variables_are_refused_in_every_value_written_to_the_xml(value, where):
    """QA7 F2: $${...} is expanded when FreeSWITCH loads the XML (a trunk secret would silently
    change), ${...} when the call runs (${system(id)} runs a shell command)."""
    section, key = where
    if section == "gateways":
        gateway = {"name": "g", "proxy": "10.0.0.1", "username": "acct1001", "password": "secret-1", key: value}
        data = {"gateways": [gateway]}
    else:
        data = {section: {key: value}}
    with pytest.raises(SiteError, match=r"FreeSWITCH would expand it") as caught:
        parse_site(data)
    assert key in str(caught.value)


def test_freeswitch_variables_are_refused_in_realm_proxy_campaign_and_site_file(tmp_path):
    for data in ({"gateways": [{"name": "g", "proxy": "10.0.0.1", "register": False, "realm": "$${domain}"}]},
                 {"gateways": [{"name": "g", "proxy": "${x}", "register": False}]},
                 {"inbound": {"dids": [{"number": "+12125550100", "campaign": "${system(id)}"}]}}):
        with pytest.raises(SiteError):
            parse_site(data)
    path = PROJECT_ROOT.parent / "notes" / "qa7" / "fsconf" / "sites" / "gwvars.toml"
    text = path.read_text() if path.exists() else (
        '[[gateways]]\nname = "g"\nproxy = "10.0.0.1"\nusername = "acct$${domain}"\npassword = "x"\n')
    (tmp_path / "site.toml").write_text(text)
    result = CliRunner().invoke(freeswitch, ["render", "--out", str(tmp_path / "fs"), "--site", str(tmp_path / "site.toml")])
    assert result.exit_code == 1 and "FreeSWITCH would expand it" in result.output
    assert not (tmp_path / "fs").exists()


@pytest.mark.parametrize("acl", [
    ["0.0.0.0/1", "128.0.0.0/1"], ["::/1", "8000::/1"], ["8.8.8.0/24"], ["10.0.0.0/7"], ["192.0.2.0/24"],
    ["100.64.0.0/10"], ["2001:db8::/32"], ["::ffff:8.8.8.0/120"], ["172.0.0.0/11"],
])
def test_an_acl_that_opens_the_event_socket_to_public_addresses_is_refused(acl):
    """QA7 F3: /0 was refused, but two /1 entries (or any public range) let every address in."""
    with pytest.raises(SiteError, match="not a private network"):
        parse_site({"event_socket": {"listen_ip": "0.0.0.0", "acl": acl}})


def test_private_loopback_and_link_local_acl_entries_are_accepted():
    acl = ["10.0.0.0/8", "172.16.0.0/12", "192.168.1.0/24", "127.0.0.0/8", "169.254.0.0/16",
           "::1/128", "fd00:1::/64", "fe80::/10"]
    assert parse_site({"event_socket": {"listen_ip": "::", "acl": acl}}).esl_acl == tuple(acl)
    # an IPv4-mapped network is judged by its IPv4 part
    assert parse_site({"event_socket": {"listen_ip": "::", "acl": ["::ffff:10.1.0.0/112"]}}).esl_acl


def test_a_public_listen_address_is_refused_even_where_ipaddress_calls_it_private():
    for listen_ip in ("192.0.2.5", "8.8.8.8", "::ffff:8.8.8.8", "2001:db8::1"):
        with pytest.raises(SiteError, match="public address"):
            parse_site({"event_socket": {"listen_ip": listen_ip, "acl": ["10.0.0.0/8"]}})


def test_every_interface_env_placeholder_is_refused_by_the_engine_and_printed_by_the_cli(tmp_path):
    """QA7 F4: the .env held `<address of this FreeSWITCH host>`, which dialer.config took for a
    host name, while the CLI printed 0.0.0.0."""
    path = tmp_path / "site.toml"
    path.write_text('[event_socket]\nlisten_ip = "0.0.0.0"\nacl = ["10.1.0.0/16"]\n')
    result = CliRunner().invoke(freeswitch, ["render", "--out", str(tmp_path / "fs"), "--site", str(path)])
    assert result.exit_code == 0, result.output
    env = (tmp_path / "fs" / "dialer-engine.env").read_text()
    [url] = [ln.split("=", 1)[1] for ln in env.splitlines() if ln.startswith("FREESWITCH_URL=")]
    printed = f"esl://:<password>@{config.ESL_HOST_PLACEHOLDER}:8021"
    assert printed in result.output and "0.0.0.0:8021" not in result.output
    assert url.endswith(f"@{config.ESL_HOST_PLACEHOLDER}:8021")
    with pytest.raises(ConfigError, match=f"replace {config.ESL_HOST_PLACEHOLDER} with the address"):
        config.parse_freeswitch_urls(url)
    filled = url.replace(config.ESL_HOST_PLACEHOLDER, "10.1.0.7")
    assert [(n.host, n.port) for n in config.parse_freeswitch_urls(filled)] == [("10.1.0.7", 8021)]


@pytest.mark.parametrize("host", ["<address of this FreeSWITCH host>", "a b", "fs1;rm", "x>y"])
def test_freeswitch_url_with_a_host_that_cannot_be_one_is_refused(host):
    with pytest.raises(ConfigError, match="neither an IP address nor a host name"):
        config.parse_freeswitch_urls(f"esl://:pw@{host}:8021")
    for good in ("fs1.example", "fs_1", "10.0.0.1", "[fd00::5]"):
        assert config.parse_freeswitch_urls(f"esl://:pw@{good}:8021")


def test_ipv6_addresses():
    site = parse_site({"event_socket": {"listen_ip": "::1"}, "engine": {"host": "fd00::10", "socket_port": 9000}})
    [node] = config.parse_freeswitch_urls(site.freeswitch_url)
    assert (node.host, node.port) == ("::1", 8021)
    assert site.engine_socket == "fd00::10:9000"


def test_every_socket_action_targets_the_engine_in_async_full_mode(files, site):
    sockets = [a.get("data") for root in dialplan_roots(files).values() for a in root.iter("action")
               if a.get("application") == "socket"]
    assert sockets and set(sockets) == {f"{site.engine_host}:{site.engine_socket_port} async full"}


def test_missing_site_file_is_a_clear_error(tmp_path):
    with pytest.raises(SiteError, match="no such file"):
        load_site(tmp_path / "nope.toml")


def test_fill_escapes_values_and_refuses_unknown_placeholders():
    assert fill('<a b="{{x}}"/>', {"x": '"<&>'}) == '<a b="&quot;&lt;&amp;&gt;"/>'
    assert fill("{{x}}", {"x": Markup("<b/>")}) == "<b/>"
    assert fill("${keep} $${keep}", {}) == "${keep} $${keep}"
    with pytest.raises(RenderError, match="no value for {{y}}"):
        fill("{{y}}", {})


# -- dialplans: applications, variables, routing -----------------------------------------------

def dialplan_roots(files) -> dict[str, ET.Element]:
    """Context name -> element holding its extensions (hooks count as public/default)."""
    roots = {}
    for path, output in files.items():
        if not path.startswith("dialplan/"):
            continue
        root = ET.fromstring(output.text)
        context = root.find("context")
        if context is not None:
            roots[context.get("name")] = context
        else:
            roots[path.split("/")[1]] = root
    return roots


def test_every_application_exists_in_a_loaded_module(files):
    modules = {m.get("module") for m in xml(files, "autoload_configs/modules.conf.xml").iter("load")}
    used = set()
    for root in dialplan_roots(files).values():
        for action in list(root.iter("action")) + list(root.iter("anti-action")):
            app = action.get("application")
            assert app in APPLICATIONS, f"unknown dialplan application {app}"
            assert APPLICATIONS[app][0] in modules, f"{app} needs {APPLICATIONS[app][0]}"
            used.add(app)
    assert {"socket", "park", "play_and_get_digits", "playback", "transfer"} <= used


def test_extension_names_unique_per_context(files):
    for name, root in dialplan_roots(files).items():
        names = [e.get("name") for e in root.iter("extension")]
        assert len(names) == len(set(names)), name


def test_every_dialer_variable_and_extension_is_documented():
    """The dialplans' contract with the engine: every dialer_* variable, extension and
    destination the templates name is in docs/freeswitch.md."""
    documented = DOCS.read_text()
    for template in (PROJECT_ROOT / "dialplans").glob("*.xml"):
        for name in set(re.findall(r"\bdialer_[a-z_]*", template.read_text())):
            if name.endswith("_"):
                continue               # a prefix completed at run time (dialer_optout_key_9)
            assert f"`{name}`" in documented, f"{name} ({template.name}) missing from docs/freeswitch.md"


def _expand(text: str, variables: dict[str, str], groups: tuple[str, ...] = ()) -> str:
    text = re.sub(r"\$\{([a-z_]+)\}", lambda m: variables.get(m.group(1), ""), text)
    return re.sub(r"\$(\d)", lambda m: groups[int(m.group(1)) - 1] or "", text)


def hunt(roots, context: str, destination: str, variables: dict[str, str]) -> list[tuple[str, str]]:
    """mod_dialplan_xml's hunt, as far as these dialplans use it: the actions of the matching
    extensions in order, stopping at the first match without continue="true"."""
    actions = []
    for extension in roots[context].iter("extension"):
        found, groups = [], ()
        for condition in extension.findall("condition"):
            field = condition.get("field")
            value = destination if field == "destination_number" else _expand(field, variables)
            match = re.search(condition.get("expression"), value)
            if not match:
                break
            groups = match.groups()
            found += [(a.get("application"), a.get("data") or "", groups) for a in condition.findall("action")]
        else:
            actions += found
            if extension.get("continue") != "true":
                break
    return actions


def run(roots, context: str, destination: str, variables: dict[str, str], depth: int = 0) -> list[tuple[str, str]]:
    """Execute a hunt: apply `set`, follow `transfer` (the rest of the actions is dropped, as in
    FreeSWITCH), and return every (application, expanded data) run."""
    assert depth < 10, "transfer loop"
    assert context in roots, f"transfer to missing context {context}"
    executed = []
    variables["destination_number"] = destination     # the caller profile's, changed by transfer
    actions = hunt(roots, context, destination, variables)
    assert actions, f"no extension for {destination!r} in {context}"
    for app, data, groups in actions:
        data = _expand(data, variables, groups)
        executed.append((app, data))
        if app == "set":
            name, _, value = data.partition("=")
            variables[name] = value
        elif app == "unset":
            variables.pop(data, None)
        elif app == "play_and_get_digits":
            if variables.get("_keys"):
                variables["dialer_optout_digits"] = variables["_keys"]
        elif app == "transfer":
            target, _, rest = data.partition(" ")
            return executed + run(roots, rest.split()[1] if rest else context, target, variables, depth + 1)
        elif app in ("hangup", "park"):
            break
        elif app == "socket" and "_engine" in variables:
            variables.update(variables["_engine"])      # what the engine set in its session
            if not variables.get("_session_lost"):
                break                   # the engine hung up or moved the call: the dialplan ends
            # unreachable, or the session closed with the call up: the next actions run
    return executed


def apps(executed):
    return [app for app, _ in executed]


ENGINE_TOOK_IT = {"dialer_engine": "engine-a"}


def test_trunk_call_to_a_campaign_number_reaches_the_engine_with_its_campaign(files):
    roots, variables = dialplan_roots(files), {"caller_id_number": "3105550123", "_engine": ENGINE_TOOK_IT}
    executed = run(roots, "public", "+12125550100", variables)
    assert ("socket", "10.20.0.10:8084 async full") in executed
    assert variables["dialer_action"] == "inbound" and variables["dialer_campaign"] == "acme_sales"
    # QA7 F5: the number called as the trunk sent it, '+' included
    assert variables["dialer_did"] == "+12125550100" and variables["dialer_caller"] == "3105550123"


@pytest.mark.parametrize("sent", ["+12125550100", "12125550100"])
def test_dialer_did_is_the_number_as_the_trunk_sent_it(files, sent):
    variables = {"caller_id_number": "3105550123", "_engine": ENGINE_TOOK_IT}
    run(dialplan_roots(files), "public", sent, variables)
    assert variables["dialer_did"] == sent and variables["dialer_campaign"] == "acme_sales"
    for other in ("+121255501000", "2125550100", "++12125550100"):
        assert not hunt(dialplan_roots(files), "public", other, {}), other


def test_returned_call_to_an_unmapped_number_has_no_campaign(files):
    variables = {"caller_id_number": "3105550123", "_engine": ENGINE_TOOK_IT}
    run(dialplan_roots(files), "public", "12125550109", variables)
    assert variables["dialer_action"] == "inbound" and "dialer_campaign" not in variables


def test_engine_unreachable_caller_hears_a_message_not_dead_air(files):
    executed = run(dialplan_roots(files), "public", "12125550101", {"caller_id_number": "3105550123"})
    assert apps(executed)[-5:] == ["transfer", "log", "answer", "playback", "hangup"]
    assert executed[-2] == ("playback", "dialer/unavailable.wav")


def test_call_the_engine_let_go_with_the_caller_still_up_ends_quietly(files):
    variables = {"caller_id_number": "3105550123", "_engine": ENGINE_TOOK_IT, "_session_lost": True}
    executed = run(dialplan_roots(files), "public", "12125550101", variables)
    assert executed[-2:] == [("transfer", "dialer_after_engine_engine-a XML dialer_inbound"),
                             ("hangup", "NORMAL_CLEARING")]
    assert variables["hangup_after_bridge"] == "true"


def test_optout_ivr_key_hands_the_request_to_the_engine(files):
    variables = {"caller_id_number": "3105550123", "_keys": "9", "_engine": ENGINE_TOOK_IT}
    executed = run(dialplan_roots(files), "public", "+12125550199", variables)
    pagd = next(data for app, data in executed if app == "play_and_get_digits").split()
    assert pagd[:5] == ["1", "1", "3", "5000", "#"] and pagd[7:9] == ["dialer_optout_digits", "^9$"]
    assert executed[-1] == ("socket", "10.20.0.10:8084 async full")
    assert variables["dialer_action"] == "optout" and variables["dialer_optout_number"] == "3105550123"
    assert variables["dialer_optout_digits"] == "9" and variables["dialer_optout_source"] == "inbound"
    assert variables["dialer_optout_confirm_file"] == "dialer/optout_confirm.wav"


def test_customer_leg_sent_to_the_ivr_opts_out_the_number_dialed_not_our_caller_id(files):
    variables = {"caller_id_number": "12125550100", "dialer_number": "13105550123", "_keys": "9",
                 "_engine": ENGINE_TOOK_IT}
    run(dialplan_roots(files), INBOUND_CONTEXT, "dialer_optout", variables)
    assert variables["dialer_optout_number"] == "13105550123" and variables["dialer_optout_source"] == "outbound"
    assert variables["dialer_action"] == "optout"


def test_optout_ivr_without_the_key_changes_nothing(files):
    variables = {"caller_id_number": "3105550123", "_engine": ENGINE_TOOK_IT}
    executed = run(dialplan_roots(files), "public", "12125550199", variables)
    assert "socket" not in apps(executed) and apps(executed)[-2:] == ["playback", "hangup"]
    assert "dialer_action" not in variables


def test_optout_recorded_by_the_engine_fires_no_fallback_even_if_the_session_is_lost(files):
    variables = {"caller_id_number": "3105550123", "_keys": "9", "_session_lost": True,
                 "_engine": {"dialer_engine": "engine-a", "dialer_optout_recorded": "true"}}
    executed = run(dialplan_roots(files), "public", "12125550199", variables)
    assert "event" not in apps(executed) and executed[-1] == ("hangup", "NORMAL_CLEARING")


def test_optout_lost_before_the_engine_recorded_it_fires_the_event(files):
    variables = {"caller_id_number": "3105550123", "_keys": "9", "_session_lost": True, "_engine": ENGINE_TOOK_IT}
    executed = run(dialplan_roots(files), "public", "12125550199", variables)
    event = next(data for app, data in executed if app == "event")
    assert "dialer_optout_number=3105550123" in event and "dialer_engine=engine-a" in event


def test_optout_with_engine_down_fires_an_event_so_the_request_is_not_lost(files):
    variables = {"caller_id_number": "3105550123", "_keys": "9"}
    executed = run(dialplan_roots(files), "public", "12125550199", variables)
    event = next(data for app, data in executed if app == "event")
    assert "Event-Subclass=dialer::optout_unhandled" in event and "dialer_optout_number=3105550123" in event
    assert executed[-2] == ("playback", "dialer/optout_failed.wav")


def test_outbound_answer_parks_with_a_safety_timeout(files):
    variables = {"dialer_number": "13105550123", "dialer_campaign": "acme_sales"}
    executed = run(dialplan_roots(files), OUTBOUND_CONTEXT, "dialer_amd", variables)
    assert executed[-1] == ("park", "")
    assert variables["park_timeout"] == "120:ALLOTTED_TIMEOUT" and variables["dialer_role"] == "customer"
    assert variables["dialer_vm_file"] == "/usr/share/freeswitch/sounds/dialer/acme_voicemail.wav"


def test_safe_harbor_key_opts_out_the_number_dialed(files):
    variables = {"dialer_number": "13105550123", "dialer_campaign": "acme_sales", "_keys": "9", "_engine": ENGINE_TOOK_IT,
                 "caller_id_number": "12125550100"}
    executed = run(dialplan_roots(files), OUTBOUND_CONTEXT, "dialer_safe_harbor", variables)
    pagd = next(data for app, data in executed if app == "play_and_get_digits").split()
    assert pagd[5] == "/usr/share/freeswitch/sounds/dialer/acme_safe_harbor.wav"
    assert variables["dialer_optout_number"] == "13105550123" and variables["dialer_optout_source"] == "safe_harbor"
    assert variables["dialer_action"] == "optout" and executed[-1][0] == "socket"


def test_safe_harbor_without_key_hangs_up_after_the_message(files):
    variables = {"dialer_number": "13105550123", "dialer_safe_harbor_file": "campaign/sh.wav",
                 "dialer_optout_digits": "9"}       # left over from an earlier menu: cleared first
    executed = run(dialplan_roots(files), OUTBOUND_CONTEXT, "dialer_safe_harbor", variables)
    assert apps(executed)[-3:] == ["play_and_get_digits", "transfer", "hangup"]
    assert "campaign/sh.wav" in executed[-3][1]          # the engine's file wins over the default


@pytest.mark.parametrize("destination", ["dialer_vm_drop", "dialer_vm_wait"])
def test_voicemail_drop_plays_the_campaign_message_uninterrupted(files, destination):
    variables = {"dialer_vm_file": "campaign/vm.wav"}
    executed = run(dialplan_roots(files), OUTBOUND_CONTEXT, destination, variables)
    assert ("playback", "campaign/vm.wav") in executed and apps(executed)[-1] == "hangup"
    assert variables["playback_terminators"] == "none"
    if destination == "dialer_vm_wait":
        assert apps(executed).index("wait_for_silence") < apps(executed).index("playback")


def test_agent_login_keeps_the_leg_up_and_parks_it_again_after_each_call(files):
    variables = {}
    executed = run(dialplan_roots(files), "default", "*9123", variables)
    assert executed[-1] == ("park", "")
    assert variables["dialer_role"] == "agent" and variables["dialer_agent_id"] == "123"
    assert variables["park_after_bridge"] == "true"
    assert "park_timeout" not in variables   # it would clear park_after_bridge (switch_ivr_park)
    for too_short_or_long in ("*912", "*91234567"):
        assert not hunt(dialplan_roots(files), "default", too_short_or_long, {})


def test_every_literal_transfer_target_exists(files):
    roots = dialplan_roots(files)
    for root in roots.values():
        for action in root.iter("action"):
            if action.get("application") == "transfer" and "$" not in action.get("data"):
                target, _, context = action.get("data").split(" ")
                assert hunt(roots, context, target, {}), action.get("data")


# -- the command --------------------------------------------------------------------------------

def test_the_dialer_command_has_the_freeswitch_group():
    from cli import main                # imports every package's commands: kept to this test
    assert main.get_command(None, "freeswitch") is freeswitch


def test_cli_render_writes_the_layout_and_tells_the_engine_url(tmp_path):
    result = CliRunner().invoke(freeswitch, ["render", "--out", str(tmp_path / "fs"), "--site", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fs/autoload_configs/event_socket.conf.xml").is_file()
    assert (tmp_path / "fs/dialplan/dialer_inbound.xml").is_file()
    assert "generated" in result.output and "FREESWITCH_URL" in result.output
    password = params(ET.parse(tmp_path / "fs/autoload_configs/event_socket.conf.xml").getroot())["password"]
    assert password not in result.output                 # the secret stays in the 0600 files


def test_rerender_removes_a_gateway_taken_out_of_the_site(tmp_path, site):
    write(render(site), tmp_path)
    assert (tmp_path / "sip_profiles/external/dialer_carrier_b.xml").exists()
    write(render(parse_site({"gateways": [{"name": "carrier_a", "proxy": "10.0.0.1", "register": False}]})), tmp_path)
    assert sorted(p.name for p in (tmp_path / "sip_profiles/external").iterdir()) == ["dialer_carrier_a.xml"]
    assert not (tmp_path / "dialplan/public/00_dialer_dids.xml").exists()


def test_a_render_that_fails_half_way_leaves_the_earlier_one_whole(tmp_path):
    """QA: a re-render that could not write one file had already written a new Event Socket
    password into the switch's file while the engine's .env kept the old one."""
    out = tmp_path / "fs"
    runner = CliRunner()
    assert runner.invoke(freeswitch, ["render", "--out", str(out)]).exit_code == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "dialplan/dialer_agents.xml").unlink()
    (out / "dialplan/dialer_agents.xml").mkdir()               # a target that cannot be replaced
    result = runner.invoke(freeswitch, ["render", "--out", str(out)])   # would generate a new password
    assert result.exit_code == 1 and "is a directory" in result.output
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    del before[out / "dialplan/dialer_agents.xml"]
    assert after == before                                    # nothing replaced, no temporary left


def test_cli_render_names_the_files_it_removed(tmp_path, site):
    site_file = tmp_path / "site.toml"
    out = tmp_path / "fs"
    write(render(site), out)
    site_file.write_text('[[gateways]]\nname = "carrier_a"\nproxy = "10.0.0.1"\nregister = false\n')
    result = CliRunner().invoke(freeswitch, ["render", "--out", str(out), "--site", str(site_file)])
    assert result.exit_code == 0, result.output
    assert "removed" in result.output and "killgw carrier_b" in result.output


def test_cli_render_refuses_a_bad_site_file(tmp_path):
    bad = tmp_path / "site.toml"
    bad.write_text('[event_socket]\nlisten_ip = "0.0.0.0"\n')
    result = CliRunner().invoke(freeswitch, ["render", "--out", str(tmp_path / "fs"), "--site", str(bad)])
    assert result.exit_code == 1 and "acl" in result.output
    assert not (tmp_path / "fs").exists()


def test_contract_names_exist_in_the_rendered_dialplans(files):
    roots = dialplan_roots(files)
    for destination in Destination:
        assert hunt(roots, destination.context, destination.extension, {}), destination
    text = "".join(o.text for p, o in files.items() if p.startswith("dialplan/"))
    for variable, values in ((Var.ACTION, Action), (Var.ROLE, Role), (Var.OPTOUT_SOURCE, OptoutSource)):
        for member in values:
            assert f"{variable.value}={member.value}" in text, member
    documented = DOCS.read_text()
    for variable in Var:
        assert variable.value in text and f"`{variable.value}`" in documented, variable
    assert OPTOUT_UNHANDLED_SUBCLASS in text


def test_contexts_are_the_ones_the_engine_is_told(files):
    assert set(dialplan_roots(files)) == {OUTBOUND_CONTEXT, INBOUND_CONTEXT, AGENTS_CONTEXT, "public", "default"}


def test_cli_render_prints_an_ipv6_listen_address_in_brackets(tmp_path):
    site_file = tmp_path / "site.toml"
    site_file.write_text('[event_socket]\nlisten_ip = "fd00::5"\nacl = ["fd00::/64"]\n')
    result = CliRunner().invoke(freeswitch, ["render", "--out", str(tmp_path / "fs"), "--site", str(site_file)])
    assert result.exit_code == 0, result.output
    assert "esl://:<password>@[fd00::5]:8021" in result.output
