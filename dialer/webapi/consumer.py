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
- Order (QA6 finding 3): commands about one agent (or one campaign) go, as they are read and
  before any Redis round trip, into one queue per subject, ordered by their entry id in
  `dialer:commands` (a forwarded one carries it as `origin`), that one greenlet works through.
  Before carrying one out, the engine looks for earlier entries about the same subject that
  other engines hold pending (XPENDING + XRANGE): it waits until each has been carried out
  there, or forwarded here and queued (then it goes first). So commands about one subject take
  effect in the order they were written, with any number of engines. The wait for an entry of
  an engine that stopped answering ends after ORDER_WAIT_S (it is then claimed after
  claim_idle_ms like any other). Commands about no subject run side by side.
- A repeat of a request id that is still running (here or on another engine) waits for the
  original and is answered from its stored reply as soon as that is written.
- A command with `expires_at` (epoch seconds) that passed before its turn is answered `expired`
  and not carried out (the CLI sets it: an operator told "no engine answered" sees nothing
  happen later).
- Malformed documents, unknown types and bad args are answered with an error reply and never
  acted on. Transient store failures (PostgreSQL down) leave the entry pending for a retry; after
  `max_deliveries` attempts it is answered with an error and acknowledged.
"""
from __future__ import annotations

import json
import logging
import heapq
import itertools
import time
from collections import Counter

import gevent
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
ORDER_WAIT_S = 35.0          # waiting for an earlier command on another engine: a login rings up to 30 s
SEEN_ORIGINS = 10_000        # origins of entries queued here, remembered for the order check
# Commands about one agent run on the engine that holds the agent's phone leg.
AGENT_COMMANDS = frozenset({"agent.ready", "agent.pause", "agent.logout", "agent.disposition", "lead.preview",
                            "lead.skip", "call.dial", "call.manual"})


def id_key(entry_id: str | None) -> tuple:
    """A stream entry id as a sortable key; an entry without one sorts after every id."""
    try:
        ms, seq = (entry_id or "").split("-")
        return int(ms), int(seq)
    except ValueError:
        return (float("inf"), 0)


def ordering_key(fields: dict) -> str | None:
    """The subject whose commands must take effect in read order: the agent of an agent's command,
    else the campaign; None for a command about neither (or a document that does not parse,
    which is only answered). Cheap: no Redis, so it is taken in read order."""
    raw = fields.get("command")
    if not isinstance(raw, str):
        return None
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("args"), dict):
        return None
    args, kind = document["args"], document.get("type")
    if (kind in AGENT_COMMANDS or kind == "agent.login") and isinstance(args.get("agent_id"), str):
        return f"agent:{args['agent_id']}"
    campaign = args.get("campaign", args.get("name") if kind == "campaign.create" else None)
    return f"campaign:{campaign}" if isinstance(campaign, str) else None


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
        self._queues: dict[str, list] = {}                 # subject -> heap of (origin key, n, item)
        self._inflight: set[tuple[str, str]] = set()         # (stream, entry id) queued or running here
        self._arrival = itertools.count()
        self._seen_origins: dict[str, None] = {}             # dialer:commands ids queued here (insertion order)
        self._own_high_water = "0-0"                          # the last own-stream entry queued here
        self._gave_up: set[str] = set()                       # earlier entries no longer waited for
        self._to_start: list = []                             # workers to start once a batch is queued
        self._greenlet: gevent.Greenlet | None = None
        self._stopped = False
        self.counts: Counter[str] = Counter()            # replies by status, forwards, retries

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> "CommandConsumer":
        """Never fails for Redis (QA7 ops 1: a raw redis.ConnectionError from here ended
        `dialer run` with a traceback): the reading loop retries, as after an outage later on."""
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

    def _ensure_groups(self) -> bool:
        """Create the consumer group on both streams (an existing one is kept). False when Redis
        does not answer: the reading loop then gets NOGROUP once Redis is back and calls this
        again. It never raises, since it runs at start-up and inside the loop's error handler,
        where an exception would end `dialer run` or the command consumer."""
        for stream in self.streams:
            try:
                # From the stream's start: commands written before the first engine ran are served.
                self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" in str(exc):
                    continue
                log.warning("commands: consumer group on %s not created: %s; tried again", stream, exc)
                return False
            except redis.RedisError as exc:
                log.warning("commands: Redis: %s; the consumer groups are created once it answers", exc)
                return False
        return True

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
                self.dispatch(_text(stream), _text(entry_id), _fields(fields), start=False)
                n += 1
        self._start_workers()    # after the whole batch is queued: starting one may wait for the pool
        gevent.sleep(0)          # let the handlers just spawned start
        return n

    def dispatch(self, stream: str, entry_id: str, fields: dict, deliveries: int = 1, *, start: bool = True) -> None:
        """Queue an entry with the others about its subject, or run it at once when it has none.
        Called in read order; no I/O and no switch before the entry is queued."""
        item = (stream, entry_id, fields, deliveries)
        self._inflight.add((stream, entry_id))
        origin = entry_id if stream == COMMANDS_STREAM else fields.get("origin")
        if isinstance(origin, str):
            self._seen_origins[origin] = None
            if len(self._seen_origins) > SEEN_ORIGINS:
                del self._seen_origins[next(iter(self._seen_origins))]
        if stream == self.own_stream and id_key(entry_id) > id_key(self._own_high_water):
            self._own_high_water = entry_id
        key = ordering_key(fields)
        if key is None:
            self._to_start.append((self._handle_item, item))
        else:
            queue = self._queues.get(key)
            entry = (id_key(origin if isinstance(origin, str) else None), next(self._arrival), item)
            if queue is not None:      # its worker is running: it takes this one in its turn
                heapq.heappush(queue, entry)
            else:
                self._queues[key] = queue = [entry]
                self._to_start.append((self._drain, key, queue))
        if start:
            self._start_workers()

    def _start_workers(self) -> None:
        while self._to_start:
            function, *args = self._to_start.pop(0)
            self.pool.spawn(function, *args)

    def _drain(self, key: str, queue: list) -> None:
        """One subject's commands, one after the other, earliest written first. The queue leaves
        the table only when it is empty, with no switch in between: a later entry starts a new
        worker, never a second one beside this."""
        try:
            while queue:
                if self._earlier_arrived(key, queue):
                    continue           # an earlier command was queued meanwhile: it goes first
                self._handle_item(heapq.heappop(queue)[2])
        finally:
            if self._queues.get(key) is queue:
                del self._queues[key]
            for _o, _n, (stream, entry_id, _fields, _d) in queue:    # killed (stop): left pending
                self._inflight.discard((stream, entry_id))

    def _earlier_arrived(self, key: str, queue: list) -> bool:
        """Wait until no earlier command about `key` is pending on another engine (read there and
        not yet carried out or forwarded here). True when one reached this queue meanwhile (it
        is now the head), False when the head may run."""
        head = queue[0]
        stream, entry_id, fields, _d = head[2]
        origin = entry_id if stream == COMMANDS_STREAM else fields.get("origin")
        if not isinstance(origin, str):
            return False
        try:
            waiting = self._pending_elsewhere(origin, key)
            deadline = time.monotonic() + ORDER_WAIT_S
            step = 0.005
            while waiting:
                if queue[0] is not head:
                    return True
                waiting = [p for p in waiting if not self._settled_elsewhere(p)]
                if not waiting:
                    break
                if time.monotonic() >= deadline:
                    log.warning("command %s about %s: earlier %s still pending on another engine after %.0f s;"
                                " carried out now", origin, key, ", ".join(waiting), ORDER_WAIT_S)
                    self._gave_up.update(waiting)
                    break
                gevent.sleep(step)
                step = min(step * 2, 0.1)
        except redis.RedisError as exc:
            log.warning("command %s: order check failed (%s); carried out in arrival order", origin, exc)
        return queue[0] is not head

    def _pending_elsewhere(self, origin: str, key: str) -> list[str]:
        """dialer:commands entries before `origin` about `key` that another engine holds pending."""
        pending = self.redis.xpending_range(COMMANDS_STREAM, GROUP, min="-", max=f"({origin}", count=1000)
        ids = [_text(p["message_id"]) for p in pending
               if _text(p["consumer"]) != self.engine_id and _text(p["message_id"]) not in self._gave_up]
        if not ids:
            return []
        pipe = self.reader.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(COMMANDS_STREAM, min=entry_id, max=entry_id)
        return [entry_id for entry_id, found in zip(ids, pipe.execute())
                if found and ordering_key(_fields(found[0][1])) == key]

    def _settled_elsewhere(self, entry_id: str) -> bool:
        """The other engine is done with it: queued here (forwarded), or acknowledged there and
        not waiting, forwarded, on this engine's own stream (the forward is written before the
        acknowledgement, so this order of checks misses none)."""
        if entry_id in self._seen_origins:
            return True
        if self.redis.xpending_range(COMMANDS_STREAM, GROUP, min=entry_id, max=entry_id, count=1):
            return False
        if entry_id in self._seen_origins:
            return True
        tail = self.reader.xrange(self.own_stream, min=f"({self._own_high_water}")
        return not any(_fields(fields).get("origin") == entry_id for _id, fields in tail)

    def _handle_item(self, item: tuple) -> None:
        stream, entry_id, fields, deliveries = item
        try:
            self.handle_safely(stream, entry_id, fields, deliveries)
        finally:
            self._inflight.discard((stream, entry_id))

    def claim_stale(self) -> int:
        """Take over commands another engine (or this one before a restart) left pending."""
        n = 0
        for stream in self.streams:
            _next, entries, *_ = self.reader.xautoclaim(stream, GROUP, self.engine_id, self.claim_idle_ms,
                                                       start_id="0-0", count=self.batch)
            for entry_id, fields in entries:
                entry_id, fields = _text(entry_id), _fields(fields)
                if (stream, entry_id) in self._inflight:
                    continue        # queued or running here (a long queue): not a second time
                pending = self.redis.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
                deliveries = pending[0]["times_delivered"] if pending else 1
                self.counts["reclaimed"] += 1
                self.dispatch(stream, entry_id, fields or {}, deliveries, start=False)
                n += 1
        self._start_workers()
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
        running = json.dumps({"state": "running", "engine": self.engine_id, "entry": entry_id})
        while True:
            record = self._settled(key)
            if record is None:
                return          # still running after its whole lease: left pending, claimed later
            if record.get("state") == "done":   # written by this code only: well formed
                self.counts["duplicate"] += 1
                self.redis.xadd(command.reply_to or REPLIES_STREAM, {**record["reply"], "duplicate": "true"},
                                maxlen=REPLIES_MAXLEN, approximate=True)
                self.redis.xack(stream, GROUP, entry_id)
                return
            if deliveries > self.max_deliveries:
                # Every earlier delivery ended without a reply (the engine died or the handler failed
                # unexpectedly): answer, so one poisonous command does not come back forever.
                self._finish(stream, entry_id, command, None,
                             {"code": "failed", "message": f"not completed in {deliveries - 1} deliveries"})
                return
            if command.expires_at is not None and time.time() > command.expires_at:
                # its sender gave up waiting: carrying it out now would surprise them. The reply
                # goes only to a reply stream that still exists (NOMKSTREAM), so a sender that
                # removed its own stream does not get it back without an expiry.
                self.counts["expired"] += 1
                self._finish(stream, entry_id, command, None,
                             {"code": "expired", "message": f"not carried out: its deadline (expires_at "
                                                            f"{command.expires_at:.3f}) passed before its turn"},
                             create_stream=False)
                return
            if stream == COMMANDS_STREAM and command.type in AGENT_COMMANDS and self._forward(command, raw, entry_id):
                self.redis.xack(stream, GROUP, entry_id)
                return
            if self.redis.set(key, running, nx=True, ex=self.running_lease_s):
                break
            # another delivery took it in between: wait for its reply as for any running one
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

    def _settled(self, key: str) -> dict | None:
        """The request's record once no delivery is running it: {} when there is none (run it),
        the done record (answer from it); None when it is still running after the running lease
        (with a margin), so the entry stays pending. A running original is usually on this engine
        or another one and ends in well under a second: its repeat is answered then (QA6: only
        after XAUTOCLAIM's 60 s)."""
        deadline = time.monotonic() + self.running_lease_s + 5
        step = 0.02
        while True:
            stored = self.redis.get(key)
            if stored is None:
                return {}
            record = json.loads(stored)
            if record.get("state") == "done":
                return record
            if time.monotonic() >= deadline:
                return None
            gevent.sleep(step)
            step = min(step * 2, 0.25)

    def _finish(self, stream: str, entry_id: str, command: Command, result: dict | None, error: dict | None,
                *, create_stream: bool = True) -> None:
        """Reply, keep the reply for repeats, then acknowledge: in this order, so a crash in
        between leads to a repeat answered from the stored reply, never to a lost reply."""
        reply = self._reply(command, command.request_id, result, error=error, create_stream=create_stream)
        self.redis.set(REQUEST_KEY.format(request_id=command.request_id),
                       json.dumps({"state": "done", "reply": reply}), ex=self.request_ttl_s)
        self.redis.xack(stream, GROUP, entry_id)

    def _execute(self, command: Command) -> dict:
        # (one subject's commands reach here one at a time, in read order: dispatch() queues them)
        try:
            ctx = Context(self.engine, self._db(), self.store, self.redis)
            return self.handlers[command.type](ctx, command.args)
        except (StorageError, psycopg.OperationalError) as exc:
            raise _Transient(str(exc)) from exc
        except psycopg.Error as exc:
            raise WebApiError("failed", f"PostgreSQL: {exc}") from exc
        except ESLError as exc:
            raise WebApiError("failed", f"FreeSWITCH: {exc}") from exc

    def _forward(self, command: Command, raw: str, origin: str) -> bool:
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
        # `origin`: the entry's id in dialer:commands, by which the holder orders it among the
        # agent's other commands
        self.redis.xadd(ENGINE_STREAM.format(engine=owner), {"command": raw, "forwarded_by": self.engine_id,
                                                             "origin": origin},
                        maxlen=REPLIES_MAXLEN, approximate=True)
        self.counts["forwarded"] += 1
        return True

    def _reply(self, command: Command | None, request_id: str | None, result: dict | None, *,
               error: dict | None = None, entry_id: str | None = None, create_stream: bool = True) -> dict[str, str]:
        reply = {"request_id": request_id or "", "type": command.type if command else "",
                 "status": "error" if error else "ok", "engine": self.engine_id, "at": f"{time.time():.3f}"}
        if error:
            reply["error"] = json.dumps(error)
        else:
            reply["result"] = json.dumps(result, default=str)
        if entry_id:
            reply["entry_id"] = entry_id          # correlates a reply to a document without a request id
        self.redis.xadd((command.reply_to if command else None) or REPLIES_STREAM, reply,
                        maxlen=REPLIES_MAXLEN, approximate=True, nomkstream=not create_stream)
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
