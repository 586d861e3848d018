"""Lead import: a generated 1,000,000-row CSV file into a fresh campaign (goal: at most 60 s).

    .venv/bin/python -m benchmarks.leads_import [--rows 1000000] [--workers 2] [--seed 20261122]

The file is generated with a fixed seed: US numbers in eight written formats over 120,000
exchanges, about 3 % duplicates (the same number written differently further on) and about 2 %
bad rows of every kind the importer rejects (unparseable and invalid numbers, empty phone,
wrong column count, bad UTF-8, a broken quote, bad state). It is imported with
`dialer leads import FILE --campaign bench --workers N --json`, run as its own process against a
fresh, migrated database; the time is that command's wall-clock time, start-up included. The run then checks the figures against what the
generator wrote (rows, duplicates, rejects by reason) and against a recount in PostgreSQL.

Baseline in the same run: phonenumbers.parse + is_valid_number + format on a sample of the
file's numbers, one core, against the importer's number normaliser on the same sample.
"""
from __future__ import annotations

import json
import os
import platform
import random
import resource
import subprocess
import sys
import threading
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import click
import phonenumbers
import psycopg
from rich.console import Console
from rich.table import Table

from dialer import campaigns, config, storage
from dialer.leads import PhoneNormalizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "leads_import.json"
GOAL_S = 60.0
FIRST = ["Ann", "Bob", "Carla", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "José", "Kim", "Lena"]
LAST = ["Lee", "Smith", "García", "Nguyen", "Okafor", "Brown", "Kowalski", "Chen", "Díaz", "Murphy"]
STATES = ["NY", "CA", "TX", "FL", "IL", "PA", "OH", "GA", "NC", "MI", "WA", "AZ"]
FORMATS = ["({a}) {b}-{c}", "{a}-{b}-{c}", "+1 {a} {b} {c}", "1{a}{b}{c}", "{a}.{b}.{c}", "+1{a}{b}{c}",
           "{a}{b}{c}", "1 ({a}) {b}-{c}"]
HEADER = "phone,first_name,last_name,address,city,state,zip,email,account\n"
BAD_KINDS = ("unparseable_phone", "invalid_phone", "missing_phone", "column_count", "bad_encoding",
             "bad_quoting", "invalid_state")


def valid_exchanges(rng: random.Random, count: int) -> list[str]:
    """`count` NPA-NXX prefixes phonenumbers considers valid for the US."""
    found: set[str] = set()
    while len(found) < count:
        prefix = f"{rng.randint(201, 989)}{rng.randint(200, 999)}"
        if phonenumbers.is_valid_number(phonenumbers.parse(prefix + "5555", "US")):
            found.add(prefix)
    return sorted(found)


