"""Pacing policies behind the one interface: `pacer.decide(snapshot) -> PacingDecision`.

Every mode, and the two baselines the benchmark compares against (pacing.md), is a `Pacer`; the
engine calls `decide` about once a second per campaign and the simulator calls the same objects.
Pacers keep their own online estimates, fed by `snapshot.new_outcomes`, so one pacer instance
belongs to one campaign.

The predictive pacer models the next `HORIZON_S` seconds in `STEP_S` steps:
- demand: connects (live answers handed to agents) expected from the calls ringing now, from the
  empirical hazard of their age, plus those of n new calls;
- supply: agents ready now plus, for each busy agent, the probability that it frees within
  k + (2 s - AMD listening) seconds from its time in state and the lognormal talk/wrap estimates;
- the risk of the n-th new call: the probability that, when it connects, the connects ahead of
  it already hold every agent freed by then, or that it connects after the shift ends - exact
  (a Poisson-binomial distribution) for small teams, a normal approximation with the
  uncertainty of the contact-rate estimate for large ones;
and starts calls while each one's own risk stays under a threshold (the marginal rule, optimal
for talk time under an abandon budget). The threshold is the share the budget controller allows
times a gain calibrated on the measured abandons (integral feedback: the model's bias is removed
whatever its source). The budget controller spreads what is left of the allowance, less a
reserve for the abandons still to come, over the live answers still expected in the shift, for
the 30-day window and the day: a bad morning makes the afternoon stricter, a good one lets it
spend more, and the end of the shift leaves no room to make up for abandons (caution near the
end comes out of the arithmetic). With no allowance left it is progressive, which cannot
abandon. (47 CFR 64.1200(a)(7): abandoned within 2 s of the greeting, 3% per 30 days.)
"""
from __future__ import annotations

import abc

import collections
import math
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from pacing.estimators import DRIFT_Z, FreeTimeModel, LognormalEstimator, ResolutionEstimator
from pacing.model import (
    Accounting, AgentState, CallOutcome, Diagnostics, PacingConfig, PacingDecision, PacingError,
    PacingMode, PacingSnapshot,
)

HORIZON_S = 40          # covers a 25 s ring timeout plus greeting and AMD
STEP_S = 2              # resolution of the look-ahead
RESOLUTION_BINS = 48    # 1-s bins of call age
MAX_NEW_CALLS = 400
LIVE_RATE_AFTER_S = 900.0       # the budget uses today's pace of live answers after this long
LIVE_RATE_MIN_ANSWERS = 30


class Pacer(abc.ABC):
    """Base: applies channel, lines-per-agent and calls-per-second limits to what a mode wants."""

    mode: PacingMode

    def __init__(self, config: PacingConfig) -> None:
        self.config = config
        self._cps_tokens = 0.0
        self._last_now: float | None = None

    def decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        self._refill(snapshot)
        return self._decide(snapshot)

    @abc.abstractmethod
    def _decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        """The mode's own decision (each pacer class defines it)."""

    def _refill(self, snapshot: PacingSnapshot) -> None:
        if self._last_now is not None and snapshot.now_s < self._last_now:
            raise PacingError(f"snapshot time went backwards: {snapshot.now_s} < {self._last_now}")
        cps = snapshot.limits.max_cps
        if cps is not None:
            elapsed = 1.0 if self._last_now is None else snapshot.now_s - self._last_now
            self._cps_tokens = min(self._cps_tokens + cps * elapsed, max(cps, 1.0))
        self._last_now = snapshot.now_s

    def headroom(self, snapshot: PacingSnapshot) -> int:
        """How many calls the limits allow now."""
        in_progress = (len(snapshot.ringing_ages_s) + snapshot.waiting_calls
                       + snapshot.count(AgentState.TALKING))
        room = MAX_NEW_CALLS
        limits = snapshot.limits
        if limits.max_channels is not None:
            room = min(room, limits.max_channels - in_progress)
        if limits.max_lines_per_agent is not None and self.mode is not PacingMode.AGENTLESS:
            room = min(room, int(limits.max_lines_per_agent * snapshot.active_agents) - in_progress)
        if limits.max_cps is not None:
            room = min(room, int(self._cps_tokens))
        return max(room, 0)

    def limited(self, snapshot: PacingSnapshot, wanted: int, diagnostics: Diagnostics
                ) -> PacingDecision:
        calls = max(0, min(int(wanted), self.headroom(snapshot)))
        self._cps_tokens -= calls if snapshot.limits.max_cps is not None else 0
        return PacingDecision(calls, diagnostics)


