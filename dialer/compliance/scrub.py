"""Scrub a lead list against number validity and the do-not-call lists, in bulk.

A list scrub is a planning aid: it removes numbers that can never be called (invalid, or on a
registry, a state's list or a company list) before they reach the hopper. It does not replace the gate, which
decides again immediately before each originate. phonenumbers parses ~17,000 numbers per second
per core, so NANP numbers are validated per exchange (NPA-NXX) with a cached table (per NPA-NXX-X
in the few area codes where the 7th digit decides validity: Geography.cache_width), and registry
membership is tested in numpy batches; only non-NANP numbers go through phonenumbers one by one.

The file is read as the lead import reads it (docs/campaigns.md, "CSV format"): records end where
csv.reader ends them, and a line that breaks the quoting is rejected alone (BAD_QUOTING), so no
number is ever copied to the clean output unchecked. Outputs are never the input file.
"""
from __future__ import annotations

import csv
import itertools
from collections import Counter, deque
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


MAX_RECORD_LINES = 200       # as the lead import: a quoted field open longer than this is a broken line
BAD_QUOTING = "BAD_QUOTING"


def _records(lines: Iterator[str], width: int, first_line: int = 2) -> Iterator[tuple[str, list[str] | None, str]]:
    """(raw text, fields, "") per record, or (raw first line, None, why) for a line that is not CSV.

    Records end where csv.reader (strict) ends them, as in the lead import (leads.RecordReader):
    a quote opens a quoted field only at the start of a field, so a literal quote in a field
    (`5" tall`) is text. A line that breaks the quoting (an unclosed quote, text after a closing
    quote, a record spanning lines whose field count is wrong, or still open after
    MAX_RECORD_LINES lines) is rejected alone and the lines after it are read again: one broken
    line must never merge the lines after it into one record, whose numbers would then go unchecked.
    Lines without a quote (most of them) are split directly: the same fields, 3x faster."""
    from dialer.leads import _CLOSED_RECORD_RE   # noqa: PLC0415
    pushback: deque[str] = deque()
    source = iter(lines)

    def pull() -> str | None:
        return pushback.popleft() if pushback else next(source, None)

    while True:
        line = pull()
        if line is None:
            return
        if '"' not in line:
            yield line, line.rstrip("\r\n").split(","), ""
            continue
        if _CLOSED_RECORD_RE.fullmatch(line):      # a whole record on this line, quoting correct
            yield line, next(csv.reader((line,))), ""
            continue
        taken = [line]

        def more() -> Iterator[str]:
            yield line
            while len(taken) < MAX_RECORD_LINES:
                nxt = pull()
                if nxt is None:
                    return
                taken.append(nxt)
                yield nxt

        problem = ""
        try:
            fields = next(csv.reader(more(), strict=True))
        except csv.Error as exc:
            problem = str(exc)
        else:
            if len(taken) > 1 and len(fields) != width:
                problem = f"a quoted field runs over {len(taken)} lines and the record has {len(fields)} fields"
        if problem:
            pushback.extendleft(reversed(taken[1:]))
            yield line, None, problem
        else:
            yield "".join(taken), fields, ""


def _open_output(path: Path):
    try:
        return open(path, "w", newline="", encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ComplianceError(f"cannot write {path}: {exc.strerror or exc}") from exc


def scrub_file(scrubber: Scrubber, leads: Path, out: Path, rejects: Path, *, phone_column: str = "phone",
               region: str = "US", progress: Callable[[int], None] | None = None) -> ScrubReport:
    """Copy clean records to `out` unchanged and rejected ones, with a reason column, to `rejects`.

    Records are copied as raw text (only split to find the phone), which keeps the input's own
    quoting and costs half of a csv reader/writer round trip. A line that is not CSV goes to the
    rejects as one quoted field (BAD_QUOTING), never to `out`. The input is read as the lead import
    reads it: UTF-8 with an optional BOM, bytes that are not UTF-8 copied unchanged, the phone column
    found by the import's header names (`Phone`, `Phone Number`, ... for the default "phone").
    """
    from dialer.leads import delimiter_hint, find_phone_column, output_paths_problem   # noqa: PLC0415
    # Outputs opened for writing are truncated at once: one that is the input would destroy it.
    if problem := output_paths_problem(leads, [("--out", out), ("--rejects", rejects)]):
        raise ComplianceError(problem)
    report = ScrubReport()
    try:
        source = open(leads, newline="", encoding="utf-8-sig", errors="surrogateescape")
    except OSError as exc:
        raise ComplianceError(f"cannot read {leads}: {exc}") from exc
    with source:
        header_line = source.readline()
        try:
            header = next(csv.reader([header_line], strict=True), [])
        except csv.Error:
            header = []
        column = find_phone_column(header, phone_column)
        if column is None:
            if not header_line.strip():
                raise ComplianceError(f"{leads}: line 1 is blank (the header line, with the column names, "
                                      "must come first)")
            raise ComplianceError(f"{leads}: no column named {phone_column!r} in the header{delimiter_hint(header)}")
        width = len(header)
        with _open_output(out) as clean_f, _open_output(rejects) as reject_f:
            clean_f.write(header_line if header_line.endswith("\n") else header_line + "\n")
            reject_f.write(header_line.rstrip("\r\n") + ",reject_reason\n")
            reject_writer = csv.writer(reject_f, lineterminator="\n")
            records = _records(source, width)
            position = 0
            while True:
                batch = list(itertools.islice(records, BATCH_ROWS))
                if not batch:
                    break
                rows = [fields if fields is not None else [] for _raw, fields, _why in batch]
                phones = [row[column] if len(row) > column else "" for row in rows]
                reasons = [BAD_QUOTING if fields is None else r if r is not None or len(fields) == width
                           else "MALFORMED_ROW"
                           for (_raw, fields, _why), r in zip(batch, scrubber.classify(phones, region))]
                clean = [raw if raw.endswith("\n") else raw + "\n"
                         for (raw, _f, _w), r in zip(batch, reasons) if r is None]
                clean_f.writelines(clean)
                for (raw, fields, _why), r in zip(batch, reasons):
                    if r is None:
                        continue
                    if fields is None:
                        # not CSV: the line as one quoted field, so the rejects file stays readable
                        reject_writer.writerow([raw.rstrip("\r\n"), *[""] * (width - 1), r])
                    else:
                        reject_f.write(f"{raw.rstrip(chr(13) + chr(10))},{r}\n")
                report.rejected.update(str(r) for r in reasons if r is not None)
                report.clean += len(clean)
                report.rows += len(batch)
                if progress:
                    consumed = source.buffer.tell()
                    progress(consumed - position)
                    position = consumed
    return report
