"""The engine's operational surface: Prometheus metrics, health and readiness over HTTP on a
loopback address, and JSON-lines logs with phone numbers masked.

- Metrics (prometheus-client, text exposition format 0.0.4) are refreshed once a second from the
  engine's own figures (each campaign runner's cumulative statistics, the agent registry, the
  FreeSWITCH clients' reconnect counters), so no call path waits on them. Counters only grow:
  a runner replaced after a settings change starts from zero and its figures are added anew.
- `/healthz` checks PostgreSQL, Redis, every FreeSWITCH node, the clock against the database's
  (the engine places no call beyond 2 s of skew) and that the engine's supervision loop ran in the
  last 10 s; 200 when all pass, 503 otherwise, JSON either
  way. `/readyz` is 200 only when the engine may dial now. `/metrics` is the exposition.
- The HTTP server is gevent's WSGI server: requests are greenlets, the hub stays free.
- Logs: one JSON object per line; every E.164 number in the line (message, arguments, extra
  fields, traceback) keeps its country code and last two digits: +12125550100 -> +1*******00.
"""
from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
import weakref
from datetime import datetime, timezone

import gevent
import phonenumbers
import psycopg
import redis
from gevent.pywsgi import WSGIServer
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from dialer import storage
from dialer.errors import ConfigError, DialerError

log = logging.getLogger(__name__)

DEFAULT_LISTEN = "127.0.0.1:9464"
SUPERVISION_STALE_S = 10.0       # the engine's supervision runs every second
REFRESH_S = 1.0
CHECK_TIMEOUT_S = 2.0
MAX_CLOCK_SKEW_S = 2.0        # the engine's own limit (dialer.engine.engine.MAX_CLOCK_SKEW_S)

# -- logs ---------------------------------------------------------------------------------------

_E164 = re.compile(r"\+(\d{8,15})\b")


def _country_code_length(digits: str) -> int:
    for length in (1, 2, 3):
        if int(digits[:length]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return length
    return 1


def mask_numbers(text: str) -> str:
    """Every E.164 number in `text` with its country code and last two digits kept."""
    def mask(match: re.Match) -> str:
        digits = match.group(1)
        keep = _country_code_length(digits)
        return "+" + digits[:keep] + "*" * (len(digits) - keep - 2) + digits[-2:]
    return _E164.sub(mask, text)


_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO 8601), level, logger, msg, the record's extra
    fields, exc (the traceback); phone numbers masked in all of it."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                 .replace("+00:00", "Z"), "level": record.levelname, "logger": record.name,
                 "msg": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return mask_numbers(json.dumps(entry, default=str))


