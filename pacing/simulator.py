"""Seeded discrete-event simulator of agents and called parties that drives the real pacers.

Every policy dials the same pre-drawn lead list (common random numbers: record i has the same
outcome draw, ring time, greeting, talk and wrap-up whoever dials it), and every policy obeys the
same rule (47 CFR 64.1200(a)(7)): a live person not connected to an agent within 2 s of the end of
the greeting is abandoned (hears the message and is dropped). AMD needs `amd_post_greeting_s` of
silence after the greeting before it hands a human to the queue, which eats into those 2 s.

Outcomes (pacing.md defaults): a share `contact_rate` of attempts is answered by a live person
(lognormal time to answer, mean 8 s, sd 4); of the others 15% reach a machine, 10% are busy or
fail fast (2-6 s) and the rest ring out at the 25 s timeout. AMD calls 3% of humans machines (a
hidden abandon, counted in UK accounting) and 5% of machines humans (they take an agent for a few
seconds). Talk is lognormal with coefficient of variation 1, wrap-up lognormal mean 15 s. Agents
log in together at the start of each 8-hour shift, sometimes pause after a call, and log off when
the shift ends (after finishing their call); a live answer after that is abandoned.

The pacer sees a `PacingSnapshot` every simulated second, exactly as the engine builds it.
"""
from __future__ import annotations

import collections
import heapq
import math
from dataclasses import dataclass, field, replace

import numpy as np

from pacing.model import (
    AbandonAccount, Accounting, AgentSnapshot, AgentState, CallOutcome, Limits, OutcomeStats,
    PacingConfig, PacingSnapshot,
)
from pacing.policies import RESOLUTION_BINS, KnownParameters, Pacer, make_pacer

DAY_S = 86400.0
WINDOW_DAYS = 30
MIN_LIVE_FOR_RATE = 20
DIAL_LEVEL_BIN_S = 10.0        # the dial level is averaged over bins this long
DIAL_LEVEL_WARM_UP_S = 600.0   # left out of the smoothness figures (the first burst)
DIAL_LEVEL_MAX_LAG_S = 1800.0  # swings up to this period's half are looked for


def lognormal_params(mean: float, cv: float) -> tuple[float, float]:
    sigma2 = math.log1p(cv * cv)
    return math.log(mean) - sigma2 / 2.0, math.sqrt(sigma2)


@dataclass(frozen=True)
class Scenario:
    agents: int = 20
    contact_rate: float = 0.15
    talk_mean_s: float = 120.0
    talk_cv: float = 1.0
    wrap_mean_s: float = 15.0
    wrap_cv: float = 0.5
    ring_mean_s: float = 8.0
    ring_sd_s: float = 4.0
    ring_timeout_s: float = 25.0
    machine_share: float = 0.15          # of the attempts not answered live
    busy_share: float = 0.10
    greeting_mean_s: float = 1.2         # human greeting
    machine_greeting_mean_s: float = 4.0  # AMD listening to a machine
    false_human_hold_mean_s: float = 8.0  # agent time spent on a machine AMD called human
    amd_false_machine: float = 0.03      # humans AMD calls machines
    amd_false_human: float = 0.05        # machines AMD calls humans
    amd_post_greeting_s: float = 0.3
    abandon_wait_s: float = 2.0
    days: float = 1.0
    shift_s: float = 8 * 3600.0
    pause_probability: float = 0.01      # after each call
    pause_mean_s: float = 300.0
    # (start_s, end_s, multiplier) into each shift: the contact rate changes (lunchtime, new list)
    contact_steps: tuple[tuple[float, float, float], ...] = ()
    # (time into shift s, agents) logging off for the rest of that shift
    logoffs: tuple[tuple[float, int], ...] = ()
    max_lines_per_agent: float | None = 5.0
    max_channels: int | None = None
    max_cps: float | None = None
    accounting: Accounting = Accounting.US
    seed: int = 1

    @property
    def ceiling_talk_minutes_per_agent_hour(self) -> float:
        return 60.0 * self.talk_mean_s / (self.talk_mean_s + self.wrap_mean_s)

    def contact_at(self, time_in_shift: float) -> float:
        rate = self.contact_rate
        for start, end, multiplier in self.contact_steps:
            if start <= time_in_shift < end:
                rate *= multiplier
        return min(rate, 1.0)


