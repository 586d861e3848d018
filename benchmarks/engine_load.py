"""Sustained originates per second and concurrent calls through the whole engine.

The engine (dialer/engine: claims in PostgreSQL, the live compliance gate on PostgreSQL and
Redis, attempt rows, bgapi originate, AMD, CDRs) runs in this process; the simulated switch
runs in its own process (`dialer fake-switch`) with its sessions-per-second and max-sessions
limits raised. Goal (issue 6 item 9): 100 calls per second, 2,000 concurrent calls, gevent hub
latency p99 under 50 ms, on a 2-core machine.

The campaign is agentless (informational, prerecorded, landlines): pacing starts calls as fast
as the gateway's calls-per-second bucket and channel cap allow, so each step of the ramp sets
the gateway's `max_cps` to the step's rate. A live answer hears the campaign's message (a WAV
of `--message-s` seconds: the simulated switch plays it for the file's length) and the called
parties stay on the line longer than that, so an answered call lasts ring + message; unanswered
calls ring until the 25 s ring timeout. Concurrency is therefore about rate x call lifetime.
Leads are fictional NANP numbers NXX-555-01DD with DD 12-99 (the switch's model decides them:
DD 00-11 are its scripted behaviours) across every US area code the compliance geography knows;
a federal do-not-call snapshot covering those area codes is imported, and the engine's clock is
pinned to a Tuesday afternoon in New York so calling hours are open whatever the real time.

Per step: achieved originate rate and concurrent calls over the measurement window (after a
warm-up that lets concurrency build), hub latency (a greenlet sleeping 5 ms; the lag beyond 5 ms,
as tests/test_esl_hub.py: `stall` counts only lag the thread spent on the CPU, `wall` all of it),
attempt outcomes and hangup causes, compliance blocks, and CPU of each process from /proc
(engine = this process, switch, the PostgreSQL backends of the benchmark's database, Redis).
At the top step without AMD, cProfile runs for `--profile-s` after the measurement window.

    .venv/bin/python -m benchmarks.engine_load            # full ramp, about 10 minutes
    .venv/bin/python -m benchmarks.engine_load --quick    # one short step each, about 1 minute
"""
from gevent import monkey

monkey.patch_all()   # before psycopg is imported: it picks its wait function at import time

import collections  # noqa: E402
import gc  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
import wave  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402
import gevent  # noqa: E402
import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from rich.console import Console  # noqa: E402

from dialer import campaigns, config, storage  # noqa: E402
from dialer.compliance.registry import RegistryStore  # noqa: E402
from dialer.compliance.service import LazyConnection, dry_run_gate, import_test_lists, live_gate  # noqa: E402
from dialer.config import FreeswitchNode  # noqa: E402
from dialer.engine.engine import Engine, EngineConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "engine_load.json"
DIALER = ROOT / ".venv" / "bin" / "dialer"
# A Tuesday, 15:00 in New York: inside every US calling window (as tests/engine_world.py).
PINNED = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)
CLK_TCK = os.sysconf("SC_CLK_TCK")
console = Console(stderr=True)


# -- processes and their CPU ----------------------------------------------------------------------

