"""`dialer amd ...` commands.

`dialer amd analyze FILE_OR_DIR... [--json] [--campaign-params KEY=VALUE ...]` analyses WAV files
(PCM16, mu-law or A-law; any rate, resampled to 8 kHz; stereo uses the first channel) as live
streams of 20 ms frames, one after another in one process. A directory means its *.wav files,
not recursive, in name order. With --json, one JSON line per file:
{"file", "result", "cause", "decision_ms", "beep_end_ms"}; otherwise a table.

A bad file among many gets one error line on stderr (`PATH: reason`) and loses none of the
others (project standard: bad input gets a clear error and loses nothing else): a path that does
not exist, a dangling symlink, a FIFO or other non-regular file, an unreadable file (permission,
I/O error) or a malformed WAV. The run then ends with exit 1 and "N of M files could not be
analysed". Usage errors (bad --campaign-params, nothing to analyse) exit 2 before any file.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import click

from amd.errors import AmdError
from amd.params import AmdParams
from amd.session import analyze_file


@click.group("amd")
def amd() -> None:
    """Answering-machine and beep detection."""


def _problem(path: Path) -> str | None:
    """Why `path` cannot be analysed before it is opened (None: a regular file, or so it seems)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if path.is_symlink():
            return f"broken symbolic link (to {os.readlink(path)})"
        return "no such file or directory"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def _expand(paths) -> list[tuple[Path, str | None]]:
    """(path, problem) for every file to analyse. A directory gives its *.wav entries that are
    not directories, dangling links and FIFOs included, so they are reported rather than
    skipped in silence (QA6 #8, #11)."""
    files: list[tuple[Path, str | None]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                entries = sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav" and not p.is_dir())
            except OSError as exc:
                files.append((path, f"cannot list directory: {exc.strerror or exc}"))
                continue
            files.extend((p, _problem(p)) for p in entries)
        else:
            files.append((path, _problem(path)))
    return files


def _reason(path: Path, exc: Exception) -> str:
    """The error without the path again (amd.audio's messages already start with it)."""
    if isinstance(exc, OSError):
        return f"cannot read: {exc.strerror or exc}"
    text = str(exc)
    prefix = f"{path}: "
    return text[len(prefix):] if text.startswith(prefix) else text


@amd.command("analyze")
@click.argument("paths", nargs=-1, required=True, metavar="FILE_OR_DIR...")
@click.option("--json", "as_json", is_flag=True, help="one JSON line per file")
@click.option("--campaign-params", "campaign_params", multiple=True, metavar="KEY=VALUE",
              help="detector parameters, e.g. mode=app_amd or machine_speech_ms=4000 (repeatable; "
                   "several pairs may share one option, separated by spaces or commas)")
def analyze(paths, as_json: bool, campaign_params) -> None:
    """Decide HUMAN / MACHINE / NOTSURE for each WAV file, as if it were a live call."""
    pairs = [p for option in campaign_params for p in option.replace(",", " ").split()]
    try:
        params = AmdParams.from_pairs(pairs)
    except AmdError as exc:
        raise click.BadParameter(str(exc), param_hint="--campaign-params") from exc
    files = _expand(paths)
    if not files:
        raise click.BadParameter("no *.wav file in " + ", ".join(paths), param_hint="FILE_OR_DIR")
    failures = 0
    rows = []
    for path, problem in files:
        if problem is None:
            try:
                result = analyze_file(path, params)
            except (AmdError, OSError) as exc:
                # OSError: permission, a file gone since it was listed, an I/O error (QA6 #3)
                problem = _reason(path, exc)
        if problem is not None:
            failures += 1
            click.echo(f"{path}: {problem}", err=True)
            continue
        line = result.as_json(str(path))
        if as_json:
            click.echo(json.dumps(line))
        else:
            rows.append(line)
    if not as_json and rows:
        from rich.console import Console
        from rich.table import Table
        from collections import Counter
        # paths wrap rather than lose their ends (the distinguishing part) in a narrow terminal
        counts = Counter(r["result"] for r in rows)
        table = Table(caption=f"{len(rows)} files: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())))
        table.add_column("file", overflow="fold")
        for name in ("result", "cause", "decision ms", "beep end ms"):
            table.add_column(name, no_wrap=True)
        for r in rows:
            table.add_row(r["file"], r["result"], r["cause"], str(r["decision_ms"]),
                          "-" if r["beep_end_ms"] is None else str(r["beep_end_ms"]))
        Console().print(table)
    if failures:
        raise click.ClickException(f"{failures} of {len(files)} files could not be analysed")
