"""`dialer campaign ...` and `dialer leads ...` commands (docs/campaigns.md).

Exit codes: 0 done, 1 refused (unknown campaign, invalid settings, refused transition, file not
importable), 2 usage error (click).
"""
from __future__ import annotations

import json
from pathlib import Path

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeElapsedColumn, TimeRemainingColumn, \
    TransferSpeedColumn
from rich.table import Table

from dialer import campaigns, leads, storage
from dialer.campaigns import CampaignSettings, SettingsError
from dialer.errors import DialerError

_out = Console()
_err = Console(stderr=True)


class _Refused(click.ClickException):
    exit_code = 1


def _fail(exc: DialerError):
    raise _Refused(str(exc)) from exc


def _assignments(texts: tuple[str, ...]) -> list[tuple[str, object]]:
    """KEY=VALUE arguments; a malformed one is a usage error (exit 2), like any bad argument."""
    try:
        return [campaigns.parse_assignment(text) for text in texts]
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc


def _settings_from(settings_file: Path | None, assignments: tuple[str, ...]) -> CampaignSettings:
    document: dict = {}
    if settings_file is not None:
        try:
            document = json.loads(settings_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise _Refused(f"{settings_file}: cannot read: {exc}") from exc
        except ValueError as exc:
            raise _Refused(f"{settings_file}: not JSON: {exc}") from exc
    document = campaigns.apply_assignments(document, _assignments(assignments))
    return CampaignSettings.from_dict(document)


@click.group("campaign")
def campaign() -> None:
    """Campaigns: create, list, show, settings and status."""


@campaign.command("create")
@click.argument("name")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path),
              help="settings as a JSON file (docs/campaigns.md)")
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE",
              help="one setting (dotted key, JSON or plain value); repeatable, applied after --settings")
@click.option("--json", "as_json", is_flag=True, help="print the campaign as JSON")
def campaign_create(name, settings_file, assignments, as_json) -> None:
    """Create campaign NAME (status draft)."""
    try:
        settings = _settings_from(settings_file, assignments)
        with storage.connect_db() as conn:
            created = campaigns.create_campaign(conn, name, settings)
    except DialerError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(created.to_dict()))
        return
    _out.print(f"campaign [bold]{created.name}[/] created (id {created.id}, status {created.status.value})")
    if problems := created.settings.start_problems():
        _out.print("before it can start:\n  " + "\n  ".join(problems))


@campaign.command("set")
@click.argument("name")
@click.argument("assignments", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--json", "as_json", is_flag=True)
def campaign_set(name, assignments, as_json) -> None:
    """Change settings of campaign NAME (validated; engines reload on the new settings_version)."""
    try:
        pairs = _assignments(assignments)
        with storage.connect_db() as conn:
            updated = campaigns.update_settings(conn, name, pairs)
    except DialerError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(updated.to_dict()))
    else:
        _out.print(f"campaign [bold]{updated.name}[/]: settings version {updated.settings_version}")


