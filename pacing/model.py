"""The one pacing interface: a frozen snapshot of a campaign in, a decision out.

The engine builds a `PacingSnapshot` about once a second per campaign and asks its pacer how many
calls to start now; the simulator in `pacing.simulator` builds the very same snapshot from its
simulated agents and calls, so every figure in the benchmark comes from the code the engine runs.

Abandonment follows the US rule (47 CFR 64.1200(a)(7)): a live person not connected to an agent
within 2 s of the end of the greeting is abandoned; the rate is abandoned / live answers over the
campaign's successive 30-day periods. Ofcom (UK) counts per day and adds the estimated live people
that AMD wrongly called machines; CRTC (Canada) counts per month at 5%.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from dialer.errors import ConfigError, DialerError


class PacingError(DialerError):
    """A pacer was given a snapshot or a setting it cannot work with."""


class PacingMode(enum.Enum):
    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    POWER = "power"
    PREDICTIVE = "predictive"
    AGENTLESS = "agentless"
    # Baselines reproduced for the benchmark (pacing.md): not meant for production campaigns.
    VICIDIAL = "vicidial"
    WEBITEL = "webitel"


class AgentState(enum.Enum):
    READY = "ready"          # logged in, waiting for a call
    TALKING = "talking"      # connected to a called party
    WRAP = "wrap"            # after-call work
    PAUSED = "paused"        # logged in but not taking calls; excluded from agent time


class CallOutcome(enum.Enum):
    """How an attempt ended, as the pacer's estimators see it."""
    CONNECTED = "connected"    # classified human by AMD (or no AMD) and handed to the agent queue
    MACHINE = "machine"        # classified machine by AMD: not a live answer (US)
    BUSY = "busy"              # busy, SIT tone, fast failure
    NO_ANSWER = "no_answer"    # rang out at the ring timeout


class Accounting(enum.Enum):
    US = "us"   # machines are not live answers; AMD false machines are invisible
    UK = "uk"   # estimated AMD false machines count as abandoned (Ofcom)


@dataclass(frozen=True, slots=True)
class AgentSnapshot:
    state: AgentState
    time_in_state_s: float


@dataclass(frozen=True, slots=True)
class AbandonAccount:
    """The campaign's abandon account as the rule measures it.

    `window_*` is the current measuring period (the last 30 days, or the whole campaign when
    shorter); `day_*` the current calendar day (Ofcom and CRTC style windows are configured through
    `PacingConfig.daily_window`). Live answers include the abandoned ones.
    """
    window_live: int = 0
    window_abandoned: float = 0.0
    day_live: int = 0
    day_abandoned: float = 0.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_channels: int | None = None        # concurrent outbound calls for the campaign
    max_cps: float | None = None           # new calls per second
    max_lines_per_agent: float | None = 5.0


