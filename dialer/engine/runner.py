"""One campaign on one engine: every tick, ask pacing how many calls to start, claim that many
leads, and for each ask the compliance gate immediately before its originate.

A blocked lead is requeued at the moment the gate says it becomes callable, kept and retried
when a compliance store is down or a list is missing (the engine then holds its dialing and
probes with one lead at a time), or closed with the reason when it never will be callable;
every decision is in the gate's audit. Pause stops new originates;
stop lets calls in flight finish, gives unclaimed leads back, then marks the campaign stopped.
"""
from __future__ import annotations

import collections
import itertools
import logging
import random
import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import gevent
import gevent.pool

from dialer.campaigns import WEEKDAYS, CallOutcome, CallerIdRotation, CampaignStatus
from dialer.compliance.model import Campaign as GateCampaign
from dialer.compliance.model import DATA_MISSING, STORE_DOWN, CallRequest, DialMode, LineType
from dialer.compliance.model import Lead as GateLead
from dialer.compliance.model import Outcome as GateOutcome
from dialer.engine.agents import AgentState
from dialer.engine.calls import Call, CallState
from amd.actions import MachineAction, NotSureAction
from dialer.engine.flow import CallFlow, FlowSettings
from dialer.engine.gateways import Gateway, GatewayPool
from dialer.engine.store import CampaignRow, ClaimedLead
from dialer.errors import DialerError, StorageError
from pacing.model import (AbandonAccount, CallOutcome as PacingOutcome, Limits, OutcomeStats,
                          PacingSnapshot)
from pacing.policies import make_pacer

log = logging.getLogger(__name__)

TICK_S = 0.5
DIAL_CONCURRENCY = 16        # leads of one tick decided and originated at once
STORE_DOWN_RETRY = timedelta(minutes=1)      # a lead refused because a compliance store is down
DATA_MISSING_RETRY = timedelta(hours=1)      # ... because a list or calendar is missing or stale

# A call that rang unanswered reached the dialed number: NO_ANSWER, which Reg F's 7-in-7 counts;
# only a busy signal or a failure (not in service, no route) did not connect (12 CFR 1006.14(b)(3)).
_GATE_OUTCOME = {CallOutcome.HUMAN: GateOutcome.CONVERSATION, CallOutcome.ABANDONED: GateOutcome.ABANDONED,
                 CallOutcome.MACHINE: GateOutcome.MACHINE, CallOutcome.BUSY: GateOutcome.NO_CONNECT,
                 CallOutcome.NO_ANSWER: GateOutcome.NO_ANSWER, CallOutcome.FAILED: GateOutcome.NO_CONNECT}
_PACING_OUTCOME = {CallOutcome.HUMAN: PacingOutcome.CONNECTED, CallOutcome.ABANDONED: PacingOutcome.CONNECTED,
                   CallOutcome.MACHINE: PacingOutcome.MACHINE, CallOutcome.BUSY: PacingOutcome.BUSY,
                   CallOutcome.NO_ANSWER: PacingOutcome.NO_ANSWER, CallOutcome.FAILED: PacingOutcome.BUSY}


