"""The simulated FreeSWITCH: an Event Socket server on gevent, a channel core and a called-party
model behind it.

What it answers and how is modelled on FreeSWITCH 1.10.12 (mod_event_socket.c, mod_commands.c,
switch_ivr_originate.c, mod_sofia) and checked against the shared captures; docs/fakeswitch.md
lists the behaviours and the known differences. Session limits follow switch_core_session.c
(switch_core_session_request_uuid): each new session decrements a per-second budget that the
core timer refills to `sessions_per_second` every second, and fails when the budget reaches 0
("Throttle Error!") or when `max_sessions` sessions exist ("Over Session Limit!"); sofia's
outgoing_channel then fails with its default cause, so originate answers
`-ERR DESTINATION_OUT_OF_ORDER` and no channel event is fired.
"""
from __future__ import annotations

import itertools
import json
import logging
import socket as stdlib_socket
import time
from collections import Counter
from dataclasses import dataclass, field

import gevent
from gevent import socket
from gevent.server import StreamServer

from esl.fakeswitch.channel import Channel
from esl.fakeswitch.listener import Listener, new_uuid
from esl.fakeswitch.model import CalledPartyModel, FakeSwitchError
from esl.protocol import (EVENT_JSON, EVENT_PLAIN, EVENT_XML, encode_frame, serialize_event_json,
                          serialize_event_plain, serialize_event_xml)

log = logging.getLogger(__name__)

VERSION = "1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit"
VERSION_LINE = "1.10.12-release git a88d069 2024-08-02 21:02:27Z 64bit"

EVENT_TYPES = frozenset({
    "CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING",
    "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_APPLICATION", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "API", "LOG", "INBOUND_CHAN", "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH",
    "TALK", "NOTALK", "SESSION_CRASH", "MODULE_LOAD", "MODULE_UNLOAD", "DTMF", "MESSAGE",
    "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT", "PRESENCE_PROBE", "MESSAGE_WAITING",
    "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB", "DETECTED_SPEECH", "DETECTED_TONE",
    "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE", "DEL_SCHEDULE", "EXE_SCHEDULE",
    "RE_SCHEDULE", "RELOADXML", "NOTIFY", "PHONE_FEATURE", "PHONE_FEATURE_SUBSCRIBE",
    "SEND_MESSAGE", "RECV_MESSAGE", "REQUEST_PARAMS", "CHANNEL_DATA", "GENERAL", "COMMAND",
    "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED", "SERVER_DISCONNECTED", "SEND_INFO", "RECV_INFO",
    "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE", "NAT", "RECORD_START", "RECORD_STOP",
    "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE", "SOCKET_DATA", "MEDIA_BUG_START",
    "MEDIA_BUG_STOP", "CONFERENCE_DATA_QUERY", "CONFERENCE_DATA", "CALL_SETUP_REQ",
    "CALL_SETUP_RESULT", "CALL_DETAIL", "DEVICE_STATE", "TEXT", "SHUTDOWN_REQUESTED", "ALL",
})

# Event-Calling-File / Function / Line-Number per event, as the captures show them.
CALLING = {
    "API": ("switch_loadable_module.c", "switch_api_execute", 2954),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1572),
    "CALL_UPDATE": ("switch_channel.c", "switch_channel_flip_cid", 3277),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3846),
    "CHANNEL_BRIDGE": ("switch_ivr_bridge.c", "audio_bridge_thread", 561),
    "CHANNEL_UNBRIDGE": ("switch_ivr_bridge.c", "audio_bridge_thread", 794),
    "CHANNEL_CALLSTATE": ("switch_channel.c", "switch_channel_perform_set_callstate", 301),
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", 2021),
    "CHANNEL_DESTROY": ("switch_core_session.c", "switch_core_session_perform_destroy", 1584),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2944),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2967),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3445),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
    "CHANNEL_ORIGINATE": ("switch_core_state_machine.c", "switch_core_session_run", 632),
    "CHANNEL_OUTGOING": ("switch_core_session.c", "switch_core_session_outgoing_channel", 768),
    "CHANNEL_PARK": ("switch_ivr.c", "switch_ivr_park", 1002),
    "CHANNEL_UNPARK": ("switch_ivr.c", "switch_ivr_park", 1213),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3505),
    "CHANNEL_PROGRESS_MEDIA": ("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3560),
    "CHANNEL_STATE": ("switch_channel.c", "switch_channel_perform_set_running_state", 2408),
    "HEARTBEAT": ("switch_core.c", "send_heartbeat", 95),
    "PLAYBACK_START": ("switch_ivr_play_say.c", "switch_ivr_play_file", 1646),
    "PLAYBACK_STOP": ("switch_ivr_play_say.c", "switch_ivr_play_file", 2020),
}
CODEC_READ = ("switch_core_codec.c", "switch_core_session_set_real_read_codec", 168)
CODEC_WRITE = ("switch_core_codec.c", "switch_core_session_set_write_codec", 450)


