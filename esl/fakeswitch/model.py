"""Called parties behind the simulated switch: who answers, after how long, and who they are.

A `CalledPartyModel` turns a destination number into a `Behaviour`: the SIP outcome the far end
produces (answer, 486 busy, no answer until originate_timeout, 404, 603, 503, congestion with a
Q.850 34 Reason), how long it rings, whether it sends 183 early media first, whether a human or an
answering machine picks up, and how long the party stays before hanging up.

Scripted destinations make tests deterministic (documented in docs/fakeswitch.md):
- `7700`..`7711` behave like the extensions of the switch the shared captures were recorded on
  (7700 human "Hello?", 7701 answering machine with beep, 7702 busy, 7707 183 for 3 s then answer...).
- Numbers in the fictional NANP range `NXX-555-01DD` (e.g. +12125550102) pick the same behaviour
  from their last two digits DD (`SCRIPTED_CODES`).
Every other number draws its behaviour from the configured probabilities with a random generator
seeded by (seed, number, attempt), so a run is reproducible whatever the order of the calls.
"""
from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass, field, replace

from esl.errors import ESLError


class FakeSwitchError(ESLError):
    """The simulated switch was configured or driven wrongly."""


class Outcome(enum.Enum):
    """What the far end does with the INVITE (SIP status in the value's comment)."""

    ANSWER = "answer"                        # 200 OK
    BUSY = "busy"                            # 486 Busy Here -> USER_BUSY
    NO_ANSWER = "no_answer"                  # rings until originate_timeout -> NO_ANSWER
    REJECTED = "rejected"                    # 603 Decline -> CALL_REJECTED
    UNALLOCATED = "unallocated"              # 404 Not Found -> UNALLOCATED_NUMBER
    TEMPORARY_FAILURE = "temporary_failure"  # 503 -> NORMAL_TEMPORARY_FAILURE
    CONGESTION = "congestion"                # 503 + Reason Q.850;cause=34 -> NORMAL_CIRCUIT_CONGESTION


# Outcome -> (hangup cause, SIP status, SIP phrase) as sofia maps a final failure response.
FAILURES = {
    Outcome.BUSY: ("USER_BUSY", 486, "Busy Here"),
    Outcome.REJECTED: ("CALL_REJECTED", 603, "Decline"),
    Outcome.UNALLOCATED: ("UNALLOCATED_NUMBER", 404, "Not Found"),
    Outcome.TEMPORARY_FAILURE: ("NORMAL_TEMPORARY_FAILURE", 503, "Service Unavailable"),
    Outcome.CONGESTION: ("NORMAL_CIRCUIT_CONGESTION", 503, "Service Unavailable"),
}


class Party(enum.Enum):
    HUMAN = "human"
    MACHINE = "machine"


@dataclass(frozen=True)
class Behaviour:
    outcome: Outcome
    ring_seconds: float = 0.0          # 180 Ringing until the final answer / failure
    early_media: bool = False          # 183 Session Progress with SDP before answering
    party: Party = Party.HUMAN
    stay_seconds: float | None = None  # the party hangs up this long after answer (None: never)


_H, _M = Party.HUMAN, Party.MACHINE
# Last two digits of a scripted number -> behaviour (the 77DD capture extensions use the same table).
SCRIPTED_CODES: dict[str, Behaviour] = {
    "00": Behaviour(Outcome.ANSWER, party=_H),
    "01": Behaviour(Outcome.ANSWER, party=_M),
    "02": Behaviour(Outcome.BUSY),
    "03": Behaviour(Outcome.NO_ANSWER, ring_seconds=3600.0),
    "04": Behaviour(Outcome.REJECTED),
    "05": Behaviour(Outcome.UNALLOCATED),
    "06": Behaviour(Outcome.TEMPORARY_FAILURE),
    "07": Behaviour(Outcome.ANSWER, ring_seconds=3.0, early_media=True, party=_H),
    "08": Behaviour(Outcome.CONGESTION),
    "09": Behaviour(Outcome.ANSWER, party=_H, stay_seconds=2.0),
    "10": Behaviour(Outcome.ANSWER, ring_seconds=2.0, party=_H),
    "11": Behaviour(Outcome.ANSWER, ring_seconds=2.0, party=_M),
}

