"""Compliance gate benchmarks (issue 3): decisions per second, batched DNC membership, loading a
synthetic federal registry, scrubbing a lead list. Prints what it measured on this machine and
writes benchmarks/results/compliance.json.

    .venv/bin/python benchmarks/compliance/bench_compliance.py                 # full scale
    .venv/bin/python benchmarks/compliance/bench_compliance.py --registry-numbers 26000000 --leads 1000000

Needs PostgreSQL and Redis (scripts/services.sh env): the registry import writes its metadata to
a scratch database that is dropped afterwards, and one figure is the gate on the real stores.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import phonenumbers
import psycopg
from phonenumbers import timezone as pn_timezone

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dialer import config, storage  # noqa: E402
from dialer.compliance.counters import MemoryCounters  # noqa: E402
from dialer.compliance.gate import ComplianceGate  # noqa: E402
from dialer.compliance.geo import Geography  # noqa: E402
from dialer.compliance.model import (  # noqa: E402
    CallRequest, Campaign, ConsentKind, DialMode, Lead, ListKind, Purpose,
)
from dialer.compliance.records import MemoryRecords  # noqa: E402
from dialer.compliance.registry import RegistryIndex, RegistryStore  # noqa: E402
from dialer.compliance.rnd import MemoryRnd  # noqa: E402
from dialer.compliance.rules import load_packs  # noqa: E402
from dialer.compliance.scrub import Scrubber, scrub_file  # noqa: E402
from dialer.compliance.attempts import ensure_counters_loaded  # noqa: E402
from dialer.compliance.service import live_gate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "compliance.json"
SNAPSHOT = date(2026, 11, 15)
AT = datetime(2026, 11, 18, 12, tzinfo=timezone.utc)


def real_area_codes(limit: int) -> list[int]:
    """NANP area codes (US and Canada) whose exchange 555-0000.. parses as valid somewhere."""
    found = []
    for npa in range(201, 990):
        if npa % 100 == 11 or str(npa)[1] == "9":
            continue
        for nxx in (234, 345, 456, 567, 678, 789, 890, 523, 612, 701):
            parsed = phonenumbers.parse(f"+1{npa}{nxx}1234", None)
            if phonenumbers.is_valid_number(parsed) and phonenumbers.region_code_for_number(parsed) in ("US", "CA"):
                found.append(npa)
                break
        if len(found) >= limit:
            break
    return found


def generate_registry(path: Path, area_codes: list[int], total: int, rng: np.random.Generator) -> int:
    """FTC layout `NPA,NXXXXXX`, sorted by area code, about total/len(area_codes) per area code."""
    per = total // len(area_codes)
    written = 0
    powers = 10 ** np.arange(6, -1, -1, dtype=np.int64)
    with open(path, "wb") as out:
        for npa in area_codes:
            # ~1.044 draws per wanted number leave about `per` distinct ones (birthday collisions).
            drawn = np.sort(rng.integers(2_000_000, 10_000_000, int(per * 1.044)))
            lines = drawn[np.r_[True, drawn[1:] != drawn[:-1]]]
            rows = np.empty((len(lines), 12), dtype=np.uint8)
            rows[:, 0:3] = np.frombuffer(f"{npa:03d}".encode(), dtype=np.uint8)
            rows[:, 3] = ord(",")
            rows[:, 4:11] = (lines[:, None] // powers % 10 + 48).astype(np.uint8)
            rows[:, 11] = ord("\n")
            rows.tofile(out)
            written += len(lines)
    return written


IMPORT_CHILD = """
import json, sys, time, resource
from datetime import date
from pathlib import Path
from dialer import storage
from dialer.compliance.registry import RegistryStore
path, data_dir, url = sys.argv[1], sys.argv[2], sys.argv[3]
with storage.connect_db(url, autocommit=True) as conn:
    store = RegistryStore(conn, Path(data_dir))
    t0 = time.perf_counter()
    result = store.import_full(Path(path), kind="federal", jurisdiction="US", snapshot_date=date(2026, 11, 15), source="synthetic")
    import_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = store.load_index()
    load_s = time.perf_counter() - t0