class SimEvent:
    """A fired event: ordered headers, optional body, and its encodings made once on demand."""

    __slots__ = ("name", "subclass", "headers", "body", "unique_id", "_header_map", "_encoded")

    def __init__(self, name: str, headers: list[tuple[str, str]], body: str | None = None,
                 subclass: str = "", unique_id: str = "") -> None:
        self.name, self.headers, self.body = name, headers, body
        self.subclass, self.unique_id = subclass, unique_id
        self._header_map: dict[str, str] | None = None
        self._encoded: dict[str, bytes] = {}

    @property
    def header_map(self) -> dict[str, str]:
        if self._header_map is None:
            self._header_map = {}
            for name, value in self.headers:
                self._header_map.setdefault(name, value)
        return self._header_map

    def encoded(self, content_type: str) -> bytes:
        frame = self._encoded.get(content_type)
        if frame is None:
            serializer = {EVENT_PLAIN: serialize_event_plain, EVENT_JSON: serialize_event_json,
                          EVENT_XML: serialize_event_xml}[content_type]
            frame = encode_frame([("Content-Type", content_type)], serializer(self.headers, self.body),
                                 length_first=True)
            self._encoded[content_type] = frame
        return frame


@dataclass
class SwitchConfig:
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"
    max_sessions: int = 1000
    sessions_per_second: int = 30
    hostname: str = "fakeswitch"
    core_uuid: str = field(default_factory=new_uuid)
    sofia_profiles: tuple[str, ...] = ("external", "internal")
    default_caller_id: str = "0000000000"
    heartbeat_seconds: float = 20.0
    max_event_queue: int = 100_000
    max_lost_events: int = 500
    # Extensions of the dialplan model: `originate ... <exten>` and uuid_transfer land here.
    # Values are "app arg"; the default routes `park` to park and `socket` to our outbound server.
    dialplan: dict[str, str] = field(default_factory=lambda: {"park": "park"})
    # "human"/"machine" -> a WAV path or a list of them (each call takes one); none: generated audio
    audio_files: dict[str, str | list[str]] = field(default_factory=dict)
    socket_connect_timeout: float = 5.0


