"""Call core of the simulated switch: originate, channel life cycles, dialplan applications,
bridging, transfer and unicast audio.

Event order per call follows the outbound sofia leg of capture 06_sip_call_plain_ALL (answer,
park, uuid_kill) and the failed legs of 10_originate_errors: CHANNEL_OUTGOING, CHANNEL_STATE
CS_INIT, CHANNEL_CREATE, CHANNEL_ORIGINATE, CHANNEL_STATE CS_ROUTING / CS_CONSUME_MEDIA, then
CHANNEL_PROGRESS (180) / CHANNEL_PROGRESS_MEDIA (183) with their CHANNEL_CALLSTATE, CODEC x2,
CHANNEL_ANSWER, CHANNEL_CALLSTATE ACTIVE, CALL_UPDATE, (API, BACKGROUND_JOB), CHANNEL_STATE
CS_EXECUTE, CHANNEL_EXECUTE park, CHANNEL_PARK ... CHANNEL_HANGUP, CHANNEL_UNPARK,
CHANNEL_EXECUTE_COMPLETE, CHANNEL_STATE CS_HANGUP, CHANNEL_CALLSTATE HANGUP, CHANNEL_STATE
CS_REPORTING, CHANNEL_HANGUP_COMPLETE, CHANNEL_DESTROY, CHANNEL_STATE CS_DESTROY.
Without ignore_early_media=true, originate succeeds on 183 early media (switch_ivr_originate.c).
"""
from __future__ import annotations

import logging
import re
import time
import wave
import zlib
from typing import TYPE_CHECKING

import gevent
import gevent.event
import gevent.pool
import gevent.queue
from gevent import socket

from esl.fakeswitch import audio
from esl.fakeswitch.commands import ORIGINATE_USAGE
from esl.fakeswitch.channel import CALLSTATE_NUMBERS, Q850, VARIABLE_EVENTS, Channel, now_us
from esl.fakeswitch.listener import new_uuid
from esl.fakeswitch.model import FAILURES, Behaviour, Outcome, Party
from esl.fakeswitch.switch import CODEC_READ, CODEC_WRITE

if TYPE_CHECKING:
    from esl.fakeswitch.switch import FakeSwitch

log = logging.getLogger(__name__)

_APP = re.compile(r"^&([\w-]+)(?:\((.*)\))?$", re.S)
_SOCKET_ARG = re.compile(r"^\s*([^:\s]+):(\d+)(.*)$")
PLAYBACK_SECONDS = 1.0
LOOPBACK_CONTEXTS = ("default", "public", "features")


def playback_seconds(path: str) -> float:
    """How long a playback lasts: the WAV file's duration when it is one we can read (capped at
    10 minutes), else PLAYBACK_SECONDS."""
    try:
        with wave.open(path, "rb") as wav:
            return min(600.0, wav.getnframes() / float(wav.getframerate()))
    except (OSError, EOFError, wave.Error, ZeroDivisionError):
        return PLAYBACK_SECONDS


def _port(text: str | None) -> int | None:
    """A UDP port number 0-65535 written in ASCII digits, else None."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        return None
    return int(text)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "yes", "on", "1", "enabled", "active", "allow")


def parse_originate(args: str) -> tuple[dict[str, str], str, list[str]]:
    """`{a=b,c='d,e'}endpoint rest...` -> (variables, endpoint, remaining words)."""
    text = args.strip()
    variables: dict[str, str] = {}
    if text.startswith("{"):
        depth, quote, end = 0, "", -1
        for index, char in enumerate(text):
            if quote:
                quote = "" if char == quote else quote
            elif char in "'\"":
                quote = char
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    end = index
                    break
        if end < 0:
            raise ValueError("unterminated {variables}")
        body, text = text[1:end], text[end + 1:]
        for item in re.split(r"(?<!\\),(?=(?:[^']*'[^']*')*[^']*$)", body):
            name, equals, value = item.partition("=")
            if equals and name.strip():
                variables[name.strip()] = value.strip().strip("'").replace("\\,", ",")
    words = text.split()
    if not words:
        raise ValueError("no endpoint")
    return variables, words[0], words[1:]


class CallState:
    """Runtime companions of a channel that the event model does not need."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.apps: gevent.queue.Queue = gevent.queue.Queue()
        self.app_runner: gevent.Greenlet | None = None
        self.park_app = ("park", "", "")       # the application whose park an unpark completes
        self.unicast: gevent.Greenlet | None = None
        self.party_timer: gevent.Greenlet | None = None
        self.outbound = None
        self.hungup = gevent.event.Event()
        self.packets_sent = 0
        self.running_app: tuple[str, str, str] | None = None
        self.loopback_peer: Channel | None = None
        self.avmd: gevent.Greenlet | None = None
        self.deferred: list = []          # channel-data copies of events, sent once executing
        self._samples = None
        self._audio: dict[bool, list[bytes]] = {}

    def party_samples(self, files: dict[str, str], seed: int):
        """What the far end says from the moment it answers (float samples at 8 kHz)."""
        if self._samples is None:
            party = self.behaviour.party
            choice = files.get(party.value)
            # One file, or a list of which each call takes one, chosen by the call's seed.
            path = choice[seed % len(choice)] if isinstance(choice, (list, tuple)) and choice else choice
            self._samples = audio.load_wav(path) if path else audio.party_audio(party, seed)
        return self._samples

    def audio_frames(self, native: bool, files: dict[str, str], seed: int) -> list[bytes]:
        if native not in self._audio:
            self._audio[native] = audio.frames(self.party_samples(files, seed), native)
        return self._audio[native]


