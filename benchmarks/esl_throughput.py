"""Event Socket throughput: events parsed per second per core, plain and json, on the event
mix of the real captures 03 (plain) and 04 (json) replayed many times, beside greenswitch
parsing the same plain stream in the same run; and bgapi originate round trips per second
against the simulated switch.

    .venv/bin/python -m benchmarks.esl_throughput [--passes 200] [--originates 2000]

"Per core" divides by the CPU time the client process spent (time.process_time), so the
figure does not depend on what else the machine was doing; wall-clock rates are shown too.
The stream comes from a separate process (benchmarks.blaster), over TCP on 127.0.0.1.
"""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import click
import gevent
from rich.console import Console
from rich.table import Table

from esl import protocol
from esl.connection import connect

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT.parent / "shared" / "esl-captures"
RESULTS = ROOT / "benchmarks" / "results" / "esl_throughput.json"
SOURCES = {"plain": CAPTURES / "03_loopback_call_plain_ALL.s2c.raw",
           "json": CAPTURES / "04_loopback_call_json_ALL.s2c.raw"}


def measure_in_memory(path: Path, passes: int) -> dict:
    """The sans-I/O core alone: frames and events from bytes already in memory."""
    data = b"".join(protocol.encode_frame([("Content-Type", f.content_type)], f.body, length_first=True)
                    for f in protocol.FrameParser().feed(path.read_bytes()) if f.is_event)
    stream = data * passes
    chunk = 1 << 16
    wall, cpu = time.perf_counter(), time.process_time()
    parser = protocol.FrameParser()
    events = 0
    for i in range(0, len(stream), chunk):
        for frame in parser.feed(stream[i:i + chunk]):
            protocol.decode_event(frame)
            events += 1
    cpu = time.process_time() - cpu
    wall = time.perf_counter() - wall
    return {"events": events, "cpu_s": round(cpu, 4), "wall_s": round(wall, 4),
            "events_per_cpu_s": round(events / cpu), "events_per_wall_s": round(events / wall),
            "mb_per_cpu_s": round(len(stream) / cpu / 1e6, 1)}


def start_blaster(passes: int, source: Path) -> tuple[subprocess.Popen, int, int]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.blaster", str(passes), str(source)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    port, total = map(int, proc.stdout.readline().split())
    return proc, port, total


def measure_ours(source: Path, passes: int) -> dict:
    proc, port, total = start_blaster(passes, source)
    received = [0]

    def count(_event):
        received[0] += 1

    try:
        # The clock starts before connecting, for both clients: greenswitch parses the whole
        # stream while its connect() waits for the auth reply.
        wall, cpu = time.perf_counter(), time.process_time()
        conn = connect("127.0.0.1", port, timeout=10, on_event=count)
        conn.authenticate("x")
        deadline = time.monotonic() + 300
        while received[0] < total and time.monotonic() < deadline:
            gevent.sleep(0.005)
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        conn.close()
    finally:
        proc.kill()
        proc.wait()
    return {"events": received[0], "expected": total, "cpu_s": round(cpu, 4), "wall_s": round(wall, 4),
            "events_per_cpu_s": round(received[0] / cpu), "events_per_wall_s": round(received[0] / wall)}


def measure_greenswitch(source: Path, passes: int) -> dict:
    from greenswitch.esl import InboundESL

    proc, port, total = start_blaster(passes, source)
    received = [0]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        client = InboundESL("127.0.0.1", port, "x", timeout=10)
        client.register_handle("*", lambda _event: received.__setitem__(0, received[0] + 1))
        client.connect()
        deadline = time.monotonic() + 300
        while received[0] < total and time.monotonic() < deadline:
            gevent.sleep(0.005)
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        client._run = False
        client.sock.close()
    finally:
        proc.kill()
        proc.wait()
    return {"events": received[0], "expected": total, "cpu_s": round(cpu, 4), "wall_s": round(wall, 4),
            "events_per_cpu_s": round(received[0] / cpu), "events_per_wall_s": round(received[0] / wall)}


def measure_originates(count: int, concurrency: int) -> dict | None:
    """bgapi originate round trips (bgapi sent to BACKGROUND_JOB received) against the
    simulated switch, with its limits raised so that they do not cap the rate."""
    if count <= 0:
        return None
    from benchmarks.esl_originate import run_originates
    return run_originates(count, concurrency)


@click.command()
@click.option("--passes", default=200, show_default=True, help="times each capture's events are replayed")
@click.option("--originates", default=2000, show_default=True, help="bgapi originates to time (0 skips)")
@click.option("--concurrency", default=50, show_default=True, help="originates in flight at once")
@click.option("--out", type=click.Path(path_type=Path), default=RESULTS, show_default=True)
def main(passes: int, originates: int, concurrency: int, out: Path) -> None:
    results: dict = {"command": f"python -m benchmarks.esl_throughput --passes {passes} "
                                f"--originates {originates} --concurrency {concurrency}",
                     "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    for kind, path in SOURCES.items():
        results[f"in_memory_{kind}"] = measure_in_memory(path, passes)
        results[f"socket_{kind}"] = measure_ours(path, passes)
    # greenswitch reads JSON bodies as header lines (it has no JSON support), so only the
    # plain stream gives a like-for-like figure.
    results["greenswitch_socket_plain"] = measure_greenswitch(SOURCES["plain"], passes)
    results["ratio_plain_ours_over_greenswitch"] = round(
        results["socket_plain"]["events_per_cpu_s"] / results["greenswitch_socket_plain"]["events_per_cpu_s"], 2)
    results["bgapi_originate"] = measure_originates(originates, concurrency)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    table = Table(title="ESL throughput (events per CPU-second of the client process)")
    for column in ("measure", "events", "events/s per core", "events/s wall"):
        table.add_column(column)
    for key in ("in_memory_plain", "socket_plain", "greenswitch_socket_plain", "in_memory_json", "socket_json"):
        row = results[key]
        table.add_row(key, str(row["events"]), f"{row['events_per_cpu_s']:,}", f"{row['events_per_wall_s']:,}")
    console = Console()
    console.print(table)
    console.print(f"ours / greenswitch (plain, per core): {results['ratio_plain_ours_over_greenswitch']}x")
    if results["bgapi_originate"]:
        console.print(f"bgapi originate round trips: {results['bgapi_originate']}")
    console.print(f"results: {out}\nreproduce: .venv/bin/{results['command']}")


if __name__ == "__main__":
    main()