@dataclass(frozen=True, slots=True)
class OutcomeStats:
    """Raw counts since the previous snapshot, fed to the pacer's online estimators.

    Each tuple holds one value per finished item, so a pacer sees every observation exactly once.
    `attempt_ages_s` pairs with `attempt_outcomes` (age of the call when its outcome became known).
    """
    attempt_outcomes: tuple[CallOutcome, ...] = ()
    attempt_ages_s: tuple[float, ...] = ()
    talk_s: tuple[float, ...] = ()
    wrap_s: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class PacingSnapshot:
    now_s: float                                   # seconds since the campaign started
    agents: tuple[AgentSnapshot, ...]
    ringing_ages_s: Sequence[float]                # calls originated and not yet resolved
    waiting_calls: int                             # connected calls waiting for an agent (< 2 s)
    account: AbandonAccount
    limits: Limits
    new_outcomes: OutcomeStats = OutcomeStats()
    shift_remaining_s: float = float("inf")        # until agents log off
    preview_requests: int = 0                      # agents who asked for a call (preview mode)
    state_counts: dict[AgentState, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        states = [agent.state for agent in self.agents]
        counts = {state: states.count(state) for state in AgentState}
        object.__setattr__(self, "state_counts", counts)

    def count(self, state: AgentState) -> int:
        return self.state_counts[state]

    @property
    def active_agents(self) -> int:
        return len(self.agents) - self.state_counts[AgentState.PAUSED]


@dataclass(frozen=True, slots=True)
class Diagnostics:
    answer_probability: float = float("nan")       # estimated share of attempts connected live
    expected_free_agents: float = float("nan")     # over the ring-time horizon
    predicted_abandon_probability: float = float("nan")
    target_now: float = float("nan")               # abandon share the budget allows right now
    note: str = ""


@dataclass(frozen=True, slots=True)
class PacingDecision:
    calls_to_start: int
    diagnostics: Diagnostics = field(default_factory=Diagnostics)


# Range checks of PacingConfig (a campaign's settings reach it from JSON: NaN and 0 must not).
_POSITIVE = ("abandon_wait_s", "ring_timeout_s", "prior_ring_mean_s", "prior_talk_mean_s", "prior_talk_cv",
             "prior_wrap_mean_s", "prior_wrap_cv", "prior_weight", "prior_contact_weight", "max_share_fraction",
             "exact_max_relative_sd", "shift_length_s")
_NOT_NEGATIVE = ("amd_post_greeting_s", "budget_sigmas", "reserve_abandons", "calibration_step",
                 "vicidial_max_level")
_FINITE = ("target", "ratio", "vicidial_intensity", "vicidial_diff_target", "memory_attempts", "memory_calls",
           *_POSITIVE, *_NOT_NEGATIVE)


@dataclass(frozen=True, slots=True)
class PacingConfig:
    mode: PacingMode = PacingMode.PREDICTIVE
    target: float = 0.03                 # abandon share the rule allows
    daily_window: bool = True            # also keep every calendar day under target (Ofcom/CRTC)
    accounting: Accounting = Accounting.US
    ratio: float = 2.0                   # power mode: calls per free agent
    abandon_wait_s: float = 2.0          # the rule's 2 s
    ring_timeout_s: float = 25.0
    amd_post_greeting_s: float = 0.3     # AMD silence needed after the greeting: eats into the 2 s
    amd_false_machine_share: float = 0.03  # UK accounting: estimated humans AMD calls machines
    # Priors for the first minutes (pacing.md: Avaya uses a configured initial hit rate).
    prior_contact_rate: float = 0.35
    prior_ring_mean_s: float = 10.0
    prior_talk_mean_s: float = 120.0
    prior_talk_cv: float = 1.0
    prior_wrap_mean_s: float = 15.0
    prior_wrap_cv: float = 0.5
    prior_weight: float = 30.0           # pseudo-observations behind the talk and wrap priors
    prior_contact_weight: float = 5.0    # pseudo-attempts: a weak prior keeps the first calls few
    memory_attempts: float = 2000.0      # forgetting of the contact-rate/ring estimator
    memory_calls: float = 400.0          # forgetting of talk and wrap estimators
    # Budget controller: spend what is left of the allowance, keeping a reserve of this many
    # binomial standard deviations of the abandons still to come (see allowed_share).
    budget_sigmas: float = 1.5
    reserve_abandons: float = 2.0
    max_share_fraction: float = 1.25     # never allow more than this share of the target
    calibration_step: float = 0.05       # log-threshold change per live answer (see calibrate)
    # Risk of each call: exact (Poisson-binomial) while busy agents + ringing calls stay
    # within this many terms and the contact rate is known this well; otherwise a normal
    # approximation (large teams, where it is good and the exact sums would cost too much).
    exact_max_terms: int = 40
    exact_max_relative_sd: float = 0.1
    # VICIdial baseline settings (AST_VDadapt defaults).
    vicidial_max_level: float = 3.0
    vicidial_intensity: float = 0.0
    vicidial_diff_target: float = 0.0
    vicidial_drop_method: str = "TAPERED"
    shift_length_s: float = 8 * 3600.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.target < 1.0:
            raise ConfigError(f"abandon target must be in [0, 1), got {self.target}")
        if self.ratio < 1.0:
            raise ConfigError(f"power ratio must be at least 1, got {self.ratio}")
        if not 0.0 < self.prior_contact_rate <= 1.0:
            raise ConfigError(f"prior contact rate must be in (0, 1], got {self.prior_contact_rate}")
        if self.vicidial_drop_method not in ("HARD_LIMIT", "AVERAGE", "TAPERED"):
            raise ConfigError(f"unknown VICIdial drop method {self.vicidial_drop_method!r}")
        for name in _FINITE:
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be above 0, got {getattr(self, name)}")
        for name in _NOT_NEGATIVE:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.amd_false_machine_share <= 1.0:
            raise ConfigError(f"amd_false_machine_share must be in [0, 1], got {self.amd_false_machine_share}")
        if self.memory_calls < 1 or self.memory_attempts < 1 or self.exact_max_terms < 1:
            raise ConfigError("memory_calls, memory_attempts and exact_max_terms must be at least 1")
