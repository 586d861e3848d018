"""`dialer agent login|ready|pause|logout|disposition|list`: the operator's agent commands.

Agents live in the engine that holds their phone leg, so these commands go to the engines the
way the web app's do: a command on the Redis stream `dialer:commands` (docs/redis-api.md), and
the reply read back from a reply stream of this command's own, matched on the request id.
"""
from __future__ import annotations

import json
import time
import uuid

import click
import redis
from rich.console import Console
from rich.table import Table

from dialer import storage
from dialer.errors import DialerError
from dialer.rediskeys import AGENTS_HASH, COMMANDS_STREAM, REPLIES_STREAM, REQUEST_KEY



def _require_a_live_engine() -> None:
    """Refuse at once when no engine has a recent heartbeat: the command would wait out its
    timeout, then stay on the stream for an engine started hours later to carry out."""
    from dialer.engine.store import ENGINE_DEAD_AFTER
    try:
        with storage.connect_db() as conn:
            alive = conn.execute("SELECT count(*) FROM engine_nodes WHERE heartbeat_at >= now() - %s",
                                 (ENGINE_DEAD_AFTER,)).fetchone()[0]
    except DialerError as exc:
        raise click.ClickException(str(exc)) from exc
    if not alive:
        raise click.ClickException(f"no engine is running (none has a heartbeat in the last "
                                   f"{ENGINE_DEAD_AFTER.total_seconds():.0f} s): start `dialer run`; "
                                   "the command was not sent")


REPLY_STREAM_TTL_S = 60      # the reply stream outlives the wait by this, then Redis drops it
START_GRACE_S = 1.0          # an engine that passed the deadline check marks the command running within it


def send_command(kind: str, args: dict, timeout_s: float) -> dict:
    """Send one command and wait for its reply; ClickException on error or timeout.

    The command carries `expires_at` (now + timeout): an engine that reaches it after the
    operator was told "no engine answered" answers `expired` and does nothing (QA6: it ran
    later). The reply stream is this call's own and has an expiry from the start, so nothing is
    left behind, also when a late `expired` reply is written to it."""
    _require_a_live_engine()
    client = storage.connect_redis()
    request_id = f"cli-{uuid.uuid4().hex}"
    reply_stream = f"{REPLIES_STREAM}:cli-{uuid.uuid4().hex[:12]}"
    expires_at = time.time() + timeout_s
    try:
        # the stream exists (with its expiry) before the command: a reply appended later keeps it
        client.xadd(reply_stream, {"request_id": "", "note": f"reply stream of `dialer agent {kind}`"})
        client.expire(reply_stream, int(timeout_s) + REPLY_STREAM_TTL_S)
        client.xadd(COMMANDS_STREAM, {"command": json.dumps({"request_id": request_id, "type": kind, "args": args,
                                                      "reply_to": reply_stream,
                                                      "expires_at": round(expires_at, 3)})},
                    maxlen=100_000, approximate=True)
        last = "0"
        deadline = time.monotonic() + timeout_s + START_GRACE_S
        while True:
            while time.monotonic() < deadline:
                for _stream, entries in client.xread({reply_stream: last}, block=500) or []:
                    for entry_id, fields in entries:
                        last = entry_id
                        if fields.get("request_id") == request_id:
                            client.delete(reply_stream)
                            return fields
            # An engine that began it before the deadline carries it out: wait for that reply
            # (an agent.login rings the phone for up to 30 s) rather than say it failed.
            record = json.loads(client.get(REQUEST_KEY.format(request_id=request_id)) or "{}")
            if record.get("state") == "done":
                client.delete(reply_stream)
                return record["reply"]
            if record.get("state") != "running":
                break
            deadline = time.monotonic() + 5
        # not deleted: an engine may still write its `expired` reply; the expiry removes both
        client.expire(reply_stream, REPLY_STREAM_TTL_S)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc
    raise click.ClickException(f"no engine answered {kind} within {timeout_s:g}s (is `dialer run` running?); "
                               "the command will not be carried out later (its deadline has passed)")


