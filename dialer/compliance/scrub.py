"""Scrub a lead list against number validity and the do-not-call lists, in bulk.

A list scrub is a planning aid: it removes numbers that can never be called (invalid, or on a
registry, a state's list or a company list) before they reach the hopper. It does not replace the gate, which
decides again immediately before each originate. phonenumbers parses ~17,000 numbers per second
per core, so NANP numbers are validated per exchange (NPA-NXX) with a cached table (per NPA-NXX-X
in the few area codes where the 7th digit decides validity: Geography.cache_width), and registry
membership is tested in numpy batches; only non-NANP numbers go through phonenumbers one by one.
"""
from __future__ import annotations

import csv
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from dialer.compliance.gate import NANP_REGIONS
from dialer.compliance.geo import Geography, NumberError, normalize
from dialer.compliance.model import ComplianceError, FailClosed, ListKind
from dialer.compliance.registry import RegistryIndex

BATCH_ROWS = 200_000
FEDERAL_MAX_AGE_DAYS = 31
_NON_DIGITS = {c: None for c in range(256) if not chr(c).isdigit()}


@dataclass
class ScrubReport:
    rows: int = 0
    clean: int = 0
    rejected: Counter = field(default_factory=Counter)


class Scrubber:
    def __init__(self, geo: Geography, registry: RegistryIndex, suppressed: set[str], as_of: date):
        self.geo = geo
        self.registry = registry
        self.as_of = as_of
        self._exchange_valid = np.zeros(1_000_000, dtype=np.int8)   # 0 unknown, 1 valid US/CA..., -1 invalid
        # Digits that decide validity per area code (7 in 246, 658, 876), and the longer prefixes' answers.
        self._widths = np.array([geo.cache_width(f"{npa:03d}") for npa in range(1000)], dtype=np.int64)
        self._prefix_valid: dict[int, bool] = {}
        suppressed_nanp = [int(p[2:]) for p in suppressed if p.startswith("+1") and len(p) == 12]
        self._suppressed_nanp = np.array(sorted(suppressed_nanp), dtype=np.int64)
        self._suppressed_other = {p for p in suppressed if not (p.startswith("+1") and len(p) == 12)}
        self._federal_age: dict[int, int | None] = {}
        # State lists loaded (each one list for every number, its date): a number on any of them
        # is rejected. Whose list applies depends on where the person lives, which a list scrub
        # does not know, so this is stricter than the gate, which checks the candidate states'.
        self._state_lists = [j for kind, j in registry.lists() if kind == ListKind.STATE]

    def _valid_numbers(self, numbers: np.ndarray) -> np.ndarray:
        """Validity of 10-digit NANP numbers, from per-prefix answers of phonenumbers."""
        exchanges = numbers // 10_000
        widths = self._widths[numbers // 10_000_000]
        long = widths > 6
        short = ~long
        unknown = np.unique(exchanges[short & (self._exchange_valid[exchanges] == 0)])
        for ex in unknown.tolist():
            facts = self.geo.exchange_facts(f"{ex:06d}")
            self._exchange_valid[ex] = 1 if facts.valid else -1
        valid = self._exchange_valid[exchanges] == 1
        if long.any():
            idx = np.flatnonzero(long)
            # A w-digit prefix (first digit 2-9) lies in [2*10^(w-1), 10^w): prefixes of different widths never collide.
            prefixes = numbers[idx] // 10 ** (10 - widths[idx])
            unique, first, inverse = np.unique(prefixes, return_index=True, return_inverse=True)
            answers = np.array([self._prefix_is_valid(int(p), int(widths[idx[f]]))
                                for p, f in zip(unique.tolist(), first.tolist())], dtype=bool)
            valid[idx] = answers[inverse]
        return valid

    def _prefix_is_valid(self, prefix: int, width: int) -> bool:
        found = self._prefix_valid.get(prefix)
        if found is None:
            found = self._prefix_valid[prefix] = self.geo.exchange_facts(f"{prefix:0{width}d}").valid
        return found

    def _registry_state(self, npa: int) -> str | None:
        """None when the area code's federal copy is usable, else a fail-closed code."""
        if npa not in self._federal_age:
            _hit, as_of = self.registry.lookup(ListKind.FEDERAL, "US", npa, 0)
            self._federal_age[npa] = None if as_of is None else (self.as_of - as_of).days
        age = self._federal_age[npa]
        if age is None:
            return FailClosed.REGISTRY_MISSING
        return FailClosed.REGISTRY_STALE if age > FEDERAL_MAX_AGE_DAYS else None

    def _classify_other(self, raw: str, region: str) -> str | None:
        try:
            e164 = normalize(raw, region)
        except NumberError:
            return FailClosed.INVALID_NUMBER
        if not self.geo.facts(e164).valid:
            return FailClosed.INVALID_NUMBER
        return "US-IDNC" if e164 in self._suppressed_other else None

    def classify(self, phones: list[str], region: str = "US") -> list[str | None]:
        """A reject reason per phone (None = clean)."""
        reasons: list[str | None] = [None] * len(phones)
        nanp_idx, nanp_numbers = [], []
        nanp_region = region in NANP_REGIONS
        for i, raw in enumerate(phones):
            # Fast paths for the common shapes; everything else is cleaned up or parsed below.
            if nanp_region and len(raw) == 10 and raw.isascii() and raw.isdigit():
                digits = raw
            elif len(raw) == 12 and raw.startswith("+1") and raw.isascii() and raw[2:].isdigit():
                digits = raw[2:]
            else:
                text = raw.lstrip()
                digits = text.translate(_NON_DIGITS)
                nanp = text.startswith("+1") or (nanp_region and not text.startswith("+"))
                if nanp and len(digits) == 11 and digits[0] == "1":
                    digits = digits[1:]
                if not (nanp and len(digits) == 10):
                    reasons[i] = self._classify_other(raw, region)
                    continue
            nanp_idx.append(i)
            nanp_numbers.append(int(digits))
        if not nanp_idx:
            return reasons
        numbers = np.array(nanp_numbers, dtype=np.int64)
        valid = self._valid_numbers(numbers)
        on_federal = self.registry.contains_many(ListKind.FEDERAL, "US", numbers)
        suppressed = np.isin(numbers, self._suppressed_nanp) if len(self._suppressed_nanp) else np.zeros(len(numbers), bool)
        # Reject codes in priority order: invalid, company list, federal registry, state lists,
        # registry copy.
        labels = [None, FailClosed.INVALID_NUMBER, "US-IDNC", "US-DNC-1"]
        code = np.zeros(len(numbers), dtype=np.int8)
        for state in reversed(self._state_lists):
            labels.append(f"{state}-DNC")
            code[self.registry.contains_many(ListKind.STATE, state, numbers)] = len(labels) - 1
        code[on_federal] = 3
        code[suppressed] = 2
        code[~valid] = 1
        for j in np.flatnonzero(code).tolist():
            reasons[nanp_idx[j]] = labels[code[j]]
        npas, which = np.unique(numbers // 10_000_000, return_inverse=True)
        for k, npa in enumerate(npas.tolist()):
            problem = self._registry_state(npa)
            if problem is not None:
                for j in np.flatnonzero((which == k) & (code == 0)).tolist():
                    reasons[nanp_idx[j]] = problem
        return reasons


def _records(handle) -> Iterator[str]:
    """Raw CSV records (a quoted field may span lines: a record ends when its quotes balance)."""
    pending = ""
    for line in handle:
        pending += line
        if pending.count('"') % 2 == 0:
            yield pending
            pending = ""
    if pending:
        yield pending


def _fields(record: str) -> list[str]:
    if '"' not in record:
        return record.rstrip("\r\n").split(",")
    return next(csv.reader([record]), [])


def scrub_file(scrubber: Scrubber, leads: Path, out: Path, rejects: Path, *, phone_column: str = "phone",
               region: str = "US", progress: Callable[[int], None] | None = None) -> ScrubReport:
    """Copy clean records to `out` unchanged and rejected ones, with a reason column, to `rejects`.

    Records are copied as raw text (only split to find the phone), which keeps the input's own
    quoting and costs half of a csv reader/writer round trip.
    """
    report = ScrubReport()
    try:
        source = open(leads, newline="", encoding="utf-8")
    except OSError as exc:
        raise ComplianceError(f"cannot read {leads}: {exc}") from exc
    with source, open(out, "w", newline="", encoding="utf-8") as clean_f, \
            open(rejects, "w", newline="", encoding="utf-8") as reject_f:
        records = _records(source)
        header_record = next(records, None)
        header = _fields(header_record) if header_record else []
        if phone_column not in header:
            raise ComplianceError(f"{leads}: no column named {phone_column!r} in the header")
        column, width = header.index(phone_column), len(header)
        clean_f.write(header_record if header_record.endswith("\n") else header_record + "\n")
        reject_f.write(header_record.rstrip("\r\n") + ",reject_reason\n")
        position = 0
        while True:
            batch = list(itertools.islice(records, BATCH_ROWS))
            if not batch:
                break
            rows = [_fields(record) for record in batch]
            phones = [row[column] if len(row) > column else "" for row in rows]
            reasons = [r if r is not None or len(row) == width else "MALFORMED_ROW"
                       for row, r in zip(rows, scrubber.classify(phones, region))]
            clean = [rec if rec.endswith("\n") else rec + "\n" for rec, r in zip(batch, reasons) if r is None]
            clean_f.writelines(clean)
            reject_f.writelines(f"{rec.rstrip(chr(13) + chr(10))},{r}\n" for rec, r in zip(batch, reasons)
                                if r is not None)
            report.rejected.update(str(r) for r in reasons if r is not None)
            report.clean += len(clean)
            report.rows += len(batch)
            if progress:
                consumed = source.buffer.tell()
                progress(consumed - position)
                position = consumed
    return report
