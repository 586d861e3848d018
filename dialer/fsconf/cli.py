"""`dialer freeswitch render --out DIR [--site site.toml]`: write a site's FreeSWITCH
configuration in FreeSWITCH's own layout (see dialer.fsconf.render)."""
from __future__ import annotations

from pathlib import Path

import click

from dialer.config import ESL_HOST_PLACEHOLDER
from dialer.errors import ConfigError
from dialer.fsconf.render import ENV_FILE, render, stale_outputs, write
from dialer.fsconf.site import load_site


@click.group("freeswitch")
def freeswitch() -> None:
    """FreeSWITCH configuration and dialplans for the dialer."""


@freeswitch.command("render")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="directory to write autoload_configs/, dialplan/, sip_profiles/ into")
@click.option("--site", "site_file", type=click.Path(dir_okay=False, path_type=Path),
              help="site file (TOML); without it: loopback Event Socket, engine on 127.0.0.1, no trunk")
def render_command(out_dir: Path, site_file: Path | None) -> None:
    """Render the configuration of one FreeSWITCH site."""
    try:
        site = load_site(site_file)
        outputs = render(site)
        removed = stale_outputs(outputs, out_dir)
        written = write(outputs, out_dir)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    for path in written:
        click.echo(f"wrote {path}")
    for path in removed:
        # a copy (cp -r) onto the switch does not delete: the admin must, and unload a gateway
        click.echo(f"removed {path} (the site no longer has it): delete it on the switch too"
                   + (f"; sofia profile external killgw {path.stem.removeprefix('dialer_')}"
                      if path.parent.name == "external" else ""))
    env_file = out_dir / ENV_FILE
    if site.esl_password_generated:
        click.echo("Event Socket password: none in the site file, a new one was generated; it is in "
                   f"{out_dir / 'autoload_configs/event_socket.conf.xml'} and {env_file} (mode 0600). "
                   "Put it in the site file to keep it across renders.")
    if not site.gateways:
        click.echo("note: no [[gateways]] in the site file, so no SIP trunk was written")
    # The same URL as the .env holds (password masked): with listen_ip 0.0.0.0 the host there is
    # a placeholder the engine refuses until it is filled in (QA7 fsconf F4).
    click.echo(f"engine: set FREESWITCH_URL from {env_file} "
               f"({site.freeswitch_url_with('<password>')}), "
               f"and run its outbound socket server on {site.engine_socket}")
    if site.esl_host_unknown:
        click.echo(f"fill in: listen_ip {site.esl_listen_ip} is every interface, so {env_file} says "
                   f"{ESL_HOST_PLACEHOLDER}: replace it with an address of this FreeSWITCH host the engine "
                   "can reach (the engine refuses the placeholder)")