class LeadList:
    """Pre-drawn records, generated in fixed chunks from their own stream so record i is the same
    for every policy however fast the policy consumes the list."""

    CHUNK = 1 << 15

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._rng = np.random.default_rng([scenario.seed, 7])
        self.size = 0
        self.fields: dict[str, np.ndarray] = {}

    def ensure(self, n: int) -> None:
        while self.size < n:
            self._grow()

    def _grow(self) -> None:
        s, rng, k = self.scenario, self._rng, self.CHUNK
        ring_mu, ring_sigma = lognormal_params(s.ring_mean_s, s.ring_sd_s / s.ring_mean_s)
        chunk = {
            "u": rng.random(k),
            "ring": np.minimum(rng.lognormal(ring_mu, ring_sigma, k), s.ring_timeout_s - 0.5),
            "busy": rng.uniform(2.0, 6.0, k),
            "greet": rng.lognormal(*lognormal_params(s.greeting_mean_s, 0.35), k),
            "mgreet": rng.lognormal(*lognormal_params(s.machine_greeting_mean_s, 0.4), k),
            "talk": rng.lognormal(*lognormal_params(s.talk_mean_s, s.talk_cv), k),
            "wrap": rng.lognormal(*lognormal_params(s.wrap_mean_s, s.wrap_cv), k),
            "amd": rng.random(k),
            "hold": rng.lognormal(*lognormal_params(s.false_human_hold_mean_s, 0.5), k),
        }
        for name, values in chunk.items():
            old = self.fields.get(name)
            self.fields[name] = values if old is None else np.concatenate([old, values])
        self.size += k


# Lead kinds decided at dial time
HUMAN, FALSE_MACHINE, MACHINE, FALSE_HUMAN, BUSY, NO_ANSWER = range(6)
# Event kinds
_RESOLVE, _DEADLINE, _TALK_END, _WRAP_END, _PAUSE_END = range(5)


@dataclass
class SimulationResult:
    scenario: Scenario
    policy: str
    talk_minutes_per_agent_hour: float
    bound_ratio: float
    occupancy: float
    mean_wait_s: float
    p90_wait_s: float
    abandon_rate_30d: float
    abandon_rate_worst_day: float
    abandon_rate_worst_hour: float
    calls: int
    live_answers: int
    abandoned: int
    calls_per_hour: float
    leads_per_hour: float
    agent_hours: float
    daily_abandon_rate: list[float] = field(default_factory=list)
    daily_occupancy: list[float] = field(default_factory=list)
    daily_talk_minutes_per_agent_hour: list[float] = field(default_factory=list)
    hourly_abandon_rate: list[float] = field(default_factory=list)   # by hour of shift, all days
    wait_histogram: list[int] = field(default_factory=list)          # 5-s bins, last open
    drift_resets: int = 0
    # lines ringing per logged-in agent, per day, per DIAL_LEVEL_BIN_S bin of the shift
    dial_level: list[list[float]] = field(default_factory=list)
    dial_level_mean: float = float("nan")
    dial_level_cv: float = float("nan")              # std / mean of the bins, within days
    dial_level_min_autocorr: float = float("nan")    # see dial_level_smoothness()
    dial_level_min_autocorr_lag_s: float = float("nan")

    def summary(self) -> dict[str, float | int]:
        keys = ("talk_minutes_per_agent_hour", "bound_ratio", "occupancy", "mean_wait_s",
                "p90_wait_s", "abandon_rate_30d", "abandon_rate_worst_day",
                "abandon_rate_worst_hour", "calls", "live_answers", "abandoned")
        return {key: getattr(self, key) for key in keys}


