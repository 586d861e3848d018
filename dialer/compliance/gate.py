"""The compliance gate: decide(call) immediately before each originate, fail closed, record why.

Every rule of every applicable pack is evaluated; any rule that blocks, or cannot be evaluated
(unknown zone or state, stale or missing registry, a store down), blocks the call with its own
reason code. Hours are the intersection over every candidate zone and state (hours.py); when
only rules that pass at a known time block (hours, a frequency cap whose window will slide, a
quiet-period lock), next_allowed_at says when to requeue the lead. Counters are checked and
incremented in the same atomic step (counters.py), and each decision, allowed or not, is
appended to the hash-chained audit (audit.py) unless the call is a dry run.
"""
from __future__ import annotations

import calendar
import functools
import os
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from dialer.compliance.counters import (CounterChange, CounterCheck, CountersNotLoaded, LockCheck, counter_key,
                                       lock_key)
from dialer.compliance.geo import Geography, NumberFacts, is_zip
from dialer.compliance.hours import (
    NEXT_ALLOWED_HORIZON_DAYS, HolidayCalendars, HoursCheck, MissingHolidayCalendar, build_timeline,
    failing_checks, next_allowed,
)
from dialer.compliance.model import (
    Block, CallRequest, ComplianceError, ConsentKind, Decision, FailClosed, LineType, ListKind, Outcome,
)
from dialer.compliance.records import ConsentRecord, DncEntry
from dialer.compliance.registry import RegistryIndex, registry_position
from dialer.compliance.rnd import RndAnswer
from dialer.compliance.rules import Rule, RuleBook
from dialer.errors import StorageError

NANP_REGIONS = frozenset({"US", "CA", "PR", "VI", "GU", "AS", "MP"})
ZIP_REGIONS = NANP_REGIONS - {"CA"}          # where a lead's ZIP code says where the person lives
ATTEMPT_LOG_WINDOW_MS = 86_400_000


_zone = functools.lru_cache(maxsize=512)(ZoneInfo)


@dataclass(frozen=True)
class Candidates:
    zones: tuple[str, ...]
    states: tuple[str, ...]
    problem: str | None = None       # a FailClosed code


@dataclass(frozen=True)
class ConsentState:
    express: bool
    written: bool
    revoked: bool
    last_purchase: datetime | None
    last_inquiry: datetime | None
    express_at: datetime | None = None     # latest consent in force, express or written (US-RND asks since when)
    written_at: datetime | None = None     # latest written consent in force