def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process from /proc (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def redis_pid(port: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "redis-server" in cmdline and f":{port}" in cmdline:
            return int(entry.name)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SwitchProcess:
    """`dialer fake-switch` in its own process, limits raised, parties staying `stay_mean` s."""

    def __init__(self, max_sessions: int, sps: int, seed: int, stay_mean: float) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(DIALER), "fake-switch", "--port", str(self.port), "--max-sessions", str(max_sessions),
             "--sps", str(sps), "--seed", str(seed), "--stay-mean", str(stay_mean)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()   # "fake FreeSWITCH listening on ..." once bound
        if "listening" not in line:
            self.proc.kill()
            raise click.ClickException(f"fake switch did not start: {line!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=5)
        return out.strip().splitlines()[-1] if out.strip() else ""


# -- the world: database, Redis database, numbers, do-not-call snapshot --------------------------

class World:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        base = config.database_url()
        self.db_name = f"bench_engine_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.db_name}"')
        self.db_url = psycopg.conninfo.make_conninfo(base, dbname=self.db_name)
        storage.migrate(self.db_url)
        self.redis_url, self._redis_lease = self._claim_redis()
        self.numbers = self._numbers()
        self._next_number = 0
        self._import_registry()

    def _claim_redis(self) -> tuple[str, tuple]:
        """A logical Redis database of our own, claimed like tests/conftest.py's redis_url."""
        base = (os.environ.get("REDIS_URL") or config.DEFAULT_REDIS_URL).rsplit("/", 1)[0]
        control = storage.connect_redis(base + "/0")
        token = uuid.uuid4().hex
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for number in range(1, 16):
                if control.set(f"test-db-lease:{number}", token, nx=True, ex=1800):
                    url = f"{base}/{number}"
                    storage.connect_redis(url).flushdb()
                    return url, (control, number, token)
            time.sleep(0.1)
        raise click.ClickException("no free Redis database (1-15) within 30 s")

    def _numbers(self) -> list[str]:
        """NXX-555-01DD, DD 12-99, for every area code the compliance geography places."""
        geo = dry_run_gate([], PINNED.date())[0].geo
        numbers = []
        self.area_codes = []
        for npa in range(201, 990):
            facts = geo.facts(f"+1{npa}5550112")
            if facts.valid and facts.zones and len(facts.states) == 1:
                self.area_codes.append((str(npa), facts.states[0]))
        for dd in range(12, 100):        # interleaved so consecutive leads span area codes
            for npa, state in self.area_codes:
                numbers.append((f"+1{npa}55501{dd:02d}", state))
        return numbers

    def _import_registry(self) -> None:
        """A federal snapshot covering every area code used (one listed number each, never dialed)
        and every state's list (one listed number per state, never dialed)."""
        states = {state: [f"+1{npa}5550100"] for npa, state in self.area_codes}
        import_test_lists(RegistryStore(LazyConnection(self.db_url), self.workdir), PINNED.date() - timedelta(days=3),
                          federal=[f"+1{npa}5550100" for npa, _ in self.area_codes], states=states,
                          source="benchmark")

    def take_numbers(self, count: int) -> list[tuple[str, str]]:
        """Fresh numbers while they last (then reused, in another campaign)."""
        taken = [self.numbers[(self._next_number + i) % len(self.numbers)] for i in range(count)]
        self._next_number += count
        return taken

    def create_campaign(self, name: str, settings: dict, leads: list[tuple[str, str]]) -> int:
        with storage.connect_db(self.db_url) as conn:
            created = campaigns.create_campaign(conn, name, campaigns.CampaignSettings.from_dict(settings))
            (list_id,) = conn.execute("INSERT INTO lead_lists (campaign_id, name, source_file)"
                                      " VALUES (%s, 'bench', 'bench') RETURNING id", (created.id,)).fetchone()
            with conn.cursor().copy("COPY leads (campaign_id, list_id, phone_e164, phone_raw, state, line_type)"
                                    " FROM STDIN") as copy:
                for phone, state in leads:
                    copy.write_row((created.id, list_id, phone, phone, state, "landline"))
            conn.commit()
            campaigns.set_status(conn, name, "running")
            conn.commit()
        return created.id

    def pause_campaign(self, name: str) -> None:
        with storage.connect_db(self.db_url) as conn:
            campaigns.set_status(conn, name, "paused")
            conn.commit()

    def attempt_summary(self, campaign_id: int) -> dict:
        with storage.connect_db(self.db_url) as conn:
            outcomes = conn.execute(
                "SELECT COALESCE(outcome, 'in_flight'), COALESCE(hangup_cause, '-'), count(*) FROM call_attempts"
                " WHERE campaign_id = %s GROUP BY 1, 2 ORDER BY 3 DESC", (campaign_id,)).fetchall()
            amd = conn.execute("SELECT amd_result, count(*) FROM call_attempts WHERE campaign_id = %s"
                               " AND amd_result IS NOT NULL GROUP BY 1", (campaign_id,)).fetchall()
            cdrs = conn.execute("SELECT count(*) FROM cdrs c JOIN call_attempts a USING (origination_uuid)"
                                " WHERE a.campaign_id = %s", (campaign_id,)).fetchone()[0]
        return {"by_outcome_and_cause": {f"{o}/{c}": n for o, c, n in outcomes},
                "amd": dict(amd), "cdrs": cdrs}

    def backend_pids(self) -> list[int]:
        with psycopg.connect(config.database_url(), autocommit=True) as admin:
            return [pid for (pid,) in admin.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.db_name,))]

    def close(self) -> None:
        control, number, token = self._redis_lease
        storage.connect_redis(self.redis_url).flushdb()
        if control.get(f"test-db-lease:{number}") in (token, token.encode()):
            control.delete(f"test-db-lease:{number}")
        with psycopg.connect(config.database_url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


def write_message(path: Path, seconds: float) -> str:
    """The agentless message: a quiet tone; its length is what the switch plays."""
    samples = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(8000 * seconds)) / 8000)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes((samples * 32767).astype("<i2").tobytes())
    return str(path)