def dial_level_smoothness(levels: np.ndarray, ticks: np.ndarray | None = None) -> dict[str, float]:
    """How steadily a policy holds its dial level (lines ringing per logged-in agent, one row
    per day of DIAL_LEVEL_BIN_S bins): the mean, the coefficient of variation of the bins
    within each day, and the lowest autocorrelation of the bins at lags of one bin to
    DIAL_LEVEL_MAX_LAG_S (days averaged), with its lag. A controller that overshoots and
    corrects swings to the other side of its mean half a period later, which shows as a clearly
    negative autocorrelation at that lag; noise gives values near 0 (about +-2/sqrt(bins)), a
    slow drift positive ones. `ticks` (pacing ticks per bin, same shape) leaves out the bins
    after a shorter shift's end. Days too short to look that far are skipped."""
    first = int(DIAL_LEVEL_WARM_UP_S / DIAL_LEVEL_BIN_S)
    max_lag = int(DIAL_LEVEL_MAX_LAG_S / DIAL_LEVEL_BIN_S)
    levels = np.asarray(levels, dtype=float)
    counted = np.ones_like(levels, dtype=bool) if ticks is None else np.asarray(ticks) > 0
    means, cvs, acfs = [], [], []
    for day, in_shift in zip(levels, counted):
        x = day[first:][in_shift[first:]]
        if len(x) < 2 * max_lag or x.mean() <= 0:
            continue
        means.append(x.mean())
        centred = x - x.mean()
        power = float(centred @ centred)
        cvs.append(math.sqrt(power / len(x)) / x.mean())
        acfs.append([float(centred[:-k] @ centred[k:]) / power if power else 0.0
                     for k in range(1, max_lag + 1)])
    if not means:
        return {}
    acf = np.mean(acfs, axis=0)
    return {"dial_level_mean": float(np.mean(means)), "dial_level_cv": float(np.mean(cvs)),
            "dial_level_min_autocorr": float(acf.min()),
            "dial_level_min_autocorr_lag_s": float((int(acf.argmin()) + 1) * DIAL_LEVEL_BIN_S)}


def _rate(abandoned: np.ndarray, live: np.ndarray, minimum: int) -> float:
    ok = live >= minimum
    if not ok.any():
        return float("nan")
    return float((abandoned[ok] / live[ok]).max())


