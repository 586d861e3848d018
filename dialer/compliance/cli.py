"""`dialer dnc ...` and `dialer compliance ...` commands (docs/compliance.md)."""
from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from dialer import storage
from dialer.compliance.geo import NumberError, normalize, valid_number
from dialer.compliance.model import (
    CallRequest, Campaign, ComplianceError, ConsentKind, Decision, DialMode, Lead, LineType, ListKind, Purpose, Voice,
    iso_z,
)
from dialer.errors import DialerError

CHECK_FIELDS = ("number", "at", "state", "zip", "purpose", "mode", "consent", "voice", "region", "line_type")
# `compliance check` stands for a campaign whose caller ID is configured: phonenumbers' example
# US number (valid by its metadata), so that US-CID / UK-CLI see a valid caller ID.
_CONFIGURED_CALLER_ID = "+12015550123"
_err = Console(stderr=True)


def _progress() -> Progress:
    return Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=_err, transient=False)


def parse_at(value: str | None, option: str = "--at") -> datetime:
    """ISO 8601; without an offset it means UTC."""
    if value is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ComplianceError(f"{option} {value!r} is not ISO 8601") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# ====================================================================== dnc

@click.group()
def dnc() -> None:
    """Do-not-call lists: registries by area code, company/campaign/custom entries."""


def _db():
    return storage.connect_db(autocommit=True)


def _iso_date(option: str, value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise click.UsageError(f"{option} {value!r} is not YYYY-MM-DD") from None


def _not_in_future(option: str, value: date, what: str) -> date:
    """A list's date after today (UTC) would keep the copy fresh for ever (the registry age rules
    never see it go stale) and refuse the real change lists as older: a usage error."""
    today = datetime.now(timezone.utc).date()
    if value > today:
        raise click.UsageError(f"{option} {value} is after today ({today}, UTC): {what}; nothing imported")
    return value


def _state_code(value: str) -> str:
    """The 2-letter code of a state the rule packs know, given as its code or its name ("florida" -> FL)."""
    from dialer.leads import state_code, us_states
    try:
        code, problem = state_code(value)
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    if problem:
        # A list filed under an unknown code would never be consulted while the real one stays missing.
        raise click.UsageError(f"--state {value!r} is not a state the rule packs know; give its 2-letter code"
                               f" or name ({', '.join(sorted(us_states()[0]))}); nothing imported")
    return code


def _dnc_number(number: str, region: str) -> str:
    """E.164 of a complete, valid number; UsageError (exit 2) otherwise (geo.valid_number)."""
    try:
        return valid_number(number, region)
    except NumberError as exc:
        raise click.UsageError(f"{exc}; nothing done") from None


def _import_rnd(paths, covers_from: date | None, data_through: date, source: str | None) -> None:
    from dialer.compliance.rnd import PgRnd
    try:
        with _db() as conn:
            store = PgRnd(conn)
            for path in paths:
                result = store.import_file(path, covers_from=covers_from, data_through=data_through,
                                           source=source or path.name)
                if result.skipped:
                    click.echo(f"{path}: already imported (same content), nothing changed")
                    continue
                click.echo(f"{path}: {result.lines} lines, {result.new_records} new disconnections,"
                           f" {result.bad_lines} bad lines")
                for sample in result.bad_samples:
                    click.echo(f"  {sample}", err=True)
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc


@dnc.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", type=click.Choice(["federal", "state", "tps", "ctps", "rnd"]), default="federal",
              help="federal: US National DNC Registry / Canada's DNCL by area code; state: a state's whole list;"
                   " tps/ctps: UK (Corporate) Telephone Preference Service; rnd: FCC Reassigned Numbers Database"
                   " disconnections (NUMBER,YYYY-MM-DD lines)")
@click.option("--state", "jurisdiction", default=None,
              help="--kind state: the state, as its 2-letter code or name (a state the rule packs know)")
@click.option("--changes", is_flag=True, help="files are change lists (number,A|D lines), applied in order")
@click.option("--date", "snapshot", default=None,
              help="snapshot date (YYYY-MM-DD, not after today UTC); for rnd the date the data runs through;"
                   " default today (UTC)")
