"""One simulated FreeSWITCH channel: its states, caller profile and variables, and the header
block every channel event carries.

Modelled on the outbound sofia leg of the shared capture 06_sip_call_plain_ALL (and the failed
legs of 10_originate_errors): switch_channel_event_set_basic_data writes Channel-State ...
Answer-State, Hangup-Cause once hung up, the codec headers once media is set, then the caller
profile (Caller-*), Other-Leg-* when bridged; switch_channel_event_set_extended_data adds the
channel variables as `variable_*` on the event types listed in VARIABLE_EVENTS. Variables are
kept in insertion order; setting one again moves it to the end, as switch_event_add_header does
after deleting the old value.
"""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

STATE_NUMBERS = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8, "CS_RESET": 9,
    "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13,
}
CALLSTATE_NUMBERS = {"DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5,
                     "RING_WAIT": 6, "HANGUP": 7, "UNHELD": 8}

# switch_channel.c: events that carry the channel variables.
VARIABLE_EVENTS = frozenset({
    "CHANNEL_UUID", "CHANNEL_CREATE", "CHANNEL_ORIGINATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK",
    "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_DESTROY", "CHANNEL_DATA", "CALL_UPDATE", "CUSTOM", "PLAYBACK_START", "PLAYBACK_STOP",
})

# Hangup cause name -> Q.850 code (FreeSWITCH-only causes map to their own numbers here, as the
# hangup_cause_q850 variable shows them).
Q850 = {
    "UNALLOCATED_NUMBER": 1, "NO_ROUTE_DESTINATION": 3, "NORMAL_CLEARING": 16, "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18, "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22, "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28,
    "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42, "REQUESTED_CHAN_UNAVAIL": 44,
    "INCOMPATIBLE_DESTINATION": 88, "RECOVERY_ON_TIMER_EXPIRE": 102, "INTERWORKING": 127,
    "ORIGINATOR_CANCEL": 487, "LOSE_RACE": 702, "MANAGER_REQUEST": 703, "ALLOTTED_TIMEOUT": 802,
    "MEDIA_TIMEOUT": 804, "USER_NOT_REGISTERED": 806, "PROGRESS_TIMEOUT": 807, "GATEWAY_DOWN": 809,
}

SIP_USER_AGENT = "FreeSWITCH-mod_sofia/1.10.12-release+git~20240802T210227Z~a88d069d6f~64bit"
SIP_ALLOW = ("INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY, "
             "PUBLISH, SUBSCRIBE")


def now_us() -> int:
    return int(time.time() * 1_000_000)


def _stamp(us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(us / 1_000_000))


def _tag() -> str:
    return secrets.token_urlsafe(10)[:13]


@dataclass
class Codec:
    name: str = "PCMU"
    rate: int = 8000
    bit_rate: int = 64000


