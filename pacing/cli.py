"""`dialer simulate`: one pacing policy on one simulated campaign (pacing.simulator).

The last line printed with --json is the result object of issue 4:
talk_minutes_per_agent_hour, bound_ratio (to the ceiling 60 x talk / (talk + wrap)), occupancy,
mean_wait_s, p90_wait_s, abandon_rate_30d, abandon_rate_worst_day, abandon_rate_worst_hour,
calls, live_answers, abandoned.
"""
from __future__ import annotations

import json
import math

import click

from dialer.errors import DialerError
from pacing.model import Accounting, PacingConfig, PacingMode
from pacing.simulator import Scenario, simulate as run_simulation

_MODES = ["predictive", "progressive", "power", "vicidial", "webitel"]


def _json_value(value: float | int) -> float | int | None:
    if isinstance(value, float) and not math.isfinite(value):
        return None      # JSON has no NaN: a rate over too few live answers is null
    return round(value, 6) if isinstance(value, float) else value


class _Range(click.FloatRange):
    """click.FloatRange that also refuses nan and inf (a comparison with nan is always false,
    so FloatRange lets it through)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


@click.command("simulate")
@click.option("--agents", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--contact-rate", type=_Range(0.001, 1.0), default=0.15,
              show_default=True, help="Share of attempts answered by a live person.")
@click.option("--talk-mean", type=_Range(min=1.0), default=120.0, show_default=True)
@click.option("--wrap-mean", type=_Range(min=0.5), default=15.0, show_default=True)
@click.option("--ring-mean", type=_Range(min=1.0, max=24.0), default=8.0,
              show_default=True, help="Mean time to answer, seconds.")
@click.option("--days", type=_Range(min=0.01, max=3660), default=1.0, show_default=True,
              help="8-hour shifts to simulate.")
@click.option("--mode", type=click.Choice(_MODES), default="predictive", show_default=True)
@click.option("--ratio", type=_Range(min=1.0, max=100.0), default=2.0, show_default=True,
              help="Calls per free agent in power mode.")
@click.option("--target", type=_Range(0.0, 0.5), default=0.03, show_default=True,
              help="Abandon rate target (predictive, vicidial, webitel).")
@click.option("--uk", is_flag=True, help="UK accounting: AMD false machines count as abandoned.")
@click.option("--known", is_flag=True, help="Predictive only: give the pacer the true parameters.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
def simulate(agents: int, contact_rate: float, talk_mean: float, wrap_mean: float,
             ring_mean: float, days: float, mode: str, ratio: float, target: float, uk: bool,
             known: bool, seed: int, as_json: bool) -> None:
    """Simulate a campaign with one pacing policy and print its figures."""
    if known and mode != "predictive":
        raise click.UsageError("--known only applies to --mode predictive")
    # an option the mode does not read is said so on stderr (not refused: a script may pass the
    # same options to every mode, and the issue's --target "applies to every mode that has one")
    given = click.get_current_context().get_parameter_source
    if mode != "power" and given("ratio") is click.core.ParameterSource.COMMANDLINE:
        click.echo(f"note: --ratio is not used by --mode {mode} (power only)", err=True)
    if mode in ("progressive", "power") and given("target") is click.core.ParameterSource.COMMANDLINE:
        click.echo(f"note: --target is not used by --mode {mode} (no abandon target)", err=True)
    try:
        scenario = Scenario(agents=agents, contact_rate=contact_rate, talk_mean_s=talk_mean,
                            wrap_mean_s=wrap_mean, ring_mean_s=ring_mean,
                            ring_sd_s=ring_mean / 2.0, days=days, seed=seed,
                            accounting=Accounting.UK if uk else Accounting.US)
        config = PacingConfig(mode=PacingMode(mode), ratio=ratio, target=target)
        result = run_simulation(scenario, config, known=known)
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    summary = {key: _json_value(value) for key, value in result.summary().items()}
    if as_json:
        click.echo(json.dumps(summary))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"{result.policy}: {agents} agents, contact {contact_rate:.0%}, "
                        f"talk {talk_mean:.0f} s, {days:g} day(s), seed {seed}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, "n/a" if value is None else
                      (f"{value:.4f}" if isinstance(value, float) else str(value)))
    Console().print(table)
