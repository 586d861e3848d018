"""UDP receiver throughput: N simulated FreeSWITCH unicast streams on 127.0.0.1.

A separate sender process plays N calls (each from its own source port, one 320-byte L16
datagram per call every 20 ms, the corpus' audio looped) into one UnicastReceiver; the receiver
process runs the whole path (datagram decode, jitter buffers, playout clock, batched features,
one CallAnalyzer per call; analyzers that finish are replaced by fresh registrations so every
call stays analysed). Reported: receiver CPU per stream-second and real-time streams per core,
frames filled with silence in the calls analysed last (sender or receiver falling behind).

    python -m benchmarks.amd.receiver_bench --corpus benchmarks/corpus --streams 200 --seconds 10
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import socket
import sys
import time
from pathlib import Path


from amd import audio
from amd.audio import Codec


def _sender(address, streams: int, seconds: float, files: list[str], ready, go) -> None:
    socks = []
    payloads = []
    for i in range(streams):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        x = audio.load_audio_8k(files[i % len(files)])
        x = x[: len(x) // 160 * 160]
        payloads.append([x[j:j + 160].tobytes() for j in range(0, len(x), 160)])
    ready.put([s.getsockname()[1] for s in socks])
    go.wait(30)
    start = time.monotonic()
    n_ticks = int(seconds * 50)
    for t in range(n_ticks):
        for i, s in enumerate(socks):
            s.sendto(payloads[i][t % len(payloads[i])], address)
        delay = start + (t + 1) * 0.02 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for s in socks:
        s.close()


def run(corpus: Path, streams: int, seconds: float) -> dict:
    import gevent
    from amd.receiver import UnicastReceiver

    files = sorted(str(p) for p in corpus.glob("*.wav"))[:streams]
    rx = UnicastReceiver(("127.0.0.1", 0), jitter_frames=5, stall_timeout_s=2.0, max_calls=streams * 2)
    rx.start()
    ctx = multiprocessing.get_context("spawn")        # a clean child, no inherited gevent hub
    ready, go = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_sender, args=(rx.address, streams, seconds, files, ready, go))
    proc.start()
    ports = ready.get(timeout=120)
    streams_by_port = {}
    finished = {"calls": 0}

    def register(port):
        streams_by_port[port] = rx.register(f"call-{port}-{finished['calls']}", port, Codec.L16, 8000, on_done=on_done)

    def on_done(stream, result):
        finished["calls"] += 1
        port = stream.source[1]
        gevent.spawn(register, port)            # keep the stream analysed

    for port in ports:
        register(port)
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    go.set()
    while proc.is_alive() and time.monotonic() - t0 < seconds + 30:
        gevent.sleep(0.1)
    wall = time.monotonic() - t0
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    stats = [s.stats for s in streams_by_port.values()]
    rx.stop()
    proc.join(10)
    stream_seconds = streams * seconds
    return {
        "streams": streams, "seconds": seconds, "wall_s": wall, "receiver_cpu_s": cpu,
        "cpu_ms_per_stream_second": 1000 * cpu / stream_seconds,
        "streams_per_core": stream_seconds / cpu if cpu else None,
        "analyses_finished": finished["calls"],
        "concealed_frames_last_calls": int(sum(s.concealed for s in stats)),
        "unknown_datagrams": rx.unknown_datagrams,
        "load_average_1min": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="benchmarks/corpus")
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", default="benchmarks/results/amd_receiver.json")
    args = parser.parse_args(argv)
    result = run(Path(args.corpus), args.streams, args.seconds)
    result["command"] = "python -m benchmarks.amd.receiver_bench " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