def generate(path: Path, rows: int, seed: int) -> dict:
    """Write the file; return what it holds (expected figures)."""
    rng = random.Random(seed)
    exchanges = valid_exchanges(rng, 120_000)
    expected = Counter()
    seen: list[str] = []           # national numbers written so far (for duplicates)
    used: set[str] = set()
    with open(path, "wb") as f:
        f.write(HEADER.encode())
        for i in range(rows):
            roll = rng.random()
            first, last, state = rng.choice(FIRST), rng.choice(LAST), rng.choice(STATES)
            tail = f"{rng.randint(1, 9999)} Main St,Springfield,{state},{rng.randint(10000, 99999)}," \
                   f"user{i}@example.com,A{i:07d}"
            if roll < 0.02:
                kind = BAD_KINDS[i % len(BAD_KINDS)]
                expected["rejected:" + kind] += 1
                line = {
                    "unparseable_phone": f"call me maybe,{first},{last},{tail}",
                    "invalid_phone": f"(212) 123-{rng.randint(0, 9999):04d},{first},{last},{tail}",
                    "missing_phone": f",{first},{last},{tail}",
                    "column_count": f"{rng.choice(exchanges)}{rng.randint(0, 9999):04d},{first},{last},{tail},extra",
                    "bad_encoding": None,
                    "bad_quoting": f"\"{rng.choice(exchanges)}{rng.randint(0, 9999):04d}\"x,{first},{last},{tail}",
                    "invalid_state": f"{rng.choice(exchanges)}{rng.randint(0, 9999):04d},{first},{last},"
                                     f"1 Main St,Springfield,Cal,12345,x@example.com,A{i:07d}",
                }[kind]
                if kind == "bad_encoding":
                    f.write(f"{rng.choice(exchanges)}{rng.randint(0, 9999):04d},".encode()
                            + b"\xff\xfe" + f"{first},{last},{tail}\n".encode())
                    continue
                f.write((line + "\n").encode())
                continue
            if roll < 0.05 and seen:
                national = rng.choice(seen)
                expected["duplicates_in_file"] += 1
            else:
                while True:
                    national = rng.choice(exchanges) + f"{rng.randint(0, 9999):04d}"
                    if national not in used:
                        break
                used.add(national)
                seen.append(national)
                expected["unique"] += 1
            phone = rng.choice(FORMATS).format(a=national[:3], b=national[3:6], c=national[6:])
            f.write(f"\"{phone}\",{first},{last},{tail}\n".encode())
    expected = {k: v for k, v in expected.items() if v}
    expected["rows"] = rows
    expected["sample"] = [rng.choice(FORMATS).format(a=n[:3], b=n[3:6], c=n[6:])
                          for n in rng.sample(seen, min(20_000, len(seen)))]
    return expected


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving one database, sampled from /proc every 0.2 s
    while the import runs (a backend's last < 0.2 s before it exits can be missed)."""

    def __init__(self, admin_url: str, dbname: str):
        self.admin_url, self.dbname = admin_url, dbname
        self.seen: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.ticks = os.sysconf("SC_CLK_TCK")

    def _run(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            while not self.stop.wait(0.2):
                for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s",
                                           (self.dbname,)).fetchall():
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    self.seen[pid] = (int(fields[11]) + int(fields[12])) / self.ticks

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    @property
    def seconds(self) -> float:
        return round(sum(self.seen.values()), 2)


def baseline(sample: list[str]) -> dict:
    """µs per number: phonenumbers' full path vs the importer's normaliser (cold cache), one core."""
    started = time.process_time()
    for raw in sample:
        number = phonenumbers.parse(raw, "US")
        if phonenumbers.is_valid_number(number):
            phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    full = (time.process_time() - started) / len(sample) * 1e6
    normalizer = PhoneNormalizer("US")
    started = time.process_time()
    for raw in sample:
        normalizer.normalize(raw)
    ours = (time.process_time() - started) / len(sample) * 1e6
    return {"phonenumbers_us_per_number": round(full, 2), "normalizer_cold_us_per_number": round(ours, 2),
            "sample": len(sample)}


@click.command()
@click.option("--rows", default=1_000_000, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option("--seed", default=20261122, show_default=True)
@click.option("--keep", is_flag=True, help="keep the generated file and database")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def main(rows: int, workers: int, seed: int, keep: bool, out: Path) -> None:
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix="leads_bench_"))
    csv_path = workdir / "leads.csv"
    started = time.perf_counter()
    expected = generate(csv_path, rows, seed)
    console.print(f"generated {rows:,} rows ({csv_path.stat().st_size / 1e6:.1f} MB) "
                  f"in {time.perf_counter() - started:.1f} s: {csv_path}")
    base = baseline(expected.pop("sample"))

    admin_url = config.database_url()
    name = f"bench_leads_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    try:
        storage.migrate(url)
        with storage.connect_db(url) as conn:
            campaigns.create_campaign(conn, "bench", campaigns.CampaignSettings())
        command = [sys.executable, str(ROOT / "cli.py"), "leads", "import", str(csv_path), "--campaign", "bench",
                   "--workers", str(workers), "--rejects", str(workdir / "rejects.csv"), "--json"]
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        with BackendCpu(admin_url, name) as backends:
            done = subprocess.run(command, env={**os.environ, "DATABASE_URL": url}, capture_output=True,
                                  text=True, timeout=900, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"import failed ({done.returncode}): {done.stderr[-2000:]}")
        summary = SimpleNamespace(**json.loads(done.stdout))
        with storage.connect_db(url) as conn:
            in_db = conn.execute("SELECT count(*), count(DISTINCT phone_e164) FROM leads").fetchone()
            db_size = conn.execute("SELECT pg_total_relation_size('leads')").fetchone()[0]
    finally:
        if not keep:
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    got_rejects = {"rejected:" + k: v for k, v in summary.rejects_by_reason.items()}
    want_rejects = {k: v for k, v in expected.items() if k.startswith("rejected:")}
    checks = {
        "rows_read": summary.rows_read == rows,
        "imported_equals_unique_numbers": summary.imported == expected["unique"] == in_db[0] == in_db[1],
        "duplicates_in_file": summary.duplicates_in_file == expected.get("duplicates_in_file", 0),
        "rejects_by_reason": got_rejects == want_rejects,
        "nothing_lost": summary.imported + summary.duplicates + summary.rejected == summary.rows_read,
    }
    result = {
        "command": f".venv/bin/python -m benchmarks.leads_import --rows {rows} --workers {workers} --seed {seed}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2)},
        "goal_s": GOAL_S,
        "rows": rows,
        "file_mb": round(csv_path.stat().st_size / 1e6, 1),
        "seconds": round(wall, 3),
        "import_seconds": summary.seconds,
        "stage_seconds": summary.stage_seconds,
        "commit_seconds": summary.commit_seconds,
        "reader_cpu_seconds": summary.reader_cpu_seconds,
        "normalise_cpu_seconds": summary.normalise_cpu_seconds,
        "normalise_cpu_us_per_row": round(summary.normalise_cpu_seconds / rows * 1e6, 2),
        "postgres_backends_cpu_seconds": backends.seconds,
        "rows_per_s": round(rows / wall),
        "met_goal": wall <= GOAL_S,
        "workers": workers,
        "imported": summary.imported,
        "duplicates_in_file": summary.duplicates_in_file,
        "rejected": summary.rejected,
        "rejects_by_reason": summary.rejects_by_reason,
        "fast_path_share": round(summary.fast_path_numbers / max(1, summary.fast_path_numbers
                                                                   + summary.parsed_numbers), 4),
        "largest_process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "leads_table_mb": round(db_size / 1e6, 1),
        "baseline": base,
        "checks": checks,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"lead import, {rows:,} rows, {workers} workers")
    table.add_column("figure")
    table.add_column("measured", justify="right")
    for label, value in (("command wall s (goal <= 60)", round(wall, 2)),
                         ("  read+normalise+COPY s", summary.stage_seconds),
                         ("  dedupe INSERT s", summary.commit_seconds), ("rows/s", result["rows_per_s"]),
                         ("reader CPU s", summary.reader_cpu_seconds),
                         ("normalise+COPY CPU s (all workers)", summary.normalise_cpu_seconds),
                         ("PostgreSQL backends CPU s", backends.seconds),
                         ("imported", summary.imported), ("duplicates in file", summary.duplicates_in_file),
                         ("rejected", summary.rejected), ("fast-path share", result["fast_path_share"]),
                         ("phonenumbers µs/number", base["phonenumbers_us_per_number"]),
                         ("normaliser µs/number (cold)", base["normalizer_cold_us_per_number"]),
                         ("largest process RSS MB", result["largest_process_max_rss_mb"]),
                         ("load average before / after", f"{result['machine']['load_avg_1m_before']} / "
                                                         f"{result['machine']['load_avg_1m_after']}")):
        table.add_row(label, str(value))
    for check, ok in checks.items():
        table.add_row(f"check {check}", "ok" if ok else "FAILED")
    console.print(table)
    console.print(f"results: {out}")
    if not keep:
        for p in workdir.iterdir():
            p.unlink()
        workdir.rmdir()
    if not all(checks.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