hwm_kb = int([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"import_s": import_s, "index_map_s": load_s, "numbers": result.numbers,
                  "process_cpu_s": usage.ru_utime + usage.ru_stime,
                  "area_codes": result.area_codes, "lines": result.report.lines, "peak_rss_mb": hwm_kb / 1024}))
"""


def bench_registry(args, workdir: Path, db_url: str, rng) -> tuple[dict, list[int]]:
    area_codes = real_area_codes(args.area_codes)
    path = args.registry_file or workdir / "federal.txt"
    sidecar = path.with_suffix(".json")
    wanted = {"numbers_requested": args.registry_numbers, "area_codes": area_codes, "seed": args.seed}
    if path.exists() and sidecar.exists() and json.loads(sidecar.read_text())["wanted"] == wanted:
        numbers, gen_s = json.loads(sidecar.read_text())["numbers"], 0.0
        print(f"reusing {path} ({numbers:,} numbers)")
    else:
        t0 = time.perf_counter()
        numbers = generate_registry(path, area_codes, args.registry_numbers, rng)
        gen_s = time.perf_counter() - t0
        sidecar.write_text(json.dumps({"wanted": wanted, "numbers": numbers}))
        print(f"generated {numbers:,} numbers in {len(area_codes)} area codes"
              f" ({path.stat().st_size / 1e9:.2f} GB) in {gen_s:.1f} s", flush=True)
    child = subprocess.run([sys.executable, "-c", IMPORT_CHILD, str(path), str(workdir / "data"), db_url],
                           capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                           timeout=3600)
    if child.returncode:
        raise SystemExit(f"import failed: {child.stderr}")
    measured = json.loads(child.stdout.strip().splitlines()[-1])
    measured.update(file_gb=path.stat().st_size / 1e9, generate_s=gen_s,
                    numbers_per_s=measured["numbers"] / measured["import_s"])
    print(f"registry import: {measured['import_s']:.1f} s, {measured['numbers_per_s'] / 1e6:.1f} M numbers/s,"
          f" peak RSS {measured['peak_rss_mb']:.0f} MB")
    if not args.registry_file:
        path.unlink()
    return measured, area_codes


def bench_membership(index: RegistryIndex, area_codes: list[int], rng, n: int) -> dict:
    npas = np.array(area_codes, dtype=np.int64)[rng.integers(0, len(area_codes), n)]
    numbers = npas * 10_000_000 + rng.integers(2_000_000, 10_000_000, n)
    index.contains_many(ListKind.FEDERAL, "US", numbers[:1000])
    t0, c0 = time.perf_counter(), time.process_time()
    hits = index.contains_many(ListKind.FEDERAL, "US", numbers)
    batch_s, batch_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    sample = numbers[:200_000].tolist()
    t0 = time.perf_counter()
    for number in sample:
        index.lookup(ListKind.FEDERAL, "US", number // 10_000_000, number % 10_000_000)
    single_s = time.perf_counter() - t0
    out = {"numbers": n, "seconds": batch_s, "numbers_per_s": n / batch_s, "cpu_seconds": batch_cpu_s,
           "numbers_per_cpu_s": n / batch_cpu_s, "hit_fraction": float(hits.mean()),
           "baseline_single_lookups_per_s": len(sample) / single_s}
    out["ratio_vs_single"] = out["numbers_per_s"] / out["baseline_single_lookups_per_s"]
    print(f"batched membership: {out['numbers_per_s'] / 1e6:.1f} M numbers/s wall,"
          f" {out['numbers_per_cpu_s'] / 1e6:.1f} M per CPU-second"
          f" ({out['ratio_vs_single']:.0f}x single lookups at {out['baseline_single_lookups_per_s'] / 1e6:.2f} M/s)")
    return out


def number_pool(area_codes: list[int], size: int, rng) -> list[str]:
    pool = []
    while len(pool) < size:
        npa = area_codes[int(rng.integers(0, len(area_codes)))]
        number = f"+1{npa}{int(rng.integers(2, 10))}{int(rng.integers(0, 1_000_000)):06d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(number, None)):
            pool.append(number)
    return pool


def bench_decisions(index: RegistryIndex, pool: list[str], n: int, rng) -> dict:
    rulebook = load_packs()
    records = MemoryRecords()
    for number in pool[::3]:
        records.add_consent(number, ConsentKind.WRITTEN, occurred_at=AT - timedelta(days=30), source="b", recorded_by="b")
    # Every state's list, fresh and empty (the registry file is federal only), and a reassigned-numbers
    # copy in which one consented number in fifty was disconnected after its consent.
    for state in rulebook.state_list_states():
        index.mark_complete(ListKind.STATE, state, SNAPSHOT)
    rnd = MemoryRnd(date(2021, 1, 27), SNAPSHOT)
    for number in pool[::150]:
        rnd.add(number, (AT - timedelta(days=10)).date())
    gate = ComplianceGate(rulebook, index, records, MemoryCounters(), rnd=rnd)
    campaigns = [Campaign("b1", Purpose.TELEMARKETING, DialMode.PREDICTIVE, caller_id="+12125550000"),
                 Campaign("b2", Purpose.TELEMARKETING, DialMode.PREVIEW, caller_id="+12125550000"),
                 Campaign("b3", Purpose.DEBT, DialMode.PROGRESSIVE, caller_id="+12125550000")]
    offsets = rng.integers(0, 7 * 86400, n)
    requests = [CallRequest(pool[i % len(pool)], campaigns[i % 3], AT + timedelta(seconds=int(offsets[i])),
                            Lead(person_id=f"p{i % 5000}", debt_id="d1")) for i in range(n)]
    # A running engine has its exchange cache warm: parse every exchange of the pool once.
    for number in pool:
        gate.geo.facts(number)
    for r in requests[:2000]:
        gate.decide(r, dry_run=True)
    # Wall-clock and CPU time per decision: the machine is shared, so wall-clock tails include
    # time the process was not running; CPU time is the cost of a decision on one core.
    latencies = np.empty(n, dtype=np.int64)
    cpu = np.empty(n, dtype=np.int64)
    allowed = 0
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    t0, c0 = time.perf_counter(), time.process_time()
    for i, r in enumerate(requests):
        start, cpu_start = clock(), cpu_clock()
        allowed += gate.decide(r).allowed
        cpu[i] = cpu_clock() - cpu_start
        latencies[i] = clock() - start
    total_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    reasons = collections.Counter(code for r in requests[:20_000] for code in gate.decide(r, dry_run=True).reasons)
    sample = pool[:20_000]
    c0 = time.process_time()
    for number in sample:
        pn_timezone.time_zones_for_number(phonenumbers.parse(number, None))
    parse_rate = len(sample) / (time.process_time() - c0)      # per CPU-second, like the gate's figure
    out = {"decisions": n, "seconds": total_s, "decisions_per_s": n / total_s, "cpu_seconds": cpu_s,
           "decisions_per_cpu_s": n / cpu_s,
           "p50_us": float(np.percentile(latencies, 50) / 1e3), "p99_us": float(np.percentile(latencies, 99) / 1e3),
           "cpu_p50_us": float(np.percentile(cpu, 50) / 1e3), "cpu_p99_us": float(np.percentile(cpu, 99) / 1e3),
           "allowed_fraction": allowed / n, "baseline_phonenumbers_parse_tz_per_s": parse_rate,
           "reasons_in_first_20000": dict(reasons.most_common())}
    out["ratio_vs_parse_baseline"] = out["decisions_per_cpu_s"] / parse_rate
    print(f"decisions (memory stores, 1 core): {out['decisions_per_s']:,.0f}/s wall, {out['decisions_per_cpu_s']:,.0f}"
          f" per CPU-second; wall p50 {out['p50_us']:.0f} us p99 {out['p99_us']:.0f} us; CPU p50"
          f" {out['cpu_p50_us']:.0f} us p99 {out['cpu_p99_us']:.0f} us; phonenumbers parse+tz alone {parse_rate:,.0f}/s")
    return out


def bench_live(db_url: str, redis_url: str, workdir: Path, pool: list[str], n: int) -> dict:
    gate = live_gate(db_url, redis_url, workdir / "data")
    with storage.connect_db(db_url, autocommit=True) as conn:
        ensure_counters_loaded(conn, gate, AT, "benchmark")       # as an engine does at start
    campaign = Campaign("live", Purpose.INFORMATIONAL, DialMode.PREVIEW, caller_id="+12125550000")
    t0 = time.perf_counter()
    latencies = []
    for i in range(n):
        start = time.perf_counter()
        gate.decide(CallRequest(pool[i % len(pool)], campaign, AT + timedelta(seconds=i), Lead()))
        latencies.append(time.perf_counter() - start)
    total_s = time.perf_counter() - t0
    gate.records.conn.close()
    out = {"decisions": n, "decisions_per_s": n / total_s, "p99_ms": float(np.percentile(latencies, 99) * 1e3)}
    print(f"decisions (PostgreSQL records + audit, Redis counters): {out['decisions_per_s']:,.0f}/s, p99 {out['p99_ms']:.1f} ms")
    return out


def bench_scrub(index: RegistryIndex, pool: list[str], workdir: Path, n: int, rng) -> dict:
    leads = workdir / "leads.csv"
    exchanges = sorted({p[2:8] for p in pool})
    picks_ex = rng.integers(0, len(exchanges), n)
    picks_line = rng.integers(0, 10_000, n)
    t0 = time.perf_counter()
    with open(leads, "w") as out:
        out.write("id,first_name,phone\n")
        chunk = 500_000
        for start in range(0, n, chunk):
            out.write("".join(f"{i},Lead{i},{exchanges[picks_ex[i]]}{picks_line[i]:04d}\n"
                              for i in range(start, min(n, start + chunk))))
    gen_s = time.perf_counter() - t0
    scrubber = Scrubber(Geography(load_packs()), index, set(), AT.date())
    t0, c0 = time.perf_counter(), time.process_time()
    report = scrub_file(scrubber, leads, workdir / "clean.csv", workdir / "rejects.csv")
    scrub_s, scrub_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    out = {"leads": n, "seconds": scrub_s, "cpu_seconds": scrub_cpu_s, "leads_per_s": n / scrub_s, "clean": report.clean,
           "rejected": dict(report.rejected), "distinct_exchanges": len(exchanges), "generate_s": gen_s}
    print(f"scrub {n:,} leads: {scrub_s:.1f} s wall, {scrub_cpu_s:.1f} s CPU ({out['leads_per_s']:,.0f}/s),"
          f" rejected {dict(report.rejected)}")
    for name in ("leads.csv", "clean.csv", "rejects.csv"):
        (workdir / name).unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry-numbers", type=int, default=260_000_000)
    parser.add_argument("--area-codes", type=int, default=400)
    parser.add_argument("--membership-numbers", type=int, default=10_000_000)
    parser.add_argument("--decisions", type=int, default=100_000)
    parser.add_argument("--live-decisions", type=int, default=2_000)
    parser.add_argument("--leads", type=int, default=10_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--registry-file", type=Path, default=None,
                        help="keep the generated registry here and reuse it on later runs")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--docs-only", action="store_true", help="only rewrite the docs table from the JSON")
    args = parser.parse_args()
    if args.docs_only:
        write_docs_table(json.loads(RESULTS.read_text()))
        return
    rng = np.random.default_rng(args.seed)
    random.seed(args.seed)
    load_at_start = os.getloadavg()
    base = config.database_url()
    name = f"bench_compliance_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db_url = psycopg.conninfo.make_conninfo(base, dbname=name)
    redis_url = config.redis_url().rsplit("/", 1)[0] + "/15"
    workdir = Path(tempfile.mkdtemp(prefix="bench-compliance-", dir=args.workdir))
    try:
        storage.migrate(db_url)
        registry, area_codes = bench_registry(args, workdir, db_url, rng)
        with storage.connect_db(db_url, autocommit=True) as conn:
            index = RegistryStore(conn, workdir / "data").load_index()
        membership = bench_membership(index, area_codes, rng, args.membership_numbers)
        pool = number_pool(area_codes, 20_000, rng)
        decisions = bench_decisions(index, pool, args.decisions, rng)
        storage.connect_redis(redis_url).flushdb()
        live = bench_live(db_url, redis_url, workdir, pool, args.live_decisions)
        storage.connect_redis(redis_url).flushdb()
        scrub = bench_scrub(index, pool, workdir, args.leads, rng)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results = {
        "command": "cd /work/main && eval \"$(bash scripts/services.sh env)\" && .venv/bin/python "
                   "benchmarks/compliance/bench_compliance.py " + " ".join(sys.argv[1:]),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "platform": platform.platform(), "load_average_at_start": load_at_start,
                    "load_average_at_end": os.getloadavg()},
        "registry_load": registry, "dnc_membership": membership, "decisions_memory": decisions,
        "decisions_live_stores": live, "scrub": scrub,
        "goals": {"decisions_per_s": 20_000, "decision_p99_us": 1000, "membership_numbers_per_s": 5_000_000,
                  "registry_260m_load_s": 300, "registry_260m_peak_rss_mb": 600, "scrub_10m_s": 60},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    write_docs_table(results)


def markdown_table(r: dict) -> str:
    reg, mem, dec, live, scr = (r["registry_load"], r["dnc_membership"], r["decisions_memory"],
                                r["decisions_live_stores"], r["scrub"])
    rows = [
        ("Decisions per second, 1 core, memory stores (wall clock)", f"{dec['decisions_per_s']:,.0f}", ">= 20,000"),
        ("Decisions per CPU-second (same run)", f"{dec['decisions_per_cpu_s']:,.0f}", ">= 20,000"),
        ("Decision latency p50 / p99, wall clock", f"{dec['p50_us']:.0f} / {dec['p99_us']:.0f} us", "p99 < 1,000 us"),
        ("Decision latency p50 / p99, CPU time", f"{dec['cpu_p50_us']:.0f} / {dec['cpu_p99_us']:.0f} us", "p99 < 1,000 us"),
        ("Baseline: phonenumbers parse + time zone alone, per CPU-second",
         f"{dec['baseline_phonenumbers_parse_tz_per_s']:,.0f}/s (a whole decision costs"
         f" {1 / dec['ratio_vs_parse_baseline']:.1f} parses)", "-"),
        ("Decisions per second on PostgreSQL + Redis (audit row each)", f"{live['decisions_per_s']:,.0f}"
         f" (p99 {live['p99_ms']:.1f} ms)", "hundreds"),
        ("Batched DNC membership", f"{mem['numbers_per_s'] / 1e6:.1f} M numbers/s wall,"
         f" {mem['numbers_per_cpu_s'] / 1e6:.1f} M per CPU-second ({mem['ratio_vs_single']:.0f}x single lookups)",
         ">= 5 M/s"),
        (f"Registry import, {reg['numbers'] / 1e6:,.0f} M numbers in {reg['area_codes']} area codes"
         f" ({reg['file_gb']:.2f} GB file)", f"{reg['import_s']:.0f} s wall, {reg['process_cpu_s']:.0f} s CPU"
         f" ({reg['numbers_per_s'] / 1e6:.1f} M/s)",
         "260 M in <= 300 s"),
        ("Registry import peak resident memory", f"{reg['peak_rss_mb']:.0f} MB", "<= 600 MB"),
        ("Mapping the imported registry into the hot path", f"{reg['index_map_s'] * 1e3:.0f} ms", "-"),
        (f"Scrub {scr['leads'] / 1e6:g} M leads ({scr['distinct_exchanges']:,} exchanges)",
         f"{scr['seconds']:.0f} s wall, {scr['cpu_seconds']:.0f} s CPU ({scr['leads_per_s']:,.0f}/s)",
         "10 M in <= 60 s"),
    ]
    machine = r["machine"]
    loads = [f"{machine[key][0]:.1f} {label}" for key, label in
             (("load_average_at_start", "at the start"), ("load_average_at_end", "at the end")) if machine.get(key)]
    lines = [f"Measured {r['measured_at']} on {machine['cpus']} CPUs shared with other jobs"
             + (f" (1-minute load average {', '.join(loads)})" if loads else "")
             + ", Python"
             f" {r['machine']['python']}, numpy {r['machine']['numpy']}. Reproduce: `{r['command']}`", "",
             "| what | measured | goal |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def write_docs_table(results: dict) -> None:
    """Replace the results block of docs/compliance.md with this run's table."""
    doc = ROOT / "docs" / "compliance.md"
    if not doc.exists():
        return
    text = doc.read_text()
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        doc.write_text(head + start + "\n" + markdown_table(results) + "\n" + end + rest.split(end, 1)[1])
        print(f"updated {doc}")


if __name__ == "__main__":
    main()