class Simulation:
    """One policy on one scenario. `run()` returns a `SimulationResult`."""

    def __init__(self, scenario: Scenario, pacer: Pacer, policy_name: str | None = None,
                 leads: LeadList | None = None) -> None:
        self.s = scenario
        self.pacer = pacer
        self.policy = policy_name or pacer.mode.value
        self.leads = leads if leads is not None else LeadList(scenario)
        self.limits = Limits(scenario.max_channels, scenario.max_cps,
                             scenario.max_lines_per_agent)
        agent_rng = np.random.default_rng([scenario.seed, 11])
        n = scenario.agents
        # per agent, per handled call: pause draw and pause length (common random numbers)
        self._pause_u = agent_rng.random((n, 4096))
        self._pause_len = agent_rng.lognormal(*lognormal_params(scenario.pause_mean_s, 0.5),
                                              (n, 4096))

    # ----------------------------------------------------------------------------------------
    def run(self) -> SimulationResult:
        s = self.s
        days = max(1, math.ceil(s.days))
        self.day_live = np.zeros(days)
        self.day_abandoned = np.zeros(days)
        hours = math.ceil(s.shift_s / 3600.0) + 1
        self.hour_live = np.zeros((days, hours))
        self.hour_abandoned = np.zeros((days, hours))
        self.day_busy = np.zeros(days)
        self.day_talk = np.zeros(days)
        self.day_logged = np.zeros(days)
        self.talk_total = 0.0
        self.busy_total = 0.0            # talk + wrap + machine holds
        self.logged_total = 0.0
        self.waits: list[float] = []
        self.calls = 0
        # lines ringing per logged-in agent, summed over each bin's pacing ticks: the dial
        # level a controller holds, whose swings show whether it oscillates
        self.level_sum = np.zeros((days, math.ceil(s.shift_s / DIAL_LEVEL_BIN_S)))
        self.level_ticks = np.zeros_like(self.level_sum)
        for day in range(days):
            shift = s.shift_s if day < days - 1 or s.days == days else s.shift_s * (s.days - day)
            self._run_day(day, shift)
        return self._result()

    # ----------------------------------------------------------------------------------------
    def _run_day(self, day: int, shift: float) -> None:
        s, pacer, f = self.s, self.pacer, self.leads.fields
        start = day * DAY_S
        end = start + shift
        n = s.agents
        self._day = day
        self._start = start
        self._shift_end = end
        state = [AgentState.READY] * n
        since = [start] * n
        login = [start] * n
        logged_off = [False] * n
        leaving = [False] * n
        paused_total = [0.0] * n
        handled = [0] * n
        on_call: list[tuple[int, int]] = [(0, 0)] * n     # (call, lead kind) per talking agent
        ready = collections.deque(range(n))
        waiting: collections.deque[int] = collections.deque()
        ringing: dict[int, float] = {}
        status: dict[int, int] = {}        # call -> kind while waiting
        heap: list[tuple[float, int, int, int, int]] = []
        seq = 0
        new_outcomes: list[CallOutcome] = []
        new_ages: list[float] = []
        new_talk: list[float] = []
        new_wrap: list[float] = []
        window_first = max(0, day - WINDOW_DAYS + 1)
        uk = s.accounting is Accounting.UK
        logoffs = sorted((start + t, k) for t, k in s.logoffs)
        logoff_i = 0

        def push(t: float, kind: int, a: int, b: int = 0) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(heap, (t, seq, kind, a, b))

        def log_off(agent: int, now: float) -> None:
            logged_off[agent] = True
            self.logged_total += now - login[agent] - paused_total[agent]
            self.day_logged[day] += now - login[agent] - paused_total[agent]

        def connect(agent: int, call: int, kind: int, now: float) -> None:
            if kind == HUMAN:
                self.day_live[day] += 1
                self.hour_live[day, int((now - start) // 3600)] += 1
                hold = float(f["talk"][call])
                self.talk_total += hold
                self.day_talk[day] += hold
            else:
                hold = float(f["hold"][call])
            state[agent] = AgentState.TALKING
            since[agent] = now
            on_call[agent] = (call, kind)
            push(now + hold, _TALK_END, agent)

        def agent_free(agent: int, now: float) -> None:
            """The agent finished wrap-up or a pause: take a waiting call, pause, or log off."""
            if leaving[agent] or now >= end:
                log_off(agent, now)
                return
            if waiting:
                call = waiting.popleft()
                self.waits.append(0.0)
                connect(agent, call, status.pop(call), now)
                return
            state[agent] = AgentState.READY
            since[agent] = now
            ready.append(agent)

        def abandon(kind: int, now: float) -> None:
            if kind == HUMAN:
                self.day_live[day] += 1
                self.day_abandoned[day] += 1
                hour = int((now - start) // 3600)
                self.hour_live[day, hour] += 1
                self.hour_abandoned[day, hour] += 1

        def dial(now: float, count: int) -> None:
            first = self.calls
            self.calls += count
            self.leads.ensure(self.calls)
            p = s.contact_at(now - start)
            for call in range(first, first + count):
                u = f["u"][call]
                amd = f["amd"][call]
                if u < p:
                    kind = FALSE_MACHINE if amd < s.amd_false_machine else HUMAN
                    at = f["ring"][call] + f["greet"][call] + s.amd_post_greeting_s
                else:
                    v = (u - p) / (1.0 - p)
                    if v < s.machine_share:
                        if amd < s.amd_false_human:
                            kind = FALSE_HUMAN
                            at = f["ring"][call] + f["greet"][call] + s.amd_post_greeting_s
                        else:
                            kind = MACHINE
                            at = f["ring"][call] + f["mgreet"][call]
                    elif v < s.machine_share + s.busy_share:
                        kind, at = BUSY, f["busy"][call]
                    else:
                        kind, at = NO_ANSWER, s.ring_timeout_s
                ringing[call] = now
                push(now + float(at), _RESOLVE, call, kind)

        outcome_of = {HUMAN: CallOutcome.CONNECTED, FALSE_HUMAN: CallOutcome.CONNECTED,
                      FALSE_MACHINE: CallOutcome.MACHINE, MACHINE: CallOutcome.MACHINE,
                      BUSY: CallOutcome.BUSY, NO_ANSWER: CallOutcome.NO_ANSWER}
        tick = start
        while True:
            next_tick = tick if tick < end else math.inf
            if heap and heap[0][0] <= next_tick:
                now, _, kind, a, b = heapq.heappop(heap)
                if kind == _RESOLVE:
                    call, lead_kind = a, b
                    new_outcomes.append(outcome_of[lead_kind])
                    new_ages.append(now - ringing.pop(call))
                    # a human AMD called a machine is dropped unseen (UK: estimated, counted)
                    if lead_kind in (HUMAN, FALSE_HUMAN):
                        while ready and logged_off[ready[0]]:
                            ready.popleft()
                        if ready and now < end:
                            agent = ready.popleft()
                            self.waits.append(now - since[agent])
                            connect(agent, call, lead_kind, now)
                        elif now < end:
                            status[call] = lead_kind
                            waiting.append(call)
                            greeting_end = now - s.amd_post_greeting_s
                            push(greeting_end + s.abandon_wait_s, _DEADLINE, call)
                        else:
                            abandon(lead_kind, now)
                elif kind == _DEADLINE:
                    if a in status:
                        waiting.remove(a)
                        abandon(status.pop(a), now)
                elif kind == _TALK_END:
                    agent = a
                    call, lead_kind = on_call[agent]
                    duration = now - since[agent]
                    new_talk.append(duration)
                    self.busy_total += duration
                    self.day_busy[day] += duration
                    if lead_kind == FALSE_HUMAN:     # a machine: the agent hangs up, no wrap-up
                        agent_free(agent, now)
                    else:
                        state[agent] = AgentState.WRAP
                        since[agent] = now
                        push(now + float(f["wrap"][call]), _WRAP_END, agent)
                elif kind == _WRAP_END:
                    agent = a
                    wrap = now - since[agent]
                    new_wrap.append(wrap)
                    self.busy_total += wrap
                    self.day_busy[day] += wrap
                    k = handled[agent] % self._pause_u.shape[1]
                    handled[agent] += 1
                    if (not leaving[agent] and now < end
                            and self._pause_u[agent, k] < s.pause_probability):
                        state[agent] = AgentState.PAUSED
                        since[agent] = now
                        push(now + float(self._pause_len[agent, k]), _PAUSE_END, agent)
                    else:
                        agent_free(agent, now)
                elif kind == _PAUSE_END:
                    agent = a
                    paused_total[agent] += now - since[agent]
                    agent_free(agent, now)
                continue
            if next_tick == math.inf:
                break
            # ---- a pacing tick: exactly what the engine does once a second -----------------
            now = tick
            tick += 1.0
            while logoff_i < len(logoffs) and logoffs[logoff_i][0] <= now:
                remaining = logoffs[logoff_i][1]
                logoff_i += 1
                for agent in range(n - 1, -1, -1):
                    if remaining == 0:
                        break
                    if logged_off[agent] or leaving[agent]:
                        continue
                    leaving[agent] = True
                    remaining -= 1
                    if state[agent] is AgentState.READY:
                        log_off(agent, now)
                    elif state[agent] is AgentState.PAUSED:
                        paused_total[agent] += now - since[agent]
                        since[agent] = now
                        log_off(agent, now)
            agents = tuple(AgentSnapshot(state[i], now - since[i])
                           for i in range(n) if not logged_off[i])
            live_now = self.day_live[day]
            aband_now = self.day_abandoned[day]
            if uk:   # Ofcom: estimated live people AMD called machines count as abandoned
                hidden = self.pacer.config.amd_false_machine_share * live_now
                live_now, aband_now = live_now + hidden, aband_now + hidden
            window_live = self.day_live[window_first:day].sum() + live_now
            window_aband = self.day_abandoned[window_first:day].sum() + aband_now
            if uk:
                share = self.pacer.config.amd_false_machine_share
                window_live += share * self.day_live[window_first:day].sum()
                window_aband += share * self.day_live[window_first:day].sum()
            snapshot = PacingSnapshot(
                now_s=now,
                agents=agents,
                ringing_ages_s=now - np.fromiter(ringing.values(), float, len(ringing)),
                waiting_calls=len(waiting),
                account=AbandonAccount(int(window_live), float(window_aband),
                                       int(live_now), float(aband_now)),
                limits=self.limits,
                new_outcomes=OutcomeStats(tuple(new_outcomes), tuple(new_ages),
                                          tuple(new_talk), tuple(new_wrap)),
                shift_remaining_s=end - now,
            )
            new_outcomes.clear(); new_ages.clear(); new_talk.clear(); new_wrap.clear()
            decision = pacer.decide(snapshot)
            if decision.calls_to_start:
                dial(now, decision.calls_to_start)
            if agents:
                bin_ = int((now - start) // DIAL_LEVEL_BIN_S)
                self.level_sum[day, bin_] += len(ringing) / len(agents)
                self.level_ticks[day, bin_] += 1
        for agent in range(n):
            if not logged_off[agent]:
                log_off(agent, max(end, since[agent]))

    # ----------------------------------------------------------------------------------------
    def _result(self) -> SimulationResult:
        s = self.s
        live, aband = self.day_live.copy(), self.day_abandoned.copy()
        hour_live, hour_aband = self.hour_live, self.hour_abandoned
        if s.accounting is Accounting.UK:
            # the estimated humans AMD called machines count as live and abandoned, in every window
            share = self.pacer.config.amd_false_machine_share
            live, aband = live + share * live, aband + share * live
            hour_live, hour_aband = hour_live + share * hour_live, hour_aband + share * hour_live
        if len(live) <= WINDOW_DAYS:
            rate_30 = float(aband.sum() / live.sum()) if live.sum() else float("nan")
        else:
            kernel = np.ones(WINDOW_DAYS)
            rate_30 = float((np.convolve(aband, kernel, "valid")
                             / np.maximum(np.convolve(live, kernel, "valid"), 1)).max())
        agent_hours = self.logged_total / 3600.0
        talk_rate = self.talk_total / 60.0 / agent_hours if agent_hours else 0.0
        waits = np.asarray(self.waits) if self.waits else np.zeros(1)
        by_hour_live = hour_live.sum(axis=0)
        by_hour_aband = hour_aband.sum(axis=0)
        sim_hours = s.days * s.shift_s / 3600.0
        levels = self.level_sum / np.maximum(self.level_ticks, 1)
        return SimulationResult(
            scenario=s,
            policy=self.policy,
            talk_minutes_per_agent_hour=talk_rate,
            bound_ratio=talk_rate / s.ceiling_talk_minutes_per_agent_hour,
            occupancy=self.busy_total / self.logged_total if self.logged_total else 0.0,
            mean_wait_s=float(waits.mean()),
            p90_wait_s=float(np.percentile(waits, 90)),
            abandon_rate_30d=rate_30,
            abandon_rate_worst_day=_rate(aband, live, MIN_LIVE_FOR_RATE),
            abandon_rate_worst_hour=_rate(hour_aband.ravel(), hour_live.ravel(), MIN_LIVE_FOR_RATE),
            calls=int(self.calls),
            live_answers=int(self.day_live.sum()),
            abandoned=int(self.day_abandoned.sum()),
            calls_per_hour=self.calls / sim_hours,
            leads_per_hour=self.calls / sim_hours,
            agent_hours=agent_hours,
            daily_abandon_rate=[float(a / l) if l else 0.0 for a, l in zip(aband, live)],
            daily_occupancy=[float(b / g) if g else 0.0
                             for b, g in zip(self.day_busy, self.day_logged)],
            daily_talk_minutes_per_agent_hour=[float(t / 60.0 / (g / 3600.0)) if g else 0.0
                                               for t, g in zip(self.day_talk, self.day_logged)],
            hourly_abandon_rate=[float(a / l) if l else 0.0
                                 for a, l in zip(by_hour_aband, by_hour_live)],
            wait_histogram=np.bincount(np.minimum((waits // 5).astype(int), 24),
                                       minlength=25).tolist(),
            drift_resets=getattr(self.pacer, "drift_resets", 0),
            dial_level=levels.tolist(),
            **dial_level_smoothness(levels, self.level_ticks),
        )


def simulate(scenario: Scenario, config: PacingConfig, known: bool = False,
             policy_name: str | None = None) -> SimulationResult:
    """Run one policy on one scenario (the entry point of `dialer simulate` and the benchmark)."""
    config = replace(config, accounting=scenario.accounting, shift_length_s=scenario.shift_s,
                     ring_timeout_s=scenario.ring_timeout_s,
                     abandon_wait_s=scenario.abandon_wait_s,
                     amd_post_greeting_s=scenario.amd_post_greeting_s)
    pacer = make_pacer(config, known_parameters(scenario) if known else None)
    name = policy_name or (config.mode.value + ("-known" if known else ""))
    return Simulation(scenario, pacer, name).run()


def known_parameters(scenario: Scenario, draws: int = 200_000) -> KnownParameters:
    """The true resolution-age histograms and handle-time parameters of a scenario, from a large
    sample of its outcome model (a separate stream: not the lead list being dialed)."""
    sample = LeadList(replace(scenario, seed=scenario.seed + 1_000_003))
    sample.ensure(draws)
    f, s = sample.fields, scenario
    p = s.contact_rate
    u, amd = f["u"][:draws], f["amd"][:draws]
    human_age = f["ring"][:draws] + f["greet"][:draws] + s.amd_post_greeting_s
    v = (u - p) / (1.0 - p)
    live = u < p
    machine = ~live & (v < s.machine_share)
    busy = ~live & ~machine & (v < s.machine_share + s.busy_share)
    false_human = machine & (amd < s.amd_false_human)
    connected = (live & (amd >= s.amd_false_machine)) | false_human
    age = np.where(live | false_human, human_age,
                   np.where(machine, f["ring"][:draws] + f["mgreet"][:draws],
                            np.where(busy, f["busy"][:draws], s.ring_timeout_s)))
    idx = np.minimum(age.astype(np.int64), RESOLUTION_BINS - 1)
    scale = 1.0 / draws * 1e6      # a weight so large that the histograms act as certainties
    return KnownParameters(
        connected_hist=np.bincount(idx[connected], minlength=RESOLUTION_BINS) * scale,
        all_hist=np.bincount(idx, minlength=RESOLUTION_BINS) * scale,
        talk_mean_s=s.talk_mean_s, talk_cv=s.talk_cv,
        wrap_mean_s=s.wrap_mean_s, wrap_cv=s.wrap_cv,
    )


def clairvoyant_oracle(scenario: Scenario) -> float:
    """Talk minutes per agent-hour of the clairvoyant oracle (pacing.md bound 2).

    It knows every record's outcome on the same lead list and dials greedily in list order: a
    live record is dialed so that it connects the instant the next agent frees up (never before
    the records ahead of it in the list were dialed), other records hold a line for their known
    duration; a line cap and a calls-per-second limit apply; no pauses, no abandons. Machines
    AMD calls human are treated as non-live (the oracle knows). Agents log off at the end of the
    shift once their call is done.
    """
    s = scenario
    leads = LeadList(s)
    f = leads.fields
    line_cap = s.max_channels or (int(s.max_lines_per_agent * s.agents)
                                  if s.max_lines_per_agent else 10 ** 9)
    spacing = 1.0 / s.max_cps if s.max_cps else 0.0
    talk_total = logged_total = 0.0
    record = 0
    days = max(1, math.ceil(s.days))
    for day in range(days):
        shift = s.shift_s if day < days - 1 or s.days == days else s.shift_s * (s.days - day)
        agents = [0.0] * s.agents           # time each agent is next free
        heapq.heapify(agents)
        lines: list[float] = []              # release times of busy lines
        cursor = 0.0                          # list order: no record before the previous one
        while True:
            leads.ensure(record + 1)
            u, amd = f["u"][record], f["amd"][record]
            p = s.contact_at(cursor)
            live = u < p and amd >= s.amd_false_machine
            if u < p:
                duration = f["ring"][record] + f["greet"][record] + s.amd_post_greeting_s
            else:
                v = (u - p) / (1.0 - p)
                if v < s.machine_share:
                    duration = f["ring"][record] + f["mgreet"][record]
                elif v < s.machine_share + s.busy_share:
                    duration = f["busy"][record]
                else:
                    duration = s.ring_timeout_s
            earliest = cursor
            if len(lines) >= line_cap:
                earliest = max(earliest, heapq.heappop(lines))
            if live:
                free_at = agents[0]
                dial_at = max(earliest, free_at - duration)
                connect_at = dial_at + duration
                if connect_at >= shift:
                    break
                talk = float(f["talk"][record])
                heapq.heapreplace(agents, connect_at + talk + float(f["wrap"][record]))
                talk_total += talk
                heapq.heappush(lines, connect_at + talk)
            else:
                dial_at = earliest
                if dial_at >= shift:
                    break
                heapq.heappush(lines, dial_at + duration)
            cursor = dial_at + spacing
            record += 1
        logged_total += sum(max(t, shift) for t in agents)
    return talk_total / 60.0 / (logged_total / 3600.0)
