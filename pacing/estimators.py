"""Online estimates the predictive pacer works from, with priors for the first minutes and
forgetting for drift.

- `ResolutionEstimator`: for every attempt, the age (seconds since originate) at which it was
  resolved and whether it was connected live. From decayed histograms it gives the live-answer
  probability and, for a call still ringing at age a, the chance that it connects within the next
  k seconds (the empirical hazard: it needs no assumption about ring-time shapes, busy tones or
  the ring timeout). A fast and a slow copy run side by side; when they disagree by more than
  `DRIFT_Z` standard errors (lunchtime, a new list) the slow copy is replaced by the fast one.
- `LognormalEstimator`: talk and wrap-up times, lognormal (Brown et al. 2005, JASA: service
  times in call centres are close to lognormal), fitted from decayed moments of log durations.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri

DRIFT_Z = 3.0
CENSORED_REUSE = 5     # decisions that may reuse the hazard tables computed with censored calls


class ResolutionEstimator:
    """Decayed histograms of resolution age (1-s bins) for connected and for all attempts."""

    def __init__(self, bins: int, prior_connected: np.ndarray, prior_all: np.ndarray,
                 memory: float, frozen: bool = False) -> None:
        self.bins = bins
        self.memory = memory
        self.frozen = frozen
        self._decay_one = math.exp(-1.0 / memory)
        # the hazard tables only need refreshing after a share of the memory has turned over
        self.refresh_every = max(10, int(memory / 100))
        self._pending = 0
        self.connected = prior_connected.astype(float).copy()
        self.all = prior_all.astype(float).copy()
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._censored: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._censored_uses = 0
        self._refresh()

    def observe(self, ages: np.ndarray, connected: np.ndarray) -> None:
        if self.frozen or ages.size == 0:
            return
        decay = self._decay_one ** ages.size
        self.connected *= decay
        self.all *= decay
        idx = np.minimum(ages.astype(np.int64), self.bins - 1)
        self.all += np.bincount(idx, minlength=self.bins)
        self.connected += np.bincount(idx[connected], minlength=self.bins)
        self._pending += ages.size
        self._refresh(tables=self._pending >= self.refresh_every)

    def replace_with(self, other: ResolutionEstimator) -> None:
        self.connected = other.connected.copy()
        self.all = other.all.copy()
        self._refresh()

    def _refresh(self, tables: bool = True) -> None:
        if tables:
            self._tables = self._censored = None
            self._pending = 0
        self.weight = float(self.all.sum())
        self.contact_rate = float(self.connected.sum()) / self.weight if self.weight > 0 else 0.0

    def relative_sd(self) -> float:
        """Relative standard error of the contact rate (parameter uncertainty)."""
        if self.frozen:
            return 0.0
        p = max(self.contact_rate, 1e-4)
        return math.sqrt((1.0 - p) / (p * max(self.weight, 1.0)))

    def tables(self, ks: np.ndarray, ringing: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cum_from_age, cum_new, new_mass): cum_from_age[a, j] = P(connect within ks[j] s |
        still ringing at age a); cum_new = cum_from_age[0]; new_mass its increments per step.

        Kaplan-Meier: `ringing` (calls still ringing, counted by age bin) are censored
        observations. Without them the first minutes would learn only from the attempts that
        resolve fast (busy tones, quick answers) and misjudge the calls still ringing. They are
        used when they weigh more than 2% of the history. `ks` must not change between calls.
        """
        censored = (ringing is not None and not self.frozen
                    and float(ringing.sum()) > 0.02 * self.weight)
        if self._tables is not None and not censored:
            return self._tables
        if censored and self._censored is not None and self._censored_uses < CENSORED_REUSE:
            # the censored counts change little from one second to the next
            self._censored_uses += 1
            return self._censored
        at_risk = np.cumsum(self.all[::-1])[::-1]
        if censored:
            at_risk = at_risk + np.cumsum(ringing[::-1])[::-1]
        at_risk = np.maximum(at_risk, 1e-12)
        survival = np.concatenate([[1.0], np.cumprod(1.0 - self.all / at_risk)[:-1]])
        connect_mass = survival * (self.connected / at_risk)
        horizon = int(ks[-1])
        cum_c = np.concatenate([[0.0], np.cumsum(connect_mass), np.zeros(horizon + 1)])
        cum_c[self.bins + 1:] = cum_c[self.bins]
        ages = np.arange(self.bins)[:, None]
        steps = np.asarray(ks, dtype=np.int64)[None, :]
        # connects resolved at integer ages a..a+k inclusive, given survival to age a
        within = cum_c[ages + steps + 1] - cum_c[ages]
        cum = within / np.maximum(survival, 1e-12)[:, None]
        np.clip(cum, 0.0, 1.0, out=cum)
        tables = (cum, cum[0], np.diff(cum[0], prepend=0.0))
        if censored:
            self._censored, self._censored_uses = tables, 1
        else:
            self._tables = tables
        return tables