def _run(kind: str, args: dict, timeout_s: float, as_json: bool) -> None:
    reply = send_command(kind, args, timeout_s)
    if as_json:
        click.echo(json.dumps(reply))
    if reply.get("status") != "ok":
        error = json.loads(reply.get("error") or "{}")
        raise click.ClickException(f"{kind} refused ({error.get('code')}): {error.get('message')}")
    if not as_json:
        click.echo(f"{kind}: ok ({reply.get('engine')}) {reply.get('result', '')}")


@click.group()
def agent() -> None:
    """Agents: log in (the engine calls their phone and keeps the leg up), ready, pause, log out,
    disposition the call just ended."""


_timeout = click.option("--timeout", "timeout_s", default=40.0, show_default=True, help="seconds to wait")
_json = click.option("--json", "as_json", is_flag=True)


@agent.command("login")
@click.argument("agent_id")
@click.option("--endpoint", required=True, help="FreeSWITCH dial string of the agent's phone, e.g. user/1001")
@click.option("--campaign", required=True)
@_timeout
@_json
def login(agent_id, endpoint, campaign, timeout_s, as_json) -> None:
    """Log AGENT_ID in to CAMPAIGN: the engine calls the phone; answering makes the agent ready."""
    _run("agent.login", {"agent_id": agent_id, "endpoint": endpoint, "campaign": campaign}, timeout_s, as_json)


@agent.command("ready")
@click.argument("agent_id")
@_timeout
@_json
def ready(agent_id, timeout_s, as_json) -> None:
    """Make AGENT_ID ready: the engine may put the next answered call through to them."""
    _run("agent.ready", {"agent_id": agent_id}, timeout_s, as_json)


@agent.command("pause")
@click.argument("agent_id")
@click.option("--reason", required=True, help="why (break, lunch, coaching...): kept in the state log")
@_timeout
@_json
def pause(agent_id, reason, timeout_s, as_json) -> None:
    """Pause AGENT_ID (with a --reason): no new call reaches them until `agent ready`."""
    _run("agent.pause", {"agent_id": agent_id, "reason": reason}, timeout_s, as_json)


@agent.command("logout")
@click.argument("agent_id")
@_timeout
@_json
def logout(agent_id, timeout_s, as_json) -> None:
    """Log AGENT_ID out: the engine hangs up their phone leg. Refused while they are on a call."""
    _run("agent.logout", {"agent_id": agent_id}, timeout_s, as_json)


@agent.command("disposition")
@click.argument("agent_id")
@click.argument("disposition")
@click.option("--callback-at", default=None, help="ISO 8601: call the lead back then")
@click.option("--to-me", is_flag=True, help="the callback goes to this agent")
@_timeout
@_json
def disposition(agent_id, disposition, callback_at, to_me, timeout_s, as_json) -> None:
    """Disposition the call AGENT_ID just had (DNC puts the number on the internal list)."""
    args = {"agent_id": agent_id, "disposition": disposition}
    if callback_at:
        args.update(callback_at=callback_at, callback_to_agent=to_me)
    _run("agent.disposition", args, timeout_s, as_json)


@agent.command("list")
@_json
def list_agents(as_json) -> None:
    """Agents and their live state, as the engines publish it."""
    try:
        rows = {k: json.loads(v) for k, v in storage.connect_redis().hgetall(AGENTS_HASH).items()}
    except (redis.RedisError, DialerError) as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from exc
    if as_json:
        click.echo(json.dumps(rows))
        return
    table = Table(title="agents")
    for column in ("agent", "state", "campaign", "since", "engine", "reason"):
        table.add_column(column)
    for agent_id, row in sorted(rows.items()):
        since = time.strftime("%H:%M:%S", time.localtime(row.get("since", 0)))
        table.add_row(agent_id, row.get("state", ""), row.get("campaign") or "", since, row.get("engine", ""),
                      row.get("reason") or "")
    Console().print(table)
