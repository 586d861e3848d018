"""A local copy of the FCC Reassigned Numbers Database (RND), 47 CFR 64.1200(m).

A caller that relies on consent asks the RND, for a number and the date the consent was given,
whether the number has been permanently disconnected since: "yes" (it may now belong to someone
else: the consent no longer counts), "no" (the 64.1200(m) safe harbor), or "no data". The gate
blocks on "yes" and on "no data" (fail closed). Here the database is a table of permanent
disconnections (number, date), loaded from files of `NUMBER,YYYY-MM-DD` lines (NUMBER E.164 or
10-digit NANP), and each import records the period its data covers: a consent date before the
earliest `covers_from`, no import at all, are "no data"; the age of the newest `data_through`
decides whether the copy is stale.
"""
from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg

from dialer.compliance.model import ComplianceError, DncImportError
from dialer.errors import StorageError


class RndAnswer(enum.StrEnum):
    YES = "yes"            # permanently disconnected on or after the date asked about
    NO = "no"
    NO_DATA = "no_data"


@dataclass(frozen=True)
class RndResult:
    answer: RndAnswer
    data_through: date | None      # the copy's date (None: no copy)
    disconnected_on: date | None = None


@dataclass
class RndImportResult:
    skipped: bool
    lines: int = 0
    new_records: int = 0
    bad_lines: int = 0
    bad_samples: list[str] = field(default_factory=list)


def _answer(latest: date | None, since: date, covers_from: date | None, data_through: date | None) -> RndResult:
    if covers_from is None or data_through is None or since < covers_from:
        return RndResult(RndAnswer.NO_DATA, data_through)
    if latest is not None and latest >= since:
        return RndResult(RndAnswer.YES, data_through, latest)
    return RndResult(RndAnswer.NO, data_through)


def parse_rnd_line(line: str) -> tuple[str, date]:
    """(E.164, disconnection date) of one `NUMBER,YYYY-MM-DD` line; ComplianceError when malformed."""
    number, sep, day = line.strip().partition(",")
    if not sep:
        raise ComplianceError("expected NUMBER,YYYY-MM-DD")
    digits = number.strip().removeprefix("+")
    if len(digits) == 10:
        digits = "1" + digits
    if not (len(digits) == 11 and digits.isascii() and digits.isdigit() and digits[0] == "1"
            and digits[1] not in "01" and digits[4] not in "01"):
        raise ComplianceError(f"{number.strip()!r} is not a NANP number")
    try:
        return "+" + digits, date.fromisoformat(day.strip())
    except ValueError:
        raise ComplianceError(f"{day.strip()!r} is not YYYY-MM-DD") from None


def read_rnd_file(path: Path) -> tuple[list[tuple[str, date]], RndImportResult]:
    result = RndImportResult(skipped=False)
    records = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise DncImportError(f"cannot read {path}: {exc}") from exc
    with handle:
        for n, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            result.lines += 1
            try:
                records.append(parse_rnd_line(line))
            except ComplianceError as exc:
                result.bad_lines += 1
                if len(result.bad_samples) < 10:
                    result.bad_samples.append(f"line {n}: {exc}: {line.strip()[:40]!r}")
    return records, result


class MemoryRnd:
    """An RND copy in memory (`compliance check --rnd-file`, tests, benchmarks)."""

    def __init__(self, covers_from: date | None = None, data_through: date | None = None):
        self.covers_from = covers_from
        self.data_through = data_through
        self.latest: dict[str, date] = {}

    def add(self, phone: str, disconnected_on: date) -> None:
        if self.latest.get(phone, date.min) < disconnected_on:
            self.latest[phone] = disconnected_on

    def status(self, phone: str, since: date) -> RndResult:
        return _answer(self.latest.get(phone), since, self.covers_from, self.data_through)

    @classmethod
    def from_files(cls, paths: list[Path], covers_from: date, data_through: date) -> "MemoryRnd":
        rnd = cls(covers_from, data_through)
        for path in paths:
            records, result = read_rnd_file(path)
            if result.bad_lines:
                raise ComplianceError(f"{result.bad_lines} bad lines in {path}: {'; '.join(result.bad_samples[:3])}")
            for phone, day in records:
                rnd.add(phone, day)
        return rnd


class PgRnd:
    """The RND copy in PostgreSQL: one indexed query per consent-based decision."""

    def __init__(self, conn):
        self.conn = conn

    def status(self, phone: str, since: date) -> RndResult:
        try:
            row = self.conn.execute(
                "SELECT (SELECT max(disconnected_on) FROM compliance_rnd_disconnections WHERE phone_e164=%s),"
                " min(covers_from), max(data_through) FROM compliance_rnd_imports", (phone,)).fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"reassigned numbers store: {exc}") from exc
        return _answer(row[0], since, row[1], row[2])

    def import_file(self, path: Path, *, covers_from: date | None, data_through: date, source: str) -> RndImportResult:
        """Add a file's disconnections; the same file for the same date again, or a record already
        held, adds nothing (the same file with a later date only moves data_through forward)."""
        path = Path(path)
        try:
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            if self.conn.execute("SELECT 1 FROM compliance_rnd_imports WHERE file_sha256=%s AND data_through=%s",
                                 (sha, data_through)).fetchone():
                return RndImportResult(skipped=True)
            if covers_from is None:
                covers_from = self.conn.execute("SELECT min(covers_from) FROM compliance_rnd_imports").fetchone()[0]
                if covers_from is None:
                    raise DncImportError("the first RND import needs the date its data starts (--covers-from)")
            if covers_from > data_through:
                raise DncImportError(f"covers-from {covers_from} is after the data's date {data_through}")
            records, result = read_rnd_file(path)
            with self.conn.transaction():
                self.conn.execute("CREATE TEMP TABLE IF NOT EXISTS rnd_stage (phone_e164 text, disconnected_on date)")
                self.conn.execute("TRUNCATE rnd_stage")
                with self.conn.cursor().copy("COPY rnd_stage FROM STDIN") as copy:
                    for record in records:
                        copy.write_row(record)
                result.new_records = self.conn.execute(
                    "INSERT INTO compliance_rnd_disconnections SELECT DISTINCT phone_e164, disconnected_on"
                    " FROM rnd_stage ON CONFLICT DO NOTHING").rowcount
                self.conn.execute(
                    "INSERT INTO compliance_rnd_imports (source, file_sha256, covers_from, data_through, lines,"
                    " new_records, bad_lines) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                    (source, sha, covers_from, data_through, result.lines, result.new_records, result.bad_lines))
        except OSError as exc:
            raise DncImportError(f"cannot read {path}: {exc}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"reassigned numbers store: {exc}") from exc
        return result

    def stats(self) -> tuple[int, date | None, date | None]:
        try:
            return self.conn.execute(
                "SELECT (SELECT count(*) FROM compliance_rnd_disconnections), min(covers_from), max(data_through)"
                " FROM compliance_rnd_imports").fetchone()
        except psycopg.Error as exc:
            raise StorageError(f"reassigned numbers store: {exc}") from exc