# -- measuring ----------------------------------------------------------------------------------

class HubMonitor:
    """A greenlet sleeping 5 ms: how late it wakes is how long the hub was busy elsewhere."""

    def __init__(self) -> None:
        self.stalls: list[float] = []
        self.walls: list[float] = []
        self._greenlet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            wall, cpu = time.perf_counter(), time.thread_time()
            gevent.sleep(0.005)
            lag = time.perf_counter() - wall - 0.005
            self.walls.append(lag)
            # Lag the thread spent on the CPU; the rest is the OS running other processes.
            self.stalls.append(min(lag, time.thread_time() - cpu))

    def reset(self) -> None:
        self.stalls, self.walls = [], []

    def stop(self) -> None:
        self._greenlet.kill()


class CallTimer:
    """Wall time of engine methods, measured by wrapping them on their instances (the engine's
    code is unchanged): where a dial's and a hangup's latency goes."""

    TIMED = {"store": ("claim_leads", "create_attempt", "attempt_answered", "finish_attempt", "abandon_account"),
             "gate": ("decide", "record_outcome"), "runner": ("_tick", "_dial")}

    def __init__(self, engine: Engine, runner) -> None:
        self.durations: dict[str, list[float]] = {}
        self.recording = False
        for owner_name, methods in self.TIMED.items():
            owner = {"store": engine.store, "gate": engine.gate, "runner": runner}[owner_name]
            for method in methods:
                setattr(owner, method, self._wrap(f"{owner_name}.{method}", getattr(owner, method)))

    def _wrap(self, name: str, method):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                if self.recording:
                    self.durations.setdefault(name, []).append(time.perf_counter() - started)
        return timed

    def summary(self, window: float) -> dict:
        return {name: {"per_s": round(len(v) / window, 1), "mean_ms": round(1000 * statistics.fmean(v), 2),
                       "p99_ms": round(1000 * percentile(v, 0.99), 2)}
                for name, v in sorted(self.durations.items())}


class WarningCounter(logging.Handler):
    """The engine's warnings and errors during the measurement window, counted by message shape
    (uuids and numbers blanked) instead of printed."""

    SHAPE = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: collections.Counter[str] = collections.Counter()
        self.recording = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.recording:
            self.counts[f"{record.levelname} {record.name}: " + self.SHAPE.sub("N", record.getMessage())[:100]] += 1


