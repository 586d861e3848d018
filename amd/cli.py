"""`dialer amd ...` commands.

`dialer amd analyze FILE_OR_DIR... [--json] [--campaign-params KEY=VALUE ...]` analyses WAV files
(PCM16, mu-law or A-law; any rate, resampled to 8 kHz; stereo uses the first channel) as live
streams of 20 ms frames, one after another in one process. A directory means its *.wav files,
not recursive, in name order. With --json, one JSON line per file:
{"file", "result", "cause", "decision_ms", "beep_end_ms"}; otherwise a table.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from amd.errors import AmdError
from amd.params import AmdParams
from amd.session import analyze_file


@click.group("amd")
def amd() -> None:
    """Answering-machine and beep detection."""


def _expand(paths) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() == ".wav" and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise click.BadParameter(f"{raw}: no such file or directory", param_hint="FILE_OR_DIR")
    return files


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
    for path in files:
        try:
            result = analyze_file(path, params)
        except AmdError as exc:
            failures += 1
            click.echo(f"{path}: {exc}", err=True)
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