class Channel:
    """State of one leg. Event building lives here; the call flow lives in the switch core."""

    def __init__(self, uuid: str, session_id: int, *, profile: str, user: str, host: str,
                 cid_number: str, cid_name: str, context: str = "default",
                 direction: str = "outbound") -> None:
        self.uuid = uuid
        self.session_id = session_id
        self.profile = profile
        self.user = user
        self.host = host
        self.name = f"sofia/{profile}/{user}@{host}"
        self.tech = "sofia"
        self.source = "src/switch_ivr_originate.c"
        self.dialplan = ""                 # Caller-Dialplan (mod_loopback sets "xml")
        self.direction = direction
        self.running_state = "CS_NEW"
        self.state_number = 0
        self.callstate = "DOWN"
        self.answer_state = "ringing"
        self.hangup_cause: str | None = None
        self.codec: Codec | None = None
        self.write_codec_set = False       # the first CODEC event carries the read codec only
        self.has_profile = True            # mod_loopback sets codecs before the caller profile
        self.network_addr: str | None = None
        self.cid_number = cid_number
        self.cid_name = cid_name
        self.orig_cid_number = cid_number
        self.callee_name: str | None = "Outbound Call"
        self.callee_number: str | None = user
        self.context = context
        self.created_us = now_us()
        self.answered_us = 0
        self.progress_us = 0
        self.progress_media_us = 0
        self.hangup_us = 0
        self.bridged_us = 0
        self.variables: dict[str, str] = {}
        self.other_leg: Channel | None = None
        self.parked = False
        self.bridged_to: Channel | None = None
        self.last_app: tuple[str, str] | None = None
        self.media_port = 16384 + (session_id * 2) % 16000
        self.sip_tags = (_tag(), _tag())

    # -- variables ---------------------------------------------------------------------------
    def set_var(self, name: str, value: str) -> None:
        self.variables.pop(name, None)
        self.variables[name] = str(value)

    def set_vars(self, pairs) -> None:
        for name, value in pairs:
            self.set_var(name, value)

    @property
    def is_hungup(self) -> bool:
        return self.hangup_cause is not None

    @property
    def is_answered(self) -> bool:
        return self.answered_us != 0

    # -- headers -----------------------------------------------------------------------------
    def basic_headers(self) -> list[tuple[str, str]]:
        headers = [
            ("Channel-State", self.running_state),
            ("Channel-Call-State", self.callstate),
            ("Channel-State-Number", str(self.state_number)),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "false"),
            ("Channel-Call-UUID", self.uuid),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause:
            headers.append(("Hangup-Cause", self.hangup_cause))
        if self.codec:
            codec = self.codec
            headers += [("Channel-Read-Codec-Name", codec.name), ("Channel-Read-Codec-Rate", str(codec.rate)),
                        ("Channel-Read-Codec-Bit-Rate", str(codec.bit_rate))]
            if self.write_codec_set:
                headers += [("Channel-Write-Codec-Name", codec.name),
                            ("Channel-Write-Codec-Rate", str(codec.rate)),
                            ("Channel-Write-Codec-Bit-Rate", str(codec.bit_rate))]
        if self.has_profile:
            headers += self.profile_headers("Caller")
        if self.bridged_to is not None:
            headers += [("Other-Type", "originatee" if self.direction == "outbound" else "originator")]
            headers += self.bridged_to.profile_headers("Other-Leg")
        return headers

    def profile_headers(self, prefix: str) -> list[tuple[str, str]]:
        """switch_caller_profile_event_set_data: empty fields are left out."""
        fields = [
            ("Direction", self.direction), ("Logical-Direction", self.direction), ("Dialplan", self.dialplan),
            ("Caller-ID-Name", self.cid_name), ("Caller-ID-Number", self.cid_number),
            ("Orig-Caller-ID-Number", self.orig_cid_number),
            ("Callee-ID-Name", self.callee_name or ""), ("Callee-ID-Number", self.callee_number or ""),
            ("Network-Addr", self.network_addr or ""), ("ANI", self.orig_cid_number),
            ("Destination-Number", self.user), ("Unique-ID", self.uuid),
            ("Source", self.source), ("Context", self.context),
            ("Channel-Name", self.name), ("Profile-Index", "1"),
            ("Profile-Created-Time", str(self.created_us)), ("Channel-Created-Time", str(self.created_us)),
            ("Channel-Answered-Time", str(self.answered_us)),
            ("Channel-Progress-Time", str(self.progress_us)),
            ("Channel-Progress-Media-Time", str(self.progress_media_us)),
            ("Channel-Hangup-Time", str(self.hangup_us)), ("Channel-Transfer-Time", "0"),
            ("Channel-Resurrect-Time", "0"), ("Channel-Bridged-Time", str(self.bridged_us)),
            ("Channel-Last-Hold", "0"), ("Channel-Hold-Accum", "0"), ("Screen-Bit", "true"),
            ("Privacy-Hide-Name", "false"), ("Privacy-Hide-Number", "false"),
        ]
        return [(f"{prefix}-{name}", value) for name, value in fields if value]

    def variable_headers(self) -> list[tuple[str, str]]:
        return [(f"variable_{name}", value) for name, value in self.variables.items()]

    @classmethod
    def loopback(cls, uuid: str, session_id: int, *, exten: str, context: str, leg: str,
                 cid_number: str, cid_name: str) -> Channel:
        """One leg of mod_loopback's pair: `loopback/<exten>-a` (outbound) or `-b` (inbound)."""
        channel = cls(uuid, session_id, profile="", user=exten, host="", cid_number=cid_number,
                      cid_name=cid_name, context=context,
                      direction="outbound" if leg == "a" else "inbound")
        channel.tech, channel.source, channel.dialplan = "loopback", "mod_loopback", "xml"
        channel.name = f"loopback/{exten}-{leg}"
        channel.callee_number = context           # as captured: Caller-Callee-ID-Number: default
        channel.codec = Codec("L16", 8000, 128000)
        channel.has_profile = False
        return channel

    def set_loopback_base_variables(self) -> None:
        base = [("direction", self.direction)]
        if self.direction == "outbound":
            base.append(("is_outbound", "true"))
        self.set_vars(base + [("session_id", str(self.session_id)), ("read_codec", "L16"),
                              ("read_rate", "8000"), ("write_codec", "L16"), ("write_rate", "8000"),
                              ("channel_name", self.name), ("uuid", self.uuid), ("call_uuid", self.uuid)])

    # -- variable groups set along the call, as sofia and the core set them -------------------
    def set_create_variables(self, originate_vars: dict[str, str], early_media_ok: bool) -> None:
        uri = f"{self.user}@{self.host}"
        self.set_vars([
            ("direction", self.direction), ("is_outbound", "true"), ("uuid", self.uuid),
            ("call_uuid", self.uuid), ("session_id", str(self.session_id)),
            ("sip_local_network_addr", "127.0.0.1"), ("sip_profile_name", self.profile),
            ("video_media_flow", "disabled"), ("text_media_flow", "disabled"),
            ("channel_name", self.name), ("sip_destination_url", f"sip:{uri}"),
        ])
        self.set_vars(originate_vars.items())
        self.set_vars([
            ("originate_early_media", "true" if early_media_ok else "false"),
            ("originate_endpoint", "sofia"), ("rtp_use_codec_string", "PCMU,PCMA"),
            ("local_media_ip", "127.0.0.1"), ("local_media_port", str(self.media_port)),
            ("advertised_media_ip", "127.0.0.1"), ("audio_media_flow", "sendrecv"),
            ("rtp_local_sdp_str", self._sdp("127.0.0.1", self.media_port)),
            ("sip_outgoing_contact_uri", "<sip:mod_sofia@127.0.0.1:5080>"), ("sip_req_uri", uri),
            ("sip_to_host", self.host), ("sip_from_host", "127.0.0.1"),
            ("sofia_profile_name", self.profile), ("recovery_profile_name", self.profile),
            ("sofia_profile_url", "sip:mod_sofia@127.0.0.1:5080"),
        ])

    def set_reply_variables(self, dialog: bool) -> None:
        """Variables sofia sets from the first response: the transport ones always, the dialog ones
        (To tag, Contact...) only from a provisional or 2xx response that creates a dialog."""
        self.network_addr = "127.0.0.1"
        host, _, port = self.host.partition(":")
        port = port or "5060"
        self.set_vars([("sip_local_network_addr", "127.0.0.1"), ("sip_reply_host", host),
                       ("sip_reply_port", port), ("sip_network_ip", host), ("sip_network_port", port)])
        if not dialog:
            self.set_var("sip_call_id", self.uuid)
            return
        via = f"SIP/2.0/UDP 127.0.0.1:5080;rport=5080;branch=z9hG4bK{self.sip_tags[0]}"
        from_tag, to_tag = self.sip_tags
        self.set_vars([
            ("sip_user_agent", SIP_USER_AGENT), ("sip_allow", SIP_ALLOW),
            ("sip_recover_contact", f"<sip:{self.user}@{self.host};transport=udp>"),
            ("sip_full_via", via), ("sip_recover_via", via),
            ("sip_full_from", f"<sip:{self.cid_number}@127.0.0.1>;tag={from_tag}"),
            ("sip_full_to", f"<sip:{self.user}@{self.host}>;tag={to_tag}"),
            ("sip_from_user", self.cid_number), ("sip_from_uri", f"{self.cid_number}@127.0.0.1"),
            ("sip_from_host", "127.0.0.1"), ("sip_to_user", self.user), ("sip_to_port", port),
            ("sip_to_uri", f"{self.user}@{self.host}"), ("sip_to_host", host),
            ("sip_contact_params", "transport=udp"), ("sip_contact_user", self.user),
            ("sip_contact_port", port), ("sip_contact_uri", f"{self.user}@{self.host}"),
            ("sip_contact_host", host), ("sip_to_tag", to_tag), ("sip_from_tag", from_tag),
            ("sip_cseq", str(100000000 + self.session_id)), ("sip_call_id", self.uuid),
        ])

    def set_media_variables(self) -> None:
        """Negotiated media (from the SDP of a 183 or 200)."""
        self.codec = self.codec or Codec()
        self.write_codec_set = True    # sofia negotiates both directions before its CODEC events
        self.network_addr = "127.0.0.1"
        remote_port = 20000 + (self.session_id * 2) % 10000
        self.set_vars([
            ("switch_r_sdp", self._sdp("127.0.0.1", remote_port)),
            ("ep_codec_string", "CORE_PCM_MODULE.PCMU@8000h@20i@64000b"),
            ("rtp_use_codec_string", "PCMU,PCMA"), ("remote_video_media_flow", "inactive"),
            ("remote_text_media_flow", "inactive"), ("remote_audio_media_flow", "sendrecv"),
            ("rtp_audio_recv_pt", "0"), ("rtp_use_codec_name", "PCMU"), ("rtp_use_codec_rate", "8000"),
            ("rtp_use_codec_ptime", "20"), ("rtp_use_codec_channels", "1"),
            ("rtp_last_audio_codec_string", "PCMU@8000h@20i@1c"), ("read_codec", "PCMU"),
            ("original_read_codec", "PCMU"), ("read_rate", "8000"), ("original_read_rate", "8000"),
            ("write_codec", "PCMU"), ("write_rate", "8000"), ("dtmf_type", "rfc2833"),
            ("local_media_ip", "127.0.0.1"), ("local_media_port", str(self.media_port)),
            ("advertised_media_ip", "127.0.0.1"), ("rtp_use_timer_name", "soft"), ("rtp_use_pt", "0"),
            ("rtp_use_ssrc", str(secrets.randbits(31))), ("rtp_2833_send_payload", "101"),
            ("rtp_2833_recv_payload", "101"), ("remote_media_ip", "127.0.0.1"),
            ("remote_media_port", str(remote_port)),
        ])

    def set_failure_variables(self, status: int, phrase: str, cause: str, cancelled: bool) -> None:
        if cancelled:
            self.set_vars([("sip_hangup_disposition", "send_cancel"),
                           ("sip_invite_failure_status", "487"), ("sip_invite_failure_phrase", "CANCEL")])
            return
        self.set_vars([
            ("sip_hangup_disposition", "recv_refuse"), ("sip_invite_failure_status", str(status)),
            ("sip_invite_failure_phrase", phrase), ("sip_term_status", str(status)),
            ("proto_specific_hangup_cause", f"sip:{status}"), ("sip_term_cause", str(Q850.get(cause, 16))),
        ])

    def set_report_variables(self, end_us: int, rtp_packets_in: int) -> None:
        """What switch_channel_set_timestamps and sofia's RTP stats add before HANGUP_COMPLETE."""
        start = self.created_us

        def since(mark: int) -> int:
            return (mark - start) if mark else 0

        def seconds(us: int) -> str:
            return str(us // 1_000_000)

        def epoch(us: int) -> str:
            return str(us // 1_000_000) if us else "0"

        answered, progress, media = self.answered_us, self.progress_us, self.progress_media_us
        duration, bill = end_us - start, (end_us - answered) if answered else 0
        stamps = [("start_stamp", _stamp(start)), ("profile_start_stamp", _stamp(start))]
        for name, mark in (("answer_stamp", answered), ("progress_stamp", progress),
                           ("progress_media_stamp", media), ("bridge_stamp", self.bridged_us)):
            if mark:
                stamps.append((name, _stamp(mark)))
        stamps.append(("end_stamp", _stamp(end_us)))
        self.set_vars([("digits_dialed", "none"), *stamps,
                       ("start_epoch", epoch(start)), ("start_uepoch", str(start)),
                       ("profile_start_epoch", epoch(start)), ("profile_start_uepoch", str(start)),
                       ("answer_epoch", epoch(answered)), ("answer_uepoch", str(answered)),
                       ("bridge_epoch", epoch(self.bridged_us)), ("bridge_uepoch", str(self.bridged_us)),
                       ("last_hold_epoch", "0"), ("last_hold_uepoch", "0"), ("hold_accum_seconds", "0"),
                       ("hold_accum_usec", "0"), ("hold_accum_ms", "0"), ("resurrect_epoch", "0"),
                       ("resurrect_uepoch", "0"), ("progress_epoch", epoch(progress)),
                       ("progress_uepoch", str(progress)), ("progress_media_epoch", epoch(media)),
                       ("progress_media_uepoch", str(media)), ("end_epoch", epoch(end_us)),
                       ("end_uepoch", str(end_us))])
        if self.last_app:
            self.set_var("last_app", self.last_app[0])
            if self.last_app[1]:
                self.set_var("last_arg", self.last_app[1])
        self.set_var("caller_id", f'"{self.cid_name}" <{self.cid_number}>' if self.cid_name else self.cid_number)
        spans = {"duration": duration, "billsec": bill, "progresssec": since(progress),
                 "answersec": since(answered), "waitsec": since(self.bridged_us),
                 "progress_mediasec": since(media), "flow_billsec": duration if answered else 0}
        self.set_vars((name, seconds(value)) for name, value in spans.items())
        milli = {"mduration": "duration", "billmsec": "billsec", "progressmsec": "progresssec",
                 "answermsec": "answersec", "waitmsec": "waitsec",
                 "progress_mediamsec": "progress_mediasec", "flow_billmsec": "flow_billsec"}
        self.set_vars((name, str(spans[key] // 1000)) for name, key in milli.items())
        micro = {"uduration": "duration", "billusec": "billsec", "progressusec": "progresssec",
                 "answerusec": "answersec", "waitusec": "waitsec",
                 "progress_mediausec": "progress_mediasec", "flow_billusec": "flow_billsec"}
        self.set_vars((name, str(spans[key])) for name, key in micro.items())
        if self.tech == "loopback":
            self.set_var("is_loopback", "1")
            return
        if not self.answered_us and not self.progress_media_us:
            return
        if "sip_hangup_disposition" not in self.variables:
            self.set_var("sip_hangup_disposition", "send_bye")
        octets = rtp_packets_in * 172
        self.set_vars([
            ("rtp_audio_in_raw_bytes", str(octets)), ("rtp_audio_in_media_bytes", str(octets)),
            ("rtp_audio_in_packet_count", str(rtp_packets_in)),
            ("rtp_audio_in_media_packet_count", str(rtp_packets_in)),
            ("rtp_audio_in_skip_packet_count", "0"), ("rtp_audio_in_jitter_packet_count", "0"),
            ("rtp_audio_in_dtmf_packet_count", "0"), ("rtp_audio_in_cng_packet_count", "0"),
            ("rtp_audio_in_flush_packet_count", "0"), ("rtp_audio_in_largest_jb_size", "0"),
            ("rtp_audio_in_jitter_min_variance", "0.00"), ("rtp_audio_in_jitter_max_variance", "0.00"),
            ("rtp_audio_in_jitter_loss_rate", "0.00"), ("rtp_audio_in_jitter_burst_rate", "0.00"),
            ("rtp_audio_in_mean_interval", "20.00"), ("rtp_audio_in_flaw_total", "0"),
            ("rtp_audio_in_quality_percentage", "100.00"), ("rtp_audio_in_mos", "4.50"),
            ("rtp_audio_out_raw_bytes", "0"), ("rtp_audio_out_media_bytes", "0"),
            ("rtp_audio_out_packet_count", "0"), ("rtp_audio_out_media_packet_count", "0"),
            ("rtp_audio_out_skip_packet_count", "0"), ("rtp_audio_out_dtmf_packet_count", "0"),
            ("rtp_audio_out_cng_packet_count", "0"), ("rtp_audio_rtcp_packet_count", "0"),
            ("rtp_audio_rtcp_octet_count", "0"),
        ])

    @staticmethod
    def _sdp(ip: str, port: int) -> str:
        version = 1795270000 + port
        return (f"v=0\r\no=FreeSWITCH {version} {version + 1} IN IP4 {ip}\r\ns=FreeSWITCH\r\n"
                f"c=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
                f"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
                f"a=ptime:20\r\na=sendrecv\r\n")

    def show_row(self, hostname: str) -> dict[str, str]:
        """One row of `show channels as json`."""
        created = self.created_us // 1_000_000
        return {
            "uuid": self.uuid, "direction": self.direction,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created)),
            "created_epoch": str(created), "name": self.name,
            "state": self.running_state, "cid_name": self.cid_name, "cid_num": self.cid_number,
            "ip_addr": self.network_addr or "", "dest": self.user,
            "application": self.last_app[0] if self.last_app else "",
            "application_data": self.last_app[1] if self.last_app else "",
            "dialplan": "XML", "context": self.context,
            "read_codec": self.codec.name if self.codec else "", "read_rate": str(self.codec.rate) if self.codec else "",
            "read_bit_rate": str(self.codec.bit_rate) if self.codec else "",
            "write_codec": self.codec.name if self.codec else "",
            "write_rate": str(self.codec.rate) if self.codec else "",
            "write_bit_rate": str(self.codec.bit_rate) if self.codec else "",
            "secure": "", "hostname": hostname, "presence_id": "", "presence_data": "",
            "accountcode": "", "callstate": self.callstate, "callee_name": "", "callee_num": "",
            "callee_direction": "", "call_uuid": self.uuid, "sent_callee_name": "", "sent_callee_num": "",
            "initial_cid_name": self.cid_name, "initial_cid_num": self.cid_number,
            "initial_ip_addr": self.network_addr or "", "initial_dest": self.user,
            "initial_dialplan": "XML", "initial_context": self.context,
        }
