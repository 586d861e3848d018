"""Do-not-call registries (federal, state, UK TPS/CTPS) as one bitset per area code, and their imports.

The FTC's National Do Not Call Registry (~258 M numbers) is delivered by area code as
"NPA,NXXXXXX" lines (full lists) and as change lists of additions and deletions; a seller must
use a copy no older than 31 days (47 CFR 64.1200(c)(2)(i)(D), 16 CFR 310.4(b)(3)(iv)). One row
per number would not load in minutes, so each area code is a 10,000,000-bit set (1.25 MB; bit i
is NXX-XXXX = i, little-endian within a byte) kept as a file named by its SHA-256 under the data
directory, with its snapshot date, count and source in PostgreSQL (compliance_dnc_snapshots).
Processes map the files read-only (numpy memmap), so engines on one host share one copy in the
page cache; RegistryIndex.refresh() picks up new snapshots from the metadata.

Whole lists: a state's list and the UK's TPS/CTPS (PECR reg 21, 26) are each one list, not a
subscription by area code, so a full import covers every area code or prefix: those absent from
the file hold no number, as of the list's date (compliance_dnc_coverage), and a later full import
drops them. UK numbers use the same layout: the key is the first 3 digits of a 10-digit national
significant number (NSN, the number without 0 or +44: 100-999) or the first 2 of a 9-digit one
(10-99), and the bit index is the 7-digit remainder.

A full import is a complete copy or it is nothing (compliance fails closed): the files given
together are one snapshot (their union), a line that is not a number in a common notation
refuses the whole import (a copy read in part would silently drop the unread numbers), and the
added/removed counts are against the previous snapshot. A UTF-8 byte order mark is ignored.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import phonenumbers
import psycopg

from dialer.compliance.model import DncImportError, ListKind
from dialer.errors import StorageError

BITS_PER_NPA = 10_000_000
BYTES_PER_NPA = BITS_PER_NPA // 8
CHUNK_BYTES = 8 << 20
MAX_OPEN_AREA_CODES = 48
_DIGIT_WEIGHTS_NPA = np.array([100, 10, 1], dtype=np.int32)
_DIGIT_WEIGHTS_LINE = np.array([10 ** k for k in range(6, -1, -1)], dtype=np.int32)

Progress = Callable[[int], None]   # called with bytes consumed
UTF8_BOM = b"\xef\xbb\xbf"
# Characters of a number written in a common notation ("212-555-0181", "(212) 555.0181", "+1 212 ...").
# Letters are left out on purpose: phonenumbers would read "1-800-FLOWERS" as digits, and a line
# of text must not silently become some number.
_NOTATION_BYTES = frozenset(b"0123456789+-.() \t")
WHOLE_LIST_KINDS = frozenset({ListKind.STATE, ListKind.TPS, ListKind.CTPS})
UK_KINDS = frozenset({ListKind.TPS, ListKind.CTPS})


def uk_key(nsn: str) -> tuple[int, int] | None:
    """(key, 7-digit remainder) of a UK national significant number; None when it has no such shape."""
    if not nsn.isascii() or not nsn.isdigit() or nsn[:1] in ("", "0"):
        return None
    if len(nsn) == 10:
        return int(nsn[:3]), int(nsn[3:])
    if len(nsn) == 9:
        return int(nsn[:2]), int(nsn[2:])
    return None


def registry_position(e164: str) -> tuple[int, int] | None:
    """(area code or UK key, 7-digit remainder) of an E.164 number, for the registry bitsets."""
    if len(e164) == 12 and e164.startswith("+1") and e164[1:].isdigit():
        return int(e164[2:5]), int(e164[5:])
    if e164.startswith("+44"):
        return uk_key(e164[3:])
    return None


def _uk_digits(text: bytes) -> bytes:
    """The NSN of a UK number written 0NSN, 44NSN, +44NSN or NSN (spaces and dashes ignored)."""
    digits = text.replace(b" ", b"").replace(b"-", b"")
    if digits.startswith(b"+44"):
        digits = digits[3:]
    elif digits.startswith(b"44") and len(digits) in (11, 12):
        digits = digits[2:]
    elif digits.startswith(b"0"):
        digits = digits[1:]
    return digits


def _from_notation(text: bytes, region: str) -> str | None:
    """The national significant number of a line written in a common notation, read by phonenumbers
    (region US: NANP, country code 1; region GB: country code 44); None when it is not one."""
    if not text or not set(text) <= _NOTATION_BYTES:
        return None
    try:
        parsed = phonenumbers.parse(text.decode("ascii"), region)
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != phonenumbers.country_code_for_region(region) or parsed.extension:
        return None
    return phonenumbers.national_significant_number(parsed)


@dataclass
class NpaSnapshot:
    bits: np.ndarray            # uint8[BYTES_PER_NPA], packed little-endian
    snapshot_date: date
    count: int
    sha256: str = ""
    source: str = ""


@dataclass
class ParseReport:
    lines: int = 0
    bad_lines: int = 0
    bad_samples: list[str] = field(default_factory=list)
    file: str = ""              # set while several files are read as one: samples name their file

    def bad(self, line_no: int, text: bytes, why: str) -> None:
        self.bad_lines += 1
        if len(self.bad_samples) < 10:
            where = f"{self.file} line {line_no}" if self.file else f"line {line_no}"
            self.bad_samples.append(f"{where}: {why}: {text[:40]!r}")


# ---------------------------------------------------------------- parsing

def _parse_lines_slow(block: bytes, first_line_no: int, report: ParseReport,
                      with_action: bool = False, uk: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Line by line: tolerant of layout, reports each bad line. Returns npa (or UK key), line7, add(bool)."""
    npas, lines, adds = [], [], []
    for offset, raw in enumerate(block.split(b"\n")):
        text = raw.strip()
        if not text:
            continue
        report.lines += 1
        action = b"A"
        if with_action:
            text, _, action = text.rpartition(b",")
            action = action.strip().upper()
            if action not in (b"A", b"D"):
                report.bad(first_line_no + offset, raw, "action must be A or D")
                continue
        if uk:
            found = uk_key(_uk_digits(text).decode("ascii", "replace"))
            if found is None:
                nsn = _from_notation(text, "GB")
                found = uk_key(nsn) if nsn else None
            if found is None:
                report.bad(first_line_no + offset, raw, "expected a UK number (0, 44 or +44, then 9-10 digits)")
                continue
            npas.append(found[0])
            lines.append(found[1])
            adds.append(action == b"A")
            continue
        digits = text.replace(b",", b"").replace(b" ", b"")
        if len(digits) != 10 or not digits.isdigit():
            # Not the registry's own layout: the same number in a common notation is read as such.
            digits = (_from_notation(text, "US") or "").encode()
        if len(digits) != 10 or not digits.isdigit() or digits[0] in b"01" or digits[3] in b"01":
            report.bad(first_line_no + offset, raw, "expected NPANXXXXXX or NPA,NXXXXXX")
            continue
        npas.append(int(digits[:3]))
        lines.append(int(digits[3:]))
        adds.append(action == b"A")
    return (np.array(npas, dtype=np.int32), np.array(lines, dtype=np.int32), np.array(adds, dtype=bool))


