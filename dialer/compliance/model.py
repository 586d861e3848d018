"""Value types of the compliance gate: the call the engine is about to place and the decision.

The engine builds a CallRequest immediately before each originate and passes it to
ComplianceGate.decide(); the Decision says whether the call may be placed, and why not (one
Block per rule that blocked or could not be evaluated, with the rule's citation), so that every
decision can be shown to a regulator later (47 CFR 64.1200, 16 CFR 310.5 record keeping).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone

from dialer.errors import DialerError


class ComplianceError(DialerError):
    """A compliance input, rule pack or store is malformed or unusable."""


class RulePackError(ComplianceError):
    """A rule pack file does not follow the rule pack format."""


class DncImportError(ComplianceError):
    """A do-not-call file could not be imported (nothing of it was applied)."""


class Purpose(enum.StrEnum):
    TELEMARKETING = "telemarketing"
    INFORMATIONAL = "informational"
    DEBT = "debt"


class DialMode(enum.StrEnum):
    PREDICTIVE = "predictive"
    PROGRESSIVE = "progressive"
    PREVIEW = "preview"
    AGENTLESS = "agentless"


class Voice(enum.StrEnum):
    LIVE = "live"
    PRERECORDED = "prerecorded"
    ARTIFICIAL = "artificial"


class LineType(enum.StrEnum):
    """What line-type (or porting) data says about a number; UNKNOWN counts as possibly wireless."""
    UNKNOWN = "unknown"
    WIRELESS = "wireless"
    LANDLINE = "landline"


class ConsentKind(enum.StrEnum):
    EXPRESS = "express"
    WRITTEN = "written"
    EBR_PURCHASE = "ebr_purchase"
    EBR_INQUIRY = "ebr_inquiry"
    REVOCATION = "revocation"


class ListKind(enum.StrEnum):
    FEDERAL = "federal"      # national registry by area code (US National DNC, Canada's DNCL)
    STATE = "state"          # a state registry by area code
    TPS = "tps"              # UK Telephone Preference Service (individuals)
    CTPS = "ctps"            # UK Corporate Telephone Preference Service
    INTERNAL = "internal"    # company-wide do-not-call (opt-outs)
    CAMPAIGN = "campaign"    # one campaign's list
    CUSTOM = "custom"        # litigators and other suppression lists


class Outcome(enum.StrEnum):
    """Call outcomes the engine reports back; some start locks or uncount an attempt."""
    # not connected to the dialed number: busy signal, not in service, failed (Reg F does not
    # count these, 12 CFR 1006.14(b)(3) and its official interpretation)
    NO_CONNECT = "no_connect"
    # rang unanswered: connected to the dialed number, so it counts wherever a placed call counts
    # (a Reg F attempt: only a call that does not connect is left out)
    NO_ANSWER = "no_answer"
    ANSWERED = "answered"
    CONVERSATION = "conversation"
    ABANDONED = "abandoned"
    MACHINE = "machine"
    DECLINED = "declined"
    # allowed, then never placed (no line, no switch): no counter may keep it, whatever its rule
    NOT_PLACED = "not_placed"


class FailClosed(enum.StrEnum):
    """Reason codes for a rule that could not be evaluated; the call is blocked."""
    INVALID_NUMBER = "INVALID_NUMBER"
    NO_RULE_PACK = "NO_RULE_PACK"
    UNKNOWN_ZONE = "UNKNOWN_ZONE"
    UNKNOWN_STATE = "UNKNOWN_STATE"
    EMPTY_WINDOW = "EMPTY_WINDOW"
    HOLIDAY_CALENDAR_MISSING = "HOLIDAY_CALENDAR_MISSING"
    REGISTRY_MISSING = "REGISTRY_MISSING"
    REGISTRY_STALE = "REGISTRY_STALE"
    DNC_STORE_UNAVAILABLE = "DNC_STORE_UNAVAILABLE"
    CONSENT_STORE_UNAVAILABLE = "CONSENT_STORE_UNAVAILABLE"
    COUNTER_STORE_UNAVAILABLE = "COUNTER_STORE_UNAVAILABLE"
    COUNTERS_NOT_LOADED = "COUNTERS_NOT_LOADED"  # Redis lost the counters: they are being rebuilt
    AUDIT_UNAVAILABLE = "AUDIT_UNAVAILABLE"
    RND_NO_DATA = "RND_NO_DATA"                  # reassigned-numbers copy missing or not covering the consent date
    RND_STORE_UNAVAILABLE = "RND_STORE_UNAVAILABLE"
    PERSON_MISSING = "PERSON_MISSING"            # a debt call without the lead's person id (Reg F counts per person)


# Fail-closed reasons that pass without the lead changing. A store that is down comes back by
# itself (the engine holds its dialing and retries soon); a list or calendar that is missing or
# stale comes back when an operator loads it (the lead is retried later). The other reasons say
# something about the lead itself (its number, zone, state, a missing person id) and close it.
STORE_DOWN = frozenset({FailClosed.DNC_STORE_UNAVAILABLE, FailClosed.CONSENT_STORE_UNAVAILABLE,
                        FailClosed.COUNTER_STORE_UNAVAILABLE, FailClosed.COUNTERS_NOT_LOADED,
                        FailClosed.AUDIT_UNAVAILABLE, FailClosed.RND_STORE_UNAVAILABLE})
DATA_MISSING = frozenset({FailClosed.REGISTRY_MISSING, FailClosed.REGISTRY_STALE, FailClosed.RND_NO_DATA,
                          FailClosed.HOLIDAY_CALENDAR_MISSING})


@dataclass(frozen=True)
class Lead:
    """What the lead record says about the person; every field optional."""
    state: str | None = None
    zip_code: str | None = None
    person_id: str | None = None
    debt_id: str | None = None
    line_type: LineType = LineType.UNKNOWN


@dataclass(frozen=True)
class Campaign:
    campaign_id: str
    purpose: Purpose = Purpose.TELEMARKETING
    mode: DialMode = DialMode.PREDICTIVE
    voice: Voice = Voice.LIVE
    caller_id: str | None = None
    seller: str = ""
    subject: str = ""           # "same subject" of the 3-in-24h caps; defaults to the campaign id


@dataclass(frozen=True)
class CallRequest:
    phone_e164: str
    campaign: Campaign
    now: datetime               # timezone-aware
    lead: Lead = field(default_factory=Lead)


@dataclass(frozen=True)
class Block:
    code: str                   # a rule id (US-HRS) or a FailClosed code
    rule_id: str
    citation: str
    detail: str = ""
    timed: bool = False         # it will pass at a known time (an hours rule, a cap's window, a lock)
    until: datetime | None = None   # that time, for a cap or a lock (hours: next_allowed_at)


@dataclass(frozen=True)
class Decision:
    decision_id: str
    allowed: bool
    blocks: tuple[Block, ...]
    next_allowed_at: datetime | None
    zones: tuple[str, ...]
    states: tuple[str, ...]
    local_times: dict[str, str]
    counters: dict[str, int]
    pack_versions: dict[str, str]
    rules_evaluated: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    counter_keys: tuple[str, ...] = ()     # counters this allowed call was counted in

    @property
    def reasons(self) -> list[str]:
        seen: dict[str, None] = {}
        for block in self.blocks:
            seen.setdefault(block.code, None)
        return list(seen)

    def to_dict(self) -> dict:
        return {
            "decision_id": self.decision_id,
            "allowed": self.allowed,
            "reasons": self.reasons,
            "next_allowed_at": iso_z(self.next_allowed_at),
            "zones": list(self.zones),
            "states": list(self.states),
            "local_times": self.local_times,
            "counters": self.counters,
            "pack_versions": self.pack_versions,
            "blocks": [{"code": b.code, "rule_id": b.rule_id, "citation": b.citation, "detail": b.detail}
                       for b in self.blocks],
            "rules_evaluated": list(self.rules_evaluated),
            "warnings": list(self.warnings),
            "counter_keys": list(self.counter_keys),
        }


def iso_z(moment: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, or None."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