WARNINGS = WarningCounter()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def quantiles_ms(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 0.5) * 1000, 2), "p99": round(percentile(values, 0.99) * 1000, 2),
            "max": round(max(values, default=float("nan")) * 1000, 2)}


def cpu_snapshot(pids: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: {pid: s for pid in group if (s := cpu_seconds(pid)) is not None} for name, group in pids.items()}


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    return {name: sum(after[name][pid] - before[name].get(pid, 0.0) for pid in after[name]) for name in after}


def run_step(world: World, workdir: Path, *, cps: int, channels: int, amd: bool, duration: float, warmup: float,
             message: str, stay_mean: float, step_no: int, profile_s: float = 0.0) -> dict:
    leads = world.take_numbers(int(cps * (duration + profile_s) * 1.2) + 200)
    name = f"load-{'amd' if amd else 'noamd'}-{cps}-{step_no}"
    settings = {
        "dial_mode": "agentless", "call_purpose": "informational", "voice": "prerecorded",
        "pacing": {"mode": "agentless"},
        "gateways": [{"name": "gw1", "max_cps": cps, "max_channels": channels}],
        "caller_ids": {"pool": ["+12125550199"]},
        "ring_timeout_s": 25,
        "amd": {"enabled": amd, "action": "hangup"},
        "safe_harbor_message": message,
        "timezone": "America/New_York",
    }
    campaign_id = world.create_campaign(name, settings, leads)
    switch = SwitchProcess(max_sessions=channels * 2, sps=max(1000, cps * 4), seed=step_no, stay_mean=stay_mean)
    started = time.monotonic()
    cfg = EngineConfig(engine_id=f"bench-{step_no}", database_url=world.db_url, redis_url=world.redis_url,
                       nodes=[FreeswitchNode("127.0.0.1", switch.port, "ClueCon")],
                       amd_listen=("127.0.0.1", 0), unicast_ports=range(47000, 47000 + channels * 2),
                       hook_listen=None)
    gate = live_gate(world.db_url, world.redis_url, workdir)
    clock_origin = time.monotonic()
    engine = Engine(cfg, gate, clock=lambda: PINNED + timedelta(seconds=time.monotonic() - clock_origin)).start()
    gc.freeze()    # as `dialer run` does after start-up
    runner = None
    samples: list[tuple[float, int, int, int]] = []
    WARNINGS.counts.clear()
    monitor = HubMonitor()
    try:
        while runner is None and time.monotonic() - started < 10:
            runner = next(iter(r for r in engine.runners.values() if r.campaign_id == campaign_id), None)
            gevent.sleep(0.1)
        if runner is None:
            raise click.ClickException(f"campaign {name} did not start on the engine")
        timer = CallTimer(engine, runner)
        pg_pids = world.backend_pids()
        pids = {"engine": [os.getpid()], "switch": [switch.pid], "postgres": pg_pids,
                "redis": [p for p in [redis_pid(int(world.redis_url.rsplit(":", 1)[1].split("/")[0]))] if p]}
        step_start = time.monotonic()
        window_start = step_start + warmup
        cpu_before = None
        while (now := time.monotonic()) < step_start + duration:
            if cpu_before is None and now >= window_start:
                cpu_before, monitor_reset_at = cpu_snapshot(pids), now
                originated_before = runner.stats.originated
                monitor.reset()
                timer.recording = WARNINGS.recording = True
            answered = sum(1 for c in runner.calls.values() if c.answered is not None)
            samples.append((now, runner.stats.originated, len(runner.calls), answered))
            gevent.sleep(0.5)
        window = time.monotonic() - monitor_reset_at
        timer.recording = WARNINGS.recording = False
        cpu_after = cpu_snapshot(pids)
        originated = runner.stats.originated - originated_before
        stalls, walls = list(monitor.stalls), list(monitor.walls)
        profile = None
        if profile_s > 0:
            profile = profile_engine(profile_s)
        in_window = [s for s in samples if s[0] >= window_start]
        used = cpu_used(cpu_before, cpu_after)
        result = {
            "cps_target": cps, "amd": amd, "channels_cap": channels,
            "window_s": round(window, 1), "warmup_s": warmup,
            "originates_per_s": round(originated / window, 1),
            "concurrent_mean": round(statistics.fmean(s[2] for s in in_window), 0) if in_window else 0,
            "concurrent_max": max((s[2] for s in in_window), default=0),
            "answered_in_flight_mean": round(statistics.fmean(s[3] for s in in_window), 0) if in_window else 0,
            "hub_stall_ms": quantiles_ms(stalls),
            "hub_wall_lag_ms": quantiles_ms(walls),
            "cpu_percent": {k: round(100 * v / window, 1) for k, v in used.items()},
            "engine_calls": timer.summary(window),
            "compliance_blocks": dict(runner.stats.blocks),
            "engine_warnings": dict(WARNINGS.counts.most_common(10)),
            "postgres_backends": len(pg_pids),
        }
        if profile is not None:
            result["profile"] = profile
        # Before the engine stops: the calls it cuts then are not failures of the step.
        result["attempts"] = world.attempt_summary(campaign_id)
    finally:
        monitor.stop()
        engine.stop(drain_timeout=1)
        world.pause_campaign(name)
        result_switch = switch.stop()
    result["switch_counters"] = result_switch
    return result