@click.option("--covers-from", default=None,
              help="rnd: first date the data covers (consent older than that gets 'no data'); default: as before")
@click.option("--source", default=None, help="where the file came from; default its name")
def dnc_import(paths, kind, jurisdiction, changes, snapshot, covers_from, source) -> None:
    """Import full registry files or change lists, or reassigned-number records. Idempotent.

    Full files given together are one snapshot (their union: a list delivered in several files),
    imported at once. A full import with a line that is not a phone number imports nothing (exit 1,
    the lines named): a list read in part would drop the numbers on those lines."""
    from dialer.compliance.registry import RegistryStore
    from dialer.compliance.service import data_dir
    if kind == "state" and not jurisdiction:
        raise click.UsageError("--kind state needs --state XX")
    if kind != "state" and jurisdiction:
        raise click.UsageError("--state goes with --kind state only")
    if kind != "rnd" and covers_from:
        raise click.UsageError("--covers-from goes with --kind rnd only")
    snap_date = _iso_date("--date", snapshot) or datetime.now(timezone.utc).date()
    if kind == "rnd":
        if changes:
            raise click.UsageError("RND files only add disconnections: no --changes")
        _not_in_future("--date", snap_date, "RND data cannot run through a day still to come")
        _import_rnd(paths, _iso_date("--covers-from", covers_from), snap_date, source)
        return
    _not_in_future("--date", snap_date, "a registry copy cannot be dated in the future")
    if kind == "state":
        jurisdiction = _state_code(jurisdiction)
    jurisdiction = (jurisdiction or ("GB" if kind in ("tps", "ctps") else "US")).upper()
    # Change lists apply one after another; full files together are one snapshot (one import).
    batches = [[path] for path in paths] if changes else [list(dict.fromkeys(paths))]
    try:
        with _db() as conn:
            store = RegistryStore(conn, data_dir())
            for batch in batches:
                label = " + ".join(str(path) for path in batch)
                with _progress() as bar:
                    task = bar.add_task(" + ".join(path.name for path in batch),
                                        total=sum(path.stat().st_size for path in batch))
                    run = store.import_changes if changes else store.import_full
                    result = run(batch[0] if changes else batch, kind=kind, jurisdiction=jurisdiction,
                                 snapshot_date=snap_date, source=source or ", ".join(path.name for path in batch),
                                 progress=lambda n: bar.advance(task, n))
                if result.skipped:
                    click.echo(f"{label}: already imported (same content), nothing changed")
                    continue
                click.echo(f"{label}: {result.report.lines} lines, {result.area_codes} area codes,"
                           f" +{result.added} -{result.removed}, {result.report.bad_lines} bad lines")
                for sample in result.report.bad_samples:
                    click.echo(f"  {sample}", err=True)
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc


def _entry_args(f):
    f = click.option("--list", "list_kind", type=click.Choice(["internal", "campaign", "custom"]), default="internal")(f)
    f = click.option("--scope", default="",
                     help="--list campaign: the campaign name (of an existing campaign; the gate matches names);"
                          " --list custom: the list's name; not with --list internal")(f)
    f = click.option("--by", "who", default="cli", help="who asks")(f)
    f = click.option("--reason", default="")(f)
    f = click.option("--region", default="US")(f)
    return click.argument("number")(f)


def _no_internal_scope(list_kind: str, scope: str) -> None:
    """The internal list is company-wide: a scope on it would file an entry `remove` without the same
    scope cannot find (and that `check` shows under a made-up list name)."""
    if list_kind == ListKind.INTERNAL and scope:
        raise click.UsageError("--scope goes with --list campaign or custom, not with the company-wide internal list")