def _months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier, on the target month's last day when
    it has no such day (31 Dec - 18 months = 30 Jun, 31 Dec - 3 months = 30 Sep). The EBR periods
    (64.1200(f)(5), 16 CFR 310.2: 18 months after a purchase, 3 after an inquiry; Canada 6) end
    there: clamping every day to the 28th made them up to 3 days longer."""
    year, month = divmod(moment.year * 12 + moment.month - 1 - months, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


NO_CONSENT = ConsentState(False, False, False, None, None)


def consent_state(records: list[ConsentRecord], seller: str, now: datetime) -> ConsentState:
    """Consents in force now for `seller`: a revocation voids every earlier consent and EBR."""
    if not records:
        return NO_CONSENT
    mine = [r for r in records if r.seller in ("", seller) and r.occurred_at <= now]
    revoked_at = max((r.occurred_at for r in mine if r.kind == ConsentKind.REVOCATION), default=None)
    live = [r for r in mine if r.kind != ConsentKind.REVOCATION
            and (revoked_at is None or r.occurred_at > revoked_at)]
    latest: dict[ConsentKind, datetime] = {}
    for r in live:
        if r.kind not in latest or r.occurred_at > latest[r.kind]:
            latest[r.kind] = r.occurred_at
    written_at = latest.get(ConsentKind.WRITTEN)
    express_at = max(filter(None, (written_at, latest.get(ConsentKind.EXPRESS))), default=None)
    return ConsentState(
        express=express_at is not None,
        written=written_at is not None,
        revoked=revoked_at is not None and express_at is None,
        last_purchase=latest.get(ConsentKind.EBR_PURCHASE),
        last_inquiry=latest.get(ConsentKind.EBR_INQUIRY),
        express_at=express_at,
        written_at=written_at,
    )


class ComplianceGate:
    """decide(call) -> Decision. Stores: registry index, records, counters, audit (None = dry run only),
    reassigned numbers (None = no copy: every consent-based call blocks with RND_NO_DATA)."""

    def __init__(self, rulebook: RuleBook, registry: RegistryIndex, records, counters, audit=None,
                 *, rnd=None, refresh_registry=None, refresh_interval_s: float = 30.0):
        self.rulebook = rulebook
        self.geo = Geography(rulebook)
        self.calendars = HolidayCalendars("US")
        self.registry = registry
        self.records = records
        self.counters = counters
        self.audit = audit
        self.rnd = rnd
        self._refresh_registry = refresh_registry
        self._refresh_interval_s = refresh_interval_s
        self._refreshed_at = time.monotonic()
        self._scope_cache: dict[tuple, tuple[Rule, ...]] = {}
        self._checks_cache: dict[tuple, list[HoursCheck]] = {}
        self._candidates_cache: dict[tuple, Candidates] = {}
        self._timelines: dict[tuple, object] = {}

    # ------------------------------------------------------------ candidates

    def candidates(self, facts: NumberFacts, call: CallRequest) -> Candidates:
        lead = call.lead
        # a ZIP code's facts are its first three digits': a malformed one ("1002") keys on itself
        zip_key = lead.zip_code and (lead.zip_code.strip()[:3] if is_zip(lead.zip_code) else "?" + lead.zip_code)
        key = (facts.zones, facts.states, facts.region, lead.state, zip_key)
        cached = self._candidates_cache.get(key)
        if cached is None:
            if len(self._candidates_cache) > 65536:
                self._candidates_cache.clear()
            cached = self._candidates_cache[key] = self._candidates(facts, lead)
        return cached

    def _candidates(self, facts: NumberFacts, lead) -> Candidates:
        """Every source adds candidates, none replaces another (the reference: candidates from
        number + exchange + address + lead data, the strictest window wins), so more data about a
        lead never makes the gate more permissive: the number's zones and geography, the lead's
        state (all of its zones: it says the person is somewhere in the state), its ZIP code (the
        ZIP3's states and zones), and the FL/OK/CT area-code presumption."""
        zones = dict.fromkeys(facts.zones)
        states: dict[str, None] = {}
        whole_states: set[str] = set()      # states whose every zone is a candidate
        problem = None
        # A lead's state and ZIP code place a number of the US and its territories (ZIP codes);
        # elsewhere (a UK postcode, a Canadian province no pack names) they say nothing a rule uses.
        zip_region = facts.region in ZIP_REGIONS
        state = lead.state.strip().upper() if lead.state else ""
        if state and (zip_region or state in self.rulebook.states):
            if state in self.rulebook.states:
                states[state] = None
                whole_states.add(state)
            else:
                problem = FailClosed.UNKNOWN_STATE
        if lead.zip_code and zip_region:
            found = self.geo.zip_facts(lead.zip_code)
            if found is None:
                problem = FailClosed.UNKNOWN_STATE
            else:
                states.update(dict.fromkeys(found[0]))
                zones.update(dict.fromkeys(found[1]))
        # The number's own state stays a candidate whatever the lead says (a lead's address may be
        # old, and a Seattle number's holder may still be in Washington): this includes Florida's,
        # Oklahoma's and Connecticut's presumption that an in-state area code's holder is a resident.
        states.update(dict.fromkeys(facts.states))
        # The lead's state: every zone of it (Tennessee is Central and Eastern, whichever zone the
        # number's exchange is in). A state from the number or the ZIP code, whose exchange or ZIP
        # zones are more precise than the state's: its zones when none of them is a candidate yet.
        for state in states:
            state_zones = self.geo.state_zones(state)
            if state in whole_states or not zones.keys() & set(state_zones):
                zones.update(dict.fromkeys(state_zones))
        if facts.region == "US" and not states and problem is None:
            problem = FailClosed.UNKNOWN_STATE
        if not zones and problem is None:
            problem = FailClosed.UNKNOWN_ZONE
        return Candidates(tuple(zones), tuple(states), problem)

    def _rules_for(self, region: str, call: CallRequest, on: date, states: tuple[str, ...]) -> tuple[Rule, ...]:
        """Rules in scope for the call and applicable to the candidate states (cached)."""
        c = call.campaign
        key = (region, c.purpose, c.mode, c.voice, on, states)
        rules = self._scope_cache.get(key)
        if rules is None:
            rules = tuple(r for p in self.rulebook.packs_for(region) for r in p.rules
                          if r.in_scope(c, on) and (r.state is None or r.state in states))
            if len(self._scope_cache) > 4096:
                self._scope_cache.clear()
            self._scope_cache[key] = rules
        return rules

    # ------------------------------------------------------------ decide

    def decide(self, call: CallRequest, *, dry_run: bool = False) -> Decision:
        if call.now.tzinfo is None:
            raise ComplianceError("CallRequest.now must be timezone-aware")
        now = call.now.astimezone(timezone.utc)
        self._maybe_refresh_registry()
        decision_id = os.urandom(16).hex()
        blocks: list[Block] = []
        warnings: list[str] = []
        facts = self.geo.facts(call.phone_e164)
        packs = self.rulebook.packs_for(facts.region) if facts.valid else ()
        versions = {p.id: p.version for p in packs} if packs else {}
        if not facts.valid:
            blocks.append(Block(FailClosed.INVALID_NUMBER, "", "", f"{call.phone_e164} is not a valid number"))
        elif not packs:
            blocks.append(Block(FailClosed.NO_RULE_PACK, "", "", f"no rule pack for region {facts.region}"))
        if blocks:
            return self._finish(call, decision_id, blocks, None, (), (), {}, {}, versions, (), warnings, dry_run)

        cand = self.candidates(facts, call)
        if cand.problem:
            blocks.append(Block(cand.problem, "", "", "cannot place the called person"))
        rules = self._rules_for(facts.region, call, now.date(), cand.states)
        try:
            entries, consents = self.records.lookup(call.phone_e164)
            consent = consent_state(consents, call.campaign.seller, now)
        except StorageError as exc:
            entries, consent = None, None
            blocks.append(Block(FailClosed.DNC_STORE_UNAVAILABLE, "", "", str(exc)))
            blocks.append(Block(FailClosed.CONSENT_STORE_UNAVAILABLE, "", "", str(exc)))

        checks: list[HoursCheck] = []
        counter_checks: list[CounterCheck] = []
        lock_checks: list[LockCheck] = []
        for rule in rules:
            kind = rule.kind
            if kind in ("counter", "lock") and rule.params["key"] == "person_debt" \
                    and not (call.lead.person_id or "").strip():
                # Reg F counts calls per person and debt (1006.14(b)(2)): keyed by the phone
                # instead, one person called on two numbers would never reach the cap.
                blocks.append(Block(FailClosed.PERSON_MISSING, rule.id, rule.citation,
                                    "no person id: calls cannot be counted per person and debt"))
                continue
            if kind == "hours":
                checks.extend(self._hours_checks(rule, cand.zones, consent))
            elif kind == "registry":
                self._registry(rule, facts, cand.states, consent, entries, now, blocks)
            elif kind == "internal_list" and entries is not None:
                self._internal(rule, call, entries, blocks)
            elif kind in ("consent", "revocation") and consent is not None:
                self._consent(rule, facts, call, consent, blocks)
            elif kind == "reassigned" and consent is not None:
                self._reassigned(rule, facts, call, consent, now, blocks)
            elif kind == "caller_id":
                problem = self._caller_id_problem(call.campaign.caller_id)
                if problem:
                    blocks.append(Block(rule.id, rule.id, rule.citation, problem))
            elif kind == "counter":
                counter_checks.append(CounterCheck(rule.id, counter_key(rule.id, self._key(rule, call)),
                                                   rule.params["limit"], rule.params["window_seconds"] * 1000))
            elif kind == "lock":
                lock_checks.append(LockCheck(rule.id, lock_key(rule.id, self._key(rule, call))))
            if kind == "counter" and "lock_on_outcome" in rule.params:
                # A counter with a quiet period (Reg F: 7 days after a conversation).
                lock_checks.append(LockCheck(rule.id, lock_key(rule.id, self._key(rule, call))))

        next_at = None
        local_times = {}
        for zone in cand.zones:
            local_times[zone] = now.astimezone(_zone(zone)).isoformat(timespec="seconds")
        try:
            failing = failing_checks(checks, now, self.calendars)
            for rule_id in dict.fromkeys(c.rule.id for c in failing):
                rule = next(c.rule for c in failing if c.rule.id == rule_id)
                zones = ", ".join(c.zone_name for c in failing if c.rule.id == rule_id)
                blocks.append(Block(rule.id, rule.id, rule.citation, f"outside the window in {zones}", timed=True))
            if failing and all(b.timed for b in blocks):
                next_at = self._next_allowed(checks, now)
                if next_at is None:
                    blocks.append(Block(FailClosed.EMPTY_WINDOW, "", "",
                                        "no moment in the next days is allowed in every candidate zone"))
        except MissingHolidayCalendar as exc:
            blocks.append(Block(FailClosed.HOLIDAY_CALENDAR_MISSING, "", "", str(exc)))

        counter_checks.append(CounterCheck("attempts_24h", counter_key("attempts", call.phone_e164),
                                           -1, ATTEMPT_LOG_WINDOW_MS))
        counts: dict[str, int] = {}
        try:
            result = self.counters.check_and_count(
                counter_checks, lock_checks, int(now.timestamp() * 1000), decision_id,
                commit=not blocks and not dry_run)
            counts = result.counts
            by_id = {r.id: r for r in rules}
            for rule_id in result.blocked:
                rule = by_id[rule_id]
                passes_ms = result.frees_ms.get(rule_id)
                until = None if passes_ms is None else datetime.fromtimestamp(passes_ms / 1000, timezone.utc)
                blocks.append(Block(rule.id, rule.id, rule.citation, f"{counts.get(rule_id)} in window or locked",
                                    timed=until is not None, until=until))
        except CountersNotLoaded as exc:
            blocks.append(Block(FailClosed.COUNTERS_NOT_LOADED, "", "", str(exc)))
        except StorageError as exc:
            blocks.append(Block(FailClosed.COUNTER_STORE_UNAVAILABLE, "", "", str(exc)))
        # Only blocks that pass at a known time requeue the lead: at the latest of those times
        # (the gate decides again then: the hours may have closed by the time a cap frees).
        if blocks and all(b.timed for b in blocks):
            moments = [b.until for b in blocks if b.until is not None] + ([next_at] if next_at else [])
            next_at = max(moments) if moments else None
        else:
            next_at = None
        return self._finish(call, decision_id, blocks, next_at, cand.zones, cand.states, local_times, counts,
                            versions, tuple(r.id for r in rules), warnings, dry_run,
                            counter_checks)

    def _finish(self, call, decision_id, blocks, next_at, zones, states, local_times, counts, versions,
                evaluated, warnings, dry_run, counter_checks=()) -> Decision:
        allowed = not blocks
        counted = tuple(c.key for c in counter_checks) if allowed and not dry_run else ()
        decision = Decision(decision_id, allowed, tuple(blocks), next_at, tuple(zones), tuple(states),
                            local_times, counts, versions, tuple(evaluated), tuple(warnings), counted)
        if dry_run or self.audit is None:
            return decision
        try:
            self.audit.append(call, decision)
        except StorageError as exc:
            # The call will not be placed: give back the slots it took in the counters.
            for key in counted:
                try:
                    self.counters.uncount(key, decision_id)
                except StorageError:
                    break
            blocked = tuple(blocks) + (Block(FailClosed.AUDIT_UNAVAILABLE, "", "", str(exc)),)
            decision = Decision(decision_id, False, blocked, None, tuple(zones), tuple(states), local_times,
                                counts, versions, tuple(evaluated), tuple(warnings))
        return decision

    def _next_allowed(self, checks: list[HoursCheck], now: datetime) -> datetime | None:
        """next_allowed() through a timeline shared by the day's decisions with the same checks."""
        key = (tuple((c.rule.id, c.zone_name, c.waived) for c in checks), now.date())
        timeline = self._timelines.get(key)
        if timeline is None:
            if len(self._timelines) > 4096:
                self._timelines.clear()
            start = datetime.combine(now.date(), datetime.min.time(), tzinfo=timezone.utc)
            timeline = self._timelines[key] = build_timeline(
                checks, start, start + timedelta(days=NEXT_ALLOWED_HORIZON_DAYS + 1), self.calendars)
        found = timeline.next_allowed(now, timedelta(days=NEXT_ALLOWED_HORIZON_DAYS))
        if found is not None and failing_checks(checks, found, self.calendars):
            found = next_allowed(checks, now, self.calendars)    # never trust the shortcut over the rules
        return found

    def _maybe_refresh_registry(self) -> None:
        """Pick up new registry snapshots; on failure keep the old ones (their age still counts)."""
        if self._refresh_registry is None or time.monotonic() - self._refreshed_at < self._refresh_interval_s:
            return
        self._refreshed_at = time.monotonic()
        try:
            self._refresh_registry(self.registry)
        except StorageError:
            pass

    # ------------------------------------------------------------ rule kinds

    def _hours_checks(self, rule: Rule, zones: tuple[str, ...], consent: ConsentState | None) -> list[HoursCheck]:
        spec = rule.hours
        waived = bool(spec.waived_by_consent) and consent is not None and (
            ("written" in spec.waived_by_consent and consent.written)
            or ("express" in spec.waived_by_consent and consent.express))
        if spec.clock is not None:
            return [HoursCheck(rule, spec.clock, str(spec.clock), waived)]
        key = (rule.id, zones, waived)
        cached = self._checks_cache.get(key)
        if cached is None:
            cached = self._checks_cache[key] = [HoursCheck(rule, _zone(zone), zone, waived) for zone in zones]
        return cached

    def _registry(self, rule: Rule, facts: NumberFacts, states, consent, entries, now, blocks) -> None:
        exemptions = rule.params.get("exemptions", {})
        if consent is not None and entries is not None and self._exempt(exemptions, consent, entries, now):
            return
        kinds = rule.params["list"]
        if kinds == (ListKind.STATE,):
            # One list per candidate state that keeps one; each fails closed on its own.
            targets = [(ListKind.STATE, s, f"{s}-DNC", f"{s}-DNC", f"{s}-DNC") for s in states if s in rule.states]
        else:
            jurisdiction = "GB" if kinds[0] in (ListKind.TPS, ListKind.CTPS) else "US"
            age_rule = rule.params.get("age_rule_id", rule.id)
            targets = [(kind, jurisdiction, rule.id, rule.id, age_rule) for kind in kinds]
        max_age = rule.params.get("max_age_days")
        age_citation = rule.params.get("age_citation", rule.citation)
        position = (int(facts.npa), facts.line7) if facts.npa is not None else registry_position(facts.e164)
        for kind, jurisdiction, code, hit_rule, age_rule in targets:
            if position is None:
                hit, as_of = None, None
            else:
                hit, as_of = self.registry.lookup(kind, jurisdiction, *position)
            if hit is None:
                blocks.append(Block(FailClosed.REGISTRY_MISSING, age_rule, age_citation,
                                    f"no {kind} {jurisdiction} registry copy for {facts.npa or 'this number'}"))
                continue
            if max_age is not None and (now.date() - as_of).days > max_age:
                blocks.append(Block(FailClosed.REGISTRY_STALE, age_rule, age_citation,
                                    f"{kind} {jurisdiction} copy for {facts.npa or 'this number'} dated {as_of}"))
            if hit:
                blocks.append(Block(code, hit_rule, rule.citation, f"on the {kind} {jurisdiction} registry"))

    def _caller_id_problem(self, caller_id: str | None) -> str | None:
        """Why a caller ID would not do, or None: it must be a valid, dialable number (47 CFR
        64.1601(e): a number the called party can call back; Ofcom GC C6: valid CLI), not any text."""
        text = (caller_id or "").strip()
        if not text:
            return "no caller ID"
        if not self.geo.facts(text).valid:
            return f"caller ID {text!r} is not a valid E.164 number"
        return None

    @staticmethod
    def _exempt(exemptions: dict, consent: ConsentState, entries: list[DncEntry], now: datetime) -> bool:
        if exemptions.get("written_consent") and consent.written:
            return True
        if entries:   # a do-not-call request ends the EBR exemption (64.1200(f)(5)(i))
            return False
        months = exemptions.get("ebr_purchase_months")
        if months and consent.last_purchase and consent.last_purchase >= _months_before(now, months):
            return True
        months = exemptions.get("ebr_inquiry_months")
        return bool(months and consent.last_inquiry and consent.last_inquiry >= _months_before(now, months))

    @staticmethod
    def _internal(rule: Rule, call: CallRequest, entries: list[DncEntry], blocks: list[Block]) -> None:
        lists = rule.params.get("lists", ())
        for entry in entries:
            if entry.list_kind not in lists:
                continue
            if entry.list_kind == ListKind.CAMPAIGN and entry.scope != call.campaign.campaign_id:
                continue
            blocks.append(Block(rule.id, rule.id, rule.citation,
                                f"on the {entry.list_kind} list {entry.scope} since {entry.added_at:%Y-%m-%d}"))
            return

    @staticmethod
    def _needed_consent(rule: Rule, facts: NumberFacts, call: CallRequest) -> str | None:
        """"written", "express" or None: the consent an autodialed or robot-voice call needs (US-CONS)."""
        c = call.campaign
        autodialed = c.mode in rule.params.get("autodialed_modes", ())
        robot = c.voice in rule.params.get("robot_voices", ())
        if not (autodialed or robot):
            return None
        maybe_wireless = facts.region in NANP_REGIONS and call.lead.line_type != LineType.LANDLINE
        telemarketing = c.purpose == "telemarketing"
        if maybe_wireless:
            return "written" if telemarketing else "express"
        return "written" if robot and telemarketing else None

    def _consent(self, rule: Rule, facts: NumberFacts, call: CallRequest, consent: ConsentState, blocks) -> None:
        if rule.kind == "revocation":
            c = call.campaign
            if consent.revoked and (c.mode in rule.params.get("autodialed_modes", ())
                                    or c.voice in rule.params.get("robot_voices", ())):
                blocks.append(Block(rule.id, rule.id, rule.citation, "consent revoked"))
            return
        needed = self._needed_consent(rule, facts, call)
        if needed is None:
            return
        have = consent.written if needed == "written" else consent.express
        if not have and not consent.revoked:
            maybe_wireless = facts.region in NANP_REGIONS and call.lead.line_type != LineType.LANDLINE
            blocks.append(Block(rule.id, rule.id, rule.citation,
                                f"{'possibly wireless' if maybe_wireless else 'landline'} number needs {needed} consent"))

    def _reassigned(self, rule: Rule, facts: NumberFacts, call: CallRequest, consent: ConsentState, now: datetime,
                    blocks: list[Block]) -> None:
        """US-RND: a call that relies on consent asks whether the number was disconnected since then."""
        needed = self._needed_consent(rule, facts, call)
        given_at = consent.written_at if needed == "written" else consent.express_at if needed else None
        if given_at is None:
            return          # no consent relied on (or none given: US-CONS blocks)
        if self.rnd is None:
            blocks.append(Block(FailClosed.RND_NO_DATA, rule.id, rule.citation, "no reassigned numbers copy"))
            return
        try:
            found = self.rnd.status(call.phone_e164, given_at.date())
        except StorageError as exc:
            blocks.append(Block(FailClosed.RND_STORE_UNAVAILABLE, rule.id, rule.citation, str(exc)))
            return
        if found.answer == RndAnswer.NO_DATA:
            blocks.append(Block(FailClosed.RND_NO_DATA, rule.id, rule.citation,
                                f"no reassigned numbers data for {given_at:%Y-%m-%d}"))
        elif found.answer == RndAnswer.YES:
            blocks.append(Block(rule.id, rule.id, rule.citation,
                                f"permanently disconnected on {found.disconnected_on} after consent of {given_at:%Y-%m-%d}"))
        if found.data_through is not None and (now.date() - found.data_through).days > rule.params["max_age_days"]:
            blocks.append(Block(FailClosed.REGISTRY_STALE, rule.id, rule.citation,
                                f"reassigned numbers copy dated {found.data_through}"))

    @staticmethod
    def _key(rule: Rule, call: CallRequest) -> str:
        c, lead = call.campaign, call.lead
        key = rule.params["key"]
        if key == "phone":
            return call.phone_e164
        if key == "phone_subject":
            return f"{call.phone_e164}|{c.subject or c.campaign_id}"
        if key == "phone_seller":
            return f"{call.phone_e164}|{c.seller}"
        # decide() refuses a call without a person id (PERSON_MISSING); the number stands in only
        # for attempts recorded before it did, when the counters are rebuilt from them
        return f"{lead.person_id or call.phone_e164}|{lead.debt_id or ''}"

    # ------------------------------------------------------------ outcomes

    def record_outcome(self, call: CallRequest, decision_id: str, outcome: Outcome, at: datetime) -> list[str]:
        """Apply an outcome of an allowed call: start locks, uncount calls that did not connect
        (every counter, for a call that was never placed).

        Returns the rule ids affected. Raises StorageError when the counter store is down (the
        engine retries; until then the conservative count stands).
        """
        affected, changes = self.outcome_changes(call, decision_id, outcome, at)
        self.counters.apply(changes)
        return affected

    def outcome_changes(self, call: CallRequest, decision_id: str, outcome: Outcome,
                        at: datetime) -> tuple[list[str], list[CounterChange]]:
        """The rule ids an outcome affects and the counter changes it makes (not yet applied)."""
        affected: list[str] = []
        changes: list[CounterChange] = []
        now_ms = int(at.timestamp() * 1000)
        facts = self.geo.facts(call.phone_e164)
        packs = {p.id for p in self.rulebook.packs_for(facts.region)} if facts.valid else set()
        states = set(self.candidates(facts, call).states) if packs else set()
        for rule in self.rulebook.outcome_rules(Outcome(outcome)):
            if rule.pack_id not in packs or (rule.state and rule.state not in states):
                continue
            part = self._key(rule, call)
            if rule.params.get("uncount_on_outcome") == outcome or (
                    rule.kind == "counter" and outcome == Outcome.NOT_PLACED):
                changes.append(CounterChange(counter_key(rule.id, part), member=decision_id))
                affected.append(rule.id)
            if rule.params.get("lock_on_outcome") == outcome:
                if rule.params.get("lock_until") == "local_midnight":
                    zone = ZoneInfo(facts.zones[0]) if facts.zones else timezone.utc
                    local = at.astimezone(zone)
                    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
                    ttl_ms = int((midnight - at).total_seconds() * 1000)
                else:
                    ttl_ms = rule.params["lock_seconds"] * 1000
                changes.append(CounterChange(lock_key(rule.id, part), lock_from_ms=now_ms, lock_ms=ttl_ms))
                affected.append(rule.id)
        return affected, changes