class FakeSwitch:
    """In-process simulated FreeSWITCH. Runs inside the caller's gevent hub.

    >>> switch = FakeSwitch(port=0, model=CalledPartyModel(seed=1, time_scale=0.01)).start()
    >>> switch.port, switch.channels, switch.counters["originate_ok"]
    >>> switch.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8021, password: str = "ClueCon",
                 model: CalledPartyModel | None = None, **options) -> None:
        self.config = SwitchConfig(host=host, port=port, password=password, **options)
        self.model = model or CalledPartyModel()
        self.channels: dict[str, Channel] = {}
        self.counters: Counter[str] = Counter()
        self.listeners: set[Listener] = set()
        self.event_types = EVENT_TYPES
        self.max_event_queue = self.config.max_event_queue
        self.max_lost_events = self.config.max_lost_events
        self._sequence = itertools.count(1)
        self._session_ids = itertools.count(1)
        self._sps_budget = self.config.sessions_per_second
        self._peak = 0
        self._sps_last = 0
        self._started = time.time()
        self._server: StreamServer | None = None
        self._greenlets: list[gevent.Greenlet] = []
        from esl.fakeswitch.commands import CommandTable
        from esl.fakeswitch.calls import CallCore
        self.commands = CommandTable(self)
        self.calls = CallCore(self)

    # -- life cycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_port if self._server else self.config.port

    @property
    def address(self) -> tuple[str, int]:
        return self.config.host, self.port

    @property
    def url(self) -> str:
        return f"esl://:{self.config.password}@{self.config.host}:{self.port}"

    def check_audio_files(self) -> None:
        """Load every configured WAV once, before the switch listens: a file the calls cannot
        use (not a WAV, or not 16-bit mono 8 kHz) is an error at startup, not a traceback and
        a silent stream on every call that takes it."""
        from esl.fakeswitch import audio
        for party, choice in self.config.audio_files.items():
            paths = list(choice) if isinstance(choice, (list, tuple)) else [choice]
            for path in paths:
                try:
                    audio.load_wav(path)
                except FakeSwitchError as exc:
                    raise FakeSwitchError(f"{party} audio: {exc}") from None

    def start(self) -> FakeSwitch:
        if self._server is not None:
            raise FakeSwitchError("already started")
        self.check_audio_files()
        self._server = StreamServer((self.config.host, self.config.port), self._handle)
        try:
            self._server.start()
        except OSError as exc:
            self._server = None
            raise FakeSwitchError(f"cannot listen on {self.config.host}:{self.config.port}: {exc}") from exc
        self._started = time.time()
        self._greenlets = [gevent.spawn(self._refill_sessions_per_second)]
        if self.config.heartbeat_seconds > 0:
            self._greenlets.append(gevent.spawn(self._heartbeat))
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Hang up every channel, close every connection and stop listening."""
        for channel in list(self.channels.values()):
            self.calls.hangup(channel, "MANAGER_REQUEST")
        if self._server is not None:
            self._server.stop(timeout=timeout)
            self._server = None
        for listener in list(self.listeners):
            listener.close()
        self.calls.kill_all()
        gevent.killall(self._greenlets, block=False)
        self._greenlets = []

    def __enter__(self) -> FakeSwitch:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _handle(self, sock, address) -> None:
        sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        listener = Listener(self, sock)
        self.listeners.add(listener)
        self.counters["connections"] += 1
        listener.run()

    def _listener_closed(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def connect_outbound(self, channel: Channel, host: str, port: int, async_mode: bool = True,
                         full: bool = True) -> Listener | None:
        """Dial the engine's outbound socket server for `channel` (the `socket` application)."""
        try:
            sock = socket.create_connection((host, port), timeout=self.config.socket_connect_timeout)
        except OSError as exc:
            log.info("socket application: cannot reach %s:%s: %s", host, port, exc)
            return None
        sock.settimeout(None)
        sock.setsockopt(stdlib_socket.IPPROTO_TCP, stdlib_socket.TCP_NODELAY, 1)
        listener = Listener(self, sock, outbound_channel=channel)
        listener.socket_mode = "async" if async_mode else "static"
        listener.control = "full" if full else "single"
        self.listeners.add(listener)
        self.counters["outbound_sockets"] += 1
        self._greenlets.append(gevent.spawn(listener.run))
        return listener

    # -- sessions limits ---------------------------------------------------------------------
    def _refill_sessions_per_second(self) -> None:
        while True:
            gevent.sleep(1.0)
            self._sps_last = self.config.sessions_per_second - self._sps_budget
            self._sps_budget = self.config.sessions_per_second

    def request_session(self) -> bool:
        """switch_core_session_request_uuid's throttle: False when over a limit."""
        self._sps_budget -= 1
        if self._sps_budget <= 0:
            self.counters["throttled_sps"] += 1
            return False
        if len(self.channels) + 1 > self.config.max_sessions:
            self.counters["throttled_max_sessions"] += 1
            return False
        return True

    def session_added(self) -> int:
        self.counters["sessions_since_startup"] += 1
        self._peak = max(self._peak, len(self.channels))
        return next(self._session_ids)

    # -- events ------------------------------------------------------------------------------
    def next_sequence(self) -> int:
        return next(self._sequence)

    def common_headers(self, name: str, calling: tuple[str, str, int] | None = None,
                       sequence: int | None = None) -> list[tuple[str, str]]:
        now = time.time()
        file, function, line = calling or CALLING.get(name, ("switch_event.c", "switch_event_fire", 0))
        return [
            ("Event-Name", name), ("Core-UUID", self.config.core_uuid),
            ("FreeSWITCH-Hostname", self.config.hostname), ("FreeSWITCH-Switchname", self.config.hostname),
            ("FreeSWITCH-IPv4", self.config.host), ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
            ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", file), ("Event-Calling-Function", function),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(sequence if sequence is not None else next(self._sequence))),
        ]

    def fire(self, name: str, headers: list[tuple[str, str]], body: str | None = None, *,
             subclass: str = "", unique_id: str = "", calling=None, sequence: int | None = None) -> SimEvent:
        prefix = self.common_headers(name, calling, sequence)
        if subclass:
            prefix.insert(0, ("Event-Subclass", subclass))   # CUSTOM events start with it (capture 40)
        event = SimEvent(name, prefix + headers, body, subclass, unique_id)
        self.counters["events_fired"] += 1
        for listener in list(self.listeners):
            if listener.wants(event):
                listener.deliver(event)
        return event

    def interested(self, name: str, subclass: str = "", unique_id: str = "") -> bool:
        """Whether any connection subscribes to such an event. Channel events are only built
        when one does (building ~25 events of ~100 headers per call costs more than the rest);
        the Event-Sequence number is consumed either way, as FreeSWITCH fires every event."""
        if any(listener.subscribed(name, subclass, unique_id) for listener in self.listeners):
            return True
        next(self._sequence)
        self.counters["events_fired"] += 1
        return False

    def _heartbeat(self) -> None:
        while True:
            gevent.sleep(self.config.heartbeat_seconds)
            self.fire("HEARTBEAT", [
                ("Event-Info", "System Ready"), ("Up-Time", self.uptime_text()),
                ("FreeSWITCH-Version", VERSION), ("Uptime-msec", str(int((time.time() - self._started) * 1000))),
                ("Session-Count", str(len(self.channels))), ("Max-Sessions", str(self.config.max_sessions)),
                ("Session-Per-Sec", str(self.config.sessions_per_second)),
                ("Session-Per-Sec-Last", str(self._sps_last)), ("Session-Per-Sec-Max", str(self._sps_last)),
                ("Session-Per-Sec-FiveMin", str(self._sps_last)),
                ("Session-Since-Startup", str(self.counters["sessions_since_startup"])),
                ("Session-Peak-Max", str(self._peak)), ("Session-Peak-FiveMin", str(self._peak)),
                ("Idle-CPU", "90.000000")])

    # -- api texts ---------------------------------------------------------------------------
    def uptime_text(self) -> str:
        elapsed = time.time() - self._started
        micro = int(elapsed * 1_000_000)
        seconds, micro = divmod(micro, 1_000_000)
        milli, micro = divmod(micro, 1000)
        minutes, seconds = divmod(seconds, 60)
        hours, minutes = divmod(minutes, 60)
        days, hours = divmod(hours, 24)
        years, days = divmod(days, 365)
        return (f"{years} years, {days} days, {hours} hours, {minutes} minutes, {seconds} seconds, "
                f"{milli} milliseconds, {micro} microseconds")

    def status_text(self) -> str:
        sps = self.config.sessions_per_second
        return (f"UP {self.uptime_text()}\n"
                f"FreeSWITCH (Version {VERSION_LINE}) is ready\n"
                f"{self.counters['sessions_since_startup']} session(s) since startup\n"
                f"{len(self.channels)} session(s) - peak {self._peak}, last 5min {self._peak} \n"
                f"{self._sps_last} session(s) per Sec out of max {sps}, peak {self._sps_last}, "
                f"last 5min {self._sps_last} \n"
                f"{self.config.max_sessions} session(s) max\n"
                f"min idle cpu 0.00/90.00\n"
                f"Current Stack Size/Max 240K/240K\n")

    def show_channels_json(self) -> str:
        rows = [channel.show_row(self.config.hostname) for channel in self.channels.values()]
        if not rows:
            return json.dumps({"row_count": 0})
        return json.dumps({"row_count": len(rows), "rows": rows}, indent=1)

    def uptime_seconds(self) -> int:
        return int(time.time() - self._started)