class PreviewPacer(Pacer):
    """One call for each agent request; the agent sees the record before it is dialed."""
    mode = PacingMode.PREVIEW

    def _decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        return self.limited(snapshot, snapshot.preview_requests, Diagnostics(note="preview"))


class ProgressivePacer(Pacer):
    """One call per free agent that no ringing or waiting call is already meant for."""
    mode = PacingMode.PROGRESSIVE
    ratio = 1.0

    def _decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        ready = snapshot.count(AgentState.READY)
        wanted = math.ceil(self.ratio * ready - 1e-9) - len(snapshot.ringing_ages_s) \
            - snapshot.waiting_calls
        return self.limited(snapshot, wanted, Diagnostics(expected_free_agents=ready))


class PowerPacer(ProgressivePacer):
    """A fixed number of calls per free agent (`config.ratio`)."""
    mode = PacingMode.POWER

    def __init__(self, config: PacingConfig) -> None:
        super().__init__(config)
        self.ratio = config.ratio


class AgentlessPacer(Pacer):
    """Recorded-message or IVR campaigns: as many calls as channels and calls per second allow."""
    mode = PacingMode.AGENTLESS

    def _decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        if snapshot.limits.max_channels is None and snapshot.limits.max_cps is None:
            raise PacingError("agentless pacing needs a channel or calls-per-second limit")
        if snapshot.shift_remaining_s <= 0:
            return PacingDecision(0, Diagnostics(note="campaign hours over"))
        return self.limited(snapshot, MAX_NEW_CALLS, Diagnostics(note="agentless"))


@dataclass(frozen=True, slots=True)
class KnownParameters:
    """True parameters handed to the predictive pacer in the benchmark, to show what estimating
    them costs. Histograms are over 1-s bins of resolution age, as `ResolutionEstimator` keeps."""
    connected_hist: np.ndarray
    all_hist: np.ndarray
    talk_mean_s: float
    talk_cv: float
    wrap_mean_s: float
    wrap_cv: float