_CAPTURE_EXTENSION = re.compile(r"^77(\d\d)$")
_FICTIONAL_NANP = re.compile(r"^(?:\+?1)?[2-9]\d\d55501(\d\d)$")


def scripted_code(number: str) -> str | None:
    """The scripted two-digit code of a destination number, or None for a modelled number."""
    digits = number.strip()
    match = _CAPTURE_EXTENSION.match(digits) or _FICTIONAL_NANP.match(digits)
    if match and match.group(1) in SCRIPTED_CODES:
        return match.group(1)
    return None


@dataclass
class CalledPartyModel:
    """Probabilities of each outcome and distributions of ring and stay times (seconds).

    The outcome probabilities are drawn in this order; what remains is NO_ANSWER. Ring time is
    log-normal around `ring_median` clipped to [ring_min, ring_max]; a party stays for an
    exponential time of mean `stay_mean` (at least 1 s). `time_scale` shrinks ring and stay times
    (tests and benchmarks use 0.01), never audio.
    """

    seed: int = 0
    answer_probability: float = 0.55
    busy_probability: float = 0.10
    unallocated_probability: float = 0.04
    rejected_probability: float = 0.03
    temporary_failure_probability: float = 0.03
    congestion_probability: float = 0.02
    early_media_probability: float = 0.25
    machine_probability: float = 0.30
    ring_median: float = 6.0
    ring_min: float = 1.0
    ring_max: float = 40.0
    stay_mean: float = 45.0
    time_scale: float = 1.0
    scripts: dict[str, Behaviour] = field(default_factory=dict)
    _attempts: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        failures = (self.busy_probability + self.unallocated_probability + self.rejected_probability
                    + self.temporary_failure_probability + self.congestion_probability)
        if not 0 <= self.answer_probability <= 1 or failures + self.answer_probability > 1 + 1e-9:
            raise FakeSwitchError("outcome probabilities must be within [0, 1] and sum to at most 1")
        if self.time_scale <= 0:
            raise FakeSwitchError("time_scale must be positive")

    def script(self, number: str, behaviour: Behaviour) -> None:
        """Fix the behaviour of one destination number."""
        self.scripts[number] = behaviour

    def decide(self, number: str) -> Behaviour:
        """The behaviour of the next call to `number` (ring/stay times already time-scaled)."""
        behaviour = self.scripts.get(number)
        if behaviour is None:
            code = scripted_code(number)
            behaviour = SCRIPTED_CODES[code] if code else self._draw(number)
        return replace(
            behaviour,
            ring_seconds=behaviour.ring_seconds * self.time_scale,
            stay_seconds=None if behaviour.stay_seconds is None else behaviour.stay_seconds * self.time_scale)

    def _draw(self, number: str) -> Behaviour:
        attempt = self._attempts.get(number, 0)
        self._attempts[number] = attempt + 1
        rng = random.Random(f"{self.seed}:{number}:{attempt}")
        ring = min(self.ring_max, max(self.ring_min, rng.lognormvariate(0.0, 0.5) * self.ring_median))
        point = rng.random()
        for outcome, probability in (
                (Outcome.ANSWER, self.answer_probability),
                (Outcome.BUSY, self.busy_probability),
                (Outcome.UNALLOCATED, self.unallocated_probability),
                (Outcome.REJECTED, self.rejected_probability),
                (Outcome.TEMPORARY_FAILURE, self.temporary_failure_probability),
                (Outcome.CONGESTION, self.congestion_probability)):
            if point < probability:
                break
            point -= probability
        else:
            return Behaviour(Outcome.NO_ANSWER, ring_seconds=3600.0)
        if outcome is not Outcome.ANSWER:
            # Failures come back after a short ring at most (busy and 404 are nearly immediate).
            return Behaviour(outcome, ring_seconds=min(ring, 2.0) * rng.random())
        party = Party.MACHINE if rng.random() < self.machine_probability else Party.HUMAN
        return Behaviour(Outcome.ANSWER, ring_seconds=ring,
                         early_media=rng.random() < self.early_media_probability, party=party,
                         stay_seconds=max(1.0, rng.expovariate(1.0 / self.stay_mean)))
