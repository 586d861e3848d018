"""The engine process: FreeSWITCH nodes, the AMD receiver, the compliance gate, and one runner
per campaign it serves; a supervisor loop picks up campaign changes from PostgreSQL, recovers
leads of engines that died, refuses to dial while the clock is off, and publishes live state to
Redis for `dialer status` and the web app."""
from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from datetime import datetime, timezone
from typing import Callable

import gevent
import gevent.queue
import psycopg
import redis

from amd.receiver import UnicastReceiver
from dialer import config, observability, storage
from dialer.campaigns import CampaignStatus
from dialer.compliance.attempts import REBUILD_WINDOW, ensure_counters_loaded
from dialer.compliance.gate import ComplianceGate
from dialer.compliance.records import opt_out_disposition
from dialer.engine.agents import Agent, AgentChange, AgentError, AgentRegistry, AgentState
from dialer.engine.audio_tap import ReceiverTap
from dialer.engine.gateways import Gateway
from dialer.engine.hooks import start_hook_server
from dialer.engine.spool import EndSpool
from dialer.engine.runner import CampaignRunner
from dialer.engine.store import EngineStore
from dialer.engine.switchboard import Switchboard
from dialer.errors import ConfigError, DialerError, StorageError
from dialer.webapi import consumer as webapi
from dialer.rediskeys import AGENTS_HASH, CAMPAIGN_HASH, EVENTS_STREAM
from esl.errors import ESLError, JobFailed

log = logging.getLogger(__name__)

MAX_CLOCK_SKEW_S = 2.0
AGENT_CHANGES_QUEUE = 10_000     # agent state changes waiting for their writer
AGENTS_REPUBLISH_S = 10.0        # dialer:agents written again (after a Redis restart it is empty)
REPUBLISH_AGENTS = "republish"   # the agent writer's order to write every agent again
GATE_HOLD_MIN_S = 2.0            # dialing held after a compliance store failed, doubling ...
GATE_HOLD_MAX_S = 30.0           # ... up to this
EVENTS_MAXLEN = 100_000
SUPERVISE_S = 1.0
ABANDON_WARN_RATE = 0.025        # warn operators from 2.5%: the limit is 3% (47 CFR 64.1200(a)(7))
ABANDON_WARN_MIN_LIVE = 20       # below this many live answers a rate says little
# Dispositions by which the called person asked not to be called again.
OPT_OUT_DISPOSITIONS = frozenset({"DNC", "OPT_OUT", "DO_NOT_CALL"})


@dataclass(frozen=True)
class EngineConfig:
    engine_id: str
    database_url: str
    redis_url: str
    nodes: list[config.FreeswitchNode]
    amd_listen: tuple[str, int] = ("127.0.0.1", 0)
    unicast_ports: range = range(20000, 30000)
    gateway_endpoint: str = "sofia/gateway/{gateway}/{number}"
    hook_listen: tuple[str, int] | None = ("127.0.0.1", 8084)   # the dialplan's `socket` target
    metrics_listen: tuple[str, int] | None = ("127.0.0.1", 9464)  # /metrics, /healthz, /readyz
    web_api: bool = True                                           # consume the web app's commands
    spool_dir: Path = Path(os.environ.get("DIALER_SPOOL_DIR", Path(__file__).resolve().parents[2] / ".data" / "spool"))

    @classmethod
    def from_env(cls, nodes: list[config.FreeswitchNode]) -> "EngineConfig":
        ports = os.environ.get("DIALER_UNICAST_PORTS", "20000-29999")
        try:
            low, high = (int(p) for p in ports.split("-"))
        except ValueError:
            raise ConfigError(f"DIALER_UNICAST_PORTS must be LOW-HIGH, not {ports!r}") from None
        host, _, port = os.environ.get("DIALER_AMD_LISTEN", "127.0.0.1:0").rpartition(":")
        hook_host, _, hook_port = os.environ.get("DIALER_HOOK_LISTEN", "127.0.0.1:8084").rpartition(":")
        return cls(engine_id=os.environ.get("DIALER_ENGINE_ID") or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
                   database_url=config.database_url(), redis_url=config.redis_url(), nodes=nodes,
                   amd_listen=(host or "127.0.0.1", int(port or 0)), unicast_ports=range(low, high + 1),
                   hook_listen=(hook_host or "127.0.0.1", int(hook_port or 8084)),
                   metrics_listen=observability.parse_listen(
                       os.environ.get("DIALER_METRICS_LISTEN", observability.DEFAULT_LISTEN)))


