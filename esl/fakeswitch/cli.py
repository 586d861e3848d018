"""`dialer fake-switch`: run the simulated FreeSWITCH until Ctrl-C."""
from __future__ import annotations

import signal

import click
import gevent
import gevent.event

from esl.fakeswitch.model import CalledPartyModel, FakeSwitchError
from esl.fakeswitch.switch import FakeSwitch


@click.command("fake-switch")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8021, show_default=True, type=click.IntRange(0, 65535))
@click.option("--password", default="ClueCon", show_default=True)
@click.option("--max-sessions", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--sps", "sessions_per_second", default=30, show_default=True, type=click.IntRange(min=1),
              help="sessions per second (FreeSWITCH's switch.conf sessions-per-second)")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--answer-rate", default=0.55, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--busy-rate", default=0.10, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--invalid-rate", default=0.04, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--rejected-rate", default=0.03, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--congestion-rate", default=0.02, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--temp-failure-rate", default=0.03, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--machine-rate", default=0.30, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--early-media-rate", default=0.25, show_default=True, type=click.FloatRange(0.0, 1.0))
@click.option("--ring-median", default=6.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True),
              help="seconds")
@click.option("--stay-mean", default=45.0, show_default=True, type=click.FloatRange(min=0.0, min_open=True),
              help="mean seconds a called party stays before hanging up")
@click.option("--time-scale", default=1.0, show_default=True, type=float,
              help="multiplies ring and stay times (0.01 for fast runs)")
@click.option("--human-wav", type=click.Path(exists=True, dir_okay=False), default=None,
              help="what an answering person says: a 16-bit mono 8000 Hz WAV (checked at startup)")
@click.option("--machine-wav", type=click.Path(exists=True, dir_okay=False), default=None,
              help="an answering machine's greeting and beep: a 16-bit mono 8000 Hz WAV (checked at startup)")
@click.option("--socket-extension", multiple=True, metavar="EXTEN=HOST:PORT",
              help="dialplan extension that hands calls to an outbound socket (async full)")
def fake_switch(host, port, password, max_sessions, sessions_per_second, seed, answer_rate, busy_rate,
                invalid_rate, rejected_rate, congestion_rate, temp_failure_rate, machine_rate,
                early_media_rate, ring_median, stay_mean, time_scale, human_wav, machine_wav,
                socket_extension) -> None:
    """Run a simulated FreeSWITCH Event Socket server with a model of called parties."""
    try:
        model = CalledPartyModel(
            seed=seed, answer_probability=answer_rate, busy_probability=busy_rate,
            unallocated_probability=invalid_rate, rejected_probability=rejected_rate,
            congestion_probability=congestion_rate, temporary_failure_probability=temp_failure_rate,
            machine_probability=machine_rate, early_media_probability=early_media_rate,
            ring_median=ring_median, stay_mean=stay_mean, time_scale=time_scale)
        dialplan = {"park": "park"}
        for item in socket_extension:
            exten, _, address = item.partition("=")
            if not exten or ":" not in address:
                raise FakeSwitchError(f"--socket-extension wants EXTEN=HOST:PORT, got {item!r}")
            dialplan[exten] = f"socket {address} async full"
        audio_files = {name: path for name, path in (("human", human_wav), ("machine", machine_wav)) if path}
        switch = FakeSwitch(host, port, password, model, max_sessions=max_sessions,
                            sessions_per_second=sessions_per_second, dialplan=dialplan,
                            audio_files=audio_files).start()
    except FakeSwitchError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"fake FreeSWITCH listening on {switch.url} "
               f"(max {max_sessions} sessions, {sessions_per_second}/s); Ctrl-C stops it")
    stop = gevent.event.Event()
    gevent.signal_handler(signal.SIGINT, stop.set)
    gevent.signal_handler(signal.SIGTERM, stop.set)
    stop.wait()
    switch.stop()
    counters = ", ".join(f"{name}={value}" for name, value in sorted(switch.counters.items()))
    click.echo(f"stopped: {counters}")