class CallCore:
    def __init__(self, switch: FakeSwitch) -> None:
        self.switch = switch
        self.group = gevent.pool.Group()
        self.state: dict[str, CallState] = {}

    def spawn(self, function, *args) -> gevent.Greenlet:
        return self.group.spawn(function, *args)

    def kill_all(self) -> None:
        self.group.kill(block=False)

    # -- events --------------------------------------------------------------------------------
    def event(self, channel: Channel, name: str, *, before=(), after=(), calling=None, body=None) -> None:
        if not self.switch.interested(name, "", channel.uuid):
            return
        headers = [*before, *channel.basic_headers()]
        if name in VARIABLE_EVENTS:
            headers += channel.variable_headers()
        headers += after
        self.switch.fire(name, headers, body, unique_id=channel.uuid, calling=calling)

    def set_running_state(self, channel: Channel, state: str, number: int | None = None) -> None:
        if number is not None:
            channel.state_number = number
        channel.running_state = state
        self.event(channel, "CHANNEL_STATE")

    def set_callstate(self, channel: Channel, callstate: str) -> None:
        previous, channel.callstate = channel.callstate, callstate
        self.event(channel, "CHANNEL_CALLSTATE", before=[
            ("Original-Channel-Call-State", previous),
            ("Channel-Call-State-Number", str(CALLSTATE_NUMBERS[callstate]))])

    def codec_events(self, channel: Channel) -> None:
        channel.set_media_variables()
        self.event(channel, "CODEC", calling=CODEC_READ, after=[
            ("channel-read-codec-name", "PCMU"), ("channel-read-codec-rate", "8000"),
            ("channel-read-codec-bit-rate", "64000")])
        self.event(channel, "CODEC", calling=CODEC_WRITE, after=[
            ("Channel-Write-Codec-Name", "PCMU"), ("Channel-Write-Codec-Rate", "8000"),
            ("Channel-Write-codec-bit-rate", "64000")])

    # -- originate -----------------------------------------------------------------------------
    def originate(self, args: str) -> str:
        """Run an originate to its result text (blocks the calling greenlet, as api does)."""
        try:
            variables, endpoint, rest = parse_originate(args)
        except ValueError:
            return "-ERR INVALID_NUMBER_FORMAT\n"
        if not rest:
            return ORIGINATE_USAGE
        if rest[0].startswith("&") and "(" in rest[0] and not rest[0].endswith(")"):
            # `&socket(127.0.0.1:8084 async full)`: the application's arguments contain spaces.
            for end in range(1, len(rest)):
                if rest[end].endswith(")"):
                    rest = [" ".join(rest[:end + 1]), *rest[end + 1:]]
                    break
        parts = endpoint.split("/")
        if parts[0] == "error" and len(parts) > 1:
            return f"-ERR {parts[1].upper()}\n"
        if parts[0] == "loopback" and len(parts) >= 2 and parts[1]:
            return self._originate_loopback(variables, parts[1], parts[2] if len(parts) > 2 else "default", rest)
        if parts[0] != "sofia" or len(parts) < 3:
            return "-ERR CHAN_NOT_IMPLEMENTED\n"
        if parts[1] == "gateway" and len(parts) >= 4:
            profile, user, host = "gateway", "/".join(parts[3:]), parts[2]
        elif parts[1] not in self.switch.config.sofia_profiles:
            return "-ERR INVALID_PROFILE\n"
        else:
            profile = parts[1]
            user, _, host = "/".join(parts[2:]).partition("@")
            host = host or "127.0.0.1"
        uuid = variables.get("origination_uuid") or new_uuid()
        if uuid in self.switch.channels or not self.switch.request_session():
            self.switch.counters["originate_failed"] += 1
            return "-ERR DESTINATION_OUT_OF_ORDER\n"
        cid_name, cid_number = self._caller_id(variables, rest)
        channel = Channel(uuid, self.switch.session_added(), profile=profile, user=user, host=host,
                          cid_number=cid_number, cid_name=cid_name,
                          context=rest[2] if len(rest) > 2 else "default")
        if profile == "gateway":
            channel.name = f"sofia/gateway/{host}/{user}"
        timeout = self._timeout(variables, rest)
        behaviour = self.switch.model.decide(user)
        self.state[uuid] = CallState(behaviour)
        self.switch.channels[uuid] = channel
        result = gevent.event.AsyncResult()
        self.spawn(self._run_leg, channel, variables, rest[0], timeout, result)
        text = self._result(result, timeout)
        self.switch.counters["originate_ok" if text.startswith("+OK") else "originate_failed"] += 1
        return text

    def _run_leg(self, channel: Channel, variables: dict[str, str], target: str, timeout: float,
                 result: gevent.event.AsyncResult) -> None:
        state = self.state[channel.uuid]
        behaviour = state.behaviour
        ignore_early = _truthy(variables.get("ignore_early_media"))
        started = time.monotonic()
        deadline = started + timeout

        def wait_until(moment: float) -> bool:
            """Sleep until `moment`; False when the channel was hung up meanwhile."""
            return not state.hungup.wait(max(0.0, moment - time.monotonic()))

        channel.state_number, channel.running_state = 1, "CS_NONE"
        self.event(channel, "CHANNEL_OUTGOING")
        self.set_running_state(channel, "CS_INIT")
        channel.set_create_variables(variables, early_media_ok=not ignore_early)
        channel.state_number = 2
        self.event(channel, "CHANNEL_CREATE")
        self.event(channel, "CHANNEL_ORIGINATE")
        self.set_running_state(channel, "CS_ROUTING")
        self.set_running_state(channel, "CS_CONSUME_MEDIA", 7)

        outcome = behaviour.outcome
        ringing = outcome is Outcome.NO_ANSWER or behaviour.ring_seconds > 0 or behaviour.early_media
        alive = wait_until(started + 0.005)
        if alive and ringing and not behaviour.early_media:
            channel.set_reply_variables(dialog=True)
            channel.progress_us = now_us()
            self.event(channel, "CHANNEL_PROGRESS")
            self.set_callstate(channel, "RINGING")
        elif alive and behaviour.early_media:
            channel.set_reply_variables(dialog=True)
            self.codec_events(channel)
            channel.progress_media_us = now_us()
            channel.answer_state = "early"
            self.event(channel, "CHANNEL_PROGRESS_MEDIA")
            self.set_callstate(channel, "EARLY")
            if not ignore_early:
                self._succeed(result, channel.uuid)
                self._start_target(channel, target)

        if outcome is Outcome.NO_ANSWER:
            end, cause = deadline, "NO_ANSWER"
        else:
            end, cause = started + behaviour.ring_seconds, None
            if not result.ready() and end > deadline:
                end, cause = deadline, "NO_ANSWER"
        alive = alive and wait_until(end)
        if not alive:
            if not result.ready():
                result.set(f"-ERR {channel.hangup_cause or 'ORIGINATOR_CANCEL'}\n")
            return
        if cause == "NO_ANSWER":
            channel.set_failure_variables(487, "CANCEL", cause, cancelled=True)
            self.hangup(channel, cause, after_hangup_event=lambda: self._fail(result, cause))
            return
        if outcome is not Outcome.ANSWER:
            cause, status, phrase = FAILURES[outcome]
            if not ringing:
                channel.set_reply_variables(dialog=False)
            channel.set_failure_variables(status, phrase, cause, cancelled=False)
            self.hangup(channel, cause)
            self._fail(result, cause)
            return
        self.answer(channel, variables)
        if not result.ready():
            self._succeed(result, channel.uuid)
            self._start_target(channel, target)
        if behaviour.stay_seconds is not None:
            state.party_timer = self.spawn(self._party_hangs_up, channel, behaviour.stay_seconds)

    # -- loopback ------------------------------------------------------------------------------
    def _originate_loopback(self, variables: dict[str, str], exten: str, context: str, rest: list[str]) -> str:
        """mod_loopback: an outbound A leg and an inbound B leg that runs the far end's dialplan
        (here: the called-party model's behaviour as dialplan applications). Event order per leg
        as in capture 03_loopback_call_plain_ALL; no CHANNEL_PROGRESS, L16 codec on both legs."""
        a_uuid = variables.get("origination_uuid") or new_uuid()
        # Two sessions, two throttle decrements (the second one counts even when the first failed).
        if a_uuid in self.switch.channels or not all([self.switch.request_session(), self.switch.request_session()]):
            self.switch.counters["originate_failed"] += 1
            return "-ERR DESTINATION_OUT_OF_ORDER\n"
        cid_name, cid_number = self._caller_id(variables, rest)
        a = Channel.loopback(new_uuid(), self.switch.session_added(), exten=exten, context=context, leg="a",
                             cid_number=cid_number, cid_name=cid_name)
        timeout = self._timeout(variables, rest)
        behaviour = self.switch.model.decide(exten)
        self.state[a_uuid] = CallState(behaviour)
        self.switch.channels[a_uuid] = a
        result = gevent.event.AsyncResult()
        self.spawn(self._run_loopback, a, a_uuid, variables, rest[0], timeout, result)
        text = self._result(result, timeout)
        self.switch.counters["originate_ok" if text.startswith("+OK") else "originate_failed"] += 1
        return text

    def _run_loopback(self, a: Channel, a_uuid: str, variables: dict[str, str], target: str,
                      timeout: float, result: gevent.event.AsyncResult) -> None:
        a_state = self.state[a_uuid]
        behaviour = a_state.behaviour
        ignore_early = _truthy(variables.get("ignore_early_media"))
        deadline = time.monotonic() + timeout
        # The A leg's codecs are set under a temporary identity, then origination_uuid replaces it.
        a.running_state, a.state_number = "CS_NONE", 0
        self._loopback_codecs(a)
        old_uuid, a.uuid = a.uuid, a_uuid
        a.name = a.name.replace(f"/{a.context}-a", "-a")
        a.state_number = 1
        a.set_loopback_base_variables()
        self.event(a, "CHANNEL_UUID", before=[("Old-Unique-ID", old_uuid)])
        self.event(a, "CHANNEL_OUTGOING")
        self.set_running_state(a, "CS_INIT")
        b = Channel.loopback(new_uuid(), self.switch.session_added(), exten=a.user, context=a.context,
                             leg="b", cid_number=a.cid_number, cid_name=a.cid_name)
        b_state = CallState(behaviour)
        a_state.loopback_peer, b_state.loopback_peer = b, a
        self.state[b.uuid] = b_state
        self.switch.channels[b.uuid] = b
        b.running_state, b.state_number = "CS_NONE", 0
        self._loopback_codecs(b)
        a.set_vars(variables.items())
        a.set_vars([("originate_early_media", "false" if ignore_early else "true"),
                    ("originate_endpoint", "loopback"), ("other_loopback_leg_uuid", b.uuid), ("loopback_leg", "A")])
        a.state_number = 2
        self.event(a, "CHANNEL_CREATE")
        b.set_loopback_base_variables()
        b.set_vars((name, value) for name, value in variables.items()
                   if name in ("origination_uuid", "ignore_early_media"))
        b.set_vars([("other_loopback_leg_uuid", a.uuid), ("loopback_leg", "B")])
        self.set_running_state(b, "CS_INIT", 1)
        self.event(a, "CHANNEL_ORIGINATE")
        b.state_number = 2
        self.event(b, "CHANNEL_CREATE")
        b.running_state = "CS_ROUTING"
        self.set_callstate(b, "RINGING")
        self.event(b, "CHANNEL_STATE")
        self.set_running_state(a, "CS_ROUTING")
        self.set_running_state(a, "CS_CONSUME_MEDIA", 7)

        def fail(cause: str) -> None:
            self.hangup(a, cause, after_hangup_event=lambda: self._fail(result, cause))

        if a.context not in LOOPBACK_CONTEXTS:
            self.hangup(b, "NO_ROUTE_DESTINATION")
            fail("NO_ROUTE_DESTINATION")
            return
        self.set_running_state(b, "CS_EXECUTE", 4)
        outcome = behaviour.outcome
        if outcome is Outcome.NO_ANSWER:
            self._far_end_step(b, "sleep", str(int(timeout * 1000)), max(0.0, deadline - time.monotonic()))
            if not a.is_hungup:
                fail("NO_ANSWER")
            return
        if behaviour.ring_seconds > 0 and not behaviour.early_media:
            ring = min(behaviour.ring_seconds, max(0.0, deadline - time.monotonic()))
            if not self._far_end_step(b, "sleep", str(int(ring * 1000)), ring):
                return
        if outcome is not Outcome.ANSWER:
            cause = FAILURES[outcome][0]
            self._execute(b, "hangup", cause, new_uuid())
            if not result.ready():
                self._fail(result, cause)
            return
        if behaviour.early_media:
            self._far_end_step(b, "pre_answer", "", 0.0, lambda: self._loopback_early(a, b))
            if not ignore_early:
                self._succeed(result, a.uuid)
                self._start_target(a, target)
            if not self._far_end_step(b, "sleep", str(int(behaviour.ring_seconds * 1000)), behaviour.ring_seconds):
                return
        if time.monotonic() > deadline and not result.ready():
            self._far_end_step(b, "sleep", "0", 0.0)
            fail("NO_ANSWER")
            return
        if not self._far_end_step(b, "answer", "", 0.0, lambda: self._loopback_answer(a, b)):
            return
        self._finish_answer(a, variables)
        if not result.ready():
            self._succeed(result, a.uuid)
            self._start_target(a, target)
        greeting = "hello.wav" if behaviour.party is Party.HUMAN else "machine-greeting.wav"
        if not (self._far_end_step(b, "sleep", "300", 0.3) and self._execute_ok(b, "playback", greeting)):
            return
        stay = behaviour.stay_seconds
        if self._far_end_step(b, "sleep", str(int((stay or 3600.0) * 1000)), stay or 3600.0):
            self._execute(b, "hangup", "NORMAL_CLEARING", new_uuid())

    def _far_end_step(self, channel: Channel, app: str, arg: str, seconds: float, action=None) -> bool:
        """One application of the B leg's dialplan: EXECUTE, its effect or a wait, COMPLETE.
        False when the leg was hung up meanwhile (the hangup completes the application)."""
        if channel.is_hungup:
            return False
        state = self.state.get(channel.uuid)
        running = (app, arg, new_uuid())
        channel.set_var("current_application", app)
        if arg:
            channel.set_var("current_application_data", arg)
        self.event(channel, "CHANNEL_EXECUTE", after=[
            ("Application", app), *([("Application-Data", arg)] if arg else []), ("Application-UUID", running[2])])
        channel.last_app = (app, arg)
        state.running_app = running
        if action is not None:
            action()
        alive = self._wait_or_hangup(channel, seconds) if seconds > 0 else not channel.is_hungup
        if state.running_app != running:
            return False
        state.running_app = None
        self._complete(channel, running, "_none_")
        return alive

    def _execute_ok(self, channel: Channel, app: str, arg: str) -> bool:
        self._execute(channel, app, arg, new_uuid())
        return not channel.is_hungup

    def _loopback_codecs(self, channel: Channel) -> None:
        """The two CODEC events mod_loopback raises before the leg has a caller profile."""
        self.event(channel, "CODEC", calling=("switch_core_codec.c", "switch_core_session_set_read_codec", 279),
                   after=[("channel-read-codec-name", "L16"), ("channel-read-codec-rate", "8000"),
                          ("channel-read-codec-bit-rate", "128000")])
        channel.write_codec_set = True
        self.event(channel, "CODEC", calling=CODEC_WRITE, after=[
            ("Channel-Write-Codec-Name", "L16"), ("Channel-Write-Codec-Rate", "8000"),
            ("Channel-Write-codec-bit-rate", "128000")])
        channel.has_profile = True

    def _loopback_early(self, a: Channel, b: Channel) -> None:
        for leg in (a, b):
            leg.progress_media_us = now_us()
            leg.answer_state = "early"
            self.event(leg, "CHANNEL_PROGRESS_MEDIA")
            self.set_callstate(leg, "EARLY")

    def _loopback_answer(self, a: Channel, b: Channel) -> None:
        for leg in (a, b):
            leg.answered_us = now_us()
            leg.answer_state = "answered"
            self.event(leg, "CHANNEL_ANSWER")
            self.set_callstate(leg, "ACTIVE")
        b.set_var("endpoint_disposition", "ANSWER")

    def _succeed(self, result: gevent.event.AsyncResult, uuid: str) -> None:
        if not result.ready():
            result.set(f"+OK {uuid}\n")
            gevent.sleep(0)     # let the job report before the application starts

    def _caller_id(self, variables: dict[str, str], rest: list[str]) -> tuple[str, str]:
        """(name, number): origination_caller_id_* or the positional cid_name / cid_num."""
        name = variables.get("origination_caller_id_name") or (rest[3] if len(rest) > 3 else "")
        number = (variables.get("origination_caller_id_number") or (rest[4] if len(rest) > 4 else "")
                  or self.switch.config.default_caller_id)
        return name, number

    @staticmethod
    def _result(result: gevent.event.AsyncResult, timeout: float) -> str:
        """The originate's answer; the leg always settles it by originate_timeout, the margin
        only guards against a leg killed from outside (switch stopping)."""
        try:
            return result.get(timeout=timeout + 5.0)
        except gevent.Timeout:
            return "-ERR MANAGER_REQUEST\n"

    @staticmethod
    def _timeout(variables: dict[str, str], rest: list[str]) -> float:
        text = variables.get("originate_timeout") or (rest[5] if len(rest) > 5 else "") or "60"
        try:
            return float(text)
        except ValueError:
            return 60.0

    def _fail(self, result: gevent.event.AsyncResult, cause: str) -> None:
        if not result.ready():
            result.set(f"-ERR {cause}\n")
            gevent.sleep(0)

    def answer(self, channel: Channel, variables: dict[str, str] | None = None) -> None:
        if channel.is_answered or channel.is_hungup:
            return
        if channel.codec is None:
            channel.set_reply_variables(dialog=True)
            self.codec_events(channel)
        channel.answered_us = now_us()
        channel.answer_state = "answered"
        self.event(channel, "CHANNEL_ANSWER")
        self.set_callstate(channel, "ACTIVE")
        self._finish_answer(channel, variables)

    def _finish_answer(self, channel: Channel, variables: dict[str, str] | None) -> None:
        """After the answer: the caller-id flip (CALL_UPDATE) and the on-answer hooks."""
        channel.set_var("endpoint_disposition", "ANSWER")
        channel.set_var("pre_transfer_caller_id_number", channel.cid_number)
        channel.set_var("channel_cid_flipped", "yes")
        channel.callee_name, channel.callee_number = None, channel.cid_number
        channel.cid_name = channel.cid_number = channel.user
        self.event(channel, "CALL_UPDATE", before=[("Direction", "RECV")])
        variables = variables or {}
        on_answer = variables.get("execute_on_answer")
        if on_answer:
            app, _, arg = on_answer.partition(" ")
            self._execute(channel, app, arg, new_uuid())
        api_on_answer = variables.get("api_on_answer")
        if api_on_answer:
            name, _, args = api_on_answer.partition(" ")
            self.spawn(self.switch.commands.run_api, name, args)

    def _start_target(self, channel: Channel, target: str) -> None:
        self.set_running_state(channel, "CS_EXECUTE", 4)
        state = self.state.get(channel.uuid)
        while state and state.deferred:
            state.deferred.pop(0)()
        match = _APP.match(target)
        if match:
            self.queue_app(channel, match.group(1), match.group(2) or "", new_uuid(), 1)
        else:
            self.transfer(channel, target, unpark=False)

    def _party_hangs_up(self, channel: Channel, seconds: float) -> None:
        gevent.sleep(seconds)
        if not channel.is_hungup:
            channel.set_var("sip_hangup_disposition", "recv_bye")
            self.hangup(channel, "NORMAL_CLEARING")

    # -- hangup --------------------------------------------------------------------------------
    def hangup(self, channel: Channel, cause: str, after_hangup_event=None) -> None:
        if channel.is_hungup:
            return
        cause = cause.upper() if cause.upper() in Q850 else "NORMAL_CLEARING"
        state = self.state.get(channel.uuid)
        channel.hangup_cause = cause
        channel.hangup_us = now_us()
        channel.answer_state = "hangup"
        channel.state_number = 10
        self.event(channel, "CHANNEL_HANGUP")
        if after_hangup_event:
            after_hangup_event()
        if state:
            state.hungup.set()
            self._stop_unicast(state)
        if channel.parked:
            self._unpark(channel)
        if state is not None and state.running_app is not None:
            running, state.running_app = state.running_app, None
            self._complete(channel, running, "_none_", interrupted=True)
        self._end_bridge(channel)
        if state is not None and state.loopback_peer is not None and not state.loopback_peer.is_hungup:
            self.spawn(self.hangup, state.loopback_peer, cause)
        channel.set_var("hangup_cause", cause)
        channel.set_var("hangup_cause_q850", str(Q850[cause] if Q850[cause] < 128 else 16))
        self.set_running_state(channel, "CS_HANGUP")
        self.set_callstate(channel, "HANGUP")
        self.set_running_state(channel, "CS_REPORTING", 11)
        channel.set_report_variables(now_us(), state.packets_sent if state else 0)
        self.event(channel, "CHANNEL_HANGUP_COMPLETE", before=[("Hangup-Cause", cause)])
        channel.state_number = 12
        self.event(channel, "CHANNEL_DESTROY")
        self.set_running_state(channel, "CS_DESTROY")
        self.switch.channels.pop(channel.uuid, None)
        self.switch.counters["hangups"] += 1
        if state:
            self.state.pop(channel.uuid, None)
            for greenlet in (state.party_timer, state.app_runner, state.avmd):
                if greenlet is not None and greenlet is not gevent.getcurrent():
                    greenlet.kill(block=False)
            if state.outbound is not None:
                state.outbound.channel_gone(channel)

    # -- applications --------------------------------------------------------------------------
    def queue_app(self, channel: Channel, app: str, arg: str, app_uuid: str, loops: int) -> None:
        state = self.state.get(channel.uuid)
        if state is None:
            return
        for _ in range(max(1, loops)):
            state.apps.put((app, arg, app_uuid))
        if state.app_runner is None or state.app_runner.dead:
            state.app_runner = self.spawn(self._run_apps, channel, state)

    def _run_apps(self, channel: Channel, state: CallState) -> None:
        while not channel.is_hungup:
            try:
                app, arg, app_uuid = state.apps.get(timeout=0.5)
            except gevent.queue.Empty:
                if state.apps.empty():
                    return
                continue
            self._execute(channel, app, arg, app_uuid)

    def _execute(self, channel: Channel, app: str, arg: str, app_uuid: str) -> None:
        handler = getattr(self, f"_app_{app}", None)
        if handler is None or channel.is_hungup:
            log.info("%s: invalid application %s", channel.uuid, app)
            return
        self.switch.counters[f"app_{app}"] += 1
        channel.set_var("current_application", app)
        if arg:
            channel.set_var("current_application_data", arg)
        described = [("Application", app)] + ([("Application-Data", arg)] if arg else [])
        self.event(channel, "CHANNEL_EXECUTE", after=[*described, ("Application-UUID", app_uuid)])
        channel.last_app = (app, arg)
        state = self.state.get(channel.uuid)
        running = (app, arg, app_uuid)
        if state is not None:
            state.running_app = running
        response = handler(channel, arg, app_uuid)
        if state is not None:
            if state.running_app != running:
                return          # a hangup interrupted it and completed it
            state.running_app = None
        if response is None:
            return              # park-like: completed when the park ends
        self._complete(channel, running, response)

    def _complete(self, channel: Channel, running: tuple[str, str, str], response: str,
                  interrupted: bool = False) -> None:
        app, arg, app_uuid = running
        recorded = app == "playback" and not interrupted
        if recorded:        # as captured: present on this EXECUTE_COMPLETE only
            channel.set_var("current_application_response", response)
        self.event(channel, "CHANNEL_EXECUTE_COMPLETE", after=[
            ("Application", app), *([("Application-Data", arg)] if arg else []),
            ("Application-Response", response), ("Application-UUID", app_uuid)])
        if recorded:
            channel.variables.pop("current_application_response", None)

    def _app_park(self, channel: Channel, arg: str, app_uuid: str) -> None:
        if channel.parked:
            return None
        channel.parked = True
        state = self.state[channel.uuid]
        if state.park_app[2] != app_uuid:
            state.park_app = ("park", "", app_uuid)
        self.event(channel, "CHANNEL_PARK")
        return None     # EXECUTE_COMPLETE comes when the park ends (unpark, bridge, hangup)

    def _unpark(self, channel: Channel) -> None:
        channel.parked = False
        state = self.state.get(channel.uuid)
        self.event(channel, "CHANNEL_UNPARK")
        app, arg, app_uuid = state.park_app if state else ("park", "", new_uuid())
        self.event(channel, "CHANNEL_EXECUTE_COMPLETE", after=[
            ("Application", app), *([("Application-Data", arg)] if arg else []),
            ("Application-Response", "_none_"), ("Application-UUID", app_uuid)])
        if state:
            self._stop_unicast(state)

    def _app_answer(self, channel: Channel, arg: str, app_uuid: str) -> str:
        self.answer(channel)
        return "_none_"

    def _app_pre_answer(self, channel: Channel, arg: str, app_uuid: str) -> str:
        return "_none_"

    def _app_hangup(self, channel: Channel, arg: str, app_uuid: str) -> str:
        self.hangup(channel, arg or "NORMAL_CLEARING")
        return "_none_"

    def _wait_or_hangup(self, channel: Channel, seconds: float) -> bool:
        """Sleep like an application does; False when the channel hung up meanwhile."""
        state = self.state.get(channel.uuid)
        if state is None:
            return False
        return not state.hungup.wait(max(0.0, seconds))

    def _app_sleep(self, channel: Channel, arg: str, app_uuid: str) -> str:
        try:
            milliseconds = float(arg or 0)
        except ValueError:
            milliseconds = 0.0
        self._wait_or_hangup(channel, milliseconds / 1000.0)
        return "_none_"

    def _app_set(self, channel: Channel, arg: str, app_uuid: str) -> str:
        name, _, value = arg.partition("=")
        if name:
            channel.set_var(name.strip(), value)
        return "_none_"

    _app_export = _app_set

    def _app_avmd_start(self, channel: Channel, arg: str, app_uuid: str) -> str:
        """mod_avmd as seen in capture 40: avmd::start, then avmd::beep when the far end's beep
        has played ~100 ms; each event comes twice with one Event-Sequence, the second copy with
        the channel data (sent once the channel executes)."""
        state = self.state.get(channel.uuid)
        if state is None or (state.avmd is not None and not state.avmd.dead):
            return "_none_"
        start_us = now_us()
        self._avmd_event(channel, state, "avmd::start", [("Start-time", str(start_us))])
        if channel.is_answered:
            samples = state.party_samples(self.switch.config.audio_files, zlib.crc32(channel.uuid.encode()))
            onset = audio.beep_onset(samples)
            if onset is not None:
                state.avmd = self.spawn(self._avmd_beep, channel, state, start_us, onset + 0.1)
        return "_none_"

    def _app_avmd_stop(self, channel: Channel, arg: str, app_uuid: str) -> str:
        state = self.state.get(channel.uuid)
        if state is not None and state.avmd is not None:
            state.avmd.kill(block=False)
            self._avmd_event(channel, state, "avmd::stop", [("Beep-Status", "NOTDETECTED")])
        return "_none_"

    def _avmd_beep(self, channel: Channel, state: CallState, start_us: int, after_answer: float) -> None:
        gevent.sleep(max(0.0, channel.answered_us / 1e6 + after_answer - time.time()))
        if channel.is_hungup:
            return
        detection_us = now_us() - start_us
        channel.set_var("avmd_detect", "TRUE")
        channel.set_var("avmd_total_time", f"[{detection_us // 1000}]")
        self._avmd_event(channel, state, "avmd::beep", [
            ("Beep-Status", "DETECTED"), ("Frequency", "1000.000000"), ("Frequency-variance", "0.000000"),
            ("Amplitude", "16383.000000"), ("Amplitude-variance", "0.000000"),
            ("Detection-time", str(detection_us)), ("Detector-resolution", "2"),
            ("Detector-offset", "0"), ("Detector-index", "1")])

    def _avmd_event(self, channel: Channel, state: CallState, subclass: str, headers) -> None:
        calling = ("mod_avmd.c", "avmd_fire_event", 700)
        base = [("Unique-ID", channel.uuid), ("Call-command", "avmd"), *headers]
        sequence = self.switch.next_sequence()
        self.switch.fire("CUSTOM", base, subclass=subclass, unique_id=channel.uuid, calling=calling,
                         sequence=sequence)

        def with_channel_data() -> None:
            self.switch.fire("CUSTOM", base + channel.basic_headers() + channel.variable_headers(),
                             subclass=subclass, unique_id=channel.uuid, calling=calling, sequence=sequence)
        if channel.running_state == "CS_EXECUTE":
            with_channel_data()
        else:
            state.deferred.append(with_channel_data)

    def _app_playback(self, channel: Channel, arg: str, app_uuid: str) -> str:
        file_headers = [("Playback-File-Path", arg)]
        self.event(channel, "PLAYBACK_START", after=file_headers)
        seconds = playback_seconds(arg)
        if not self._wait_or_hangup(channel, seconds):
            return "FILE NOT PLAYED"
        samples = int(seconds * audio.RATE)
        channel.set_vars([("playback_last_offset_pos", str(samples)), ("playback_seconds", str(int(seconds))),
                          ("playback_ms", str(int(seconds * 1000))), ("playback_samples", str(samples))])
        self.event(channel, "PLAYBACK_STOP", after=[*file_headers, ("Playback-Status", "done")])
        return "FILE PLAYED"

    def _app_transfer(self, channel: Channel, arg: str, app_uuid: str) -> str:
        self.spawn(self.transfer, channel, arg.split()[0] if arg.split() else "")
        return "_none_"

    def _app_socket(self, channel: Channel, arg: str, app_uuid: str) -> str | None:
        match = _SOCKET_ARG.match(arg)
        state = self.state.get(channel.uuid)
        if not match or state is None:
            return "-ERR invalid socket arguments"
        channel.set_var("socket_host", match.group(1))
        words = match.group(3).split()
        listener = self.switch.connect_outbound(channel, match.group(1), int(match.group(2)),
                                                "async" in words, "full" in words)
        if listener is None:
            self.spawn(self.hangup, channel, "DESTINATION_OUT_OF_ORDER")
            return "_none_"
        state.outbound = listener
        if "async" in words:
            # async mode parks the channel; commands from the socket run while it is parked.
            state.park_app = ("socket", arg, app_uuid)
            self._app_park(channel, "", app_uuid)
            return None
        state.hungup.wait()
        return "_none_"

    # -- transfer, bridge ----------------------------------------------------------------------
    def transfer(self, channel: Channel, destination: str, unpark: bool = True) -> None:
        if channel.is_hungup:
            return
        if unpark and channel.parked:
            self._unpark(channel)
        self._end_bridge(channel)
        route = self.switch.config.dialplan.get(destination)
        if route is None:
            self.hangup(channel, "NO_ROUTE_DESTINATION")
            return
        app, _, arg = route.partition(" ")
        self.queue_app(channel, app, arg, new_uuid(), 1)

    def bridge(self, a: Channel, b: Channel) -> None:
        for leg in (a, b):
            if leg.parked:
                self._unpark(leg)
        a.bridged_to, b.bridged_to = b, a
        a.bridged_us = b.bridged_us = now_us()
        a.set_var("bridge_uuid", b.uuid)
        b.set_var("bridge_uuid", a.uuid)
        self.event(a, "CHANNEL_BRIDGE", before=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])

    def _end_bridge(self, channel: Channel) -> None:
        """`channel` leaves its bridge. The other leg parks again when it has park_after_bridge=true
        (how an agent's leg survives its customer), and is hung up otherwise: after uuid_bridge it
        has nothing left to execute."""
        other = channel.bridged_to
        if other is None:
            return
        self._unbridge(channel, other)
        if _truthy(other.variables.get("park_after_bridge")):
            self.queue_app(other, "park", "", new_uuid(), 1)
        else:
            self.spawn(self.hangup, other, "NORMAL_CLEARING")

    def _unbridge(self, channel: Channel, other: Channel) -> None:
        a, b = (channel, other) if channel.direction == "outbound" else (other, channel)
        self.event(a, "CHANNEL_UNBRIDGE", before=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])
        channel.bridged_to = other.bridged_to = None

    # -- unicast -------------------------------------------------------------------------------
    def start_unicast(self, channel: Channel, headers: dict[str, str]) -> str:
        state = self.state.get(channel.uuid)
        if state is None:
            return f"-ERR invalid session id [{channel.uuid}]"
        local_port = _port(headers.get("local-port", "8025"))
        remote_port = _port(headers.get("remote-port", "8026"))
        if local_port is None or remote_port is None:
            # A number outside 0-65535 is refused like a non-number: bind()/sendto() would
            # raise OverflowError in the stream greenlet and the client would get no reply.
            return "-ERR invalid unicast port"
        local = (headers.get("local-ip", "127.0.0.1"), local_port)
        remote = (headers.get("remote-ip", "127.0.0.1"), remote_port)
        native = "native" in headers.get("flags", "").lower()
        own = self.switch.config.host
        if own not in ("0.0.0.0", "") and local[0] != own:
            # a switch binds its side of the stream to one of its own addresses (this one has
            # one: the address it listens on); another machine's address fails to bind
            return f"-ERR unicast cannot bind {local[0]}:{local[1]}: Cannot assign requested address"
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(local)
        except OSError as exc:
            sock.close()
            return f"-ERR unicast cannot bind {local[0]}:{local[1]}: {exc.strerror}"
        self._stop_unicast(state)
        state.unicast = self.spawn(self._stream, channel, state, sock, remote, native)
        return "+OK"

    @staticmethod
    def _stop_unicast(state: CallState) -> None:
        if state.unicast is not None and state.unicast is not gevent.getcurrent():
            state.unicast.kill(block=False)
        state.unicast = None

    def _stream(self, channel: Channel, state: CallState, sock, remote, native: bool) -> None:
        """One datagram per 20 ms against absolute deadlines (no drift), first one ~25 ms after +OK,
        only while the leg is parked and not bridged."""
        frames = state.audio_frames(native, self.switch.config.audio_files, zlib.crc32(channel.uuid.encode())) \
            if channel.is_answered else []
        position = -audio.COMFORT_NOISE_LEAD_FRAMES
        start = time.monotonic() + 0.025
        sent = 0
        try:
            while not channel.is_hungup and channel.bridged_to is None:
                delay = start + sent * audio.FRAME_SECONDS - time.monotonic()
                if delay > 0:
                    gevent.sleep(delay)
                if channel.is_hungup or channel.bridged_to is not None:
                    break
                if channel.parked:
                    if 0 <= position < len(frames):
                        payload = frames[position]
                    else:
                        payload = audio.COMFORT_NOISE
                    position += 1
                    try:
                        sock.sendto(payload, remote)
                    except OSError:
                        pass
                    state.packets_sent += 1
                    self.switch.counters["unicast_datagrams"] += 1
                sent += 1
                if not frames and channel.is_answered:
                    frames = state.audio_frames(native, self.switch.config.audio_files,
                                                zlib.crc32(channel.uuid.encode()))
        finally:
            sock.close()