@dnc.command("add")
@_entry_args
@click.option("--source", default="cli")
def dnc_add(number, list_kind, scope, who, reason, region, source) -> None:
    """Put a number on the internal, a campaign or a custom list (at once). A campaign list's
    --scope is the campaign's name; an unknown campaign is refused (exit 1, nothing stored).
    A NUMBER that is not a complete, valid phone number is refused (exit 2, nothing stored)."""
    from dialer.compliance.records import PgRecords
    _no_internal_scope(list_kind, scope)
    phone = _dnc_number(number, region)
    try:
        with _db() as conn:
            records = PgRecords(conn)
            if list_kind == ListKind.CAMPAIGN:
                scope, note = records.campaign_scope(scope)
                if note:
                    click.echo(f"note: {note}")
            added = records.add_dnc(phone, list_kind, scope=scope, added_by=who, source=source, reason=reason)
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{phone}: {'added to' if added else 'already on'} {list_kind} {scope}".rstrip())


@dnc.command("remove")
@_entry_args
def dnc_remove(number, list_kind, scope, who, reason, region) -> None:
    """Take a number off a list (the row is kept, marked removed, for the 5-year record). A
    campaign list's --scope is resolved as `add` does (a campaign's id is taken as that campaign).
    A NUMBER that is not a valid phone number is refused (exit 2) unless an entry holds it as written."""
    from dialer.compliance.records import PgRecords
    _no_internal_scope(list_kind, scope)
    invalid = None
    try:
        phone = _dnc_number(number, region)
    except click.UsageError as exc:
        # Entries stored before numbers were validated must stay removable.
        invalid = exc
        try:
            phone = normalize(number, region)
        except NumberError:
            raise exc from None
    try:
        with _db() as conn:
            records = PgRecords(conn)
            if invalid is not None and not any(e.list_kind == list_kind for e in records.lookup(phone)[0]):
                raise invalid
            scopes = [scope]
            if list_kind == ListKind.CAMPAIGN:
                scope, note = records.removal_scope(scope)
                scopes = [scope]
                if note:
                    click.echo(f"note: {note}")
            elif list_kind == ListKind.INTERNAL:
                # The internal list is one company-wide list; entries that an older `add --scope` filed
                # under a scope are on it all the same, and must come off with it.
                scopes = sorted({e.scope for e in records.lookup(phone)[0] if e.list_kind == ListKind.INTERNAL}) or [""]
            removed = False
            for one in scopes:
                removed = records.remove_dnc(phone, list_kind, scope=one, removed_by=who, reason=reason) or removed
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{phone}: {'removed from' if removed else 'was not on'} {list_kind} {scope}".rstrip())


def _not_checked(exc: DialerError) -> click.ClickException:
    """Exit 3 for a store that could not answer (down, or without the dialer's schema). Built outside
    the except block on purpose: the top-level group turns any error caused by a missing table into
    its own exit-1 message, and 1 means "on a list"."""
    message = str(exc)
    cause = exc.__cause__
    if cause is not None and type(cause).__name__ == "UndefinedTable":
        message = f"the database has no dialer schema ({str(cause).splitlines()[0]}): run `dialer db migrate` first"
    error = click.ClickException(f"{message} (exit 3: not checked)")
    error.exit_code = 3
    return error


