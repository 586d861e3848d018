"""How long calls stop after Redis loses the frequency counters: the rebuild from PostgreSQL.

Until the counters are rebuilt (dialer.compliance.attempts), the gate refuses every call
(COUNTERS_NOT_LOADED); this measures that outage for a record of N placed calls spread over
the last 30 days (the longest counter window), with the keys and outcomes a mixed US campaign
gives (every call in the 24-hour attempt log, Florida numbers under FL-3IN24, debt calls under
Reg F's 7-in-7, most calls not connected), plus older calls whose outcome still holds a lock.
Prints what it measured and writes benchmarks/results/compliance_rebuild.json.

    cd /work/main && eval "$(bash scripts/services.sh env)" && \\
        .venv/bin/python benchmarks/compliance/bench_rebuild.py --attempts 200000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dialer import config, storage  # noqa: E402
from dialer.compliance.attempts import ensure_counters_loaded  # noqa: E402
from dialer.compliance.counters import LOADED_KEY, counter_key  # noqa: E402
from dialer.compliance.service import live_gate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "compliance_rebuild.json"
OUTCOMES = np.array(["no_connect", "machine", "answered", "conversation", "abandoned", "declined", ""])
OUTCOME_SHARES = np.array([0.60, 0.18, 0.08, 0.08, 0.01, 0.01, 0.04])


def synthesize(conn, n: int, now: datetime, rng) -> None:
    """N attempts over the last 30 days (and a tenth as many older ones, 30-366 days back)."""
    older = n // 10
    ages_s = np.concatenate([rng.uniform(0, 30 * 86400, n), rng.uniform(30 * 86400, 366 * 86400, older)])
    florida = rng.random(n + older) < 0.3
    debt = rng.random(n + older) < 0.5
    lines = rng.integers(2_000_000, 10_000_000, n + older)        # exchange 200-999: valid numbers
    outcomes = rng.choice(OUTCOMES, n + older, p=OUTCOME_SHARES)
    with conn.cursor() as cur, cur.copy(
            "COPY compliance_call_attempts (decision_id, phone_e164, campaign_id, seller, subject, person_id,"
            " debt_id, attempted_at, counter_keys, outcome, outcome_at) FROM STDIN") as copy:
        for i in range(n + older):
            phone = f"+1{'305' if florida[i] else '212'}{lines[i]}"
            at = now - timedelta(seconds=float(ages_s[i]))
            keys = [counter_key("attempts", phone)]
            if florida[i]:
                keys.append(counter_key("FL-3IN24", f"{phone}|c1"))
            person = debt_id = None
            if debt[i]:
                person, debt_id = f"p{lines[i]}", f"d{lines[i] % 3}"
                keys.append(counter_key("US-7IN7", f"{person}|{debt_id}"))
            outcome = outcomes[i] or None
            copy.write_row((uuid.uuid4().hex, phone, "bench", "s1", "c1", person, debt_id, at, keys, outcome,
                            at + timedelta(seconds=30) if outcome else None))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attempts", type=int, default=200_000, help="calls placed in the last 30 days")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    base = config.database_url()
    name = f"bench_rebuild_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    db_url = psycopg.conninfo.make_conninfo(base, dbname=name)
    redis_url = config.redis_url().rsplit("/", 1)[0] + "/15"
    redis_client = storage.connect_redis(redis_url)
    now = datetime.now(timezone.utc)
    try:
        storage.migrate(db_url)
        with storage.connect_db(db_url, autocommit=True) as conn:
            t0 = time.perf_counter()
            synthesize(conn, args.attempts, now, rng)
            print(f"wrote {args.attempts:,} + {args.attempts // 10:,} older attempts in {time.perf_counter() - t0:.1f} s")
            redis_client.flushdb()
            gate = live_gate(db_url, redis_url, Path(os.environ.get("TMPDIR", "/tmp")))
            t0, c0 = time.perf_counter(), time.process_time()
            replayed = ensure_counters_loaded(conn, gate, now, "benchmark")
            wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        info = redis_client.info("memory")
        keys = redis_client.dbsize()
        assert redis_client.get(LOADED_KEY) is not None
    finally:
        redis_client.flushdb()
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    out = {
        "command": "cd /work/main && eval \"$(bash scripts/services.sh env)\" && .venv/bin/python "
                   "benchmarks/compliance/bench_rebuild.py " + " ".join(sys.argv[1:]),
        "measured_at": now.isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_end": os.getloadavg()},
        "attempts_last_30_days": args.attempts, "attempts_older": args.attempts // 10,
        "rows_replayed": replayed, "rebuild_wall_s": round(wall_s, 2), "rebuild_process_cpu_s": round(cpu_s, 2),
        "rows_per_s": round(replayed / wall_s), "redis_keys_after": keys,
        "redis_used_memory_mb": round(info["used_memory"] / 2 ** 20, 1),
    }
    print(f"rebuild: {replayed:,} rows replayed in {wall_s:.1f} s wall ({out['rows_per_s']:,}/s, {cpu_s:.1f} s CPU"
          f" in this process); Redis then holds {keys:,} keys, {out['redis_used_memory_mb']} MB")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