@campaign.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON array")
def campaign_list(as_json) -> None:
    """Every campaign with its status and lead counts."""
    try:
        with storage.connect_db() as conn:
            rows = campaigns.list_campaigns(conn)
    except DialerError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps([{"id": r["id"], "name": r["name"], "status": r["status"], "lists": r["lists"],
                                "leads": r["leads_total"], "leads_by_status": r["leads"],
                                "created_at": campaigns.iso_utc(r["created_at"])} for r in rows]))
        return
    # Names stay whole at any width (no wrap, full width): the other columns wrap or fold instead.
    # A light frame (no outer edge, no column rules) leaves room for them in 80-100 columns.
    table = Table(title="campaigns", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    table.add_column("name", no_wrap=True, min_width=max((len(r["name"]) for r in rows), default=4))
    table.add_column("status", no_wrap=True)
    for column in ("lists", "leads", "new", "callable", "in\nprogress", "done", "closed"):
        table.add_column(column, justify="right", overflow="fold")
    table.add_column("created", overflow="fold")
    for r in rows:
        by = r["leads"]
        table.add_row(r["name"], r["status"], str(r["lists"]), str(r["leads_total"]), str(by.get("new", 0)),
                      str(by.get("callable", 0)), str(by.get("in_progress", 0)), str(by.get("done", 0)),
                      str(by.get("closed", 0)), r["created_at"].strftime("%Y-%m-%d %H:%M"))
    _out.print(table)


@campaign.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def campaign_show(name, as_json) -> None:
    """Settings, lists and lead counts of campaign NAME."""
    try:
        with storage.connect_db() as conn:
            found = campaigns.get_campaign(conn, name)
            lists = campaigns.lists_of(conn, found.id)
            counts = campaigns.lead_counts(conn, found.id)
    except DialerError as exc:
        _fail(exc)
    if as_json:
        out = found.to_dict()
        out["lists"] = [{**{k: v for k, v in row.items() if not k.endswith("_at")},
                         "created_at": campaigns.iso_utc(row["created_at"]),
                         "last_imported_at": campaigns.iso_utc(row["last_imported_at"])} for row in lists]
        out["leads_by_status"] = counts
        out["start_problems"] = found.settings.start_problems()
        click.echo(json.dumps(out))
        return
    _out.print(f"[bold]{found.name}[/] (id {found.id}) status [bold]{found.status.value}[/], "
               f"settings version {found.settings_version}")
    settings = Table(title="settings", show_header=False)
    for key, value in found.settings.to_dict().items():
        settings.add_row(key, json.dumps(value) if not isinstance(value, str) else value)
    _out.print(settings)
    table = Table(title="lists")
    for column in ("name", "read", "imported", "duplicates", "rejected", "imports", "last import"):
        table.add_column(column)
    for row in lists:
        table.add_row(row["name"], str(row["rows_read"]), str(row["imported"]), str(row["duplicates"]),
                      str(row["rejected"]), str(row["imports"]),
                      row["last_imported_at"].strftime("%Y-%m-%d %H:%M") if row["last_imported_at"] else "")
    _out.print(table)
    _out.print("leads: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    if problems := found.settings.start_problems():
        # a campaign served now (settings stored before the check) is not served by any engine
        lead_in = ("no engine serves it until then:" if found.status in campaigns.SERVED
                   else "before it can start:")
        _out.print(f"{lead_in}\n  " + "\n  ".join(problems))


def _command(name: str, command: str, as_json: bool) -> None:
    try:
        with storage.connect_db() as conn:
            changed = campaigns.apply_command(conn, name, command)
    except DialerError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps({"name": changed.name, "status": changed.status.value}))
    else:
        _out.print(f"campaign [bold]{changed.name}[/]: {changed.status.value}")


def _status_command(command: str, help_text: str) -> None:
    @campaign.command(command, help=help_text)
    @click.argument("name")
    @click.option("--json", "as_json", is_flag=True)
    def run(name, as_json) -> None:
        _command(name, command, as_json)


_status_command("start", "Start campaign NAME (draft or stopped): engines begin dialing.")
_status_command("pause", "Pause running campaign NAME: no new originates, calls in flight go on.")
_status_command("resume", "Resume paused campaign NAME.")
_status_command("stop", "Stop campaign NAME: calls in flight finish, then the engine releases its leads and "
                        "marks it stopped (a draft is stopped at once).")


@click.group("leads")
def leads_group() -> None:
    """Leads: import CSV files into a campaign."""


@leads_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--campaign", "campaign_name", required=True, help="campaign to import into")
@click.option("--list", "list_name", default=None, help="list name (default: the file name)")
@click.option("--default-region", default="US", show_default=True,
              help="ISO region for numbers written without +country code")
@click.option("--rejects", "rejects_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="rejects CSV (default: FILE.rejects.csv beside FILE, written only when a row is rejected)")
@click.option("--map", "mappings", multiple=True, metavar="FIELD=COLUMN",
              help="take lead FIELD from header COLUMN (fields: " + ", ".join(leads.LEAD_FIELDS) + ")")
@click.option("--workers", type=click.IntRange(0, 16), default=None,
              help="normalising processes (default: 2 for files over 4 MB, else 0 = in this process)")
@click.option("--json", "as_json", is_flag=True, help="print the summary as JSON (no progress bar)")
def leads_import(file, campaign_name, list_name, default_region, rejects_path, mappings, workers, as_json) -> None:
    """Import FILE (CSV with a header line) into a campaign's list."""
    overrides = {}
    for item in mappings:
        if "=" not in item:
            raise click.UsageError(f"--map {item!r}: expected FIELD=COLUMN")
        key, value = item.split("=", 1)
        # An unknown field is wrong usage whatever the file holds: exit 2 before anything is read
        # (QA7 ops 3; import_csv refuses it too, exit 1, for other callers).
        if key.strip() not in leads.FIELD_ALIASES:
            raise click.UsageError(f"--map {item!r}: unknown lead field {key.strip()!r} "
                                   f"(known: {', '.join(leads.LEAD_FIELDS)})")
        overrides[key.strip()] = value.strip()
    # Checked here, before the campaign or the file is looked at, to exit 2 (a usage error) with
    # nothing imported; import_csv refuses the same paths (exit 1) for other callers.
    rejects_target = rejects_path or file.with_name(file.stem + ".rejects.csv")
    label = "--rejects" if rejects_path else "the default rejects file (choose another with --rejects)"
    if problem := leads.output_paths_problem(file, [(label, rejects_target)]):
        raise click.UsageError(problem)
    progress = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                        TransferSpeedColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=_err,
                        disable=as_json)
    try:
        with progress:
            task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)
            summary = leads.import_csv(file, campaign_name, list_name=list_name, default_region=default_region,
                                       rejects_path=rejects_path, workers=workers, column_overrides=overrides,
                                       progress=lambda done, total: progress.update(task, completed=done))
    except DialerError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(summary.to_dict()))
        return
    table = Table(title=f"{summary.file} -> {summary.campaign} / {summary.list_name}", show_header=False)
    for label, value in (("read", summary.rows_read), ("imported", summary.imported),
                         ("duplicates in the file", summary.duplicates_in_file),
                         ("already in the campaign", summary.duplicates_in_campaign),
                         ("rejected", summary.rejected), ("blank lines", summary.blank_lines),
                         ("seconds", summary.seconds)):
        table.add_row(label, str(value))
    for reason, n in summary.rejects_by_reason.items():
        table.add_row(f"  rejected: {reason}", str(n))
    _out.print(table)
    if summary.rejects_file:
        _out.print(f"rejected rows with their reasons: {summary.rejects_file}")
    if summary.stale_rejects_file:
        _out.print(f"note: {summary.stale_rejects_file} is from an earlier import (this one rejected "
                   "no row and did not write it)")
