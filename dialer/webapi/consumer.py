"""The engine's side of the Redis API (docs/redis-api.md): a consumer of the command stream and
the per-second campaign statistics on the event stream.

Delivery (Redis Streams, https://redis.io/docs/latest/develop/data-types/streams/):
- Every engine reads `dialer:commands` in the consumer group `engines` (XREADGROUP, blocking
  with a timeout), so each command goes to one engine; an engine also reads its own stream
  `dialer:commands:engine:<id>`, where other engines forward commands for the agents it holds.
- A command is acknowledged (XACK) only after it took effect and its reply was written. An
  engine that dies leaves its entries pending: after `claim_idle_ms` another engine takes them
  over (XAUTOCLAIM) and runs them.
- At-least-once delivery is made act-once by the request id: `dialer:request:<id>` holds
  "running" (with a lease) while the command runs and then its reply, for `request_ttl_s`; a
  repeat gets the stored reply again (duplicate=true) and is not acted on.
- Malformed documents, unknown types and bad args are answered with an error reply and never
  acted on. Transient store failures (PostgreSQL down) leave the entry pending for a retry; after
  `max_deliveries` attempts it is answered with an error and acknowledged.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter

import gevent
import gevent.lock
import gevent.monkey
import gevent.pool
import psycopg
import redis

from dialer import storage
from dialer.campaigns import CampaignError, CampaignNotFound, SettingsError
from dialer.compliance.model import ComplianceError
from dialer.engine.agents import AgentError
from dialer.engine.store import EngineStore
from dialer.errors import DialerError, StorageError
from dialer.reporting import ReportError
from dialer.webapi import WebApiError
from dialer.webapi.handlers import Context, handlers
from dialer.webapi.schema import Command, best_request_id, parse_command
from dialer.rediskeys import COMMANDS_STREAM, ENGINE_STREAM, REPLIES_STREAM, REQUEST_KEY
from esl.errors import ESLError

log = logging.getLogger(__name__)

GROUP = "engines"
REPLIES_MAXLEN = 10_000
STATS_INTERVAL_S = 1.0
# Commands about one agent run on the engine that holds the agent's phone leg.
AGENT_COMMANDS = frozenset({"agent.ready", "agent.pause", "agent.logout", "agent.disposition", "lead.preview",
                            "lead.skip", "call.dial", "call.manual"})


class _Transient(DialerError):
    """The command could not run now (a store is down): leave it pending for a retry."""


def error_of(exc: DialerError) -> WebApiError:
    """The error reply for a refused command."""
    if isinstance(exc, WebApiError):
        return exc
    if isinstance(exc, CampaignNotFound):
        return WebApiError("not_found", str(exc))
    if isinstance(exc, SettingsError):
        return WebApiError("invalid", "invalid campaign settings", exc.problems)
    if isinstance(exc, (CampaignError, AgentError)):
        return WebApiError("conflict", str(exc))
    if isinstance(exc, (ComplianceError, ReportError)):
        return WebApiError("invalid", str(exc))
    return WebApiError("failed", str(exc))


NOT_UTF8 = object()          # a field value that is not UTF-8


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _fields(raw: dict | None) -> dict:
    """An entry's fields as text; a value that is not UTF-8 becomes NOT_UTF8."""
    out: dict = {}
    for key, value in (raw or {}).items():
        try:
            out[_text(key)] = _text(value)
        except UnicodeDecodeError:
            out[key.decode("utf-8", "replace") if isinstance(key, bytes) else key] = NOT_UTF8
    return out