def profile_engine(seconds: float, top: int = 25) -> list[dict]:
    """cProfile over every greenlet of this process for `seconds`: top functions by self CPU time
    (thread time, so the hub's idle wait in epoll is not counted)."""
    profiler = cProfile.Profile(time.thread_time)
    profiler.enable()
    gevent.sleep(seconds)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in stats.stats.values())
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"function": f"{Path(file).name}:{line}({func})", "calls": nc, "self_s": round(tt, 3),
             "self_share": round(tt / total, 3) if total else 0, "cumulative_s": round(ct, 3)}
            for (file, line, func), (_cc, nc, tt, ct, _callers) in rows]


def render(steps: list[dict]) -> str:
    header = ("| AMD | target cps | originates/s | concurrent (mean / max) | hub stall p50 / p99 / max ms |"
              " CPU % engine / switch / postgres / redis | tick / dial / hangup ms | failed attempts (cause: n) |")
    lines = [header, "|" + "---|" * 8]
    for s in steps:
        cpu = s["cpu_percent"]
        fails = {k.removeprefix("failed/"): v for k, v in s["attempts"]["by_outcome_and_cause"].items()
                 if k.startswith("failed/")}
        top = ", ".join(f"{k}: {v}" for k, v in sorted(fails.items(), key=lambda kv: -kv[1])[:4])
        blocks = sum(s["compliance_blocks"].values())
        if blocks:
            top += f", compliance blocks: {blocks}"
        h = s["hub_stall_ms"]
        timed = s["engine_calls"]
        latency = " / ".join(str(timed.get(k, {}).get("mean_ms", "-"))
                             for k in ("runner._tick", "runner._dial", "store.finish_attempt"))
        lines.append(f"| {'on' if s['amd'] else 'off'} | {s['cps_target']} | {s['originates_per_s']} |"
                     f" {s['concurrent_mean']:.0f} / {s['concurrent_max']} | {h['p50']} / {h['p99']} / {h['max']} |"
                     f" {cpu['engine']} / {cpu['switch']} / {cpu['postgres']} / {cpu.get('redis', 'n/a')} | {latency} | {top} |")
    return "\n".join(lines)


@click.command()
@click.option("--cps", "top_cps", default=100, show_default=True, help="top rate of the ramp (calls per second)")
@click.option("--steps", default="10,25,50,100", show_default=True,
              help="ramp: rates in calls per second, comma separated (capped at --cps)")