@dnc.command("check")
@click.argument("number")
@click.option("--region", default="US")
@click.option("--json", "as_json", is_flag=True)
def dnc_check(number, region, as_json) -> None:
    """Which lists a number is on, with each registry copy's date.

    Exit 0 when on no list, 1 when on any list, 2 on a usage or input error (a NUMBER that is
    not a complete, valid phone number), 3 when it could not be decided: the lists could not be
    read (the store is down or not migrated), or the number is on no list read but a registry
    it is subject to has no copy for it (never imported, or no copy of its area code: "not
    checked") or only a stale one (older than its rule allows: the gate refuses REGISTRY_STALE).
    The federal registry applies to every North American number, TPS and CTPS to every UK one."""
    from dialer.compliance.records import PgRecords
    from dialer.compliance.registry import RegistryStore, registry_position
    from dialer.compliance.rules import load_packs
    from dialer.compliance.service import data_dir
    phone = _dnc_number(number, region)      # bad input: exit 2, never 1 (1 means "on a list")
    failure = None
    try:
        with _db() as conn:
            index = RegistryStore(conn, data_dir()).load_index()
            entries, _ = PgRecords(conn).lookup(phone)
    except DialerError as exc:
        failure = exc
    if failure is not None:
        # exit 3: "could not answer" must not read as 1, "on a list", nor as 0
        raise _not_checked(failure)
    hits = []
    # A copy older than its rule allows decides nothing, as at the gate (REGISTRY_STALE): the age
    # per list kind is the strictest max_age_days of the registry rules reading it (federal and
    # state 31 days, TPS/CTPS 28), counted to today (UTC).
    today = datetime.now(timezone.utc).date()
    max_ages: dict[str, int] = {}
    for rule in (r for pack in load_packs().packs for r in pack.rules if r.kind == "registry"):
        if "max_age_days" in rule.params:
            for kind in rule.params["list"]:
                max_ages[kind] = min(max_ages.get(kind, rule.params["max_age_days"]), rule.params["max_age_days"])
    position = registry_position(phone)
    uk = phone.startswith("+44")
    imported = {(str(k), j) for k, j in index.lists()}
    if position is not None:
        # The registries the gate always consults for the number's country count even when never
        # imported: without a copy the answer is "not checked", not "not listed".
        required = {("tps", "GB"), ("ctps", "GB")} if uk else {("federal", "US")}
        for kind, jurisdiction in sorted(imported | required):
            if (kind in (ListKind.TPS, ListKind.CTPS)) != uk:
                continue
            hit, as_of = index.lookup(kind, jurisdiction, *position)   # None: no copy for this area code
            max_age = max_ages.get(kind)
            stale = as_of is not None and max_age is not None and (today - as_of).days > max_age
            hits.append({"list": kind, "jurisdiction": jurisdiction, "on_list": hit,
                         "snapshot_date": as_of.isoformat() if as_of else None, "stale": stale})
    out = {"number": phone, "registries": hits,
           "entries": [{"list": e.list_kind, "scope": e.scope, "added_by": e.added_by,
                        "added_at": iso_z(e.added_at), "source": e.source, "reason": e.reason} for e in entries]}
    on_any = bool(entries) or any(h["on_list"] for h in hits)
    unchecked = [f"{h['list']} {h['jurisdiction']}" for h in hits if h["on_list"] is None]
    stale = [f"{h['list']} {h['jurisdiction']} (copy of {h['snapshot_date']}, over {max_ages[h['list']]} days old)"
             for h in hits if h["stale"] and not h["on_list"]]
    if as_json:
        click.echo(json.dumps(out))
    else:
        if on_any:
            verdict = "ON A LIST"
        elif unchecked or stale:
            problems = ([f"{', '.join(unchecked)} (no copy)"] if unchecked else []) + \
                       ([f"{', '.join(stale)}: STALE"] if stale else [])
            verdict = f"on none of the lists read, but NOT CHECKED against {'; '.join(problems)}"
        else:
            verdict = "not on any list"
        click.echo(f"{phone}: {verdict}")
        for h in hits:
            answer = (_listed(h["on_list"], h["snapshot_date"]) if (h["list"], h["jurisdiction"]) in imported
                      else "never imported (not checked)")
            if h["stale"]:
                answer += f", STALE (over {max_ages[h['list']]} days old: the gate refuses REGISTRY_STALE)"
            click.echo(f"  {h['list']} {h['jurisdiction']}: {answer}")
        for e in out["entries"]:
            click.echo(f"  {e['list']} {e['scope']}: added {e['added_at']} by {e['added_by']} ({e['source']}) {e['reason']}")
    sys.exit(1 if on_any else 3 if unchecked or stale else 0)


def _listed(on_list: bool | None, snapshot_date: str | None) -> str:
    """A registry answer in words: listed / not listed (copy of DATE), or no copy for the area code."""
    if on_list is None:
        return "no copy for this area code (not checked)"
    return f"{'listed' if on_list else 'not listed'} (copy of {snapshot_date or 'unknown date'})"


