"""Event Socket commands and api functions of the simulated switch, with FreeSWITCH's reply texts
(mod_event_socket.c parse_command, mod_commands.c; texts checked against the shared captures)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import gevent

from esl.fakeswitch.listener import Listener, new_uuid
from esl.protocol import Command

if TYPE_CHECKING:
    from esl.fakeswitch.switch import FakeSwitch

MAX_LOOPS = 10_000     # sendmsg `loops`: each one is queued, so a huge value would exhaust memory

ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
                   "[<cid_name>] [<cid_num>] [<timeout_sec>]\n")


class CommandTable:
    def __init__(self, switch: FakeSwitch) -> None:
        self.switch = switch
        self.api_functions: dict[str, Callable[[str], str]] = {
            "status": lambda args: switch.status_text(),
            "version": lambda args: f"FreeSWITCH Version {switch_version()} (git a88d069 2024-08-02 21:02:27Z 64bit)\n",
            "uptime": lambda args: f"{switch.uptime_seconds()}\n",
            "global_getvar": self.api_global_getvar,
            "hostname": lambda args: switch.config.hostname,
            "show": self.api_show,
            "originate": self.api_originate,
            "uuid_kill": self.api_uuid_kill,
            "uuid_transfer": self.api_uuid_transfer,
            "uuid_bridge": self.api_uuid_bridge,
            "uuid_broadcast": self.api_uuid_broadcast,
            "uuid_exists": lambda args: "true" if args.split(" ")[0] in switch.channels else "false",
            "uuid_getvar": self.api_uuid_getvar,
            "uuid_setvar": self.api_uuid_setvar,
            "hupall": self.api_hupall,
            "avmd": self.api_avmd,
        }

    # -- ESL commands --------------------------------------------------------------------------
    def handle(self, listener: Listener, command: Command) -> bool:
        """Run one command; False means the connection must close."""
        name, args = command.name, command.args
        if not listener.authed:
            if name == "auth" and args == self.switch.config.password:
                listener.authed = True
                listener.reply("+OK accepted")
                return True
            listener.reply("-ERR invalid")
            listener.disconnect_notice()
            return False
        outbound = listener.outbound_channel is not None
        if name == "api":
            api_name, _, api_args = args.partition(" ")
            listener.api_response(self.run_api(api_name, api_args.strip()))
        elif name == "bgapi":
            self.bgapi(listener, args, command.headers.get("Job-UUID") or new_uuid())
        elif name == "event":
            listener.reply(listener.subscribe(args.split()))
        elif name == "nixevent":
            listener.reply(listener.unsubscribe(args.split()))
        elif name == "noevents":
            listener.reply(listener.no_events())
        elif name == "filter":
            listener.reply(listener.add_filter(args.strip()))
        elif name == "myevents":
            parts = args.split()
            uuid = listener.outbound_channel.uuid if outbound else (parts.pop(0) if parts else "")
            if not uuid:
                listener.reply("-ERR invalid uuid")
                return True
            listener.my_uuid = uuid
            listener.all_events = True
            listener.subscribe(parts[:1])
            listener.reply("+OK Events Enabled")
        elif name == "linger":
            if not outbound:
                listener.reply("-ERR not controlling a session")
            else:
                listener.linger = True
                listener.reply("+OK will linger")
        elif name == "nolinger":
            listener.linger = False
            listener.reply("+OK will not linger")
        elif name == "resume":
            listener.reply("+OK" if outbound else "-ERR not controlling a session")
        elif name == "connect" and outbound:
            listener.reply_connect()
        elif name == "sendmsg":
            listener.reply(self.sendmsg(listener, command))
        elif name == "exit":
            listener.reply("+OK bye")
            listener.disconnect_notice()
            return False
        elif name == "log":
            listener.reply("+OK log level  [7]")
        elif name == "nolog":
            listener.reply("+OK no longer logging")
        else:
            listener.reply("-ERR command not found")
        return True

    def run_api(self, name: str, args: str) -> str:
        function = self.api_functions.get(name)
        if function is None:
            return f"-ERR {name} Command not found!\n"
        self.switch.counters[f"api_{name}"] += 1
        result = function(args)
        headers = [("API-Command", name)]
        if args:
            headers.append(("API-Command-Argument", args))
        self.switch.fire("API", headers)
        return result

    def bgapi(self, listener: Listener, args: str, job_uuid: str) -> None:
        listener.reply(f"+OK Job-UUID: {job_uuid}", [("Job-UUID", job_uuid)])
        name, _, api_args = args.partition(" ")
        api_args = api_args.strip()

        def job() -> None:
            result = self.run_api(name, api_args)
            headers = [("Job-UUID", job_uuid), ("Job-Command", name)]
            if api_args:
                headers.append(("Job-Command-Arg", api_args))
            self.switch.fire("BACKGROUND_JOB", headers, result)

        self.switch.calls.spawn(job)

    def sendmsg(self, listener: Listener, command: Command) -> str:
        uuid = command.args.strip() or (listener.outbound_channel.uuid if listener.outbound_channel else "")
        channel = self.switch.channels.get(uuid)
        if channel is None:
            return f"-ERR invalid session id [{uuid}]"
        headers = command.headers
        call_command = headers.get("call-command", "").lower()
        calls = self.switch.calls
        if call_command == "execute":
            app = headers.get("execute-app-name", "")
            arg = headers.get("execute-app-arg", "")
            if not arg and command.body:
                arg = command.body.decode("utf-8", "replace")
            loops_text = (headers.get("loops", "1") or "1").strip()
            # Checked here, not by int(): a client's bad header must get a reply and leave the
            # connection up (FreeSWITCH answers every sendmsg). Capped, since each loop is queued.
            if not (loops_text.isascii() and loops_text.isdigit()) or int(loops_text) > MAX_LOOPS:
                return f"-ERR invalid loops [{loops_text}]"
            loops = int(loops_text)
            calls.queue_app(channel, app, arg, headers.get("Event-UUID") or new_uuid(), loops)
            return "+OK"
        if call_command == "hangup":
            gevent.spawn(calls.hangup, channel, headers.get("hangup-cause", "NORMAL_CLEARING") or "NORMAL_CLEARING")
            return "+OK"
        if call_command == "unicast":
            return calls.start_unicast(channel, headers)
        if call_command == "nomedia":
            return "+OK"
        return "-ERR Invalid Command"

    # -- api functions -------------------------------------------------------------------------
    def api_global_getvar(self, args: str) -> str:
        return "-ERR no reply\n"

    def api_show(self, args: str) -> str:
        words = args.split()
        if words[:1] == ["channels"] and words[-2:] == ["as", "json"]:
            return self.switch.show_channels_json()
        if words[:1] == ["channels"]:
            rows = self.switch.channels.values()
            lines = ["uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest"]
            lines += [f"{c.uuid},{c.direction},,{c.created_us // 1_000_000},{c.name},{c.running_state},"
                      f"{c.cid_name},{c.cid_number},{c.network_addr or ''},{c.user}" for c in rows]
            return "\n".join(lines) + f"\n\n{len(rows)} total.\n"
        return "-USAGE: show channels [as json]\n"

    def api_originate(self, args: str) -> str:
        if not args.strip():
            return ORIGINATE_USAGE
        return self.switch.calls.originate(args)

    def api_uuid_kill(self, args: str) -> str:
        parts = args.split()
        channel = self.switch.channels.get(parts[0]) if parts else None
        if channel is None:
            return "-ERR No such channel!\n"
        self.switch.calls.hangup(channel, parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
        return "+OK\n"

    def api_uuid_transfer(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        channel = self.switch.channels.get(parts[0])
        if channel is None:
            return "-ERR No such channel!\n"
        destination = parts[2] if parts[1] in ("-bleg", "-both") and len(parts) > 2 else parts[1]
        self.switch.calls.spawn(self.switch.calls.transfer, channel, destination)
        return "+OK\n"

    def api_uuid_bridge(self, args: str) -> str:
        parts = args.split()
        if len(parts) != 2:
            return "-USAGE: <uuid> <other_uuid>\n"
        a, b = (self.switch.channels.get(uuid) for uuid in parts)
        if a is None or b is None or a is b:
            return "-ERR Invalid uuid\n"
        self.switch.calls.bridge(a, b)
        return f"+OK {b.uuid}\n"

    def api_uuid_broadcast(self, args: str) -> str:
        parts = args.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|both]\n"
        channel = self.switch.channels.get(parts[0])
        if channel is None:
            return "-ERR No such channel!\n"
        self.switch.calls.queue_app(channel, "playback", parts[1], new_uuid(), 1)
        return "+OK Message sent\n"

    def api_uuid_getvar(self, args: str) -> str:
        parts = args.split()
        channel = self.switch.channels.get(parts[0]) if parts else None
        if channel is None:
            return "-ERR No such channel!\n"
        value = channel.variables.get(parts[1]) if len(parts) > 1 else None
        return value if value is not None else "_undef_"

    def api_uuid_setvar(self, args: str) -> str:
        parts = args.split(" ", 2)
        channel = self.switch.channels.get(parts[0]) if parts else None
        if channel is None:
            return "-ERR No such channel!\n"
        if len(parts) < 2:
            return "-USAGE: <uuid> <var> [value]\n"
        channel.set_var(parts[1], parts[2] if len(parts) > 2 else "")
        return "+OK\n"

    def api_avmd(self, args: str) -> str:
        parts = args.split()
        channel = self.switch.channels.get(parts[0]) if parts else None
        if channel is None or len(parts) < 2 or parts[1] not in ("start", "stop"):
            return "-ERR, no such uuid or usage: avmd <uuid> <start|stop>\n"
        self.switch.calls.queue_app(channel, f"avmd_{parts[1]}", "", new_uuid(), 1)
        return "+OK\n"

    def api_hupall(self, args: str) -> str:
        cause = args.split()[0] if args.split() else "MANAGER_REQUEST"
        for channel in list(self.switch.channels.values()):
            self.switch.calls.spawn(self.switch.calls.hangup, channel, cause)
        return f"+OK hangup all channels with cause {cause}\n"


def switch_version() -> str:
    from esl.fakeswitch.switch import VERSION
    return VERSION