def _prior_histograms(config: PacingConfig, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Prior resolution histograms: connects lognormal around the prior ring time plus greeting
    and AMD; non-connects a quarter spread over the first seconds (busy, machines), the rest at
    the ring timeout."""
    weight = config.prior_contact_weight
    edges = np.arange(bins + 1, dtype=float)
    mean = config.prior_ring_mean_s + 1.5
    sigma2 = math.log1p(0.25)
    mu = math.log(mean) - sigma2 / 2
    with np.errstate(divide="ignore"):
        cdf = ndtr((np.log(np.maximum(edges, 1e-9)) - mu) / math.sqrt(sigma2))
    shape = np.diff(cdf)
    shape /= shape.sum()
    connected = weight * config.prior_contact_rate * shape
    others = np.zeros(bins)
    timeout_bin = min(int(config.ring_timeout_s), bins - 1)
    others[2:timeout_bin] = 0.25 / max(timeout_bin - 2, 1)
    others[timeout_bin] = 0.75
    return connected, connected + weight * (1.0 - config.prior_contact_rate) * others


class PredictivePacer(Pacer):
    mode = PacingMode.PREDICTIVE

    def __init__(self, config: PacingConfig, known: KnownParameters | None = None) -> None:
        super().__init__(config)
        frozen = known is not None
        if known is None:
            connected, everything = _prior_histograms(config, RESOLUTION_BINS)
            talk = (config.prior_talk_mean_s, config.prior_talk_cv)
            wrap = (config.prior_wrap_mean_s, config.prior_wrap_cv)
            weight = config.prior_weight
        else:
            connected, everything = known.connected_hist, known.all_hist
            talk = (known.talk_mean_s, known.talk_cv)
            wrap = (known.wrap_mean_s, known.wrap_cv)
            weight = 1.0
        self.slow = ResolutionEstimator(RESOLUTION_BINS, connected, everything,
                                        config.memory_attempts, frozen)
        self.fast = ResolutionEstimator(RESOLUTION_BINS, connected, everything,
                                        config.memory_attempts / 8.0, frozen)
        self.talk = LognormalEstimator(*talk, weight, config.memory_calls, frozen)
        self.wrap = LognormalEstimator(*wrap, weight, config.memory_calls, frozen)
        self._ks = np.arange(0, HORIZON_S + 1, STEP_S)
        self._window = max(config.abandon_wait_s - config.amd_post_greeting_s, 0.0)
        self.free_time = FreeTimeModel(self.talk, self.wrap, self._ks + self._window)
        self.drift_resets = 0
        self.gain_log = 0.0
        self._seen: tuple[int, float] = (0, 0.0)

    # -- estimates ---------------------------------------------------------------------------
    def observe(self, snapshot: PacingSnapshot) -> None:
        new = snapshot.new_outcomes
        if new.attempt_outcomes:
            ages = np.asarray(new.attempt_ages_s, dtype=float)
            connected = np.fromiter((o is CallOutcome.CONNECTED for o in new.attempt_outcomes),
                                    dtype=bool, count=len(new.attempt_outcomes))
            self.slow.observe(ages, connected)
            self.fast.observe(ages, connected)
            p_slow = self.slow.contact_rate
            se = math.sqrt(max(p_slow * (1 - p_slow), 1e-6) / max(self.fast.weight, 1.0))
            if self.fast.weight > 50 and abs(self.fast.contact_rate - p_slow) > DRIFT_Z * se:
                self.slow.replace_with(self.fast)
                self.drift_resets += 1
        if new.talk_s:
            self.talk.observe(np.asarray(new.talk_s, dtype=float))
        if new.wrap_s:
            self.wrap.observe(np.asarray(new.wrap_s, dtype=float))

    def allowed_share(self, snapshot: PacingSnapshot, active_agents: int) -> float:
        """Budget controller: the abandon share the calls placed now may carry.

        What is left of each window's allowance (target x live answers, the ones still expected
        in this shift included, less the abandons so far) is spread over the live answers still
        expected, less a reserve of `budget_sigmas` binomial standard deviations of the abandons
        still to come and `reserve_abandons` whole abandons. A bad morning makes the afternoon
        stricter, a good one lets it spend more, and as the shift runs out the room to make up
        for bad luck goes (the caution near the end of a shift comes out of the arithmetic)."""
        cfg = self.config
        remaining = min(snapshot.shift_remaining_s, cfg.shift_length_s)
        elapsed = cfg.shift_length_s - remaining
        account = snapshot.account
        if elapsed >= LIVE_RATE_AFTER_S and account.day_live >= LIVE_RATE_MIN_ANSWERS:
            # the live answers still to come at today's pace: an estimate too high would leave
            # a day that is over its allowance too little room to come back under it
            future_live = max(account.day_live / elapsed * remaining, 1.0)
        else:
            # every agent busy the whole time: an upper bound
            handle = self.talk.mean + self.wrap.mean
            future_live = max(active_agents * remaining / handle, 1.0)
        # The reserve covers the abandons still to come, those of the calls already placed
        # included (about one look-ahead of live answers, which keeps it from vanishing in the
        # last seconds of the shift), and whole abandons: near the end of a shift a normal
        # reserve would shrink below one.
        committed = future_live * min(HORIZON_S / max(remaining, 1.0), 1.0)
        reserve = (cfg.budget_sigmas * math.sqrt(cfg.target * (1.0 - cfg.target)
                                                 * (future_live + committed))
                   + cfg.reserve_abandons)
        windows = [(account.window_live, account.window_abandoned)]
        if cfg.daily_window:
            windows.append((account.day_live, account.day_abandoned))
        share = min((cfg.target * (live + future_live) - abandoned - reserve) / future_live
                    for live, abandoned in windows)
        return min(max(share, 0.0), cfg.max_share_fraction * cfg.target)

    # -- decision ----------------------------------------------------------------------------
    def calibrate(self, snapshot: PacingSnapshot, share: float) -> None:
        """Integral feedback on the measured abandons: each live answer nudges the threshold up by
        `share` x gain step, each abandon down by (1 - share) x step, so the threshold settles
        where the measured share equals the allowed one whatever the model's bias."""
        account = snapshot.account
        live, abandoned = account.day_live, account.day_abandoned
        d_live, d_abandoned = live - self._seen[0], abandoned - self._seen[1]
        if d_live < 0:     # a new day: the daily account restarted
            d_live, d_abandoned = live, abandoned
        self._seen = (live, abandoned)
        self.gain_log += self.config.calibration_step * (share * d_live - d_abandoned)
        self.gain_log = min(max(self.gain_log, -4.0), 4.0)

    def _decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        self.observe(snapshot)
        cfg = self.config
        ready = snapshot.count(AgentState.READY)
        talking, wrapping = [], []
        for agent in snapshot.agents:
            if agent.state is AgentState.TALKING:
                talking.append(agent.time_in_state_s)
            elif agent.state is AgentState.WRAP:
                wrapping.append(agent.time_in_state_s)
        active = ready + len(talking) + len(wrapping)
        contact = self.slow.contact_rate
        share_allowed = self.allowed_share(snapshot, active)
        self.calibrate(snapshot, share_allowed)
        room = self.headroom(snapshot)
        ringing = len(snapshot.ringing_ages_s)
        waiting = snapshot.waiting_calls
        # one call per free agent nobody is dialing for cannot be abandoned, so it is always
        # allowed - unless it may connect after the agents log off at the end of the shift
        floor = ready - ringing - waiting if snapshot.shift_remaining_s > HORIZON_S else 0
        if active == 0 or room == 0:
            return self.limited(snapshot, floor, Diagnostics(contact, float(ready), float("nan"),
                                                             share_allowed, "no room"))
        ks = self._ks
        p_free = self.free_time.free_by(np.asarray(talking, dtype=float),
                                        np.asarray(wrapping, dtype=float))
        supply = ready + p_free.sum(axis=0)
        if ringing:
            idx = np.minimum(np.asarray(snapshot.ringing_ages_s, dtype=np.int64),
                             RESOLUTION_BINS - 1)
            counts = np.bincount(idx, minlength=RESOLUTION_BINS).astype(float)
            cum_from_age, cum_new, connect_mass = self.slow.tables(ks, counts)
            ring_cum = cum_from_age[idx]
        else:
            _, cum_new, connect_mass = self.slow.tables(ks)
            ring_cum = np.zeros((0, ks.size))
        ring_mean = ring_cum.sum(axis=0)
        # calls far beyond the agents that can free up are never worth evaluating
        spare = supply[-1] - waiting - ring_mean[-1] + 3.0 * math.sqrt(supply[-1] + 1.0)
        candidates = min(room, max(floor, 0) + 1 + int(max(spare, 0.0) / max(cum_new[-1], 1e-3)))
        # the rule for the n-th new call, n = 1..candidates: it is abandoned if, when it connects
        # at step k, the connects before it (ringing calls and the n-1 other new calls) already
        # hold every agent freed by k + the 2 s window. Counting earlier abandoned calls as if
        # they held agents makes this conservative; `calibrate` removes the bias.
        threshold = share_allowed * math.exp(self.gain_log)
        if cfg.accounting is Accounting.UK:
            # Ofcom: the humans AMD will call machines count as abandoned too:
            # (risk + f) / (1 + f) <= threshold
            f = cfg.amd_false_machine_share
            threshold = threshold * (1.0 + f) - f
        total = max(float(cum_new[-1]), 1e-9)
        weights = connect_mass / total
        if snapshot.shift_remaining_s < HORIZON_S:
            # agents log off at the end of the shift: a later connect is abandoned
            weights = weights.copy()
            late = ks >= snapshot.shift_remaining_s
            late_risk = float(weights[late].sum())
            weights[late] = 0.0
        else:
            late_risk = 0.0
        exact = (p_free.shape[0] + ringing <= cfg.exact_max_terms
                 and self.slow.relative_sd() <= cfg.exact_max_relative_sd)
        if exact:
            risk = _risks_exact(ready - waiting, p_free, ring_cum, cum_new, weights, late_risk,
                                candidates, threshold)
        else:
            risk = _risks_normal(ready, waiting, p_free, ring_cum, cum_new, weights, late_risk,
                                 candidates, self.slow.relative_sd(), threshold)
        # Marginal rule (the Lagrangian optimum for talk time under an abandon budget): start
        # calls while each one's own abandon risk stays under the calibrated threshold.
        over = risk > threshold
        calls = int(np.argmax(over)) if over.any() else risk.size
        calls = max(calls, floor)
        shown = risk[min(max(calls - 1, 0), risk.size - 1)] if risk.size else float("nan")
        if cfg.accounting is Accounting.UK and risk.size:
            f = cfg.amd_false_machine_share
            shown = (shown + f) / (1.0 + f)
        diagnostics = Diagnostics(
            answer_probability=float(cum_new[-1]),
            expected_free_agents=float(supply[-1]),
            predicted_abandon_probability=float(shown),
            target_now=share_allowed,
            note=f"threshold {threshold:.4f}" + (" exact" if exact else ""),
        )
        return self.limited(snapshot, calls, diagnostics)