class Engine:
    def __init__(self, cfg: EngineConfig, gate: ComplianceGate,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.cfg = cfg
        # The wall clock the compliance gate judges calling hours by (tests pin it).
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.engine_id = cfg.engine_id
        self.store = EngineStore(cfg.database_url, cfg.engine_id)
        self.gate = gate
        self.agents = AgentRegistry()
        self.agents.listeners.append(self._agent_changed)
        self.switchboard = Switchboard(cfg.nodes, on_reconcile=self._reconcile)
        self.receiver = UnicastReceiver(cfg.amd_listen)
        self.redis = storage.connect_redis(cfg.redis_url, timeout_s=1.0, retries=1)
        # Every node streams from its own address, on ports of the block this engine leases.
        self.amd = ReceiverTap(self.receiver, self.switchboard.addresses, cfg.unicast_ports,
                               redis_client=self.redis, owner=cfg.engine_id)
        self.runners: dict[int, CampaignRunner] = {}
        self.spool = EndSpool(cfg.spool_dir / f"{cfg.engine_id}.jsonl")
        self._abandon_warned: dict[int, float] = {}
        self._refused_settings: dict[int, int] = {}   # campaign id -> settings version refused
        self.last_supervised = time.monotonic()      # the end of the last full supervision pass
        self._agents_republished = time.monotonic()
        self.owned: set[int] = set()      # campaigns whose ownership lease this engine holds
        self.clock_ok = True
        self.publish_failures = 0
        self.gate_held_until = 0.0        # monotonic time until which no campaign dials
        self.gate_down_reasons: list[str] = []
        self._gate_backoff_s = 0.0
        self._counter_check: gevent.Greenlet | None = None
        self._agent_changes: gevent.queue.JoinableQueue = gevent.queue.JoinableQueue(maxsize=AGENT_CHANGES_QUEUE)
        self._agent_writer = gevent.spawn(self._write_agent_changes)
        self._counter_error_logged_at = -1e9
        self._supervisor: gevent.Greenlet | None = None
        self._halted = False
        self.hooks = None                 # the outbound socket server for dialplan hooks
        self.webapi = None                # the Redis command consumer
        self.ops = None                   # the metrics and health endpoint

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, connect_timeout: float = 10.0) -> "Engine":
        """Start every part. A store that does not answer (Redis, FreeSWITCH) does not stop the
        start: the engine runs fail-closed (no call: the gate refuses, readiness says why) and
        retries, as for an outage later on (QA7 ops 1); PostgreSQL down still stops it (its
        first supervision pass raises a DialerError the CLI prints)."""
        self.receiver.start()
        if self.cfg.hook_listen is not None:
            self.hooks = start_hook_server(self, *self.cfg.hook_listen)
        # The operational surface first: while the nodes are awaited, /healthz and /readyz answer
        # 503 with the reason instead of refusing connections (QA7 ops 2).
        self.ops = observability.start(self, self.cfg.metrics_listen) if self.cfg.metrics_listen else None
        try:
            self.switchboard.start()
            if not self.switchboard.wait_connected(connect_timeout):
                log.warning("engine %s: not every FreeSWITCH node is connected yet", self.engine_id)
            self._rebuild_counters()          # before any campaign can ask the gate
            self._supervise_once()
            self._supervisor = gevent.spawn(self._supervise)
            # The web app's commands (Redis streams); with Redis down it retries in its own loop.
            self.webapi = webapi.start(self) if self.cfg.web_api else None
        except BaseException:
            if self.ops is not None:          # a failed start leaves no listener behind
                self.ops.stop()
                self.ops = None
            raise
        return self

    def stop(self, drain_timeout: float = 30.0) -> None:
        """Stop originating, let calls in flight end, give claimed leads back, disconnect."""
        # No new commands first: one not yet taken stays pending for another engine.
        if self.webapi is not None:
            self.webapi.stop()
        if self.ops is not None:
            self.ops.stop()
        for runner in self.runners.values():
            runner.draining = True
        deadline = time.monotonic() + drain_timeout
        while any(r.calls for r in self.runners.values()) and time.monotonic() < deadline:
            gevent.sleep(0.1)
        for runner in self.runners.values():
            # Flows still running after the deadline are cut: their calls are hung up first.
            for call in list(runner.calls.values()):
                self.switchboard.try_api(call.node, f"uuid_kill {call.uuid}")
            runner.flows.join(timeout=5)
        self._halted = True
        if self._counter_check is not None:
            self._counter_check.kill(block=True, timeout=2)    # a rebuild gives its lock back
        if self._supervisor is not None:
            self._supervisor.join(SUPERVISE_S * 5)
            if not self._supervisor.dead:
                self._supervisor.kill(block=True, timeout=1)
        for runner in self.runners.values():
            runner.halt()
        try:
            self.store.release_claims()
        except DialerError as exc:
            log.error("engine %s: claims not released: %s", self.engine_id, exc)
        self.logout_all_agents(timeout=5.0)
        # Event handlers write to the store: it closes only after the last one has run.
        self.switchboard.stop()
        try:
            self._agent_changes.put(None, timeout=5)   # the writer records what is queued, then ends
            self._agent_writer.join(10)
        except gevent.queue.Full:
            log.error("engine %s: agent state changes still queued at stop were not recorded", self.engine_id)
        self._agent_writer.kill(block=True, timeout=1)
        if self.hooks is not None:
            self.hooks.stop()
        self.receiver.stop()
        self.amd.release_lease()
        self.store.close()
        # this engine's live counters go now, not 30 s later: `dialer status` would show its
        # campaigns running (the expiry stays for an engine that dies without stopping)
        keys = [CAMPAIGN_HASH.format(campaign=r.name, engine=self.engine_id) for r in self.runners.values()]
        try:
            if keys:
                self.redis.delete(*keys)
        except redis.RedisError as exc:
            log.warning("engine %s: live counters not removed: %s", self.engine_id, exc)

    def may_dial(self) -> bool:
        return (self.clock_ok and time.monotonic() >= self.gate_held_until and self.amd.block is not None
                and self.switchboard.pick_node() is not None)

    # -- the compliance gate's stores ---------------------------------------------------------

    @property
    def gate_probing(self) -> bool:
        """A compliance store failed lately: one lead at a time asks whether it is back."""
        return self._gate_backoff_s > 0

    def gate_unavailable(self, reasons: list[str]) -> None:
        """A decision failed closed because a store is down: hold every campaign's dialing for a
        while (doubling up to GATE_HOLD_MAX_S) instead of claiming lead after lead to refuse."""
        now = time.monotonic()
        if now < self.gate_held_until:
            return              # another decision of the same tick: the hold runs already
        first = self._gate_backoff_s == 0
        self._gate_backoff_s = min(GATE_HOLD_MAX_S, max(GATE_HOLD_MIN_S, 2 * self._gate_backoff_s))
        self.gate_held_until = now + self._gate_backoff_s
        self.gate_down_reasons = reasons
        if first:
            log.error("engine %s: compliance store unavailable (%s): dialing held, leads kept",
                      self.engine_id, ", ".join(reasons))
            self.publish("compliance_unavailable", reasons=reasons)

    def gate_answered(self) -> None:
        if self._gate_backoff_s:
            log.warning("engine %s: compliance stores answer again: dialing resumes", self.engine_id)
            self.publish("compliance_available")
        self._gate_backoff_s = 0.0
        self.gate_held_until = 0.0
        self.gate_down_reasons = []

    def _lease_ports(self) -> None:
        """Renew this engine's block of AMD ports (engines sharing a node never ask it for the
        same port); while Redis does not answer, the block in use is kept."""
        try:
            leased = self.amd.lease()
        except DialerError as exc:
            log.warning("engine %s: %s", self.engine_id, exc)
            return
        if not leased and self.amd.block is None:
            log.error("engine %s: every block of DIALER_UNICAST_PORTS is leased by other engines:"
                      " no call until one is free (widen the range)", self.engine_id)

    def _ensure_counters(self) -> None:
        """After a Redis restart or flush, rebuild the frequency counters from PostgreSQL (one
        engine does it; the gate refuses calls until it is done). Checked in its own greenlet:
        a Redis that does not answer must not hold up the heartbeat."""
        if self._counter_check is None or self._counter_check.dead:
            self._counter_check = gevent.spawn(self._rebuild_counters)

    def _rebuild_counters(self) -> None:
        started = time.monotonic()
        try:
            if self.gate.counters.loaded() is not None:
                return
            with storage.connect_db(self.cfg.database_url) as conn:
                # An empty Redis is alarming only when PostgreSQL holds placed calls it should
                # count: a first start (or the demo's fresh Redis) has nothing to lose (QA7 fsconf F6).
                lost = self._attempts_to_replay(conn)
                if lost:
                    log.error("engine %s: the frequency counters hold no record (Redis restarted or was flushed):"
                              " rebuilding them from PostgreSQL", self.engine_id)
                else:
                    log.info("engine %s: the frequency counters are empty and PostgreSQL holds no placed call"
                             " of the last %d days: starting them empty", self.engine_id, REBUILD_WINDOW.days)
                replayed = ensure_counters_loaded(conn, self.gate, self.clock(), self.engine_id)
        except DialerError as exc:
            # tried again every second; said once a minute
            if started - self._counter_error_logged_at >= 60:
                self._counter_error_logged_at = started
                log.error("engine %s: frequency counters not checked or rebuilt (tried again every second): %s",
                          self.engine_id, exc)
            return
        if replayed is not None:
            log.log(logging.WARNING if replayed else logging.INFO,
                    "engine %s: frequency counters rebuilt from %d placed calls in %.1f s",
                    self.engine_id, replayed, time.monotonic() - started)
            self.publish("counters_rebuilt", attempts=replayed)

    def _attempts_to_replay(self, conn) -> bool:
        """Whether PostgreSQL holds placed calls the rebuild would replay (the longest window)."""
        try:
            (found,) = conn.execute("SELECT EXISTS (SELECT 1 FROM compliance_call_attempts WHERE attempted_at > %s)",
                                    (self.clock() - REBUILD_WINDOW,)).fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"cannot read call attempts: {exc}") from exc
        conn.rollback()         # the rebuild opens its own transaction
        return bool(found)

    # -- supervision --------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._halted:
            gevent.sleep(SUPERVISE_S)
            if self._halted:
                return
            try:
                self._supervise_once()
            except DialerError as exc:
                log.warning("engine %s: supervision: %s", self.engine_id, exc)
            except Exception:     # noqa: BLE001 - a bug must not end supervision (heartbeat, leases)
                log.exception("engine %s: supervision failed; tried again in a second", self.engine_id)

    def _supervise_once(self) -> None:
        self._ensure_counters()
        self._lease_ports()
        skew = self.store.db_clock_skew()
        if self.spool.pending():
            self.spool.replay(self.store, self._settings_of)
        was_ok, self.clock_ok = self.clock_ok, abs(skew) <= MAX_CLOCK_SKEW_S
        if was_ok and not self.clock_ok:
            log.error("engine %s: clock differs from the database's by %.1fs: no calls", self.engine_id, skew)
        self.store.heartbeat(socket.gethostname())
        self.store.renew_leases()
        for agent_id, leg in self.store.log_out_agents_of_dead_engines():
            log.warning("agent %s logged out: its engine stopped answering", agent_id)
            if leg:     # which node holds it is not recorded: the others answer "no such channel"
                for name, client in self.switchboard.clients.items():
                    if client.connected:
                        self.switchboard.try_api(name, f"uuid_kill {leg}")
            self._publish_agent(agent_id, {"state": "logged_out", "campaign": None, "since": round(time.time(), 3),
                                           "engine": None, "reason": "engine_lost"})
        for orphan_uuid, node, campaign, outcome in self.store.recover_expired_leases():
            # A dead engine's call may still be up: hang it up before its lead can be redialed.
            for name in ([node] if node in self.switchboard.clients else list(self.switchboard.clients)):
                if self.switchboard.clients[name].connected:
                    self.switchboard.try_api(name, f"uuid_kill {orphan_uuid}")
            # its engine cannot say so any more: a web app's list of live calls would keep it
            self.publish("call_ended", campaign=campaign, uuid=orphan_uuid, outcome=outcome, detail="engine_lost")
        rows = {row.id: row for row in self.store.campaigns()}
        for campaign_id, row in rows.items():
            runner = previous = self.runners.get(campaign_id)
            if runner is not None and runner.crashed:
                log.error("campaign %s: runner died; restarting it", runner.name)
                runner = None
            if (runner is not None and runner.status is CampaignStatus.STOPPED
                    and row.status != CampaignStatus.STOPPED.value):
                runner = None        # started again after its stop completed: its loop has ended
            if (runner is not None and runner.row.settings_version != row.settings_version
                    and not row.settings.start_problems()):
                # new settings apply to the next call at once; calls in flight keep theirs (a
                # busy campaign always has calls in flight: waiting for none never ended)
                try:
                    self.amd.params[row.name] = row.settings.amd_params()
                    runner.reload(row)
                except Exception:  # noqa: BLE001 - one campaign's settings never stop supervision
                    if self._refused_settings.get(row.id) != row.settings_version:
                        self._refused_settings[row.id] = row.settings_version
                        log.exception("campaign %s: settings version %d not applied; the previous ones stay",
                                      row.name, row.settings_version)
                runner.status = CampaignStatus(row.status)
                continue
            if runner is None or runner.row.settings_version != row.settings_version:
                if runner is not None and runner.calls:
                    runner.status = CampaignStatus(row.status)   # settings that cannot run: see below
                    continue
                if previous is not None:
                    previous.halt()
                    del self.runners[campaign_id]
                # the live counters go on: a restart or a settings reload is not a new campaign
                started = self._start_runner(row, previous.stats if previous is not None else None)
                if started is not None:
                    self.runners[campaign_id] = started
            else:
                if runner.status is not CampaignStatus.STOPPED:
                    runner.status = CampaignStatus(row.status)
        now = self.clock()
        self.owned = {campaign_id for campaign_id in rows if self.store.hold_campaign(campaign_id)}
        for campaign_id in self.owned:
            if rows[campaign_id].status == CampaignStatus.RUNNING.value:
                self.store.refresh_windows(campaign_id, self._zones_of, now)
        for campaign_id, runner in list(self.runners.items()):
            if campaign_id not in rows and not runner.calls:
                runner.halt()
                del self.runners[campaign_id]
        self._publish_stats()
        self.last_supervised = time.monotonic()

    def _start_runner(self, row, stats) -> CampaignRunner | None:
        """A runner for the campaign, or None (logged once per settings version) when its
        settings cannot run: one campaign's settings never stop the engine or its other campaigns."""
        problems = row.settings.start_problems()
        try:
            if not problems:
                self.amd.params[row.name] = row.settings.amd_params()
                return CampaignRunner(self, row, stats=stats).start()
        except DialerError as exc:
            problems = [str(exc)]
        except Exception as exc:  # noqa: BLE001 - a bug met on one campaign's settings
            log.exception("campaign %s: runner not started", row.name)
            problems = [f"{type(exc).__name__}: {exc}"]
        if self._refused_settings.get(row.id) != row.settings_version:
            self._refused_settings[row.id] = row.settings_version
            log.error("campaign %s: not served by this engine until its settings are fixed: %s",
                      row.name, "; ".join(problems))
            self.publish("campaign_not_served", campaign=row.name, problems=problems)
        return None

    def held_reason(self, runner: CampaignRunner) -> str:
        """Why this engine places no call for a running campaign now ("" when nothing holds it),
        for `dialer status`."""
        if runner.status is not CampaignStatus.RUNNING:
            return ""
        if self.gate_probing:
            return "compliance store unavailable (" + ", ".join(self.gate_down_reasons) + ")"
        if self.amd.block is None:
            return "no block of AMD ports free (DIALER_UNICAST_PORTS)"
        if not self.clock_ok:
            return "clock differs from the database's by more than 2 s"
        if self.node_for_calls(runner.name) is None:
            return "no FreeSWITCH node reachable for its agents"
        return ""

    def _settings_of(self, campaign_id: int):
        runner = self.runners.get(campaign_id)
        if runner is not None:
            return runner.settings
        rows = {row.id: row for row in self.store.campaigns(("draft", "running", "paused", "stopping", "stopped"))}
        return rows[campaign_id].settings

    def _warn_abandon(self, runner: CampaignRunner, account: dict[str, int]) -> None:
        """Tell operators (event, log; `dialer status` shows it too) when a campaign's abandon
        rate nears the 3% limit, at most once a minute per campaign."""
        live, abandoned = account["window_live"], account["window_abandoned"]
        day_live, day_abandoned = account["day_live"], account["day_abandoned"]
        rates = [a / n for a, n in ((abandoned, live), (day_abandoned, day_live)) if n >= ABANDON_WARN_MIN_LIVE]
        if not rates or max(rates) < ABANDON_WARN_RATE:
            return
        now = time.monotonic()
        if now - self._abandon_warned.get(runner.campaign_id, -1e9) < 60:
            return
        self._abandon_warned[runner.campaign_id] = now
        log.warning("campaign %s: abandon rate %.2f%% %s the 3%% limit (30 days %d/%d, today %d/%d)",
                    runner.name, 100 * max(rates), "is over" if max(rates) > 0.03 else "nears",
                    abandoned, live, day_abandoned, day_live)
        self.publish("abandon_warning", campaign=runner.name, rate=round(max(rates), 4),
                     window_live=live, window_abandoned=abandoned, day_live=day_live, day_abandoned=day_abandoned)

    def _zones_of(self, phone: str) -> tuple[str, ...]:
        try:
            return tuple(self.gate.geo.facts(phone).zones)
        except DialerError:
            return ()

    def _reconcile(self, node: str, rows: list[dict[str, str]]) -> None:
        """After a (re)connect: calls we follow that the switch no longer has ended while we
        were away; their flows are told so their attempts are closed."""
        live = {row.get("uuid") for row in rows}
        for runner in self.runners.values():
            for call in list(runner.calls.values()):
                if call.node == node and call.uuid not in live and call.answered is not None:
                    log.warning("call %s ended while %s was unreachable", call.uuid, node)
                    self.switchboard.deliver_lost(call.uuid)
        for agent in self.agents.agents.values():
            # only this node's list says anything about a leg (another node's agents are not in it)
            if (agent.node == node and agent.leg_uuid and agent.leg_uuid not in live
                    and agent.state is not AgentState.LOGGED_OUT):
                agent.leg_uuid = None

    # -- agents -------------------------------------------------------------------------------

    def login_agent(self, agent_id: str, endpoint: str, campaign: str, timeout: float = 30.0) -> Agent:
        """Call the agent's phone and keep the leg up, parked between calls (park_after_bridge)."""
        agent = self.agents.agents.get(agent_id) or self.agents.add(Agent(agent_id, endpoint, campaign))
        agent.campaign, agent.endpoint = campaign, endpoint
        # With the campaign's other agents (its calls go there), else on the node with the
        # fewest calls and agents
        node = (self.switchboard.pick_node(among=self.agents.nodes_of(campaign))
                or self.switchboard.pick_node(load=self.agents.legs_by_node()))
        if node is None:
            raise ESLError("no FreeSWITCH node connected")
        leg = str(uuid.uuid4())
        job = self.switchboard.originate(node, leg, endpoint, {
            "ignore_early_media": "true", "park_after_bridge": "true", "hangup_after_bridge": "false",
            "dialer_agent": agent_id, "originate_timeout": "30"})
        try:
            job.wait(timeout)
        except JobFailed as exc:
            raise ESLError(f"agent {agent_id}: phone did not answer: {exc.result.strip()}") from exc
        agent.leg_uuid, agent.node = leg, node
        self.switchboard.watch(leg, lambda event, a=agent: self._agent_leg_event(a, event))
        self.agents.transition(agent, AgentState.READY)
        return agent

    def hang_up_agent_leg(self, agent: Agent) -> None:
        """The leg's hangup event then logs the agent out (_agent_leg_event)."""
        if agent.leg_uuid and agent.node in self.switchboard.clients:
            self.switchboard.try_api(agent.node, f"uuid_kill {agent.leg_uuid}")

    def node_for_calls(self, campaign: str) -> str | None:
        """Where the campaign's next call goes: a node holding its agents, the one with the most
        of them ready (a call is bridged only to an agent on its own node); a campaign without
        agents (agentless, or none logged in here) to the least busy node. None when its agents'
        nodes are all unreachable: a call elsewhere would find no agent it can be bridged to."""
        nodes = self.agents.nodes_of(campaign)
        if not nodes:
            return self.switchboard.pick_node()
        connected = {n: ready for n, ready in nodes.items() if self.switchboard.clients[n].connected}
        if not connected:
            return None
        most = max(connected.values())
        return self.switchboard.pick_node(among={n for n, ready in connected.items() if ready == most})

    def logout_all_agents(self, timeout: float) -> None:
        """Hang up every agent's leg and wait until each hangup has been handled."""
        for agent in list(self.agents.agents.values()):
            if agent.state is not AgentState.LOGGED_OUT and agent.leg_uuid:
                self.hang_up_agent_leg(agent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
                a.leg_uuid for a in self.agents.agents.values() if a.state is not AgentState.LOGGED_OUT):
            gevent.sleep(0.05)

    def _agent_leg_event(self, agent: Agent, event) -> None:
        if event.name == "CHANNEL_HANGUP_COMPLETE":
            self.switchboard.unwatch(agent.leg_uuid or "")
            agent.leg_uuid = None
            # The phone hung up: the agent is logged out, after a wrap-up if a call was on.
            if agent.state is AgentState.ON_CALL:
                self.agents.transition(agent, AgentState.WRAP_UP)
            if agent.state is not AgentState.LOGGED_OUT:
                self.agents.transition(agent, AgentState.LOGGED_OUT)

    def disposition(self, agent_id: str, disposition: str, *, callback_at: datetime | None = None,
                    callback_to_agent: bool = False, then: AgentState = AgentState.READY,
                    reason: str | None = None) -> None:
        """The agent's disposition of the call just ended; ends wrap-up."""
        agent = self.agents.get(agent_id)
        if agent.state is not AgentState.WRAP_UP or not agent.call_uuid:
            raise AgentError(f"agent {agent_id} has no call to disposition")
        phone = self.store.set_disposition(agent.call_uuid, disposition, callback_at,
                                           agent_id if callback_to_agent else None)
        if phone and disposition.upper() in OPT_OUT_DISPOSITIONS:
            # The person asked not to be called again: the internal list, at once.
            opt_out_disposition(self.gate.records, phone, agent_id=agent_id, campaign_id=agent.campaign or "",
                                disposition=disposition)
            self.publish("opt_out", agent=agent_id, uuid=agent.call_uuid, source="agent_disposition")
        self.agents.transition(agent, then, reason=reason)

    def _agent_changed(self, agent: Agent, old: AgentState) -> None:
        """Queue a state change for the writer: a change happens inside a call's handover to an
        agent, which must never wait on PostgreSQL or Redis (a locked table held a person 37 s
        in silence); one writer keeps each agent's changes in order."""
        try:
            self._agent_changes.put_nowait(AgentChange.of(agent, old))
        except gevent.queue.Full:
            log.error("agent %s: state change to %s not recorded: writer queue full", agent.agent_id,
                      agent.state.value)

    def _write_agent_changes(self) -> None:
        """Record each change: PostgreSQL (agents, agent_state_log), the Redis live hash
        `dialer:agents`, and the event stream. Ends at the None that stop() queues."""
        while True:
            change = self._agent_changes.get()
            try:
                if change is None:
                    return
                if change is REPUBLISH_AGENTS:
                    self._republish_agents()
                    continue
                try:
                    self.store.record_agent_state(change, self.engine_id)
                except DialerError as exc:
                    log.warning("agent %s: state not recorded: %s", change.agent_id, exc)
                self._publish_agent(change.agent_id, {"state": change.state.value, "campaign": change.campaign,
                                                      "since": round(change.at, 3), "engine": self.engine_id,
                                                      "reason": change.pause_reason}, previous=change.previous.value)
            finally:
                self._agent_changes.task_done()

    def agent_changes_written(self, timeout: float) -> bool:
        """Wait until the writer has recorded every change queued so far (tests, shutdown)."""
        return bool(self._agent_changes.join(timeout))

    def _publish_agent(self, agent_id: str, live: dict, previous: str | None = None) -> None:
        try:
            self.redis.hset(AGENTS_HASH, agent_id, json.dumps(live))
        except redis.RedisError:
            self.publish_failures += 1
        self.publish("agent_state", agent=agent_id, campaign=live["campaign"], state=live["state"],
                     previous=previous, reason=live["reason"])

    # -- dialing ------------------------------------------------------------------------------

    def dial_string(self, gateway: Gateway, number: str) -> str:
        return gateway.dial_string(number)

    # -- Redis --------------------------------------------------------------------------------

    def publish(self, event_type: str, **fields) -> None:
        """An event on the capped Redis stream. Redis being down never stops a call."""
        payload = {"type": event_type, "engine": self.engine_id, "at": f"{time.time():.3f}",
                   **{k: json.dumps(v) if not isinstance(v, str) else v for k, v in fields.items() if v is not None}}
        try:
            self.redis.xadd(EVENTS_STREAM, payload, maxlen=EVENTS_MAXLEN, approximate=True)
        except redis.RedisError:
            self.publish_failures += 1

    def _republish_agents(self) -> None:
        """Write every agent of this engine to `dialer:agents` again: a Redis that restarted (or
        missed a write while it was away) lost them, and the web app and `dialer status` read
        them there."""
        now_wall, now = time.time(), time.monotonic()
        live = {a.agent_id: json.dumps({"state": a.state.value, "campaign": a.campaign,
                                        "since": round(now_wall - a.time_in_state(now), 3), "engine": self.engine_id,
                                        "reason": a.pause_reason})
                for a in self.agents.agents.values()}
        if not live:
            return
        try:
            self.redis.hset(AGENTS_HASH, mapping=live)
        except redis.RedisError:
            self.publish_failures += 1

    def _publish_stats(self) -> None:
        if time.monotonic() - self._agents_republished >= AGENTS_REPUBLISH_S:
            self._agents_republished = time.monotonic()
            try:        # through the writer: after every change queued before it, never over a newer one
                self._agent_changes.put_nowait(REPUBLISH_AGENTS)
            except gevent.queue.Full:
                pass
        for runner in self.runners.values():
            if runner.last_account is not None and runner.campaign_id in self.owned:
                self._warn_abandon(runner, runner.last_account)
            stats = runner.stats
            fields = {"status": runner.status.value, "originated": stats.originated, "answered": stats.answered,
                      "ringing": sum(1 for c in runner.calls.values() if c.answered is None),
                      "connected": sum(1 for c in runner.calls.values() if c.state.value == "bridged"),
                      "calls_last_minute": stats.calls_last_minute(),
                      "outcomes": json.dumps(stats.outcomes), "amd": json.dumps(stats.amd),
                      "blocks": json.dumps(stats.blocks), "updated": f"{time.time():.3f}",
                      "held": self.held_reason(runner)}
            key = CAMPAIGN_HASH.format(campaign=runner.name, engine=self.engine_id)
            try:
                self.redis.hset(key, mapping=fields)
                self.redis.expire(key, 30)
            except redis.RedisError:
                self.publish_failures += 1