def _parse_block_fast(block: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parse of complete lines of 10 digits (commas and CRs removed); None if irregular."""
    compact = block.translate(None, b",\r")
    if not compact:
        return np.empty(0, np.int32), np.empty(0, np.int32)
    if not compact.endswith(b"\n"):
        compact += b"\n"
    if len(compact) % 11:
        return None
    rows = np.frombuffer(compact, dtype=np.uint8).reshape(-1, 11)
    digits = rows[:, :10] - np.uint8(48)
    if not ((rows[:, 10] == 10).all() and (digits <= 9).all()
            and (digits[:, 0] >= 2).all() and (digits[:, 3] >= 2).all()):
        return None
    npa = digits[:, :3].astype(np.int32) @ _DIGIT_WEIGHTS_NPA
    line7 = digits[:, 3:].astype(np.int32) @ _DIGIT_WEIGHTS_LINE
    return npa, line7


def _parse_block_fast_uk(block: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """Vectorised parse of TPS lines written 0 + 10-digit NSN (the common layout); None if irregular."""
    compact = block.replace(b"\r", b"")
    if not compact:
        return np.empty(0, np.int32), np.empty(0, np.int32)
    if not compact.endswith(b"\n"):
        compact += b"\n"
    if len(compact) % 12:
        return None
    rows = np.frombuffer(compact, dtype=np.uint8).reshape(-1, 12)
    digits = rows[:, :11] - np.uint8(48)
    if not ((rows[:, 11] == 10).all() and (digits <= 9).all() and (digits[:, 0] == 0).all()
            and (digits[:, 1] >= 1).all()):
        return None
    key = digits[:, 1:4].astype(np.int32) @ _DIGIT_WEIGHTS_NPA
    line7 = digits[:, 4:].astype(np.int32) @ _DIGIT_WEIGHTS_LINE
    return key, line7


def iter_number_blocks(path: Path, report: ParseReport, progress: Progress | None = None,
                       with_action: bool = False, uk: bool = False
                       ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(npa or UK key, line7, is_addition) arrays for each chunk of a registry or change-list file."""
    line_no = 1
    carry = b""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DncImportError(f"cannot read {path}: {exc}") from exc
    with handle:
        while True:
            chunk = handle.read(CHUNK_BYTES)
            if not chunk and not carry:
                break
            data = carry + chunk
            if line_no == 1 and not carry and data.startswith(UTF8_BOM):
                # A BOM (files saved by spreadsheet tools) would make the first number unreadable.
                data = data[len(UTF8_BOM):]
            if chunk:
                cut = data.rfind(b"\n") + 1
                block, carry = data[:cut], data[cut:]
                if not block:          # one line longer than a chunk: keep reading
                    carry = data
                    continue
            else:
                block, carry = data, b""
            fast = None if with_action else (_parse_block_fast_uk if uk else _parse_block_fast)(block)
            if fast is not None:
                npa, line7 = fast
                report.lines += len(npa)
                yield npa, line7, np.ones(len(npa), dtype=bool)
            else:
                yield _parse_lines_slow(block, line_no, report, with_action, uk)
            line_no += block.count(b"\n")
            if progress:
                progress(len(chunk))
            if not chunk:
                break


def set_bits(bits: np.ndarray, line7: np.ndarray, value: bool) -> None:
    masks = np.left_shift(np.uint8(1), (line7 & 7).astype(np.uint8))
    if value:
        np.bitwise_or.at(bits, line7 >> 3, masks)
    else:
        np.bitwise_and.at(bits, line7 >> 3, ~masks)


def bits_set(bits: np.ndarray, line7: np.ndarray) -> np.ndarray:
    return ((bits[line7 >> 3] >> (line7 & 7).astype(np.uint8)) & 1).astype(bool)


def count_bits(bits: np.ndarray) -> int:
    if hasattr(np, "bitwise_count"):        # numpy >= 2.0: popcount without unpacking
        return int(np.bitwise_count(bits).sum(dtype=np.int64))
    return int(np.unpackbits(bits).sum(dtype=np.int64))


def stream_bitsets(paths: Iterable[Path], report: ParseReport, progress: Progress | None = None,
                   max_open: int = MAX_OPEN_AREA_CODES, uk: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(npa, bitset) pairs from full registry files, holding at most `max_open` bitsets in memory.

    Registry files come sorted by area code, so each area code is normally yielded once; with
    unsorted input the least recently used bitset is yielded early and the same area code may
    come again later: the consumer ORs the parts together.
    """
    open_bits: OrderedDict[int, np.ndarray] = OrderedDict()
    paths = list(paths)
    for path in paths:
        if len(paths) > 1:
            report.file = str(path)
        for npa, line7, _adds in iter_number_blocks(Path(path), report, progress, uk=uk):
            if not len(npa):
                continue
            if (npa[1:] < npa[:-1]).any():
                order = np.argsort(npa.astype(np.int16), kind="stable")   # radix sort
                npa, line7 = npa[order], line7[order]
            bounds = np.flatnonzero(np.diff(npa)) + 1
            for start, end in zip(np.r_[0, bounds], np.r_[bounds, len(npa)]):
                code = int(npa[start])
                bits = open_bits.get(code)
                if bits is None:
                    if len(open_bits) >= max_open:
                        yield open_bits.popitem(last=False)
                    bits = open_bits[code] = np.zeros(BYTES_PER_NPA, dtype=np.uint8)
                else:
                    open_bits.move_to_end(code)
                set_bits(bits, line7[start:end], True)
    report.file = ""
    yield from open_bits.items()


def build_bitsets(paths: Iterable[Path], report: ParseReport,
                  progress: Progress | None = None, uk: bool = False) -> dict[int, np.ndarray]:
    """Full registry files -> {npa: packed bitset}, all in memory (dry runs, tests)."""
    bitsets: dict[int, np.ndarray] = {}
    for npa, bits in stream_bitsets(paths, report, progress, max_open=1000, uk=uk):
        if npa in bitsets:
            bitsets[npa] |= bits
        else:
            bitsets[npa] = bits
    return bitsets


# ---------------------------------------------------------------- the hot-path index

class RegistryIndex:
    """In-memory membership by (list, jurisdiction, npa); answers hit / clear / missing."""

    def __init__(self):
        self._snapshots: dict[tuple[str, str], dict[int, NpaSnapshot]] = {}
        # A "complete" registry covers every area code: absent area codes are empty, dated `complete_date`,
        # except the area codes in `_not_covered` (another country's list lives there: Canada's DNCL).
        self._complete: dict[tuple[str, str], date] = {}
        self._not_covered: dict[tuple[str, str], frozenset[int]] = {}
        self._empty = np.zeros(0, dtype=np.uint8)

    def put(self, kind: str, jurisdiction: str, npa: int, snap: NpaSnapshot) -> None:
        self._snapshots.setdefault((kind, jurisdiction), {})[npa] = snap

    def mark_complete(self, kind: str, jurisdiction: str, as_of: date,
                      except_area_codes: frozenset[int] = frozenset()) -> None:
        """Area codes without a snapshot hold no number as of `as_of`, except `except_area_codes`
        (they stay missing unless a snapshot of their own is put)."""
        self._complete[(kind, jurisdiction)] = as_of
        if except_area_codes:
            self._not_covered[(kind, jurisdiction)] = frozenset(except_area_codes)
        else:
            self._not_covered.pop((kind, jurisdiction), None)
        self._snapshots.setdefault((kind, jurisdiction), {})

    def lookup(self, kind: str, jurisdiction: str, npa: int, line7: int) -> tuple[bool | None, date | None]:
        """(True hit / False clear / None no snapshot for the area code, snapshot date)."""
        snaps = self._snapshots.get((kind, jurisdiction))
        snap = snaps.get(npa) if snaps else None
        if snap is None:
            as_of = self._complete.get((kind, jurisdiction))
            if as_of is None or npa in self._not_covered.get((kind, jurisdiction), ()):
                return None, None
            return False, as_of
        return bool(snap.bits[line7 >> 3] >> (line7 & 7) & 1), snap.snapshot_date

    def contains_many(self, kind: str, jurisdiction: str, numbers: np.ndarray) -> np.ndarray:
        """Vectorised membership for 10-digit NANP numbers (int64); area codes absent -> False."""
        numbers = np.asarray(numbers, dtype=np.int64)
        out = np.zeros(len(numbers), dtype=bool)
        snaps = self._snapshots.get((kind, jurisdiction), {})
        if not snaps:
            return out
        npa = (numbers // BITS_PER_NPA).astype(np.int16)       # < 1000: a stable sort is a radix sort
        line7 = (numbers % BITS_PER_NPA).astype(np.int32)
        order = np.argsort(npa, kind="stable")
        sorted_npa = npa[order]
        bounds = np.flatnonzero(np.diff(sorted_npa)) + 1
        starts = np.r_[0, bounds]
        ends = np.r_[bounds, len(order)]
        for start, end in zip(starts, ends):
            if start == end:
                continue
            snap = snaps.get(int(sorted_npa[start]))
            if snap is not None:
                idx = order[start:end]
                out[idx] = bits_set(snap.bits, line7[idx])
        return out

    def retain(self, present: set[tuple[str, str, int]], complete: dict[tuple[str, str], date]) -> None:
        """Forget snapshots and whole-list dates the system of record no longer has."""
        for (kind, jurisdiction), snaps in self._snapshots.items():
            for npa in [n for n in snaps if (kind, jurisdiction, n) not in present]:
                del snaps[npa]
        self._complete = {}
        self._not_covered = {}
        for (kind, jurisdiction), as_of in complete.items():
            self.mark_complete(kind, jurisdiction, as_of)

    def lists(self) -> list[tuple[str, str]]:
        return sorted(set(self._snapshots) | set(self._complete))

    def area_codes(self, kind: str, jurisdiction: str) -> dict[int, NpaSnapshot]:
        return dict(self._snapshots.get((kind, jurisdiction), {}))

    def add_files(self, kind: str, jurisdiction: str, paths: list[Path], as_of: date,
                  report: ParseReport, except_area_codes: frozenset[int] = frozenset()) -> "RegistryIndex":
        """Plain files as one complete list as of `as_of` (the `compliance check --dnc-file` case):
        every area code, except `except_area_codes` that the files have no line for."""
        for npa, bits in build_bitsets(paths, report, uk=kind in UK_KINDS).items():
            self.put(kind, jurisdiction, npa, NpaSnapshot(bits, as_of, count_bits(bits)))
        self.mark_complete(kind, jurisdiction, as_of, except_area_codes)
        return self

    @classmethod
    def from_files(cls, paths: list[Path], as_of: date, report: ParseReport) -> "RegistryIndex":
        """A complete federal snapshot from plain files."""
        return cls().add_files(ListKind.FEDERAL, "US", paths, as_of, report)


# ---------------------------------------------------------------- the system of record

def _sha(bits: np.ndarray) -> str:
    return hashlib.sha256(bits.tobytes()).hexdigest()


def _file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ImportResult:
    import_id: int | None
    skipped: bool
    area_codes: int
    numbers: int
    added: int
    removed: int
    report: ParseReport


def _storage_errors(method):
    """PostgreSQL failures inside an import surface as StorageError (the transaction rolled back)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except psycopg.Error as exc:
            raise StorageError(f"registry metadata: {exc}") from exc
    return wrapper


def _refuse_unread_lines(report: "ParseReport", paths, what: str) -> None:
    if report.bad_lines:
        raise DncImportError(
            f"{', '.join(str(p) for p in paths)}: {report.bad_lines} of {report.lines} lines are not phone numbers;"
            f" {what} must be read whole, so nothing was imported. Fix or remove these lines:\n  "
            + "\n  ".join(report.bad_samples)
            + ("\n  ..." if report.bad_lines > len(report.bad_samples) else ""))


class RegistryStore:
    """Bitset files under `data_dir`/dnc plus their metadata rows in PostgreSQL."""

    def __init__(self, conn: psycopg.Connection, data_dir: Path):
        self.conn = conn
        self.root = Path(data_dir) / "dnc"

    def _write_bits(self, kind: str, jurisdiction: str, npa: int, bits: np.ndarray) -> tuple[str, Path]:
        sha = _sha(bits)
        folder = self.root / kind / jurisdiction
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{npa:03d}-{sha[:16]}.bits"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            bits.tofile(tmp)
            os.replace(tmp, path)
        return sha, path

    def _read_bits(self, path: str) -> np.ndarray:
        try:
            bits = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            raise StorageError(f"registry file {path} unreadable: {exc}") from exc
        if len(bits) != BYTES_PER_NPA:
            raise StorageError(f"registry file {path} has {len(bits)} bytes, expected {BYTES_PER_NPA}")
        return bits

    def _already_imported(self, kind: str, jurisdiction: str, file_sha: str, mode: str, snapshot_date: date) -> bool:
        """The same file for the same date was imported before (a later date is a fresh copy: it re-imports)."""
        row = self.conn.execute(
            "SELECT 1 FROM compliance_dnc_imports WHERE list_kind=%s AND jurisdiction=%s"
            " AND file_sha256=%s AND mode=%s AND snapshot_date=%s",
            (kind, jurisdiction, file_sha, mode, snapshot_date)).fetchone()
        return row is not None

    @_storage_errors
    def import_full(self, path: Path | Sequence[Path], *, kind: str, jurisdiction: str, snapshot_date: date,
                    source: str, progress: Progress | None = None) -> ImportResult:
        """Replace the bitsets of every area code in the file, or in the files given together,
        which are one snapshot: their union (a state's list delivered in several files is one list).
        Same file(s) again for the same date: no change. A line that is not a number refuses the
        whole import (DncImportError, nothing changed). added/removed count numbers against the
        previous snapshot of the area codes replaced (and, for a whole list, of those it drops)."""
        paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
        if not paths:
            raise DncImportError("no file to import")
        shas = [_file_sha(p) for p in paths]
        # One file keeps its own SHA (as recorded before); a set of files is known by its members' SHAs.
        file_sha = shas[0] if len(shas) == 1 else hashlib.sha256(
            "\n".join(sorted(set(shas))).encode()).hexdigest()
        report = ParseReport()
        if self._already_imported(kind, jurisdiction, file_sha, "full", snapshot_date):
            return ImportResult(None, True, 0, 0, 0, 0, report)
        staging = self.root / kind / jurisdiction / f".staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            # Area codes stream through a few open bitsets into staging files, so memory stays
            # at MAX_OPEN_AREA_CODES x 1.25 MB whatever the size of the registry.
            for npa, bits in stream_bitsets(paths, report, progress, uk=kind in UK_KINDS):
                part = staging / f"{npa:03d}.part"
                if part.exists():
                    bits |= np.fromfile(part, dtype=np.uint8)
                bits.tofile(part)
            # Fail closed: the numbers on unread lines would be dropped from the list without a word.
            _refuse_unread_lines(report, paths, "a full list")
            total = added = removed = 0
            parts = sorted(staging.glob("*.part"))
            with self.conn.transaction():
                previous = {row[0]: row[1:] for row in self.conn.execute(
                    "SELECT npa, number_count, file_path FROM compliance_dnc_snapshots"
                    " WHERE list_kind=%s AND jurisdiction=%s FOR UPDATE", (kind, jurisdiction)).fetchall()}
                for part in parts:
                    npa, bits = int(part.stem), np.fromfile(part, dtype=np.uint8)
                    count = count_bits(bits)
                    total += count
                    gained, lost = self._difference(previous.get(npa), bits, count)
                    added, removed = added + gained, removed + lost
                    sha, file_path = self._write_bits(kind, jurisdiction, npa, bits)
                    self._upsert(kind, jurisdiction, npa, snapshot_date, count, source, sha, file_path)
                if kind in WHOLE_LIST_KINDS:
                    # The file is the whole list: area codes or prefixes not in it hold no number now.
                    kept = {int(p.stem) for p in parts}
                    removed += sum(row[0] for npa, row in previous.items() if npa not in kept)
                    self.conn.execute(
                        "DELETE FROM compliance_dnc_snapshots WHERE list_kind=%s AND jurisdiction=%s"
                        " AND NOT (npa = ANY(%s))", (kind, jurisdiction, sorted(kept)))
                    self._set_coverage(kind, jurisdiction, snapshot_date, replace=True)
                import_id = self._record_import(kind, jurisdiction, "full", source, file_sha, snapshot_date,
                                                len(parts), total, added, report, removed)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return ImportResult(import_id, False, len(parts), total, added, removed, report)

    def _difference(self, previous: tuple[int, str] | None, bits: np.ndarray, count: int) -> tuple[int, int]:
        """(numbers added, numbers removed) of an area code's new bitset against its previous snapshot."""
        if previous is None:
            return count, 0
        old_count, old_path = previous
        try:
            old = self._read_bits(old_path)
        except StorageError:
            # The old copy is unreadable: the new one replaces it all the same (that is the repair);
            # the counts can then only compare totals.
            return max(count - old_count, 0), max(old_count - count, 0)
        return count_bits(bits & ~old), count_bits(old & ~bits)

    @_storage_errors
    def import_changes(self, path: Path, *, kind: str, jurisdiction: str, snapshot_date: date,
                       source: str, progress: Progress | None = None) -> ImportResult:
        """Apply a change list (NPA,NXXXXXX,A|D lines) on top of the current snapshots."""
        path = Path(path)
        file_sha = _file_sha(path)
        report = ParseReport()
        if self._already_imported(kind, jurisdiction, file_sha, "changes", snapshot_date):
            return ImportResult(None, True, 0, 0, 0, 0, report)
        current = {r[0]: r for r in self.conn.execute(
            "SELECT npa, snapshot_date, file_path FROM compliance_dnc_snapshots"
            " WHERE list_kind=%s AND jurisdiction=%s", (kind, jurisdiction)).fetchall()}
        whole_list = kind in WHOLE_LIST_KINDS
        if whole_list:
            covered = self.conn.execute(
                "SELECT snapshot_date FROM compliance_dnc_coverage WHERE list_kind=%s AND jurisdiction=%s",
                (kind, jurisdiction)).fetchone()
            if covered is None:
                raise DncImportError(f"no full {kind} {jurisdiction} list imported yet; import one before changes")
            if covered[0] > snapshot_date:
                raise DncImportError(f"change list dated {snapshot_date} is older than the {kind} {jurisdiction}"
                                     f" list of {covered[0]}")
        parts = list(iter_number_blocks(path, report, progress, with_action=True, uk=kind in UK_KINDS))
        # An unread addition would leave its number callable while the list's date moves forward
        _refuse_unread_lines(report, [path], "a change list")
        keys = np.concatenate([p[0].astype(np.int64) * BITS_PER_NPA + p[1] for p in parts] or [np.empty(0, np.int64)])
        actions = np.concatenate([p[2] for p in parts] or [np.empty(0, bool)])
        # When a number appears several times, its last line in the file wins.
        unique_keys, last = np.unique(keys[::-1], return_index=True)
        is_add = actions[::-1][last]
        npas = (unique_keys // BITS_PER_NPA).astype(np.int32)
        lines = (unique_keys % BITS_PER_NPA).astype(np.int32)
        touched: dict[int, np.ndarray] = {}
        added = removed = 0
        bounds = np.flatnonzero(np.diff(npas)) + 1
        for start, end in zip(np.r_[0, bounds], np.r_[bounds, len(npas)]):
            if start == end:
                continue
            code = int(npas[start])
            row = current.get(code)
            if row is None and not whole_list:
                report.bad(0, f"{code:03d}".encode(),
                           f"{end - start} changes for an area code with no full snapshot; import one first")
                continue
            if row is not None and row[1] > snapshot_date:
                raise DncImportError(f"change list dated {snapshot_date} is older than area code"
                                     f" {code:03d}'s snapshot of {row[1]}")
            # In a whole list, an area code or prefix without a snapshot holds no number yet.
            bits = touched[code] = (self._read_bits(row[2]).copy() if row is not None
                                    else np.zeros(BYTES_PER_NPA, dtype=np.uint8))
            group_lines, group_add = lines[start:end], is_add[start:end]
            before = bits_set(bits, group_lines)
            set_bits(bits, group_lines[group_add], True)
            set_bits(bits, group_lines[~group_add], False)
            added += int((group_add & ~before).sum())
            removed += int((~group_add & before).sum())
        with self.conn.transaction():
            for code, bits in touched.items():
                sha, file_path = self._write_bits(kind, jurisdiction, code, bits)
                self._upsert(kind, jurisdiction, code, snapshot_date, count_bits(bits), source, sha, file_path)
            for code in current:
                if code not in touched:
                    # A change list covers every subscribed area code: no change still refreshes the date.
                    self.conn.execute(
                        "UPDATE compliance_dnc_snapshots SET snapshot_date=greatest(snapshot_date, %s)"
                        " WHERE list_kind=%s AND jurisdiction=%s AND npa=%s",
                        (snapshot_date, kind, jurisdiction, code))
            if whole_list:
                self._set_coverage(kind, jurisdiction, snapshot_date, replace=False)
            import_id = self._record_import(kind, jurisdiction, "changes", source, file_sha, snapshot_date,
                                            len(touched), 0, added, report, removed)
        return ImportResult(import_id, False, len(touched), 0, added, removed, report)

    def import_numbers(self, numbers: Iterable[str], *, kind: str, jurisdiction: str, snapshot_date: date,
                       source: str) -> ImportResult:
        """A full import of E.164 numbers held in memory (demo data, tests, benchmarks)."""
        folder = self.root / kind / jurisdiction
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f".numbers-{os.getpid()}.txt"
        prefix = "+44" if kind in UK_KINDS else "+1"
        path.write_text("".join(("0" if prefix == "+44" else "") + n.removeprefix(prefix) + "\n" for n in numbers))
        try:
            return self.import_full(path, kind=kind, jurisdiction=jurisdiction, snapshot_date=snapshot_date,
                                    source=source)
        finally:
            path.unlink(missing_ok=True)

    def _set_coverage(self, kind: str, jurisdiction: str, snapshot_date: date, *, replace: bool) -> None:
        """The whole list's date: set by a full import, moved forward (never back) by a change list."""
        update = "excluded.snapshot_date" if replace else \
            "greatest(compliance_dnc_coverage.snapshot_date, excluded.snapshot_date)"
        self.conn.execute(
            "INSERT INTO compliance_dnc_coverage (list_kind, jurisdiction, snapshot_date) VALUES (%s,%s,%s)"
            f" ON CONFLICT (list_kind, jurisdiction) DO UPDATE SET snapshot_date={update}, updated_at=now()",
            (kind, jurisdiction, snapshot_date))

    def _upsert(self, kind, jurisdiction, npa, snapshot_date, count, source, sha, file_path) -> None:
        self.conn.execute(
            "INSERT INTO compliance_dnc_snapshots (list_kind, jurisdiction, npa, snapshot_date,"
            " number_count, source, sha256, file_path) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT (list_kind, jurisdiction, npa) DO UPDATE SET snapshot_date=excluded.snapshot_date,"
            " number_count=excluded.number_count, source=excluded.source, sha256=excluded.sha256,"
            " file_path=excluded.file_path, imported_at=now()",
            (kind, jurisdiction, npa, snapshot_date, count, source, sha, str(file_path)))

    def _record_import(self, kind, jurisdiction, mode, source, file_sha, snapshot_date, area_codes,
                       numbers, added, report: ParseReport, removed: int = 0) -> int:
        return self.conn.execute(
            "INSERT INTO compliance_dnc_imports (list_kind, jurisdiction, mode, source, file_sha256,"
            " snapshot_date, area_codes, numbers, added, removed, lines, bad_lines)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (kind, jurisdiction, mode, source, file_sha, snapshot_date, area_codes, numbers, added,
             removed, report.lines, report.bad_lines)).fetchone()[0]

    def metadata(self) -> list[tuple]:
        try:
            return self.conn.execute(
                "SELECT list_kind, jurisdiction, npa, snapshot_date, number_count, sha256, file_path, source"
                " FROM compliance_dnc_snapshots ORDER BY list_kind, jurisdiction, npa").fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"registry metadata unavailable: {exc}") from exc

    def coverage(self) -> dict[tuple[str, str], date]:
        """Whole lists (state, TPS, CTPS) and the date their latest full import or change list holds."""
        try:
            rows = self.conn.execute(
                "SELECT list_kind, jurisdiction, snapshot_date FROM compliance_dnc_coverage").fetchall()
        except psycopg.Error as exc:
            raise StorageError(f"registry metadata unavailable: {exc}") from exc
        return {(kind, jurisdiction): as_of for kind, jurisdiction, as_of in rows}

    def load_index(self, index: RegistryIndex | None = None) -> RegistryIndex:
        """Map every snapshot's file (read-only memmap); reuse those whose SHA did not change."""
        index = index or RegistryIndex()
        rows, coverage = self.metadata(), self.coverage()
        present = {(kind, jurisdiction, npa) for kind, jurisdiction, npa, *_rest in rows}
        for kind, jurisdiction, npa, snap_date, count, sha, file_path, source in rows:
            current = index.area_codes(kind, jurisdiction).get(npa)
            if current is not None and current.sha256 == sha:
                current.snapshot_date = snap_date
                continue
            try:
                bits = np.memmap(file_path, dtype=np.uint8, mode="r")
            except OSError as exc:
                raise StorageError(f"registry file {file_path} unreadable: {exc}") from exc
            if len(bits) != BYTES_PER_NPA:
                raise StorageError(f"registry file {file_path} is truncated")
            index.put(kind, jurisdiction, npa, NpaSnapshot(bits, snap_date, count, sha, source))
        index.retain(present, coverage)
        return index