@click.option("--concurrent", default=2000, show_default=True, help="concurrent-call goal (gateway channel cap x1.25)")
@click.option("--duration", default=55.0, show_default=True, help="seconds per step")
@click.option("--warmup", default=30.0, show_default=True, help="seconds of each step before measuring")
@click.option("--message-s", default=18.0, show_default=True, help="length of the agentless message")
@click.option("--stay-mean", default=600.0, show_default=True, help="mean seconds a called party stays")
@click.option("--amd-steps", default="25,50,100", show_default=True, help="rates run again with AMD on ('' for none)")
@click.option("--profile-s", default=10.0, show_default=True, help="cProfile window at the top step, AMD off (0: none)")
@click.option("--quick", is_flag=True, help="one 20 s step at --cps/4 each way, no profile (about a minute);"
              " writes engine_load_quick.json unless --out is given")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def main(top_cps, steps, concurrent, duration, warmup, message_s, stay_mean, amd_steps, profile_s, quick, out):
    """Ramp the engine's originate rate against the simulated switch in its own process."""
    logging.basicConfig(level=logging.CRITICAL)       # the engine's log lines are counted, not printed
    logging.getLogger().addHandler(WARNINGS)
    rates = [min(int(r), top_cps) for r in steps.split(",") if r.strip()]
    amd_rates = [min(int(r), top_cps) for r in amd_steps.split(",") if r.strip()]
    if quick:
        rates, amd_rates, duration, warmup, profile_s = [max(1, top_cps // 4)], [max(1, top_cps // 4)], 20.0, 10.0, 0.0
        if out == RESULTS:      # a smoke run never replaces the full ramp's figures
            out = RESULTS.with_name("engine_load_quick.json")
    if warmup >= duration:
        raise click.BadParameter("must be shorter than --duration", param_hint="--warmup")
    channels = int(concurrent * 1.25)
    started = time.monotonic()
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="engine-load-") as tmp:
        workdir = Path(tmp)
        message = write_message(workdir / "agentless-message.wav", message_s)
        console.print("preparing the database, numbers and do-not-call snapshot ...")
        world = World(workdir)
        console.print(f"{len(world.numbers)} numbers across {len(world.area_codes)} area codes")
        try:
            plan = [(r, False) for r in rates] + [(r, True) for r in amd_rates]
            for index, (rate, amd) in enumerate(plan):
                top_no_amd = not amd and rate == max(rates) and index == rates.index(max(rates))
                console.print(f"step {index + 1}/{len(plan)}: {rate} cps, AMD {'on' if amd else 'off'} ...")
                step = run_step(world, workdir, cps=rate, channels=channels, amd=amd, duration=duration,
                                warmup=warmup, message=message, stay_mean=stay_mean, step_no=index + 1,
                                profile_s=profile_s if top_no_amd else 0.0)
                results.append(step)
                console.print(f"  {step['originates_per_s']}/s, concurrent {step['concurrent_mean']:.0f}"
                              f" (max {step['concurrent_max']}), hub stall p99 {step['hub_stall_ms']['p99']} ms,"
                              f" CPU {step['cpu_percent']}")
        finally:
            world.close()
    command = ".venv/bin/python -m benchmarks.engine_load " + shlex.join(sys.argv[1:])
    doc = {
        "benchmark": "engine_load", "command": command.strip(),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "goal": {"cps": 100, "concurrent": 2000, "hub_p99_ms": 50},
        "settings": {"concurrent_goal": concurrent, "channels_cap": channels, "duration_s": duration,
                     "warmup_s": warmup, "message_s": message_s, "stay_mean_s": stay_mean,
                     "ring_timeout_s": 25, "campaign": "agentless informational prerecorded, landlines"},
        "steps": results, "total_s": round(time.monotonic() - started, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    table = render(results)
    print(table)
    console.print(f"written {out} in {doc['total_s']} s")


if __name__ == "__main__":
    main()
