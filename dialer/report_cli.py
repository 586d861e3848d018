"""`dialer status` and `dialer report` (issue 6, item 5; docs/operations.md). The figures and their
rendering are in dialer.reporting; this module only parses options, opens connections and prints.

Exit codes: 0 done (also Ctrl-C out of --watch), 1 refused (PostgreSQL unreachable, unknown
campaign, empty period, charts not writable), 2 usage error (click).
"""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from dialer import reporting, storage
from dialer.errors import DialerError

_out = Console()
_err = Console(stderr=True)
# Status asks Redis once a second: fail fast rather than stall the display when it is down.
_REDIS_TIMEOUT_S = 0.5
_REDIS_RETRIES = 1


class _Refused(click.ClickException):
    exit_code = 1


def _iso_option(_ctx, param, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time (2026-11-01, 2026-11-01T08:00, "
                                 "2026-11-01T08:00:00Z)", param=param) from None
    # the report walks the period day by day and shifts it by time zones: the far ends of the
    # calendar overflow, and year 1 would take minutes
    if not 2000 <= moment.year <= 2999:
        raise click.BadParameter(f"{value!r}: the year must be between 2000 and 2999", param=param)
    return moment


@click.command("status")
@click.option("--campaign", default=None, help="only this campaign")
@click.option("--watch", is_flag=True, help="refresh every second until Ctrl-C")
@click.option("--json", "as_json", is_flag=True, help="print one snapshot as JSON")
def status(campaign: str | None, watch: bool, as_json: bool) -> None:
    """Live table per campaign: agents by state, calls ringing and connected, calls per minute,
    abandon % today and over 30 days, AMD split and compliance blocks today."""
    if watch and as_json:
        raise click.UsageError("--watch and --json do not go together (--json prints one snapshot)")
    redis_client = storage.connect_redis(timeout_s=_REDIS_TIMEOUT_S, retries=_REDIS_RETRIES)
    try:
        with storage.connect_db() as conn:
            snapshot = reporting.status_snapshot(conn, redis_client, campaign)
            if as_json:
                click.echo(json.dumps(snapshot.to_dict()))
            elif not watch:
                _out.print(reporting.render_status(snapshot))
            else:
                _watch(conn, redis_client, campaign, snapshot)
    except DialerError as exc:
        raise _Refused(str(exc)) from exc
    finally:
        redis_client.close()


def _watch(conn, redis_client, campaign: str | None, first) -> None:
    """Redraw every second. PostgreSQL failing mid-watch is shown and retried, not fatal."""
    with Live(reporting.render_status(first), console=_out, auto_refresh=False) as live:
        try:
            while True:
                time.sleep(1.0)
                try:
                    if conn.closed or conn.broken:
                        conn = storage.connect_db()
                    view = reporting.render_status(reporting.status_snapshot(conn, redis_client, campaign))
                except DialerError as exc:
                    view = Text(f"error: {exc} (retrying every second)", style="red bold")
                    conn.close()
                live.update(view, refresh=True)
        except KeyboardInterrupt:
            pass
        finally:
            conn.close()


@click.command("report")
@click.option("--campaign", default=None, help="only this campaign (default: every campaign)")
@click.option("--since", callback=_iso_option, help="period start, ISO 8601 (default: the campaign's creation); "
                                                    "without an offset, in the campaign's time zone")
@click.option("--until", callback=_iso_option, help="period end, ISO 8601, exclusive (default: now)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="same as --format json")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="also write PNG charts into this directory")
@click.option("--min-live-per-hour", type=click.IntRange(1), default=reporting.DEFAULT_MIN_LIVE_PER_HOUR,
              show_default=True, help="list an hour's abandon rate only with at least this many live answers")
def report(campaign, since, until, fmt, as_json, png_dir, min_live_per_hour) -> None:
    """Dispositions, outcomes, abandon rate (period, worst 30-day window, per day, per hour), AMD
    results and causes, compliance blocks by reason, agents' time in state."""
    fmt = "json" if as_json else fmt
    try:
        with storage.connect_db() as conn:
            reports = reporting.campaign_reports(conn, campaign, since=since, until=until,
                                                 min_live_per_hour=min_live_per_hour)
        charts = [path for r in reports for path in reporting.write_charts(r, png_dir)] if png_dir else []
    except DialerError as exc:
        raise _Refused(str(exc)) from exc
    except OSError as exc:
        raise _Refused(f"cannot write charts into {png_dir}: {exc}") from exc
    if fmt == "json":
        click.echo(json.dumps({"campaigns": [r.to_dict() for r in reports], "charts": [str(p) for p in charts]}))
    elif fmt == "csv":
        click.echo(reporting.report_csv(reports), nl=False)
    else:
        for r in reports:
            _out.print(reporting.render_report(r))
        if not reports:
            _out.print("no campaign")
    if charts and fmt != "json":
        (_out if fmt == "table" else _err).print("charts: " + ", ".join(str(p) for p in charts))
