"""`dialer run`, `dialer demo` and `dialer agent ...`: the engine's entry points."""
from __future__ import annotations

import gc
import logging
import signal
from datetime import datetime

import click
import gevent
from rich.console import Console

from dialer import config
from dialer.errors import DialerError


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command("demo")
@click.option("--seconds", default=60.0, show_default=True, help="how long the campaign runs")
@click.option("--agents", default=5, show_default=True, help="simulated agents")
@click.option("--seed", default=7, show_default=True)
@click.option("--at", "at_text", default=None, help="ISO 8601 moment for the compliance clock (default: now)")
@click.option("-v", "--verbose", is_flag=True)
def demo(seconds: float, agents: int, seed: int, at_text: str | None, verbose: bool) -> None:
    """A predictive campaign on the embedded simulated FreeSWITCH (or FREESWITCH_URL)."""
    from dialer.demo import check_ready, run_demo
    _setup_logging(verbose)
    console = Console()
    try:
        at = datetime.fromisoformat(at_text) if at_text else None
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 moment: {at_text!r}", param_hint="--at") from None
    if at is not None and at.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2026-11-24T15:00:00-05:00", param_hint="--at")
    try:
        check_ready()
        run_demo(seconds=seconds, agents=agents, seed=seed, at=at, console=console)
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("run")
@click.option("-v", "--verbose", is_flag=True)
def run(verbose: bool) -> None:
    """Run the engine against the FreeSWITCH nodes of FREESWITCH_URL until SIGINT/SIGTERM.

    Campaigns are started, paused and stopped with `dialer campaign ...` (or the web app);
    agents log in with `dialer agent login`."""
    from dialer.compliance.service import live_gate
    from dialer.engine.engine import Engine, EngineConfig
    _setup_logging(verbose)
    try:
        nodes = config.freeswitch_nodes()
        if nodes is None:
            raise click.ClickException("FREESWITCH_URL is not set (esl://:PASSWORD@HOST:PORT[,...]); "
                                       "`dialer demo` runs on the simulated switch")
        engine = Engine(EngineConfig.from_env(nodes), live_gate()).start()
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGINT, stop.set)
    gevent.signal_handler(signal.SIGTERM, stop.set)
    # Start-up objects (modules, rule packs, bitsets) never die: keep them out of the cyclic
    # collector's full passes, which would otherwise stall the hub for tens of milliseconds.
    gc.freeze()
    click.echo(f"engine {engine.engine_id} running; Ctrl-C stops it (calls in flight finish)")
    stop.wait()
    engine.stop()