def configure_logging(level: str | int = "INFO", stream=None) -> logging.Handler:
    """JSON lines on stderr (or `stream`) for the root logger, replacing its handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler


# -- metrics ------------------------------------------------------------------------------------

class EngineMetrics:
    """The engine's metrics in their own registry (several engines may share a process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls = Counter("dialer_calls", "Calls originated", ["campaign"], registry=r)
        self.answers = Counter("dialer_answers", "Calls answered (human or machine)", ["campaign"], registry=r)
        self.outcomes = Counter("dialer_call_outcomes", "Ended calls by outcome", ["campaign", "outcome"], registry=r)
        self.abandons = Counter("dialer_abandons", "Live answers with no agent within 2 s (safe harbor)",
                                ["campaign"], registry=r)
        self.amd = Counter("dialer_amd_results", "AMD decisions", ["campaign", "result"], registry=r)
        self.blocks = Counter("dialer_compliance_blocks", "Calls the compliance gate refused, by reason",
                              ["campaign", "reason"], registry=r)
        self.reconnects = Counter("dialer_esl_reconnects", "Event Socket reconnections", ["node"], registry=r)
        self.calls_in_flight = Gauge("dialer_calls_in_flight", "Calls ringing or up", ["campaign", "state"],
                                     registry=r)
        self.lines_per_agent = Gauge("dialer_pacing_lines_per_agent",
                                     "Pacing level: calls in flight per agent ready, on call or in wrap-up",
                                     ["campaign"], registry=r)
        self.calls_per_minute = Gauge("dialer_calls_last_minute", "Calls started in the last 60 s", ["campaign"],
                                      registry=r)
        self.agents = Gauge("dialer_agents", "Agents by state", ["campaign", "state"], registry=r)
        self.node_up = Gauge("dialer_freeswitch_up", "1 when the node's Event Socket is connected", ["node"],
                             registry=r)
        self.clock_ok = Gauge("dialer_clock_ok", "1 when the clock agrees with PostgreSQL's (calls allowed)",
                              registry=r)
        self.publish_failures = Gauge("dialer_redis_publish_failures", "Events and live state Redis refused",
                                      registry=r)
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # runner -> figures counted
        self._reconnects_seen: dict[str, int] = {}

    def refresh(self, engine) -> None:
        """Bring the metrics up to the engine's figures now."""
        for runner in list(engine.runners.values()):
            for counter in (self.calls, self.answers, self.abandons):
                counter.labels(runner.name)       # present at 0 from the start, so rate() works
            self._count_runner(runner)
            calls = list(runner.calls.values())
            ringing = sum(1 for c in calls if c.answered is None)
            self.calls_in_flight.labels(runner.name, "ringing").set(ringing)
            self.calls_in_flight.labels(runner.name, "answered").set(len(calls) - ringing)
            self.calls_per_minute.labels(runner.name).set(runner.stats.calls_last_minute())
            working = sum(1 for a in engine.agents.agents.values() if a.campaign == runner.name
                          and a.state.value in ("ready", "on_call", "wrap_up"))
            self.lines_per_agent.labels(runner.name).set(len(calls) / working if working else 0.0)
        by_state: dict[tuple[str, str], int] = {}
        for agent in list(engine.agents.agents.values()):
            key = (agent.campaign or "", agent.state.value)
            by_state[key] = by_state.get(key, 0) + 1
        self.agents.clear()          # states nobody is in any more disappear (no yield until refilled)
        for labels, n in by_state.items():
            self.agents.labels(*labels).set(n)
        for name, client in engine.switchboard.clients.items():
            self.node_up.labels(name).set(1 if client.connected else 0)
            seen = self._reconnects_seen.get(name, 0)
            if client.reconnects > seen:
                self.reconnects.labels(name).inc(client.reconnects - seen)
            self._reconnects_seen[name] = client.reconnects
        self.clock_ok.set(1 if engine.clock_ok else 0)
        self.publish_failures.set(engine.publish_failures)

    def _count_runner(self, runner) -> None:
        stats = runner.stats
        now = {("calls", ""): stats.originated, ("answers", ""): stats.answered}
        now.update({("outcomes", k): v for k, v in stats.outcomes.items()})
        now.update({("amd", k): v for k, v in stats.amd.items()})
        now.update({("blocks", k): v for k, v in stats.blocks.items()})
        seen = self._seen.setdefault(runner, {})
        for (kind, label), value in now.items():
            delta = value - seen.get((kind, label), 0)
            if delta <= 0:
                continue
            seen[(kind, label)] = value
            metric = getattr(self, kind)
            if label:
                metric.labels(runner.name, label).inc(delta)
                if kind == "outcomes" and label == "abandoned":
                    self.abandons.labels(runner.name).inc(delta)
            else:
                metric.labels(runner.name).inc(delta)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# -- health -------------------------------------------------------------------------------------