def _risks_normal(ready: int, waiting: int, p_free: np.ndarray, ring_cum: np.ndarray,
                  cum_new: np.ndarray, weights: np.ndarray, late_risk: float, candidates: int,
                  relative_sd: float, threshold: float) -> np.ndarray:
    """Abandon risk of each new call, normal approximation (large teams: sums of many Bernoulli
    terms), with the uncertainty of the contact-rate estimate. Evaluated in growing blocks of
    calls, stopping after the first block that holds a call over `threshold`."""
    supply = ready + p_free.sum(axis=0)
    supply_var = (p_free * (1.0 - p_free)).sum(axis=0)
    ring_mean = ring_cum.sum(axis=0)
    ring_var = (ring_cum * (1.0 - ring_cum)).sum(axis=0)
    # calls waiting now take the first agents that free up within their 2 s
    supply = supply - min(float(waiting), float(supply[0]))
    base_var = ring_var + supply_var + 0.25
    new_var = cum_new * (1.0 - cum_new)
    blocks = []
    first, size = 0, 16
    while first < candidates:
        before = np.arange(first, min(first + size, candidates), dtype=float)[:, None]
        ahead = ring_mean + before * cum_new
        param_sd = relative_sd * (ahead + cum_new)
        var = base_var + before * new_var + param_sd * param_sd
        risks = ndtr((ahead + 0.5 - supply) / np.sqrt(var)) @ weights + late_risk
        blocks.append(risks)
        if risks[-1] > threshold:
            break
        first, size = first + size, size * 4
    return np.concatenate(blocks) if blocks else np.zeros(0)


