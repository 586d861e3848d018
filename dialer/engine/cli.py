"""`dialer run`, `dialer demo` and `dialer agent ...`: the engine's entry points."""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import subprocess
import signal
from datetime import datetime
from pathlib import Path

import click
import gevent
from rich.console import Console

from dialer import config
from dialer.errors import DialerError


SERVICES_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def _setup_logging(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.WARNING
    if os.environ.get("DIALER_LOG_FORMAT") == "json":
        from dialer import observability
        observability.configure_logging(level)   # JSON lines, phone numbers masked
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@click.command("demo")
@click.option("--duration", default=120.0, show_default=True, help="seconds of campaign time (start-up not counted)")
@click.option("--agents", default=8, show_default=True, help="simulated agents")
@click.option("--leads", default=3000, show_default=True,
              help="about how many synthetic leads at most (fewer when few area codes are open)")
@click.option("--seed", default=7, show_default=True)
@click.option("--at", "at_text", default=None, help="ISO 8601 moment for the compliance clock (default: now)")
@click.option("--json", "as_json", is_flag=True, help="print only one JSON summary object on stdout")
@click.option("-v", "--verbose", is_flag=True)
def demo(duration: float, agents: int, leads: int, seed: int, at_text: str | None, as_json: bool,
         verbose: bool) -> None:
    """A predictive campaign on the embedded simulated FreeSWITCH (or FREESWITCH_URL), with the
    report at the end. Starts the project's PostgreSQL and Redis when they are not running and
    DATABASE_URL / REDIS_URL are not set, and applies the schema migrations either way."""
    from dialer.demo import run_demo
    _setup_logging(verbose)
    # With --json, stdout carries the JSON object alone; the live view goes to stderr.
    console = Console(stderr=as_json)
    try:
        at = datetime.fromisoformat(at_text) if at_text else None
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 moment: {at_text!r}", param_hint="--at") from None
    if at is not None and at.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2026-11-24T15:00:00-05:00", param_hint="--at")
    try:
        with local_services(console):
            summary = run_demo(duration=duration, agents=agents, leads=leads, seed=seed, at=at, console=console)
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary))


@contextlib.contextmanager
def local_services(console: Console):
    """Use the servers that answer; else, when DATABASE_URL and REDIS_URL are unset, start the
    project's own (scripts/services.sh) for the time of the command."""
    from dialer import storage
    from dialer.demo import check_ready
    try:
        check_ready()
    except DialerError:
        if os.environ.get("DATABASE_URL") or os.environ.get("REDIS_URL") or not SERVICES_SCRIPT.exists():
            raise
    else:
        # (outside the try: an error of the demo itself must not look like missing servers)
        storage.migrate()       # servers the operator started may hold an empty database
        yield
        return
    console.print("starting the project's PostgreSQL and Redis (scripts/services.sh)")
    result = subprocess.run(["bash", str(SERVICES_SCRIPT), "start"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise DialerError(f"scripts/services.sh start failed: {result.stderr.strip()[-500:]}")
    for line in result.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line.removeprefix("export ").partition("=")
            os.environ[key] = value
    try:
        storage.migrate()
        yield
    finally:
        subprocess.run(["bash", str(SERVICES_SCRIPT), "stop"], capture_output=True, timeout=120)


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