class CampaignStats:
    """What `dialer status` and the web app show for a campaign on this engine."""

    def __init__(self) -> None:
        self.originated = 0
        self.answered = 0
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.amd: collections.Counter[str] = collections.Counter()
        self.blocks: collections.Counter[str] = collections.Counter()
        self.started_times: collections.deque[float] = collections.deque(maxlen=10_000)

    def calls_last_minute(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        return sum(1 for t in self.started_times if now - t <= 60)


class CampaignRunner:
    def __init__(self, engine, row: CampaignRow, stats: CampaignStats | None = None) -> None:
        self.engine = engine
        self.status = CampaignStatus(row.status)
        self.calls: dict[str, Call] = {}
        self.flows = gevent.pool.Group()      # one greenlet per call in flight, until its CDR is written
        self.stats = stats if stats is not None else CampaignStats()
        self._pending_outcomes: list[tuple[PacingOutcome, float]] = []
        self._pending_talk: list[float] = []
        self._started = time.monotonic()
        self._greenlet: gevent.Greenlet | None = None
        self.draining = False             # the engine is shutting down: no new originates
        self._halted = False
        self.last_account: dict[str, int] | None = None   # the abandon account of the last tick
        self.row = row
        self.settings = row.settings
        self.pacer = None
        self.pool = None
        self.reload(row)

    def reload(self, row: CampaignRow) -> None:
        """Take new settings for the calls placed from now on; calls in flight keep theirs (each
        holds its flow settings and its gateway). The pacer keeps what it learned unless its own
        settings changed."""
        old, self.row, self.settings = self.settings, row, row.settings
        if self.pacer is None or old.pacing_config() != self.settings.pacing_config():
            self.pacer = make_pacer(self.settings.pacing_config())
        if self.pool is None or old.gateways != self.settings.gateways:
            # A gateway kept by name is the same object with its new limits: it holds the count
            # of its channels in use, which the calls in flight give back to it.
            kept = {g.name: g for g in self.pool.gateways} if self.pool is not None else {}
            gateways = []
            for g in self.settings.gateways:
                gateway = kept.get(g.name) or Gateway(g.name)
                gateway.max_channels, gateway.calls_per_second = g.max_channels or 100, g.max_cps or 10.0
                gateways.append(gateway)
            self.pool = GatewayPool(gateways, redis_client=self.engine.redis)
        # never empty: a campaign without caller IDs is not started (CampaignSettings.start_problems)
        self._caller_ids = itertools.cycle(self.settings.caller_ids.pool)
        self.flow_settings = FlowSettings(
            ring_timeout_s=self.settings.ring_timeout_s,
            machine_action=MachineAction(self.settings.amd.action.value),
            notsure_action=NotSureAction.AS_HUMAN,
            safe_harbor_file=self.settings.safe_harbor_message or "ivr/safe_harbor.wav",
            agentless=self.settings.dial_mode is DialMode.AGENTLESS,
            voicemail_file=self.settings.amd.voicemail_message or "ivr/voicemail_message.wav")

    @property
    def campaign_id(self) -> int:
        return self.row.id

    @property
    def name(self) -> str:
        return self.row.name

    def start(self) -> "CampaignRunner":
        self._greenlet = gevent.spawn(self._run)
        return self

    @property
    def crashed(self) -> bool:
        """The loop ended without the campaign being stopped: a bug, logged by gevent."""
        return (self._greenlet is not None and self._greenlet.dead and not self._halted
                and self.status is not CampaignStatus.STOPPED)

    def halt(self, timeout: float = 5.0) -> None:
        """End the loop between ticks. Killing it inside a database call would leave the
        shared connection mid-query, so it is only the fallback after the timeout."""
        self._halted = True
        if self._greenlet is not None:
            self._greenlet.join(timeout)
            if not self._greenlet.dead:
                self._greenlet.kill(block=True, timeout=1)

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._halted:
            started = time.monotonic()
            try:
                self._tick()
            except DialerError as exc:
                # A store or switch failure: no call is placed this tick; the next one retries.
                log.warning("campaign %s: tick failed: %s", self.name, exc)
            if self.status is CampaignStatus.STOPPED:
                return
            gevent.sleep(max(0.05, TICK_S - (time.monotonic() - started)))

    def _tick(self) -> None:
        if self.status is CampaignStatus.STOPPING:
            if not self.calls:
                self.engine.store.release_claims(self.campaign_id)
                # The owner ends the stop, once no engine has a call of the campaign left.
                if (self.campaign_id in self.engine.owned
                        and self.engine.store.open_attempts(self.campaign_id) == 0):
                    self.engine.store.set_campaign_status(self.campaign_id, CampaignStatus.STOPPED.value)
                    self.status = CampaignStatus.STOPPED
            return
        if (self.status is not CampaignStatus.RUNNING or self.draining or not self.engine.may_dial()
                or self.engine.node_for_calls(self.name) is None):
            return
        if not self.settings.schedule.is_open(self.engine.clock().astimezone(self.settings.zone)):
            return
        decision = self.pacer.decide(self.snapshot())
        wanted = min(decision.calls_to_start, self.pool.free_channels, self.caps_left())
        if self.engine.gate_probing:
            wanted = min(wanted, 1)    # one lead asks whether the compliance stores are back
        if wanted <= 0:
            return
        # Scheduled callbacks come before new leads; one reserved for an agent is dialed only
        # while that agent is ready, and the call goes to that agent.
        ready = {a.agent_id for a in self.engine.agents.agents.values()
                 if a.campaign == self.name and a.state is AgentState.READY}
        leads = self.engine.store.claim_callbacks(self.campaign_id, wanted, ready)
        leads += self.engine.store.claim_leads(self.campaign_id, wanted - len(leads))
        # Each lead gets its own decision just before its own originate, several at a time so
        # that one slow database round trip does not hold up the tick's other calls.
        pool = gevent.pool.Pool(DIAL_CONCURRENCY)
        for lead in leads:
            pool.spawn(self._dial_or_requeue, lead)
        pool.join()

    def caps_left(self) -> int:
        """Attempts the campaign's daily and hourly caps still allow (campaign time zone)."""
        caps = self.settings.caps
        left = 1 << 30
        if caps.daily is None and caps.hourly is None:
            return left
        now = self.engine.clock()
        local = now.astimezone(self.settings.zone)
        # Attempt rows carry the database's time; the engine's clock (pinned in tests, shifted
        # in a demo run with --at) may differ from it by an offset.
        offset = now - datetime.now(timezone.utc)
        if caps.hourly is not None:
            hour = local.replace(minute=0, second=0, microsecond=0) - offset
            left = min(left, caps.hourly - self.engine.store.attempts_since(self.campaign_id, hour))
        if caps.daily is not None:
            day = local.replace(hour=0, minute=0, second=0, microsecond=0) - offset
            left = min(left, caps.daily - self.engine.store.attempts_since(self.campaign_id, day))
        return max(0, left)

    def shift(self) -> tuple[float, float]:
        """(seconds left, length) of the campaign's calling window open now, in its time zone:
        the pacer's shift (docs/pacing.md: today's pace after 15 minutes of it, stricter as it
        runs out, no call that could connect after it in its last 40 s). Without it the pacer
        saw an endless shift and spread an exhausted allowance over it (QA 7). (0, length) once
        the window has closed. A window ending at 24:00 ends at the local midnight."""
        local = self.engine.clock().astimezone(self.settings.zone)
        schedule = self.settings.schedule
        length = self.pacer.config.shift_length_s
        closes = schedule.closes_at(local)
        if closes is None:
            return 0.0, length
        opened = local
        for start, end in schedule.windows.get(WEEKDAYS[local.weekday()], ()):
            if start <= local.time() < end:
                opened = datetime.combine(local.date(), start, local.tzinfo)
        # in UTC: aware datetimes of one zone subtract as wall clocks, wrong across a DST change
        utc = timezone.utc
        left = (closes.astimezone(utc) - local.astimezone(utc)).total_seconds()
        return left, max((closes.astimezone(utc) - opened.astimezone(utc)).total_seconds(), left)

    def snapshot(self) -> PacingSnapshot:
        # the campaign's own calendar day, as `dialer status` counts it (QA 7)
        account = self.engine.store.abandon_account(self.campaign_id, zone=self.settings.zone)
        shift_left, shift_length = self.shift()
        if self.pacer.config.shift_length_s != shift_length:
            # the pacer projects today's pace over elapsed = shift length - time left
            self.pacer.config = replace(self.pacer.config, shift_length_s=shift_length)
        # the clock is read after the store's I/O: agents may change state while it runs
        now = time.monotonic()
        self.last_account = account
        outcomes, self._pending_outcomes = self._pending_outcomes, []
        talk, self._pending_talk = self._pending_talk, []
        # a call answered and still in AMD is as unresolved as a ringing one (the simulator the
        # pacer is tuned on keeps it "ringing" until the decision): left out, every tick dialed
        # again for the agent it may need (QA 6: four calls for one ready agent)
        ringing = [c.ring_age for c in self.calls.values()
                   if c.state in (CallState.ORIGINATING, CallState.ANALYZING)]
        waiting = sum(1 for c in self.calls.values() if c.state.value == "waiting_agent")
        return PacingSnapshot(
            now_s=now - self._started,
            agents=self.engine.agents.pacing_snapshot(
                self.name, now, reachable=lambda node: self.engine.switchboard.clients[node].connected),
            ringing_ages_s=ringing, waiting_calls=waiting,
            account=AbandonAccount(account["window_live"], account["window_abandoned"],
                                   account["day_live"], account["day_abandoned"]),
            limits=Limits(max_channels=self.pool.free_channels + len(self.calls),
                          max_cps=self.pool.calls_per_second),
            new_outcomes=OutcomeStats(tuple(o for o, _ in outcomes), tuple(a for _, a in outcomes),
                                      tuple(talk), ()),
            shift_remaining_s=shift_left)

    # -- one lead -----------------------------------------------------------------------------

    def decide(self, request: CallRequest):
        """The gate's decision; a store failure in it holds the engine's dialing."""
        decision = self.engine.gate.decide(request)
        down = STORE_DOWN.intersection(decision.reasons)
        if down:
            self.engine.gate_unavailable(sorted(down))
        else:
            self.engine.gate_answered()
        return decision

    def gate_request(self, lead: ClaimedLead, caller_id: str) -> CallRequest:
        s = self.settings
        return CallRequest(
            phone_e164=lead.phone_e164,
            campaign=GateCampaign(campaign_id=self.name, purpose=s.call_purpose, mode=s.dial_mode, voice=s.voice,
                                  caller_id=caller_id, seller=s.seller, subject=s.subject),
            now=self.engine.clock(),
            lead=GateLead(state=lead.state, zip_code=lead.zip, person_id=lead.person_id, debt_id=lead.debt_id,
                          line_type=LineType(lead.line_type)))

    def _caller_id(self, lead: ClaimedLead) -> str:
        pool = self.settings.caller_ids.pool
        rotation = self.settings.caller_ids.rotation
        if pool and rotation is CallerIdRotation.LOCAL_PRESENCE:
            local = [n for n in pool if n[:5] == lead.phone_e164[:5]]  # +1NPA
            if local:
                return local[lead.id % len(local)]
        if pool and rotation is CallerIdRotation.RANDOM:
            return random.choice(pool)
        if pool and rotation is CallerIdRotation.PER_LEAD:
            return pool[lead.id % len(pool)]
        return next(self._caller_ids)

    def refused(self, store, lead: ClaimedLead, decision, agent_id: str | None = None) -> None:
        """A lead the gate refused: counted, requeued or closed (_retry_at), published."""
        reason = "blocked:" + ",".join(decision.reasons)
        for code in decision.reasons:
            self.stats.blocks[code] += 1
        retry_at = self._retry_at(decision)
        if retry_at is not None:
            store.requeue(lead.id, retry_at, reason)
        else:
            store.close_lead(lead.id, reason)
        self.engine.publish("compliance_block", campaign=self.name, lead_id=lead.id, reasons=decision.reasons,
                            **({"agent": agent_id} if agent_id else {}))

    def _retry_at(self, decision) -> datetime | None:
        """When a blocked lead is tried again; None closes it (a rule that will not pass for it).

        Blocks that pass at a known time give that time. A store that is down, or a list that
        is missing or stale, says nothing about the lead: it is kept and retried (soon for a
        store, which also holds the engine's dialing; later for a list an operator must load).
        """
        if decision.next_allowed_at is not None:
            return decision.next_allowed_at
        codes = {b.code for b in decision.blocks if not b.timed}
        if not codes <= STORE_DOWN | DATA_MISSING:
            return None
        if codes & STORE_DOWN:
            return self.engine.clock() + STORE_DOWN_RETRY
        return self.engine.clock() + DATA_MISSING_RETRY

    def _dial_or_requeue(self, lead: ClaimedLead, tried: frozenset[str] = frozenset()) -> None:
        try:
            self._dial(lead, tried)
        except DialerError as exc:
            # A store or switch failure before the call started: the lead goes back (and if
            # even that fails, its claim lease runs out and any engine takes it again).
            log.warning("campaign %s: lead %s not dialed: %s", self.name, lead.id, exc)
            try:
                self.engine.store.requeue(lead.id, None, "engine_error")
            except DialerError:
                pass

    def _dial(self, lead: ClaimedLead, tried: frozenset[str] = frozenset()) -> None:
        """Decide, record and originate one call to the lead, on a gateway not in `tried`."""
        store = self.engine.store
        caller_id = self._caller_id(lead)
        request = self.gate_request(lead, caller_id)
        decision = self.decide(request)
        if not decision.allowed:
            self.refused(store, lead, decision)
            return
        try:
            gateway = self.pool.acquire(exclude=tried)
        except StorageError as exc:         # the shared calls-per-second budget is unreachable
            log.warning("campaign %s: %s", self.name, exc)
            gateway = None
        node = self.engine.node_for_calls(self.name)
        if gateway is None or node is None:
            if gateway is not None:
                self.pool.release(gateway)
            store.requeue(lead.id, None, "no_capacity")
            # The decision counted this call in the frequency caps: it was never placed.
            try:
                self.engine.gate.record_outcome(request, decision.decision_id, GateOutcome.NOT_PLACED,
                                                self.engine.clock())
            except DialerError as exc:
                log.warning("campaign %s: compliance counters not corrected: %s", self.name, exc)
            return
        call = Call(uuid=str(uuid.uuid4()), campaign=self.name, lead_id=lead.id, number=lead.phone_e164,
                    gateway=gateway.name, caller_id=caller_id, node=node, reserved_agent=lead.callback_agent)
        call.attempt_id = store.create_attempt(call, lead, self.campaign_id, decision.decision_id,
                                               compliance=(request, decision))
        self.calls[call.uuid] = call
        self.stats.originated += 1
        self.stats.started_times.append(time.monotonic())
        flow = CallFlow(call, self.flow_settings, self.engine.switchboard, self.engine.agents,
                        self.engine.amd if self.settings.amd.enabled else None,
                        _Recorder(self, request, decision.decision_id, lead, tried | {gateway.name}),
                        {"dialer_campaign": self.name, "dialer_lead": str(lead.id), "dialer_number": lead.phone_e164,
                         "origination_caller_id_name": self.name},
                        self.engine.dial_string(gateway, lead.phone_e164))
        greenlet = self.flows.spawn(flow.run)
        greenlet.link(lambda _g: self.pool.release(gateway))


class _Recorder:
    """The flow's window onto the store, the gate's counters and the live statistics."""

    def __init__(self, runner: CampaignRunner, request: CallRequest, decision_id: str, lead: ClaimedLead,
                 tried: frozenset[str]) -> None:
        self.runner = runner
        self.request = request
        self.decision_id = decision_id
        self.lead = lead
        self.tried = tried

    def answered(self, call: Call) -> None:
        self.runner.stats.answered += 1
        try:
            self.runner.engine.store.attempt_answered(call)
        except DialerError as exc:
            # Bookkeeping never holds up a person who answered: the call goes on (AMD, an agent
            # or the safe-harbor message), and its end writes answered_at with the CDR (spooled
            # if PostgreSQL is still away).
            log.warning("call %s: answer not recorded yet: %s", call.uuid, exc)
        self.runner.engine.publish("call_answered", campaign=call.campaign, uuid=call.uuid)

    def ended(self, call: Call, hangup_event) -> None:
        try:
            self._record_end(call, hangup_event)
        finally:
            # Only now is the call over for the engine: a drain that waits for `calls` to empty
            # never closes the store under a write still in progress.
            self.runner.calls.pop(call.uuid, None)

    def _record_end(self, call: Call, hangup_event) -> None:
        runner = self.runner
        outcome = call.outcome or CallOutcome.FAILED
        runner.stats.outcomes[outcome.value] += 1
        if call.amd_result:
            runner.stats.amd[call.amd_result] += 1
        runner._pending_outcomes.append((_PACING_OUTCOME[outcome], (call.answered or call.ended or time.time()) - call.started))
        if outcome is CallOutcome.HUMAN and call.answered and call.ended:
            runner._pending_talk.append(call.ended - call.answered)
        # A trunk failure (not the called party's answer) is tried at once on the next gateway,
        # as a new attempt with its own compliance decision.
        fail_over = (call.answered is None and GatewayPool.should_fail_over(call.hangup_cause)
                     and len(self.tried) < len(runner.pool.gateways) and not runner.draining)
        try:
            runner.engine.store.finish_attempt(call, runner.settings, hangup_event, advance_lead=not fail_over)
        except StorageError as exc:
            # PostgreSQL is down: the end of the call waits in the local spool (no new call is
            # placed meanwhile: the next decision and attempt row cannot be written either).
            log.error("call %s: attempt spooled, PostgreSQL unavailable: %s", call.uuid, exc)
            runner.engine.spool.write(call, runner.campaign_id, hangup_event, advance_lead=True)
            fail_over = False
        try:
            runner.engine.store.record_compliance_outcome(runner.engine.gate, self.decision_id,
                                                          _GATE_OUTCOME[outcome], runner.engine.clock())
        except DialerError as exc:
            log.warning("call %s: compliance outcome not recorded: %s", call.uuid, exc)
        runner.engine.publish("call_ended", campaign=call.campaign, uuid=call.uuid, outcome=outcome.value,
                              amd=call.amd_result, agent=call.agent_id)
        if fail_over:
            runner.flows.spawn(runner._dial_or_requeue, replace(self.lead, attempts=self.lead.attempts + 1), self.tried)
