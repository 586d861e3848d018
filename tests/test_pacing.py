"""Pacing: the one interface, every mode, the estimators and the budget controller."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dialer.errors import ConfigError, DialerError
from pacing.estimators import FreeTimeModel, LognormalEstimator, ResolutionEstimator, _free_within
from pacing.model import (
    AbandonAccount, AgentSnapshot, AgentState, CallOutcome, Limits, OutcomeStats, PacingConfig,
    PacingDecision, PacingError, PacingMode, PacingSnapshot,
)
from pacing.policies import (
    PredictivePacer, VicidialPacer, WebitelPacer, _risks_exact, _risks_normal, make_pacer,
)

READY, TALKING, WRAP, PAUSED = (AgentState.READY, AgentState.TALKING, AgentState.WRAP,
                                AgentState.PAUSED)


def snapshot(ready=0, talking=(), wrapping=(), paused=0, ringing=(), waiting=0, now=0.0,
             account=AbandonAccount(), limits=Limits(), outcomes=OutcomeStats(),
             shift_remaining=4 * 3600.0, preview_requests=0) -> PacingSnapshot:
    agents = ([AgentSnapshot(READY, 5.0)] * ready + [AgentSnapshot(TALKING, t) for t in talking]
              + [AgentSnapshot(WRAP, w) for w in wrapping] + [AgentSnapshot(PAUSED, 1.0)] * paused)
    return PacingSnapshot(now_s=now, agents=tuple(agents), ringing_ages_s=tuple(ringing),
                          waiting_calls=waiting, account=account, limits=limits,
                          new_outcomes=outcomes, shift_remaining_s=shift_remaining,
                          preview_requests=preview_requests)


def test_every_mode_answers_through_the_one_interface():
    snap = snapshot(ready=3, talking=(30.0,), ringing=(2.0,), limits=Limits(max_channels=50,
                                                                            max_cps=10))
    for mode in PacingMode:
        decision = make_pacer(PacingConfig(mode=mode)).decide(snap)
        assert isinstance(decision, PacingDecision)
        assert 0 <= decision.calls_to_start <= 10, mode


def test_progressive_power_preview_agentless_counts():
    snap = snapshot(ready=4, talking=(10.0, 20.0), ringing=(1.0,), waiting=1)
    assert make_pacer(PacingConfig(mode=PacingMode.PROGRESSIVE)).decide(snap).calls_to_start == 2
    power = make_pacer(PacingConfig(mode=PacingMode.POWER, ratio=2.5)).decide(snap)
    assert power.calls_to_start == 10 - 1 - 1
    preview = make_pacer(PacingConfig(mode=PacingMode.PREVIEW))
    assert preview.decide(snapshot(ready=4, preview_requests=3)).calls_to_start == 3
    agentless = make_pacer(PacingConfig(mode=PacingMode.AGENTLESS))
    limited = snapshot(ringing=(1.0,) * 7, limits=Limits(max_channels=10, max_cps=100))
    assert agentless.decide(limited).calls_to_start == 3
    with pytest.raises(PacingError):
        make_pacer(PacingConfig(mode=PacingMode.AGENTLESS)).decide(snapshot())


def test_limits_channels_lines_and_calls_per_second():
    pacer = make_pacer(PacingConfig(mode=PacingMode.POWER, ratio=3.0))
    snap = snapshot(ready=10, limits=Limits(max_channels=12, max_lines_per_agent=None))
    assert pacer.decide(snap).calls_to_start == 12
    lines = snapshot(ready=2, talking=(5.0, 5.0), limits=Limits(max_lines_per_agent=2.0))
    assert make_pacer(PacingConfig(mode=PacingMode.POWER, ratio=3.0)).decide(
        lines).calls_to_start == 2 * 4 - 2
    # token bucket: 2 calls per second, however many are wanted
    cps = make_pacer(PacingConfig(mode=PacingMode.POWER, ratio=3.0))
    started = [cps.decide(snapshot(ready=10, now=t, limits=Limits(max_cps=2.0))).calls_to_start
               for t in (0.0, 1.0, 2.0)]
    assert started == [2, 2, 2]
    with pytest.raises(PacingError):
        cps.decide(snapshot(ready=1, now=0.5))


def test_config_rejects_nonsense():
    with pytest.raises(ConfigError):
        PacingConfig(target=1.5)
    with pytest.raises(ConfigError):
        PacingConfig(ratio=0.5)
    assert issubclass(PacingError, DialerError)


def test_snapshot_counts_agents_by_state():
    snap = snapshot(ready=2, talking=(1.0,), wrapping=(2.0, 3.0), paused=1)
    assert (snap.count(READY), snap.count(TALKING), snap.count(WRAP), snap.count(PAUSED)) == \
        (2, 1, 2, 1)
    assert snap.active_agents == 5


# -- estimators ------------------------------------------------------------------------------
def test_lognormal_estimator_converges_from_its_prior():
    rng = np.random.default_rng(5)
    est = LognormalEstimator(mean=200.0, cv=0.3, prior_weight=30, memory=2000)
    sigma = math.sqrt(math.log(2.0))
    est.observe(rng.lognormal(math.log(60.0) - sigma ** 2 / 2, sigma, 3000))
    assert est.mean == pytest.approx(60.0, rel=0.08)
    assert est.sigma == pytest.approx(sigma, rel=0.08)


def test_resolution_estimator_contact_rate_and_hazard():
    bins = 48
    prior_c = np.zeros(bins)
    prior_all = np.ones(bins)
    est = ResolutionEstimator(bins, prior_c, prior_all, memory=5000)
    rng = np.random.default_rng(2)
    n = 4000
    connected = rng.random(n) < 0.2
    ages = np.where(connected, rng.uniform(8, 12, n), 25.0)
    est.observe(ages, connected)
    assert est.contact_rate == pytest.approx(0.2, abs=0.03)
    cum, cum_new, _ = est.tables(np.arange(0, 41, 2))
    # a call still ringing at 13 s will not connect (all connects happen at 8-12 s)
    assert cum[13, -1] < 0.02
    # a new call connects within 14 s with about the contact rate
    assert cum_new[7] == pytest.approx(0.2, abs=0.03)


def test_free_time_table_matches_the_exact_computation():
    talk = LognormalEstimator(90.0, 1.0, 30, 400)
    wrap = LognormalEstimator(15.0, 0.5, 30, 400)
    points = np.arange(0, 41, 2) + 1.7
    model = FreeTimeModel(talk, wrap, points)
    talk_elapsed = np.array([0.0, 3.0, 45.0, 200.0])
    wrap_elapsed = np.array([0.0, 9.0, 20.0])
    exact_t, exact_w = _free_within(talk, wrap, talk_elapsed, wrap_elapsed, points)
    approx = model.free_by(talk_elapsed, wrap_elapsed)
    assert np.abs(approx - np.vstack([exact_t, exact_w])).max() < 0.02
    # a wrapping agent is far more likely to be free soon than one who just started talking
    assert approx[4, 5] > approx[0, 5]
    # a time read a moment before a state change (negative) is the start of the state, not a
    # crash (QA: the engine's snapshot read its clock before a store query)
    np.testing.assert_array_equal(model.free_by(np.array([-0.001]), np.array([-0.5])),
                                  model.free_by(np.array([0.0]), np.array([0.0])))


def test_free_time_tables_follow_the_estimates_not_every_observation():
    talk = LognormalEstimator(60.0, 1.0, 300, 400)
    wrap = LognormalEstimator(15.0, 0.5, 300, 400)
    model = FreeTimeModel(talk, wrap, np.arange(0, 41, 2) + 1.7)
    elapsed = np.array([30.0])
    before = model.free_by(elapsed, np.zeros(0))
    talk.observe(np.array([61.0]))               # moves the estimate by far less than 0.01
    assert np.array_equal(model.free_by(elapsed, np.zeros(0)), before)
    talk.observe(np.full(200, 20.0))             # much shorter calls: the tables are rebuilt
    after = model.free_by(elapsed, np.zeros(0))
    assert (after > before + 0.05).any()
    exact_t, _ = _free_within(talk, wrap, elapsed, np.zeros(0), model.horizon_points)
    assert np.abs(after - exact_t).max() < 0.02


# -- risk of each new call --------------------------------------------------------------------
def brute_force_risks(free_now, p_free, ring_cum, cum_new, weights, candidates):
    """Enumerate every outcome of every Bernoulli term at each look-ahead step."""
    terms = [(+1, p) for p in p_free] + [(-1, c) for c in ring_cum]
    risks = []
    for n in range(candidates):
        blocked = []
        for k in range(cum_new.size):
            column = terms + [(-1, cum_new)] * n
            prob = 0.0
            for hits in itertools.product((0, 1), repeat=len(column)):
                weight, d = 1.0, free_now
                for hit, (sign, p) in zip(hits, column):
                    weight *= p[k] if hit else 1.0 - p[k]
                    d += sign * hit
                prob += weight * (d <= 0)
            blocked.append(prob)
        risks.append(float(np.dot(blocked, weights)))
    return np.array(risks)


def test_exact_risk_matches_brute_force_enumeration():
    rng = np.random.default_rng(3)
    steps = 4
    p_free = np.sort(rng.random((2, steps)), axis=1)
    ring_cum = np.sort(rng.random((3, steps)) * 0.4, axis=1)
    cum_new = np.array([0.0, 0.05, 0.12, 0.15])
    weights = np.diff(cum_new, prepend=0.0) / cum_new[-1]
    for free_now in (-7, -1, 0, 1, 2):      # -7: more calls waiting than agents
        exact = _risks_exact(free_now, p_free, ring_cum, cum_new, weights, 0.0, 4, 1.0)
        expected = brute_force_risks(free_now, p_free, ring_cum, cum_new, weights, 4)
        np.testing.assert_allclose(exact, expected, atol=1e-12)
    # the loop stops at the first call whose risk is over the threshold
    stopped = _risks_exact(0, p_free, ring_cum, cum_new, weights, 0.0, 4, 0.0)
    assert stopped.size == 1 and stopped[0] > 0.0


def test_exact_risk_where_the_normal_approximation_is_poor():
    # one free agent, nothing else: the first new call cannot be abandoned, the second is
    # abandoned exactly when both connect and the first one connected no later
    cum_new = np.array([0.0, 0.1, 0.15])
    weights = np.diff(cum_new, prepend=0.0) / cum_new[-1]
    none = np.zeros((0, 3))
    exact = _risks_exact(1, none, none, cum_new, weights, 0.0, 2, 1.0)
    assert exact[0] == 0.0
    assert exact[1] == pytest.approx(float(cum_new @ weights))
    normal = _risks_normal(1, 0, none, none, cum_new, weights, 0.0, 2, 0.0, 1.0)
    assert normal[0] > 0.1        # the continuity-corrected normal sees risk where there is none


# -- predictive decisions ---------------------------------------------------------------------
def test_predictive_warm_start_is_bounded_and_diagnosed():
    pacer = make_pacer(PacingConfig())
    decision = pacer.decide(snapshot(ready=5))
    d = decision.diagnostics
    # five free agents and a cautious 35% prior: more than one call each, no blind burst
    assert 6 <= decision.calls_to_start <= 15
    assert d.answer_probability == pytest.approx(0.35, abs=0.01)
    assert d.expected_free_agents >= 5
    assert 0.0 <= d.predicted_abandon_probability <= d.target_now * 1.0001


def test_predictive_waits_when_agents_are_busy_and_calls_are_waiting():
    pacer = make_pacer(PacingConfig())
    busy = snapshot(talking=(5.0, 8.0, 2.0, 1.0, 4.0), ringing=(3.0,) * 6, waiting=1)
    assert pacer.decide(busy).calls_to_start == 0


def test_exhausted_budget_falls_back_to_progressive():
    pacer = make_pacer(PacingConfig())
    over = AbandonAccount(window_live=9000, window_abandoned=300, day_live=3000,
                          day_abandoned=120)
    snap = snapshot(ready=4, talking=(100.0,) * 6, ringing=(1.0,), account=over,
                    shift_remaining=600.0)
    decision = pacer.decide(snap)
    assert decision.diagnostics.target_now == 0.0
    assert decision.calls_to_start == 3          # one per free agent not already dialed for


def test_budget_controller_spends_the_remaining_allowance():
    pacer = PredictivePacer(PacingConfig())
    fresh = pacer.allowed_share(snapshot(ready=20), 20)
    assert 0.015 <= fresh <= 0.027          # below the 3% target
    behind = AbandonAccount(10000, 200, 3000, 60)       # 2% so far: slack to spend
    ahead = AbandonAccount(10000, 200, 3000, 110)       # 3.7% today: must catch up
    late = pacer.allowed_share(snapshot(ready=20, account=behind, shift_remaining=300), 20)
    tight = pacer.allowed_share(snapshot(ready=20, account=ahead, shift_remaining=3600), 20)
    assert late > fresh
    assert tight == 0.0


def test_budget_reserve_shrinks_as_the_shift_runs_out():
    pacer = PredictivePacer(PacingConfig())
    on_target = AbandonAccount(3000, 90, 3000, 90)        # exactly 3% so far
    early = pacer.allowed_share(snapshot(ready=5, account=on_target, shift_remaining=6 * 3600), 5)
    late = pacer.allowed_share(snapshot(ready=5, account=on_target, shift_remaining=600), 5)
    # a reserve is kept for the abandons still to come: below target, and the fewer live
    # answers are left, the larger the reserve is against them (caution near the end)
    assert 0.0 <= late < early < 0.03
    no_reserve = PredictivePacer(PacingConfig(budget_sigmas=0.0, reserve_abandons=0.0))
    assert no_reserve.allowed_share(snapshot(ready=5, account=on_target,
                                             shift_remaining=600), 5) == pytest.approx(0.03)


def test_small_teams_use_the_exact_risk_large_ones_the_normal_one():
    pacer = PredictivePacer(PacingConfig())
    rng = np.random.default_rng(4)
    connected = rng.random(3000) < 0.15
    outcomes = tuple(CallOutcome.CONNECTED if c else CallOutcome.NO_ANSWER for c in connected)
    ages = tuple(9.0 if c else 25.0 for c in connected)
    pacer.decide(snapshot(ready=0, talking=(10.0,) * 5,
                          outcomes=OutcomeStats(outcomes, ages, (60.0,) * 50, (15.0,) * 50)))
    small = pacer.decide(snapshot(ready=3, talking=(50.0, 20.0), wrapping=(3.0, 9.0),
                                  ringing=(2.0,), now=1.0))
    assert small.diagnostics.note.endswith("exact")
    assert small.calls_to_start >= 2          # at least one per free agent not dialed for
    assert 0.0 <= small.diagnostics.predicted_abandon_probability <= 1.0
    large = pacer.decide(snapshot(ready=5, talking=(50.0,) * 60, wrapping=(3.0,) * 20,
                                  ringing=(2.0,) * 30, now=2.0))
    assert not large.diagnostics.note.endswith("exact")
    assert large.calls_to_start >= 5


def test_predictive_learns_from_outcomes_and_detects_a_drift():
    pacer = PredictivePacer(PacingConfig(prior_contact_rate=0.1))
    rng = np.random.default_rng(9)
    now = 0.0
    for rate in (0.1, 0.3):
        for _ in range(60):
            now += 1.0
            connected = rng.random(20) < rate
            outcomes = tuple(CallOutcome.CONNECTED if c else CallOutcome.NO_ANSWER
                             for c in connected)
            ages = tuple(9.0 if c else 25.0 for c in connected)
            pacer.decide(snapshot(ready=1, talking=(10.0,) * 9, now=now,
                                  outcomes=OutcomeStats(outcomes, ages, (60.0,), (12.0,))))
    assert pacer.drift_resets >= 1
    assert pacer.slow.contact_rate == pytest.approx(0.3, abs=0.05)


def test_vicidial_level_rises_with_idle_agents_and_halves_on_drops():
    pacer = VicidialPacer(PacingConfig())
    for t in range(0, 31):
        pacer.decide(snapshot(ready=10, talking=(5.0,) * 10, now=float(t)))
    assert pacer.level > 1.0
    level = pacer.level
    pacer.decide(snapshot(ready=0, talking=(5.0,) * 20, now=61.0,
                          account=AbandonAccount(100, 60, 100, 60)))
    assert pacer.level <= max(level / 2.0, 1.0) + 1e-9


def test_webitel_over_dial_formula():
    pacer = WebitelPacer(PacingConfig())
    outcomes = OutcomeStats((CallOutcome.CONNECTED,) * 5 + (CallOutcome.NO_ANSWER,) * 20,
                            (9.0,) * 25)
    # hit rate 20% -> over-dial 5; abandon 1% < 3% -> x (1 + 2 x 10 / 100) = 6.0 per ready agent
    free = Limits(max_lines_per_agent=None)
    d = pacer.decide(snapshot(ready=2, outcomes=outcomes, account=AbandonAccount(100, 1, 100, 1),
                              limits=free))
    assert d.calls_to_start == 12
    d = pacer.decide(snapshot(ready=2, now=1.0, account=AbandonAccount(100, 3, 100, 3),
                              limits=free))
    assert d.calls_to_start == 2                   # at the maximum: one call per agent


def test_engine_agent_time_in_state_is_never_negative():
    """The engine hands the pacer each agent's time in state; a `now` read before the agent's
    last state change (a greenlet switched during a store query) counts as 0, not negative."""
    from dialer.engine.agents import Agent
    agent = Agent("a1", "user/1001", state_since=100.0)
    assert agent.time_in_state(99.5) == 0.0 and agent.time_in_state(102.0) == 2.0