def _risks_exact(free_now: int, p_free: np.ndarray, ring_cum: np.ndarray, cum_new: np.ndarray,
                 weights: np.ndarray, late_risk: float, candidates: int,
                 threshold: float) -> np.ndarray:
    """Abandon risk of each new call from the exact distribution (small teams, where a normal
    approximation of a handful of Bernoulli terms is poor).

    For every look-ahead step k, D_k = agents free now (less calls waiting) + busy agents freed
    by k + the 2 s window - connects of the calls ringing by k is a Poisson-binomial variable.
    Its distribution is the product of one polynomial per Bernoulli term, computed at once for
    all terms and steps through the discrete Fourier transform (exact up to rounding: the length
    covers every value). The n-th new call is blocked at k when D_k - (connects of the n-1 new
    calls before it) <= 0; the new calls are convolved in one at a time, and the loop stops at
    the first call over `threshold` (the marginal rule needs no more). New calls only lower D,
    so every value <= 0 is lumped into one absorbing cell; steps where no new call can connect
    are skipped."""
    use = weights > 0.0
    weights, cum_new = weights[use], cum_new[use]
    p_free, ring_cum = p_free[:, use], ring_cum[:, use]
    ringing = ring_cum.shape[0]
    # exponent e = agents freed + ringing calls that do not connect; D = e + offset
    # (agent: 1 - p + p x; ringing call: c + (1 - c) x)
    length = p_free.shape[0] + ringing + 1
    offset = free_now - ringing
    low = np.concatenate([1.0 - p_free, ring_cum])
    high = np.concatenate([p_free, 1.0 - ring_cum])
    unit = np.exp(-2j * np.pi * np.arange(length // 2 + 1) / length)
    spectrum = np.prod(low[:, :, None] + high[:, :, None] * unit, axis=0)
    pmf_e = np.maximum(np.fft.irfft(spectrum, n=length, axis=1), 0.0)
    # column 0: D <= 0 (absorbing), column d: D = d
    first = min(max(1 - offset, 0), length)               # first exponent with D >= 1
    pmf = np.zeros((cum_new.size, max(length + offset, 1)))
    pmf[:, 0] = pmf_e[:, :first].sum(axis=1)
    if first < length:
        pmf[:, first + offset:] = pmf_e[:, first:]
    risks = np.empty(candidates)
    take = cum_new[:, None]
    miss = 1.0 - take
    for n in range(candidates):
        risks[n] = pmf[:, 0] @ weights + late_risk
        if risks[n] > threshold:
            return risks[:n + 1]
        shifted = pmf[:, 1:] * take                      # the call connects: D - 1
        pmf[:, 1:] *= miss
        pmf[:, :-1] += shifted
    return risks


class VicidialPacer(Pacer):
    """VICIdial's adaptive dial level (AST_VDadapt), as described in pacing.md: purely reactive,
    drop rate counted since midnight."""
    mode = PacingMode.VICIDIAL

    def __init__(self, config: PacingConfig) -> None:
        super().__init__(config)
        self.level = 1.0
        self._samples: collections.deque[tuple[int, int, int]] = collections.deque(maxlen=15)
        self._answers: collections.deque[tuple[float, int, float]] = collections.deque()
        self._prev_account: tuple[int, float] = (0, 0.0)
        self._next_sample = self._next_adapt = self._next_drop = self._next_place = 0.0

    def _decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        cfg, now = self.config, snapshot.now_s
        agents = snapshot.active_agents
        account = snapshot.account
        live_delta = account.day_live - self._prev_account[0]
        drop_delta = account.day_abandoned - self._prev_account[1]
        if live_delta < 0:      # a new day: the account was reset at midnight
            live_delta, drop_delta = account.day_live, account.day_abandoned
        self._prev_account = (account.day_live, account.day_abandoned)
        if live_delta or drop_delta:
            self._answers.append((now, live_delta, drop_delta))
        while self._answers and self._answers[0][0] <= now - 60.0:
            self._answers.popleft()
        if now >= self._next_sample:
            self._next_sample = now + 1.0
            self._samples.append((snapshot.count(AgentState.READY), snapshot.waiting_calls, agents))
        if now >= self._next_adapt:
            self._next_adapt = now + 15.0
            if self._samples:
                n = len(self._samples)
                mean_ready = sum(s[0] for s in self._samples) / n
                mean_waiting = sum(s[1] for s in self._samples) / n
                mean_agents = max(sum(s[2] for s in self._samples) / n, 1.0)
                m = (mean_ready - mean_waiting + cfg.vicidial_diff_target) / mean_agents
                i = cfg.vicidial_intensity / 100.0
                adjustment = m * abs(i - 1.0) if m < 0 else m * (1.0 + i)
                self.level = min(max(self.level * (1.0 + adjustment), 1.0), cfg.vicidial_max_level)
        if now >= self._next_drop:
            self._next_drop = now + 60.0
            minute_live = sum(a[1] for a in self._answers)
            minute_drops = sum(a[2] for a in self._answers)
            if minute_live > 20 and minute_drops > 0.5 * minute_live:
                self.level = max(self.level / 2.0, 1.0)
            if account.day_live > 50 and account.day_abandoned / account.day_live > cfg.target:
                method = cfg.vicidial_drop_method
                if method == "HARD_LIMIT":
                    self.level = 1.0
                elif method == "AVERAGE":
                    self.level = max(self.level / 2.0, 1.0)
                else:   # TAPERED
                    left = min(max(snapshot.shift_remaining_s, 0.0), cfg.shift_length_s)
                    self.level = max(self.level * left / cfg.shift_length_s, 1.0)
        diagnostics = Diagnostics(note=f"dial level {self.level:.2f}")
        if now < self._next_place:
            return PacingDecision(0, diagnostics)
        self._next_place = now + 2.5
        live_calls = (len(snapshot.ringing_ages_s) + snapshot.waiting_calls
                      + snapshot.count(AgentState.TALKING))
        return self.limited(snapshot, round(self.level * agents) - live_calls, diagnostics)


class WebitelPacer(Pacer):
    """Webitel call_center over-dial: 1 / hit rate over the last 60 minutes, corrected by the
    current abandon percentage (pacing.md)."""
    mode = PacingMode.WEBITEL
    WINDOW_S = 3600.0
    Q = 10.0

    def __init__(self, config: PacingConfig) -> None:
        super().__init__(config)
        self._attempts: collections.deque[tuple[float, int, int]] = collections.deque()
        self._sum_attempts = 0
        self._sum_live = 0

    def _decide(self, snapshot: PacingSnapshot) -> PacingDecision:
        now = snapshot.now_s
        outcomes = snapshot.new_outcomes.attempt_outcomes
        if outcomes:
            live = sum(1 for o in outcomes if o is CallOutcome.CONNECTED)
            self._attempts.append((now, len(outcomes), live))
            self._sum_attempts += len(outcomes)
            self._sum_live += live
        while self._attempts and self._attempts[0][0] <= now - self.WINDOW_S:
            _, n, live = self._attempts.popleft()
            self._sum_attempts -= n
            self._sum_live -= live
        if self._sum_attempts >= 20 and self._sum_live > 0:
            hit = self._sum_live / self._sum_attempts
        else:
            hit = self.config.prior_contact_rate
        over = 1.0 / hit
        account = snapshot.account
        a = 100.0 * account.day_abandoned / account.day_live if account.day_live else 0.0
        target = maximum = 100.0 * self.config.target
        if a >= maximum:
            over = 1.0
        elif a < target:
            over *= 1.0 + (target - a) * self.Q / 100.0
        else:
            over *= ((maximum - a) * (100.0 + self.Q) / maximum) / 100.0
        ready = snapshot.count(AgentState.READY)
        wanted = round(ready * over) - len(snapshot.ringing_ages_s) - snapshot.waiting_calls
        return self.limited(snapshot, wanted, Diagnostics(answer_probability=hit,
                                                          note=f"over-dial {over:.2f}"))


def make_pacer(config: PacingConfig, known: KnownParameters | None = None) -> Pacer:
    """The pacer for `config.mode`; `known` (benchmark only) freezes the predictive estimates."""
    if known is not None and config.mode is not PacingMode.PREDICTIVE:
        raise PacingError("known parameters only apply to predictive pacing")
    classes: dict[PacingMode, type[Pacer]] = {
        PacingMode.PREVIEW: PreviewPacer,
        PacingMode.PROGRESSIVE: ProgressivePacer,
        PacingMode.POWER: PowerPacer,
        PacingMode.AGENTLESS: AgentlessPacer,
        PacingMode.VICIDIAL: VicidialPacer,
        PacingMode.WEBITEL: WebitelPacer,
    }
    if config.mode is PacingMode.PREDICTIVE:
        return PredictivePacer(config, known)
    return classes[config.mode](config)