class CommandConsumer:
    def __init__(self, engine, *, redis_url: str | None = None, database_url: str | None = None, block_ms: int = 1000, claim_idle_ms: int = 60_000,
                 request_ttl_s: int = 86_400, running_lease_s: int = 120, batch: int = 16, concurrency: int = 16,
                 max_deliveries: int = 5) -> None:
        self.engine = engine
        self.engine_id = engine.engine_id
        url = redis_url or engine.cfg.redis_url
        # Its own clients: a blocking XREADGROUP must not hold the engine's connection, and its
        # socket timeout must outlast the block.
        self.redis = storage.connect_redis(url, timeout_s=block_ms / 1000 + 2.0, retries=1)
        # entries are read as bytes: one that is not UTF-8 is answered as malformed, where a
        # decoding client would fail the whole read, on every engine, every time it is claimed
        self.reader = storage.connect_redis(url, timeout_s=block_ms / 1000 + 2.0, retries=1, decode=False)
        self.block_ms, self.claim_idle_ms, self.batch = block_ms, claim_idle_ms, batch
        self.request_ttl_s, self.running_lease_s, self.max_deliveries = request_ttl_s, running_lease_s, max_deliveries
        self.cooperative = gevent.monkey.is_module_patched("socket")
        self.own_stream = ENGINE_STREAM.format(engine=self.engine_id)
        self.streams = (COMMANDS_STREAM, self.own_stream)
        self.conn: psycopg.Connection | None = None
        self.database_url = database_url or engine.cfg.database_url
        self.store = EngineStore(self.database_url, self.engine_id)
        self.handlers = handlers()
        self.pool = gevent.pool.Pool(concurrency)          # bounded: a full pool stops reading
        self._locks: dict[str, list] = {}
        self._greenlet: gevent.Greenlet | None = None
        self._stopped = False
        self.counts: Counter[str] = Counter()            # replies by status, forwards, retries

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> "CommandConsumer":
        self._ensure_groups()
        self._greenlet = gevent.spawn(self._run)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped = True
        if self._greenlet is not None:
            self._greenlet.join(timeout)
            if not self._greenlet.dead:
                self._greenlet.kill(block=True, timeout=1)
        self.pool.join(timeout=timeout)
        self.pool.kill(block=True, timeout=1)
        if self.conn is not None:
            self.conn.close()
        self.store.close()
        self.redis.close()
        self.reader.close()

    def _ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                # From the stream's start: commands written before the first engine ran are served.
                self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _db(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = storage.connect_db(self.database_url, autocommit=True)
        return self.conn

    # -- reading ------------------------------------------------------------------------------

    def _run(self) -> None:
        next_claim = 0.0
        backoff = 0.1
        while not self._stopped:
            try:
                if time.monotonic() >= next_claim:
                    self.claim_stale()
                    next_claim = time.monotonic() + self.claim_idle_ms / 2000
                self.read_once()
                backoff = 0.1
            except redis.RedisError as exc:
                log.warning("commands: Redis: %s; retrying in %.1fs", exc, backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
                    self._ensure_groups()     # the stream was deleted: recreate the groups
            except Exception:                  # a bug must not end the engine's command API
                log.exception("commands: reading failed; retrying in %.1fs", backoff)
                gevent.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def read_once(self) -> int:
        if self.cooperative:
            replies = self.reader.xreadgroup(GROUP, self.engine_id, {s: ">" for s in self.streams},
                                             count=self.batch, block=self.block_ms)
        else:
            # Sockets not patched by gevent (a library user, the tests): a blocking read would
            # hold the hub, so poll without BLOCK and sleep cooperatively in between.
            replies = self.reader.xreadgroup(GROUP, self.engine_id, {s: ">" for s in self.streams},
                                             count=self.batch)
            if not replies:
                gevent.sleep(self.block_ms / 1000)
        n = 0
        for stream, entries in replies or []:
            for entry_id, fields in entries:
                self.pool.spawn(self.handle_safely, _text(stream), _text(entry_id), _fields(fields))
                n += 1
        gevent.sleep(0)          # let the handlers just spawned start
        return n

    def claim_stale(self) -> int:
        """Take over commands another engine (or this one before a restart) left pending."""
        n = 0
        for stream in self.streams:
            _next, entries, *_ = self.reader.xautoclaim(stream, GROUP, self.engine_id, self.claim_idle_ms,
                                                       start_id="0-0", count=self.batch)
            for entry_id, fields in entries:
                entry_id, fields = _text(entry_id), _fields(fields)
                pending = self.redis.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
                deliveries = pending[0]["times_delivered"] if pending else 1
                self.counts["reclaimed"] += 1
                self.pool.spawn(self.handle_safely, stream, entry_id, fields or {}, deliveries)
                n += 1
        return n

    # -- one command --------------------------------------------------------------------------

    def handle_safely(self, stream: str, entry_id: str, fields: dict, deliveries: int = 1) -> None:
        try:
            self.handle(stream, entry_id, fields, deliveries)
        except redis.RedisError as exc:
            # Not acknowledged: the entry stays pending and is claimed again later.
            log.warning("command entry %s: Redis failed (%s); left pending", entry_id, exc)

    def handle(self, stream: str, entry_id: str, fields: dict, deliveries: int = 1) -> None:
        raw = fields.get("command")
        try:
            if raw is NOT_UTF8:
                raw = None
                raise WebApiError("malformed", "`command` is not UTF-8 text")
            command = parse_command(raw)
        except WebApiError as exc:
            if exc.command is not None:     # a sound envelope: answered where it asked, with its type
                self._reply(exc.command, exc.command.request_id, None, error=exc.to_dict())
            else:
                self._reply(None, best_request_id(raw), None, error=exc.to_dict(), entry_id=entry_id)
            self.redis.xack(stream, GROUP, entry_id)
            return
        key = REQUEST_KEY.format(request_id=command.request_id)
        stored = self.redis.get(key)
        if stored is not None:
            record = json.loads(stored)
            if record.get("state") == "done":  # written by this code only: well formed
                self.counts["duplicate"] += 1
                self.redis.xadd(command.reply_to or REPLIES_STREAM, {**record["reply"], "duplicate": "true"},
                                maxlen=REPLIES_MAXLEN, approximate=True)
                self.redis.xack(stream, GROUP, entry_id)
            # else: running elsewhere; left pending, retried after claim_idle_ms
            return
        if deliveries > self.max_deliveries:
            # Every earlier delivery ended without a reply (the engine died or the handler failed
            # unexpectedly): answer, so one poisonous command does not come back forever.
            self._finish(stream, entry_id, command, None,
                         {"code": "failed", "message": f"not completed in {deliveries - 1} deliveries"})
            return
        if stream == COMMANDS_STREAM and command.type in AGENT_COMMANDS and self._forward(command, raw):
            self.redis.xack(stream, GROUP, entry_id)
            return
        running = json.dumps({"state": "running", "engine": self.engine_id, "entry": entry_id})
        if not self.redis.set(key, running, nx=True, ex=self.running_lease_s):
            return
        try:
            result, error = self._execute(command), None
        except _Transient as exc:
            self.redis.delete(key)
            if deliveries < self.max_deliveries:
                self.counts["retry_later"] += 1
                log.warning("command %s (%s): %s; left pending for a retry", command.request_id, command.type, exc)
                return
            result, error = None, {"code": "unavailable", "message": f"gave up after {deliveries} attempts: {exc}"}
        except DialerError as exc:
            result, error = None, error_of(exc).to_dict()
        self._finish(stream, entry_id, command, result, error)

    def _finish(self, stream: str, entry_id: str, command: Command, result: dict | None, error: dict | None) -> None:
        """Reply, keep the reply for repeats, then acknowledge: in this order, so a crash in
        between leads to a repeat answered from the stored reply, never to a lost reply."""
        reply = self._reply(command, command.request_id, result, error=error)
        self.redis.set(REQUEST_KEY.format(request_id=command.request_id),
                       json.dumps({"state": "done", "reply": reply}), ex=self.request_ttl_s)
        self.redis.xack(stream, GROUP, entry_id)

    def _execute(self, command: Command) -> dict:
        subject = command.args.get("agent_id") or command.args.get("campaign") or command.args.get("name") or ""
        entry = self._locks.setdefault(subject, [gevent.lock.Semaphore(), 0])
        entry[1] += 1
        try:
            with entry[0]:       # one subject's commands take effect in the order they were read
                ctx = Context(self.engine, self._db(), self.store, self.redis)
                return self.handlers[command.type](ctx, command.args)
        except (StorageError, psycopg.OperationalError) as exc:
            raise _Transient(str(exc)) from exc
        except psycopg.Error as exc:
            raise WebApiError("failed", f"PostgreSQL: {exc}") from exc
        except ESLError as exc:
            raise WebApiError("failed", f"FreeSWITCH: {exc}") from exc
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(subject, None)

    def _forward(self, command: Command, raw: str) -> bool:
        """Hand an agent's command to the engine holding the agent (dialer:agents says which)."""
        agent = self.engine.agents.agents.get(command.args["agent_id"])
        if agent is not None and agent.state.value != "logged_out":
            return False
        from dialer.engine.engine import AGENTS_HASH     # here: engine.py starts this module
        entry = self.redis.hget(AGENTS_HASH, command.args["agent_id"])
        try:
            live = json.loads(entry) if entry else {}
        except ValueError:
            return False
        owner = live.get("engine") if isinstance(live, dict) else None
        if not owner or owner == self.engine_id or live.get("state") == "logged_out":
            return False
        self.redis.xadd(ENGINE_STREAM.format(engine=owner), {"command": raw, "forwarded_by": self.engine_id},
                        maxlen=REPLIES_MAXLEN, approximate=True)
        self.counts["forwarded"] += 1
        return True

    def _reply(self, command: Command | None, request_id: str | None, result: dict | None, *,
               error: dict | None = None, entry_id: str | None = None) -> dict[str, str]:
        reply = {"request_id": request_id or "", "type": command.type if command else "",
                 "status": "error" if error else "ok", "engine": self.engine_id, "at": f"{time.time():.3f}"}
        if error:
            reply["error"] = json.dumps(error)
        else:
            reply["result"] = json.dumps(result, default=str)
        if entry_id:
            reply["entry_id"] = entry_id          # correlates a reply to a document without a request id
        self.redis.xadd((command.reply_to if command else None) or REPLIES_STREAM, reply,
                        maxlen=REPLIES_MAXLEN, approximate=True)
        self.counts[reply["status"]] += 1
        return reply


def campaign_stats(engine) -> list[dict]:
    """Each campaign this engine runs: its live counters and agents by state."""
    out = []
    for runner in list(engine.runners.values()):
        stats = runner.stats
        agents = Counter(a.state.value for a in engine.agents.agents.values() if a.campaign == runner.name)
        out.append({"campaign": runner.name, "status": runner.status.value, "originated": stats.originated,
                    "answered": stats.answered,
                    "ringing": sum(1 for c in runner.calls.values() if c.answered is None),
                    "connected": sum(1 for c in runner.calls.values() if c.state.value == "bridged"),
                    "calls_last_minute": stats.calls_last_minute(), "outcomes": dict(stats.outcomes),
                    "amd": dict(stats.amd), "blocks": dict(stats.blocks), "agents": dict(agents),
                    "held": engine.held_reason(runner)})
    return out


class StatsPublisher:
    """`campaign_stats` events on dialer:events every second (the engine's own hashes hold the
    same figures as live counters)."""

    def __init__(self, engine, interval_s: float = STATS_INTERVAL_S) -> None:
        self.engine = engine
        self.interval_s = interval_s
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> "StatsPublisher":
        self._greenlet = gevent.spawn(self._run)
        return self

    def _run(self) -> None:
        while True:
            started = time.monotonic()
            for fields in campaign_stats(self.engine):
                self.engine.publish("campaign_stats", **fields)
            gevent.sleep(max(0.05, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=1)


class WebApi:
    """What the engine starts and stops: the command consumer and the statistics events."""

    def __init__(self, engine, **consumer_options) -> None:
        self.consumer = CommandConsumer(engine, **consumer_options)
        self.stats = StatsPublisher(engine)

    def start(self) -> "WebApi":
        self.consumer.start()
        self.stats.start()
        return self

    def stop(self) -> None:
        self.stats.stop()
        self.consumer.stop()


def start(engine, **consumer_options) -> WebApi:
    return WebApi(engine, **consumer_options).start()