class HealthChecks:
    """Each check bounded by CHECK_TIMEOUT_S, on connections of its own."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._conn: psycopg.Connection | None = None
        self._redis = storage.connect_redis(engine.cfg.redis_url, timeout_s=CHECK_TIMEOUT_S, retries=0)

    def _db(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = storage.connect_db(self.engine.cfg.database_url, autocommit=True)
        return self._conn

    def _timed(self, check) -> dict:
        started = time.monotonic()
        try:
            with gevent.Timeout(CHECK_TIMEOUT_S, DialerError(f"no answer within {CHECK_TIMEOUT_S:.0f} s")):
                detail = check()
            ok = True
        except (DialerError, psycopg.Error, redis.RedisError) as exc:
            ok, detail = False, {"error": str(exc)}
        return {"ok": ok, "ms": round((time.monotonic() - started) * 1000, 1), **(detail or {})}

    def _postgres(self) -> dict:
        self._db().execute("SELECT 1").fetchone()
        return {}

    def _redis_check(self) -> dict:
        self._redis.ping()
        return {}

    def _clock(self) -> dict:
        before = datetime.now(timezone.utc)
        (db_now,) = self._db().execute("SELECT clock_timestamp()").fetchone()
        after = datetime.now(timezone.utc)
        skew = ((before + (after - before) / 2) - db_now).total_seconds()
        if abs(skew) > MAX_CLOCK_SKEW_S:
            raise DialerError(f"clock differs from PostgreSQL's by {skew:+.3f} s (limit {MAX_CLOCK_SKEW_S} s)")
        return {"skew_s": round(skew, 4)}

    def health(self) -> dict:
        nodes = {name: {"ok": client.connected, "reconnects": client.reconnects}
                 for name, client in self.engine.switchboard.clients.items()}
        since_s = time.monotonic() - self.engine.last_supervised
        checks = {"postgresql": self._timed(self._postgres), "redis": self._timed(self._redis_check),
                  "clock": self._timed(self._clock),
                  "freeswitch": {"ok": bool(nodes) and all(n["ok"] for n in nodes.values()), "nodes": nodes},
                  # the loop that heartbeats, renews leases and follows campaign changes
                  "supervision": {"ok": since_s <= SUPERVISION_STALE_S, "last_s_ago": round(since_s, 1)}}
        return {"ok": all(c["ok"] for c in checks.values()), "engine": self.engine.engine_id, "checks": checks}

    def ready(self) -> dict:
        may_dial = self.engine.may_dial()
        postgres = self._timed(self._postgres)
        held_s = max(0.0, self.engine.gate_held_until - time.monotonic())
        # between two holds of a compliance store outage may_dial is true: still not ready
        ok = may_dial and postgres["ok"] and not self.engine.gate_probing
        return {"ok": ok, "engine": self.engine.engine_id, "may_dial": may_dial,
                "postgresql": postgres,
                "compliance_stores": {"ok": not self.engine.gate_probing, "held_s": round(held_s, 1),
                                      "reasons": list(self.engine.gate_down_reasons)}}

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._redis.close()


# -- the server ---------------------------------------------------------------------------------

def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise ConfigError(f"DIALER_METRICS_LISTEN must be HOST:PORT, not {value!r}") from None


class Observability:
    """Metrics refresh loop and the HTTP endpoint of one engine."""

    def __init__(self, engine, listen: tuple[str, int] | None = None) -> None:
        self.engine = engine
        self.metrics = EngineMetrics()
        self.checks = HealthChecks(engine)
        self.listen = listen or parse_listen(os.environ.get("DIALER_METRICS_LISTEN", DEFAULT_LISTEN))
        self.server: WSGIServer | None = None
        self._loop: gevent.Greenlet | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address if self.server else self.listen

    def start(self) -> "Observability":
        self.metrics.refresh(self.engine)
        self.server = WSGIServer(self.listen, self.app, log=None, error_log=log)
        self.server.start()
        self._loop = gevent.spawn(self._refresh)
        log.info("metrics and health on http://%s:%d/", *self.server.address[:2])
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=True, timeout=1)
        if self.server is not None:
            self.server.stop(timeout=1)
        self.checks.close()

    def _refresh(self) -> None:
        while True:
            gevent.sleep(REFRESH_S)
            self.metrics.refresh(self.engine)

    def app(self, environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            self.metrics.refresh(self.engine)
            body, status, kind = self.metrics.exposition(), "200 OK", CONTENT_TYPE_LATEST
        elif path in ("/healthz", "/readyz"):
            report = self.checks.health() if path == "/healthz" else self.checks.ready()
            body = json.dumps(report).encode()
            status, kind = ("200 OK" if report["ok"] else "503 Service Unavailable"), "application/json"
        else:
            body, status, kind = b"not found: /metrics, /healthz, /readyz\n", "404 Not Found", "text/plain"
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]


def start(engine, listen: tuple[str, int] | None = None) -> Observability:
    return Observability(engine, listen).start()