class LognormalEstimator:
    """Decayed moments of log(duration) with a prior worth `prior_weight` observations."""

    def __init__(self, mean: float, cv: float, prior_weight: float, memory: float,
                 frozen: bool = False) -> None:
        sigma2 = math.log1p(cv * cv)
        mu = math.log(mean) - sigma2 / 2.0
        self.frozen = frozen
        self._decay_one = math.exp(-1.0 / memory)
        self.w = prior_weight
        self.s1 = prior_weight * mu
        self.s2 = prior_weight * (sigma2 + mu * mu)
        self.observations = 0
        self._refresh()

    def observe(self, values: np.ndarray) -> None:
        if self.frozen or values.size == 0:
            return
        logs = np.log(np.maximum(values, 0.05))
        decay = self._decay_one ** values.size
        self.w = self.w * decay + values.size
        self.s1 = self.s1 * decay + float(logs.sum())
        self.s2 = self.s2 * decay + float((logs * logs).sum())
        self.observations += values.size
        self._refresh()

    def _refresh(self) -> None:
        self.mu = self.s1 / self.w
        self.sigma = math.sqrt(max(self.s2 / self.w - self.mu ** 2, 1e-4))
        self.mean = math.exp(self.mu + self.sigma ** 2 / 2.0)
        self._points: dict[int, np.ndarray] = {}

    def cdf(self, x: np.ndarray) -> np.ndarray:
        # log of 1e-9 stands for log 0: its CDF underflows to 0
        return ndtr((np.log(np.maximum(x, 1e-9)) - self.mu) / self.sigma)

    def quantile_points(self, n: int) -> np.ndarray:
        """n equally weighted points (mid-quantiles) standing for the distribution."""
        points = self._points.get(n)
        if points is None:
            qs = (np.arange(n) + 0.5) / n
            points = self._points[n] = np.exp(self.mu + self.sigma * ndtri(qs))
        return points


def _free_within(talk: LognormalEstimator, wrap: LognormalEstimator, talk_elapsed: np.ndarray,
                 wrap_elapsed: np.ndarray, horizon_points: np.ndarray,
                 wrap_points: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """P(free within each horizon point) for talking agents (elapsed talk t: residual talk
    T - t given T > t, plus a wrap-up W represented by `wrap_points` equally likely values) and
    for wrapping agents (elapsed w: W - w given W > w)."""
    t = talk_elapsed[:, None, None]
    h = horizon_points[None, :, None]
    w = wrap.quantile_points(wrap_points)[None, None, :]
    f_t = talk.cdf(talk_elapsed)
    reached = np.maximum(talk.cdf(t + h - w) - f_t[:, None, None], 0.0).mean(axis=2)
    from_talk = np.minimum(reached / np.maximum(1.0 - f_t, 1e-9)[:, None], 1.0)
    f_w = wrap.cdf(wrap_elapsed)[:, None]
    reached = np.maximum(wrap.cdf(wrap_elapsed[:, None] + horizon_points[None, :]) - f_w, 0.0)
    from_wrap = np.minimum(reached / np.maximum(1.0 - f_w, 1e-9), 1.0)
    return from_talk, from_wrap


class FreeTimeModel:
    """P(a busy agent is free within each look-ahead point), from the talk and wrap estimators.

    Exact values are tabulated on a grid of elapsed times (denser where the hazard changes) and
    interpolated per agent; the tables are rebuilt only when a log-normal parameter has moved by
    more than `tolerance` since they were built, so a large team (many observations a second)
    does not pay for the log-normal arithmetic on every decision.
    """

    GRID = 96

    def __init__(self, talk: LognormalEstimator, wrap: LognormalEstimator,
                 horizon_points: np.ndarray, tolerance: float = 0.01) -> None:
        self.talk, self.wrap = talk, wrap
        self.horizon_points = horizon_points
        self.tolerance = tolerance
        self._build()

    def _parameters(self) -> np.ndarray:
        return np.array([self.talk.mu, self.talk.sigma, self.wrap.mu, self.wrap.sigma])

    def _build(self) -> None:
        unit = np.linspace(0.0, 1.0, self.GRID) ** 2
        self.talk_max = math.exp(self.talk.mu + 3.5 * self.talk.sigma)
        self.wrap_max = math.exp(self.wrap.mu + 3.5 * self.wrap.sigma)
        self.talk_table, self.wrap_table = _free_within(
            self.talk, self.wrap, unit * self.talk_max, unit * self.wrap_max, self.horizon_points)
        self._built_for = self._parameters()

    @staticmethod
    def _lookup(table: np.ndarray, elapsed: np.ndarray, top: float) -> np.ndarray:
        # clipped at 0 too: a negative elapsed time (a clock read before a state change)
        # would be a NaN position and an out-of-range index
        position = np.sqrt(np.clip(elapsed / top, 0.0, 1.0)) * (table.shape[0] - 1)
        low = np.minimum(position.astype(np.int64), table.shape[0] - 2)
        frac = (position - low)[:, None]
        return table[low] * (1.0 - frac) + table[low + 1] * frac

    def free_by(self, talk_elapsed: np.ndarray, wrap_elapsed: np.ndarray) -> np.ndarray:
        """Array (agents, horizon points): talking agents first, then wrapping ones."""
        if np.abs(self._parameters() - self._built_for).max() > self.tolerance:
            self._build()
        parts = []
        if talk_elapsed.size:
            parts.append(self._lookup(self.talk_table, talk_elapsed, self.talk_max))
        if wrap_elapsed.size:
            parts.append(self._lookup(self.wrap_table, wrap_elapsed, self.wrap_max))
        if not parts:
            return np.zeros((0, self.horizon_points.size))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