@dnc.command("stats")
def dnc_stats() -> None:
    """Registry snapshots per list (area codes, numbers, oldest copy) and list entry counts."""
    from dialer.compliance.records import PgRecords
    from dialer.compliance.rnd import PgRnd
    try:
        with _db() as conn:
            rows = conn.execute(
                "SELECT coalesce(s.list_kind, c.list_kind), coalesce(s.jurisdiction, c.jurisdiction),"
                " count(s.npa), coalesce(sum(s.number_count), 0), min(s.snapshot_date), max(s.snapshot_date),"
                " min(c.snapshot_date) FROM compliance_dnc_snapshots s FULL JOIN compliance_dnc_coverage c"
                " USING (list_kind, jurisdiction) GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
            entries = PgRecords(conn).stats()
            rnd = PgRnd(conn).stats()
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    console = Console()
    table = Table(title="Registries (per area code / UK prefix bitsets)")
    # Dates are never cut (no_wrap, full width); the other columns fold instead when narrow.
    for col in ("list", "juris-\ndiction", "area\ncodes", "numbers", "oldest\ncopy", "newest\ncopy", "whole list\nas of"):
        if col.endswith(("copy", "as of")):
            table.add_column(col, no_wrap=True, min_width=10)
        else:
            table.add_column(col, overflow="fold", justify="right" if col in ("area\ncodes", "numbers") else "left")
    for row in rows:
        table.add_row(*("–" if v is None else str(v) for v in row))
    console.print(table)
    if rnd[1] is None and rnd[2] is None:
        console.print(f"Reassigned numbers: {rnd[0]} disconnections, no data imported (dnc import --kind rnd)")
    else:
        console.print(f"Reassigned numbers: {rnd[0]} disconnections, data from {rnd[1] or '?'} through {rnd[2] or '?'}")
    table = Table(title="List entries")
    for col in ("list", "scope", "entries"):
        table.add_column(col, overflow="fold", justify="right" if col == "entries" else "left")
    for row in entries:
        table.add_row(*(str(v) for v in row))
    console.print(table)


# ====================================================================== compliance

@click.group()
def compliance() -> None:
    """Compliance gate: check a number, read and verify the audit, scrub a list."""


def _request_from(fields: dict, default_region: str) -> tuple[CallRequest, str]:
    """A CallRequest from option-named fields; DialerError or ValueError on bad input."""
    for name in CHECK_FIELDS:
        if fields.get(name) is not None and not isinstance(fields[name], str):
            raise ComplianceError(f"{name} must be a string")
    number = fields.get("number")
    if not number:
        raise ComplianceError("number is required")
    phone = normalize(number, fields.get("region") or default_region)
    purpose = Purpose(fields.get("purpose") or "telemarketing")
    mode = DialMode(fields.get("mode") or "predictive")
    voice = Voice(fields.get("voice") or "live")
    consent = fields.get("consent") or "none"
    if consent not in ("none", "express", "written"):
        raise ComplianceError(f"consent must be none, express or written, not {consent!r}")
    # The check answers for the callee's side: the campaign's caller ID is taken as configured (a
    # valid number: the gate checks that it is one), and a debt call's person and debt as known
    # (Reg F counts per person and debt; a dry run's counters are empty anyway).
    lead = Lead(state=fields.get("state") or None, zip_code=fields.get("zip") or None,
                line_type=LineType(fields.get("line_type") or "unknown"),
                person_id="cli-check", debt_id="cli-check")
    campaign = Campaign("cli-check", purpose=purpose, mode=mode, voice=voice, caller_id=_CONFIGURED_CALLER_ID)
    return CallRequest(phone, campaign, parse_at(fields.get("at")), lead), consent


def _answer(gate, records, call: CallRequest, consent: str) -> tuple[dict, Decision]:
    """The check's JSON answer and the full decision (a dry run; the consent lives for this call only)."""
    if consent != "none":
        records.consents.pop(call.phone_e164, None)
        records.add_consent(call.phone_e164, ConsentKind(consent), occurred_at=call.now - timedelta(days=1),
                            source="cli", recorded_by="cli")
    try:
        decision = gate.decide(call, dry_run=True)
    finally:
        records.consents.pop(call.phone_e164, None)
    return {"allowed": decision.allowed, "reasons": decision.reasons,
            "next_allowed_at": iso_z(decision.next_allowed_at),
            "zones": list(decision.zones), "states": list(decision.states)}, decision


@compliance.command("check")
@click.argument("number", required=False)
@click.option("--at", "at", default=None, help="ISO 8601; no offset = UTC; default now")
@click.option("--state", default=None)
@click.option("--zip", "zip_code", default=None)
@click.option("--purpose", type=click.Choice([p.value for p in Purpose]), default="telemarketing")
@click.option("--mode", type=click.Choice([m.value for m in DialMode]), default="predictive")
@click.option("--voice", type=click.Choice([v.value for v in Voice]), default="live")
@click.option("--consent", type=click.Choice(["none", "express", "written"]), default="none")
@click.option("--line-type", type=click.Choice([t.value for t in LineType]), default="unknown")
@click.option("--region", default="US", help="region of a national NUMBER")
@click.option("--dnc-file", "dnc_files", multiple=True, type=click.Path(path_type=Path),
              help="NPANXXXXXX or NPA,NXXXXXX lines; together one complete, fresh federal snapshot")
@click.option("--state-dnc-file", "state_dnc_files", multiple=True, metavar="XX=PATH",
              help="a state's list (same layout); the files of one state are its complete, fresh list")
@click.option("--tps-file", "tps_files", multiple=True, type=click.Path(path_type=Path),
              help="UK numbers (0NSN, +44NSN); together the complete, fresh TPS")
@click.option("--ctps-file", "ctps_files", multiple=True, type=click.Path(path_type=Path),
              help="UK numbers; together the complete, fresh CTPS")
@click.option("--rnd-file", "rnd_files", multiple=True, type=click.Path(path_type=Path),
              help="NUMBER,YYYY-MM-DD permanent disconnections; together a complete, fresh RND copy")
@click.option("--batch", type=click.Path(path_type=Path), default=None,
              help="JSONL of requests, one object per line with the fields number, at, state, zip, purpose, mode,"
                   " voice, consent, line_type, region; the options above are every line's defaults")
@click.option("--json", "as_json", is_flag=True)
def compliance_check(number, at, state, zip_code, purpose, mode, voice, consent, line_type, region,
                     dnc_files, state_dnc_files, tps_files, ctps_files, rnd_files, batch, as_json) -> None:
    """Dry-run decision for one number (or --batch): no server needed, no counter, no audit row."""
    from dialer.compliance.service import dry_run_gate
    if bool(number) == bool(batch):
        raise click.UsageError("give a NUMBER or --batch FILE (not both)")
    state_files = _state_files(state_dnc_files)
    try:
        lines = batch.read_text(encoding="utf-8").splitlines() if batch else []
        for option, paths in (("--dnc-file", dnc_files), ("--state-dnc-file", [p for ps in state_files.values() for p in ps]),
                              ("--tps-file", tps_files), ("--ctps-file", ctps_files), ("--rnd-file", rnd_files)):
            for path in paths:
                if not path.is_file():
                    raise ComplianceError(f"{option} {path} cannot be read")
        # The files are lists that are complete and fresh at every moment checked (dated date.max).
        gate, records = dry_run_gate(list(dnc_files), date.max, state_files=state_files, tps_files=list(tps_files),
                                     ctps_files=list(ctps_files), rnd_files=list(rnd_files))
    except OSError as exc:
        raise click.UsageError(f"cannot read {batch}: {exc}") from None
    except DialerError as exc:
        raise click.UsageError(str(exc)) from None
    options = {"at": at, "state": state, "zip": zip_code, "purpose": purpose, "mode": mode, "voice": voice,
               "consent": consent, "line_type": line_type}
    if batch:
        # exit 2 when a line could not be checked, else 1 when a line is blocked, else 0
        blocked = failed = False
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
                if not isinstance(fields, dict):
                    raise ComplianceError("a line must be a JSON object")
                # a misspelt field ("stat") would silently check another call than the one meant
                if unknown := sorted(set(fields) - set(CHECK_FIELDS)):
                    raise ComplianceError(f"unknown field(s) {', '.join(map(repr, unknown))};"
                                          f" fields: {', '.join(CHECK_FIELDS)}")
                # the command's options are the defaults of every line; a line's own field wins
                call, line_consent = _request_from(
                    {**options, **{k: v for k, v in fields.items() if v is not None}}, region)
                answer, _ = _answer(gate, records, call, line_consent)
                blocked = blocked or not answer["allowed"]
                click.echo(json.dumps({**fields, **answer}))
            except (DialerError, ValueError, TypeError) as exc:
                failed = True
                click.echo(json.dumps({"line": n, "error": str(exc)}))
        sys.exit(2 if failed else 1 if blocked else 0)
    try:
        call, consent = _request_from({"number": number, **options}, region)
    except (DialerError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    answer, decision = _answer(gate, records, call, consent)
    if as_json:
        click.echo(json.dumps(answer))
    else:
        console = Console()
        console.print(f"{call.phone_e164} at {iso_z(call.now)}: "
                      f"{'[green]ALLOWED[/]' if decision.allowed else '[red]BLOCKED[/]'}")
        for block in decision.blocks:
            console.print(f"  {block.code}  {block.citation}  {block.detail}")
        if decision.next_allowed_at:
            console.print(f"  next allowed at {iso_z(decision.next_allowed_at)}")
        console.print(f"  zones {', '.join(decision.zones)}; states {', '.join(decision.states) or '-'}")
        for zone, local in decision.local_times.items():
            console.print(f"  local time {zone}: {local}")
        packs = ", ".join(f"{name} {version}" for name, version in sorted(decision.pack_versions.items()))
        console.print(f"  rule packs: {packs or '-'}", markup=False, highlight=False)
    sys.exit(0 if decision.allowed else 1)



def _state_files(specs) -> dict[str, list[Path]]:
    """--state-dnc-file XX=PATH options, by state; XX must be a state the rule packs know (as for
    `dnc import --state`): a list filed under a typo would be read and never consulted."""
    from dialer.leads import us_states
    state_files: dict[str, list[Path]] = {}
    for spec in specs:
        code, sep, path = spec.partition("=")
        if not sep or len(code.strip()) != 2 or not code.strip().isalpha() or not path:
            raise click.UsageError(f"--state-dnc-file {spec!r}: expected XX=PATH")
        code = code.strip().upper()
        if code not in us_states()[0]:
            raise click.UsageError(f"--state-dnc-file {spec!r}: {code} is not a state the rule packs know"
                                   f" ({', '.join(sorted(us_states()[0]))})")
        state_files.setdefault(code, []).append(Path(path))
    return state_files


@compliance.command("rebuild-counters")
def compliance_rebuild_counters() -> None:
    """Replay the placed calls of the last 366 days and their outcomes into the Redis frequency
    counters and locks: after Redis lost its data, before any engine dials again."""
    from dialer.compliance.attempts import rebuild_counters
    from dialer.compliance.service import live_gate
    try:
        gate = live_gate()
        with _db() as conn:
            replayed = rebuild_counters(conn, gate, datetime.now(timezone.utc))
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"counters rebuilt from {replayed} placed calls")


@compliance.command("audit")
@click.option("--number", default=None, help="E.164 or national (with --region)")
@click.option("--region", default="US")
@click.option("--campaign", default=None)
@click.option("--since", default=None, help="ISO 8601; no offset = UTC")
@click.option("--limit", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--verify", is_flag=True, help="recompute the whole hash chain; exit 1 if it is broken")
@click.option("--json", "as_json", is_flag=True, help="one JSON line per decision")
def compliance_audit(number, region, campaign, since, limit, verify, as_json) -> None:
    """Read decisions back from the audit table and check its hash chain."""
    from dialer.compliance.audit import read_audit, verify_chain
    try:
        phone = normalize(number, region) if number else None
        moment = parse_at(since, "--since") if since else None
        with _db() as conn:
            rows = read_audit(conn, number=phone, campaign=campaign, since=moment, limit=limit)
            report = verify_chain(conn) if verify else None
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        for row in rows:
            click.echo(json.dumps({"id": row.id, "decided_at": iso_z(row.decided_at), "number": row.phone_e164,
                                   "campaign": row.campaign_id, "allowed": row.allowed, "reasons": row.reasons,
                                   "record": json.loads(row.record), "row_hash": row.row_hash}))
    else:
        table = Table(title=f"{len(rows)} decisions")
        for col in ("id", "decided at (UTC)", "number", "campaign", "allowed", "reasons", "hash"):
            table.add_column(col)
        for row in rows:
            table.add_row(str(row.id), iso_z(row.decided_at), row.phone_e164, row.campaign_id,
                          "yes" if row.allowed else "no", " ".join(row.reasons), row.row_hash[:12])
        Console().print(table)
    if report is not None:
        message = (f"chain OK: {report.rows_checked} rows verified" if report.ok else
                   f"chain BROKEN at row {report.first_bad_id}: {report.problem}"
                   f" ({report.rows_checked} rows verified before it)")
        click.echo(message, err=as_json)
        if not report.ok:
            sys.exit(1)

@click.command("scrub")
@click.argument("leads", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="clean rows")
@click.option("--rejects", required=True, type=click.Path(path_type=Path), help="rejected rows with a reason")
@click.option("--at", "at", default=None, help="ISO 8601 moment the registry age is judged at; default now")
@click.option("--phone-column", default="phone")
@click.option("--region", default="US", help="region of national numbers")
@click.option("--dnc-file", "dnc_files", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="offline: these files are the complete federal snapshot (no server needed)")
@click.option("--state-dnc-file", "state_dnc_files", multiple=True, metavar="XX=PATH",
              help="offline: a state's list (same layout); the files of one state are its complete list")
def scrub(leads, out, rejects, at, phone_column, region, dnc_files, state_dnc_files) -> None:
    """Scrub a whole lead list against number validity and the do-not-call lists."""
    from dialer.compliance.geo import Geography
    from dialer.compliance.registry import ParseReport, RegistryIndex, RegistryStore
    from dialer.compliance.rules import load_packs
    from dialer.compliance.scrub import Scrubber, scrub_file
    from dialer.compliance.service import data_dir
    from dialer.leads import output_paths_problem
    # Before any list is loaded or file opened: an output that is the input (or --out equal to
    # --rejects) would be truncated before it is read; an unwritable one would end in a traceback.
    if problem := output_paths_problem(leads, [("--out", out), ("--rejects", rejects)]):
        raise click.UsageError(problem)
    try:
        moment = parse_at(at)
        suppressed: set[str] = set()
        state_files = _state_files(state_dnc_files)
        if state_files and not dnc_files:
            raise click.UsageError("--state-dnc-file goes with --dnc-file (an offline scrub)")
        if dnc_files:
            report = ParseReport()
            index = RegistryIndex.from_files(list(dnc_files), moment.date(), report)
            for state, paths in state_files.items():
                index.add_files(ListKind.STATE, state, paths, moment.date(), report)
        else:
            with _db() as conn:
                index = RegistryStore(conn, data_dir()).load_index()
                suppressed = {row[0] for row in conn.execute(
                    "SELECT phone_e164 FROM compliance_dnc_entries WHERE removed_at IS NULL"
                    " AND list_kind IN ('internal', 'custom')")}
        scrubber = Scrubber(Geography(load_packs()), index, suppressed, moment.date())
        with _progress() as bar:
            task = bar.add_task(f"scrub {leads.name}", total=leads.stat().st_size if leads.exists() else None)
            result = scrub_file(scrubber, leads, out, rejects, phone_column=phone_column, region=region,
                                progress=lambda n: bar.advance(task, n))
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{result.rows} rows: {result.clean} clean, {result.rows - result.clean} rejected"
               + "".join(f"; {code} {n}" for code, n in sorted(result.rejected.items())))


compliance.add_command(scrub)
