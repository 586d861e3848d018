"""Lead import: a CSV file into a campaign's list, streaming, E.164-normalised and deduplicated.

Pipeline (docs/campaigns.md, "Importing leads"):
1. The main process reads the file line by line (UTF-8, never the whole file) and cuts it into
   chunks of whole CSV records for worker processes (or handles them itself for small files). The
   rejects path is checked first: never the input file, and writable (usage errors, nothing read).
2. Each worker parses its chunk (csv module), maps columns by header name, validates every field,
   normalises the phone number to E.164 with phonenumbers and COPYs the good rows into an UNLOGGED
   staging table; bad rows go back to the main process, which writes them, in file order, to the
   rejects CSV with a reason each. State and ZIP are checked as the compliance gate will read them
   (a state it does not know, or a ZIP it reads as another place's, would close the lead at dial
   time): a state code (or name) of the rule packs, a +1 number's ZIP 5 digits or ZIP+4.
3. One INSERT ... SELECT DISTINCT ON (phone_e164) ... keeps the first row of each number in the
   file and skips numbers the campaign already has, in one transaction with the list's counts: an
   import is all or nothing, and importing a file again adds nothing (every row is a duplicate).

Phone numbers: phonenumbers.parse + is_valid_number take 25-50 µs per number, the validity check
alone about 20 µs (its region lookup walks 25 NANP regions' regexes). Well-formed North American numbers
(+1 NPA NXX XXXX with the usual separators) skip the parse and take their validity from a cache
keyed by the number's first digits. How many digits is derived, per area code, from the installed
phonenumbers metadata itself: for every NANP region's patterns (and the leading-digits patterns
that pick the region), the regex parse tree says how many trailing digits are free (`\\d`), so
validity provably depends only on the prefix. The cached answer is phonenumbers' own answer for a
number with that prefix; nothing is validated less than the slow path would. When the metadata
cannot be analysed, the fast path is off and every number takes the full parse.
"""
from __future__ import annotations

import csv
import io
import json
import os
import pickle
import queue
import select
import struct
import subprocess
import sys
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from zoneinfo import available_timezones

import phonenumbers
import psycopg
from phonenumbers import PhoneMetadata, PhoneNumber
from phonenumbers.phonenumberutil import COUNTRY_CODE_TO_REGION_CODE

from dialer import config, storage
from dialer.campaigns import get_campaign
from dialer.errors import DialerError


class LeadImportError(DialerError):
    """The file as a whole cannot be imported (no header, no phone column, unreadable file)."""


# ------------------------------------------------------------------ columns

# Lead field -> header names accepted for it (compared after lower-casing and turning every run of
# other characters than letters and digits into '_').
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "phone": ("phone", "phone_number", "number", "phonenumber", "telephone", "tel", "phone1", "mobile",
              "cell", "msisdn"),
    "first_name": ("first_name", "firstname", "first", "fname", "given_name"),
    "last_name": ("last_name", "lastname", "last", "lname", "surname", "family_name"),
    "address": ("address", "address1", "address_1", "street", "street_address", "address_line_1"),
    "city": ("city", "town"),
    "state": ("state", "st", "province", "state_code"),
    "zip": ("zip", "zip_code", "zipcode", "postal_code", "postcode", "postal"),
    "tz_hint": ("tz", "timezone", "time_zone", "tz_hint"),
    "person_id": ("person_id", "customer_id"),
    "debt_id": ("debt_id", "account_number"),
    "line_type": ("line_type",),
}
LEAD_FIELDS = tuple(FIELD_ALIASES)
LINE_TYPES = ("unknown", "wireless", "landline")
# A US ZIP code (of a +1 number): 5 digits or ZIP+4. Anything else (notably 4 digits: a spreadsheet
# dropped the leading zero of 01002) would be read by the gate as another place's ZIP prefix.
_ZIP_RE = re.compile(r"\d{5}(?:-\d{4})?", re.ASCII)
_ZONES = frozenset(available_timezones())


def header_key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


def delimiter_hint(header: list[str]) -> str:
    """' (the file seems to use ';' ...)' when the header is one field holding another usual
    separator: a semicolon- or tab-separated export read as CSV has a single column, and the bare
    "no phone column" then leaves the user guessing."""
    if len(header) != 1:
        return ""
    for sep, name in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if sep in header[0]:
            return f" (the file seems to use {name} between columns; a comma is expected)"
    return ""


def find_phone_column(header: list[str], wanted: str = "phone") -> int | None:
    """Index of the phone column the way the import finds it (names compared by header_key; for the
    default name "phone", any of the import's phone aliases), or None."""
    keys = [header_key(h) for h in header]
    names = (header_key(wanted),) + (FIELD_ALIASES["phone"] if header_key(wanted) == "phone" else ())
    for name in names:
        if name in keys:
            return keys.index(name)
    return None


# ------------------------------------------------------------------ output paths

def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same inode when both exist (symlinks and hard links
    included), else the same resolved path (an output not created yet, a dangling symlink)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def output_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be written, or None. Probed without truncating it (an existing rejects
    file is reported as stale when nothing is rejected) and without leaving a new file behind: an
    output found unwritable at the first reject would end an import half way, with a traceback."""
    path = Path(path)
    try:
        if path.exists():
            if path.is_dir():
                return f"{path} is a directory"
            # O_NONBLOCK: a FIFO without a reader fails at once instead of hanging the probe
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
            try:
                os.write(fd, b"")       # procfs and the like accept the open and fail the write
            finally:
                os.close(fd)
            return None
        parent = path.parent
        if not parent.is_dir():
            return f"{parent} is not an existing directory"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(path)
        return None
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"


def output_paths_problem(source: str | os.PathLike, outputs: list[tuple[str, str | os.PathLike]]) -> str | None:
    """A usage problem with (option, path) outputs of a command reading `source`: an output that is
    the input file (opening it for writing would truncate the input before it is read), two outputs
    that are one file, or an output that cannot be written. None when all is well."""
    for option, path in outputs:
        if same_file(path, source):
            return f"{option} {path} is the input file {source}: it would be overwritten; choose another path"
    for i, (option, path) in enumerate(outputs):
        for other, other_path in outputs[i + 1:]:
            # two outputs may share a device (/dev/null): only a regular file is truncated
            if same_file(path, other_path) and (not Path(path).exists() or Path(path).is_file()):
                return f"{option} and {other} are the same file ({path}); choose two different paths"
    for option, path in outputs:
        if problem := output_problem(path):
            return f"{option}: {problem}"
    return None


@dataclass(frozen=True)
class ColumnMap:
    header: tuple[str, ...]
    fields: dict[str, int]          # lead field -> column index
    custom: tuple[tuple[str, int], ...]   # (header name, column index) of every other column

    @classmethod
    def from_header(cls, header: list[str], overrides: dict[str, str] | None = None) -> "ColumnMap":
        if not header or (len(header) == 1 and not header[0].strip()):
            raise LeadImportError("line 1 is blank: the header line (the column names) must be the file's first line")
        if all(not h.strip() for h in header):
            raise LeadImportError("the header line (line 1) has no column names")
        # a column without a name (a trailing comma in the header) is called column_N (1-based)
        keys = [header_key(h) or f"column_{i + 1}" for i, h in enumerate(header)]
        seen = Counter(keys)
        if twice := [header[i] for i, k in enumerate(keys) if seen[k] > 1]:
            raise LeadImportError(f"header names used twice: {', '.join(sorted(set(twice)))}")
        fields: dict[str, int] = {}
        for name, wanted in (overrides or {}).items():
            if name not in FIELD_ALIASES:
                raise LeadImportError(f"--map {name}=...: unknown lead field (known: {', '.join(LEAD_FIELDS)})")
            if header_key(wanted) not in keys:
                raise LeadImportError(f"--map {name}={wanted}: no column {wanted!r} in the header")
            fields[name] = keys.index(header_key(wanted))
        for name, aliases in FIELD_ALIASES.items():
            if name in fields:
                continue
            for alias in aliases:
                if alias in keys and keys.index(alias) not in fields.values():
                    fields[name] = keys.index(alias)
                    break
        if "phone" not in fields:
            raise LeadImportError(f"no phone column: the header needs one of {', '.join(FIELD_ALIASES['phone'])} "
                                  f"(or --map phone=COLUMN); it has {', '.join(header)}{delimiter_hint(header)}")
        used = set(fields.values())
        custom = tuple((header[i].strip() or keys[i], i) for i in range(len(header)) if i not in used)
        return cls(header=tuple(header), fields=fields, custom=custom)


_STATES: tuple[frozenset[str], dict[str, str]] | None = None


def us_states() -> tuple[frozenset[str], dict[str, str]]:
    """(state and territory codes, lower-case name or alias -> code), from the compliance rule packs
    (RuleBook.states): the gate closes a lead whose state is not among them (UNKNOWN_STATE), so the
    import accepts exactly those."""
    global _STATES
    if _STATES is None:
        from dialer.compliance.rules import load_packs   # noqa: PLC0415  (only the import needs the packs)
        book = load_packs()
        _STATES = (frozenset(book.states), dict(book.state_by_name))
    return _STATES


def state_code(value: str, codes=None, by_name=None) -> tuple[str | None, tuple[str, str] | None]:
    """(the state's code, None), or (None, (reject reason, detail)) for a state the rule packs do
    not know: the gate would close the lead (UNKNOWN_STATE). Names and aliases become codes."""
    if codes is None:
        codes, by_name = us_states()
    code = value.strip().upper()
    if code not in codes:
        code = by_name.get(" ".join(value.lower().split()))
        if code is None:
            return None, ("invalid_state", f"state {value!r} is not a US state or territory code (or name)")
    return code, None


def zip_problem(e164: str, value: str) -> tuple[str, str] | None:
    """(reject reason, detail) for a North American number's ZIP code that is not 5 digits or
    ZIP+4 (elsewhere the column holds a postcode such as SW1A 1AA), else None."""
    if not e164.startswith("+1") or _ZIP_RE.fullmatch(value):
        return None
    hint = " (a leading zero lost?)" if len(value) == 4 and value.isascii() and value.isdigit() else ""
    return "invalid_zip", f"ZIP {value!r} is not 5 digits or ZIP+4 (12345-6789){hint}"


# ------------------------------------------------------------------ phone numbers

NANP_REGIONS = tuple(COUNTRY_CODE_TO_REGION_CODE[1])
_DESC_NAMES = ("general_desc", "fixed_line", "mobile", "toll_free", "premium_rate", "shared_cost",
               "personal_number", "voip", "pager", "uan", "voicemail")
# +1 or 1 (optional), then NPA NXX XXXX with one optional separator between groups and the area
# code optionally in parentheses. Anything else takes phonenumbers.parse. ASCII digits only: `\d`
# would also take Arabic-Indic or full-width digits and keep them in the "E.164" string, which then
# matches no do-not-call entry (phonenumbers.parse turns such digits into ASCII ones).
_NANP_RE = re.compile(
    r"\s*(?:(?P<plus>\+)?1[ .-]?)?(?:\((?P<npa1>[2-9]\d\d)\)|(?P<npa2>[2-9]\d\d))[ .-]?(?P<nxx>\d{3})[ .-]?(?P<line>\d{4})\s*",
    re.ASCII)


def _trailing_free_digits(items) -> int:
    """How many trailing characters of any string a regex (parse tree) matches are `\\d`, whatever
    path it took; 0 when unsure."""
    from re import _constants as c   # noqa: PLC0415  (the stdlib's regex parse tree constants)
    count = 0
    for op, av in reversed(list(items)):
        if op is c.IN and list(av) == [(c.CATEGORY, c.CATEGORY_DIGIT)]:
            count += 1
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT) and _is_digit_class(av[2]):
            count += av[0]
            if av[0] != av[1]:
                return count
        elif op is c.SUBPATTERN:
            return count + _trailing_free_digits(av[3])
        elif op is c.BRANCH:
            return count + min(_trailing_free_digits(branch) for branch in av[1])
        else:
            return count
    return count


def _is_digit_class(sub) -> bool:
    from re import _constants as c   # noqa: PLC0415
    items = list(sub)
    return len(items) == 1 and items[0][0] is c.IN and list(items[0][1]) == [(c.CATEGORY, c.CATEGORY_DIGIT)]


def _prefix_lengths() -> dict[str, int] | None:
    """Area code -> number of leading national digits that decide a NANP number's validity.

    None when the metadata has a shape this analysis does not cover (fast path off)."""
    from re import _parser   # noqa: PLC0415
    try:
        needed: dict[str, int] = {}
        leading: dict[str, tuple[str, int]] = {}
        for region in NANP_REGIONS:
            md = PhoneMetadata.metadata_for_region(region)
            width = 0
            for name in _DESC_NAMES:
                desc = getattr(md, name, None)
                if desc is None or desc.national_number_pattern is None:
                    continue
                width = max(width, 10 - _trailing_free_digits(_parser.parse(desc.national_number_pattern)))
            if md.leading_digits:
                low, high = _parser.parse(md.leading_digits).getwidth()
                if high > 4:
                    return None
                width = max(width, high)
                leading[region] = (md.leading_digits, high)
            needed[region] = width
    except Exception:   # noqa: BLE001  (any surprise in the metadata: no fast path, never a wrong one)
        return None
    plain = [r for r in NANP_REGIONS if r not in leading]   # regions decided by full validation
    base = max(needed[r] for r in plain)
    lengths = {}
    for npa in range(200, 1000):
        text = str(npa)
        candidates = [r for r, (pattern, _w) in leading.items()
                      if any(re.match(pattern, text + str(d)) for d in range(10))]
        lengths[text] = max([base] + [needed[r] for r in candidates])
    return lengths


_PREFIX_LENGTHS: dict[str, int] | None | bool = False


def prefix_lengths() -> dict[str, int] | None:
    global _PREFIX_LENGTHS
    if _PREFIX_LENGTHS is False:
        _PREFIX_LENGTHS = _prefix_lengths()
    return _PREFIX_LENGTHS   # type: ignore[return-value]


class PhoneNormalizer:
    """raw text -> (E.164, None) or (None, (reason, detail)); see the module docstring."""

    def __init__(self, default_region: str = "US", fast_path: bool = True):
        region = default_region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise LeadImportError(f"unknown region {default_region!r} (an ISO 3166 code such as US, CA, GB)")
        self.region = region
        self.lengths = prefix_lengths() if fast_path else None
        self.region_is_nanp = region in NANP_REGIONS
        self.valid_by_prefix: dict[str, bool] = {}
        self.fast = 0
        self.slow = 0

    def normalize(self, raw: str) -> tuple[str | None, tuple[str, str] | None]:
        if self.lengths is not None and (m := _NANP_RE.fullmatch(raw)) and (self.region_is_nanp or m["plus"]):
            national = (m["npa1"] or m["npa2"]) + m["nxx"] + m["line"]
            prefix = national[:self.lengths[national[:3]]]
            valid = self.valid_by_prefix.get(prefix)
            if valid is None:
                valid = self.valid_by_prefix[prefix] = phonenumbers.is_valid_number(
                    PhoneNumber(country_code=1, national_number=int(national)))
            self.fast += 1
            if valid:
                return "+1" + national, None
            return None, ("invalid_phone", "not a valid number (phonenumbers metadata)")
        self.slow += 1
        try:
            number = phonenumbers.parse(raw, self.region)
        except phonenumbers.NumberParseException as exc:
            return None, ("unparseable_phone", str(exc).split(") ", 1)[-1])
        if not phonenumbers.is_valid_number(number):
            return None, ("invalid_phone", "not a valid number (phonenumbers metadata)")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), None


# ------------------------------------------------------------------ reading records

@dataclass(slots=True)
class Record:
    line: int                       # physical line the record starts on (1 = header)
    fields: list[str] | None        # None when the line could not be read as CSV
    reason: str | None = None       # set by the reader for unreadable lines
    detail: str = ""
    raw: str = ""                    # the unreadable line's text


class RecordReader:
    """CSV records with their line numbers. A line that breaks the CSV quoting (an unclosed quote
    would swallow every following line into one field) is rejected alone, and the lines after it
    are read again, so one bad line never takes others with it."""

    def __init__(self, stream: Iterator[str], columns: int | None = None, first_line: int = 1):
        self._stream = stream
        self._pushback: deque[tuple[int, str]] = deque()
        self._taken: list[tuple[int, str]] = []
        self._next_line = first_line
        self.columns = columns

    def _lines(self) -> Iterator[str]:
        while True:
            if self._pushback:
                entry = self._pushback.popleft()
            else:
                text = next(self._stream, None)
                if text is None:
                    return
                entry = (self._next_line, text)
                self._next_line += 1
            self._taken.append(entry)
            yield entry[1]

    def __iter__(self) -> Iterator[Record]:
        reader = csv.reader(self._lines(), strict=True)
        while True:
            self._taken = []
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # an unclosed quote also ends at the field size limit, but having read many lines
                too_long = "field larger than field limit" in str(exc) and len(self._taken) == 1
                yield self._reject_first("field_too_long" if too_long else "bad_quoting", str(exc))
                reader = csv.reader(self._lines(), strict=True)
                continue
            taken = self._taken
            if not taken:
                return
            if len(taken) > 1 and self.columns is not None and len(fields) != self.columns:
                # a quote opened on one line and closed on a later one: only the first line is bad
                yield self._reject_first("bad_quoting", "a quoted field runs over several lines and "
                                         f"the record has {len(fields)} fields instead of {self.columns}")
                reader = csv.reader(self._lines(), strict=True)
                continue
            yield Record(taken[0][0], fields)

    def _reject_first(self, reason: str, detail: str) -> Record:
        if not self._taken:
            raise LeadImportError(f"CSV error before any line was read: {detail}")
        first, rest = self._taken[0], self._taken[1:]
        self._pushback.extendleft(reversed(rest))
        return Record(first[0], None, reason, detail + "; the raw line is kept as one field",
                      first[1].rstrip("\r\n"))


# ------------------------------------------------------------------ normalising a chunk

STAGE_COLUMNS = ("row_no", "phone_e164", "phone_raw", "first_name", "last_name", "address", "city", "state",
                 "zip", "tz_hint", "person_id", "debt_id", "line_type", "custom")


@dataclass
class ChunkResult:
    rows: int = 0                   # records read (blank lines excluded)
    blank: int = 0
    good: int = 0                   # rows staged
    rejects: list[tuple[int, str, str, list[str]]] = field(default_factory=list)   # line, reason, detail, fields
    fast: int = 0
    slow: int = 0
    cpu_s: float = 0.0


class ChunkNormalizer:
    """Validates records and writes the good ones to the staging table through COPY."""

    def __init__(self, columns: ColumnMap, region: str, fast_path: bool = True):
        self.columns = columns
        self.phones = PhoneNormalizer(region, fast_path)
        self.width = len(columns.header)
        self.state_codes, self.state_by_name = us_states()
        f = columns.fields
        self._optional = [(name, f.get(name)) for name in
                          ("first_name", "last_name", "address", "city", "state", "zip", "tz_hint",
                           "person_id", "debt_id", "line_type")]

    def _row(self, record: Record) -> tuple | tuple[str, str]:
        """The staging row, or (reason, detail)."""
        values = record.fields
        if len(values) != self.width:
            return ("column_count", f"expected {self.width} fields, got {len(values)}")
        joined = "".join(values)
        if not joined.isascii():
            try:
                joined.encode("utf-8")
            except UnicodeEncodeError:
                return ("bad_encoding", "not UTF-8 text")
        if "\x00" in joined:
            return ("nul_byte", "a field contains a NUL byte")
        raw_phone = values[self.columns.fields["phone"]].strip()
        if not raw_phone:
            return ("missing_phone", "the phone field is empty")
        e164, problem = self.phones.normalize(raw_phone)
        if problem:
            return problem
        out = [record.line, e164, raw_phone]
        for name, index in self._optional:
            value = values[index].strip() if index is not None else ""
            if not value:
                out.append("unknown" if name == "line_type" else None)
                continue
            if name == "state":
                value, problem = state_code(value, self.state_codes, self.state_by_name)
                if problem:
                    return problem
            elif name == "zip" and (problem := zip_problem(e164, value)):
                return problem
            elif name == "tz_hint" and value not in _ZONES:
                return ("invalid_time_zone", f"{value!r} is not an IANA time zone")
            elif name == "line_type":
                value = value.lower()
                if value not in LINE_TYPES:
                    return ("invalid_line_type", f"{value!r} is not one of {', '.join(LINE_TYPES)}")
            out.append(value)
        custom = {name: values[i] for name, i in self.columns.custom if values[i] != ""}
        out.append(json.dumps(custom, ensure_ascii=False) if custom else None)
        return tuple(out)

    def run(self, first_line: int, lines: list[str], conn: psycopg.Connection, stage: str) -> ChunkResult:
        """Parse, validate and stage one chunk of whole records (`lines` start at `first_line`)."""
        result = ChunkResult()
        cpu0 = time.process_time()
        fast0, slow0 = self.phones.fast, self.phones.slow
        records = RecordReader(iter(lines), columns=self.width, first_line=first_line)
        with conn.cursor() as cur, cur.copy(f"COPY {stage} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
            for record in records:
                if record.fields is not None and not record.fields:
                    result.blank += 1
                    continue
                result.rows += 1
                if record.fields is None:
                    result.rejects.append((record.line, record.reason, record.detail, [record.raw]))
                    continue
                row = self._row(record)
                if len(row) == 2:
                    result.rejects.append((record.line, row[0], row[1], record.fields))
                else:
                    copy.write_row(row)
                    result.good += 1
        result.fast, result.slow = self.phones.fast - fast0, self.phones.slow - slow0
        result.cpu_s = time.process_time() - cpu0
        return result


# ------------------------------------------------------------------ worker processes
#
# Workers are plain `python -c` processes fed through their stdin and read through their stdout
# (8-byte length + pickle frames). multiprocessing's spawn would re-run the parent's __main__ in
# each worker (for the `dialer` command: import every command group, 1.3 s and 180 MB each), and
# fork would copy the parent's open connections and threads.

_FRAME = struct.Struct(">Q")
_WORKER_CODE = "from dialer.leads import worker_main; worker_main()"


def _write_frame(stream, obj) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size)
    if data is None or len(data) != size:
        raise EOFError
    return data


def worker_main() -> None:
    """A worker process: an init frame, then chunk frames, each answered with a ChunkResult; an
    empty frame (None) ends it."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    db_url, stage, columns, region, fast_path = pickle.loads(_read_exactly(source, _FRAME.unpack(
        _read_exactly(source, _FRAME.size))[0]))
    normalizer = ChunkNormalizer(columns, region, fast_path)
    with storage.connect_db(db_url, autocommit=True) as conn:
        while True:
            job = pickle.loads(_read_exactly(source, _FRAME.unpack(_read_exactly(source, _FRAME.size))[0]))
            if job is None:
                return
            _write_frame(sink, normalizer.run(job[0], job[1], conn, stage))


class _WorkerProcess:
    """One worker: a feeding thread writes jobs (so that a worker blocked on writing a large result
    never deadlocks against us writing its next job) and results are read with a timeout."""

    def __init__(self, init: tuple, timeout_s: float):
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.timeout_s = timeout_s
        self.proc = subprocess.Popen([sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, env=env)
        self.jobs: queue.Queue = queue.Queue(maxsize=2)
        self.feeder_error: BaseException | None = None
        self.feeder = threading.Thread(target=self._feed, args=(init,), daemon=True)
        self.feeder.start()

    def _feed(self, init: tuple) -> None:
        try:
            _write_frame(self.proc.stdin, init)
            while True:
                job = self.jobs.get()
                _write_frame(self.proc.stdin, job)
                if job is None:
                    self.proc.stdin.close()
                    return
        except (OSError, ValueError) as exc:     # the worker died: reported by result()
            self.feeder_error = exc

    def submit(self, job) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                self.jobs.put(job, timeout=0.5)
                return
            except queue.Full:
                if not self.feeder.is_alive() or self.proc.poll() is not None:
                    raise LeadImportError(f"a worker process exited (code {self.proc.poll()})") from None
                if time.monotonic() > deadline:
                    raise LeadImportError(f"a worker took no job for {self.timeout_s:.0f} s") from None

    def result(self) -> "ChunkResult":
        fd = self.proc.stdout.fileno()
        header = self._read(fd, _FRAME.size)
        return pickle.loads(self._read(fd, _FRAME.unpack(header)[0]))

    def _read(self, fd: int, size: int) -> bytes:
        parts, missing = [], size
        deadline = time.monotonic() + self.timeout_s
        while missing:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise LeadImportError(f"a worker gave no result within {self.timeout_s:.0f} s")
            part = os.read(fd, min(missing, 1 << 20))
            if not part:
                code = self.proc.wait(timeout=self.timeout_s)
                raise LeadImportError(f"a worker process exited (code {code}) before giving its result")
            parts.append(part)
            missing -= len(part)
        return b"".join(parts)

    def close(self, kill: bool) -> None:
        if not kill:
            self.submit(None)
            try:
                self.proc.wait(timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                kill = True
        if kill and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=self.timeout_s)
        self.proc.stdout.close()
        if not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass


def _scan_line(line: str, inside: bool) -> tuple[bool, int, bool]:
    """How csv.reader (default dialect, strict) reads `line`, given whether a quoted field is open
    at its start: (open at its end, commas between fields, CSV error). A quote opens a quoted field
    only at the start of a field: a literal quote within an unquoted field (`5" tall`) is text,
    and counting it as an opening quote misjudges where the next records end. `""` inside a quoted
    field is an escaped quote; after a closing quote anything but a comma or the line end is an error."""
    pos = 0
    commas = 0
    while True:
        if inside:
            quote = line.find('"', pos)
            if quote < 0:
                return True, commas, False
            if line.startswith('"', quote + 1):
                pos = quote + 2
                continue
            inside = False
            pos = quote + 1
            if pos >= len(line) or line[pos] in "\r\n":
                return False, commas, False
            if line[pos] != ",":
                return False, commas, True
            commas += 1
            pos += 1
        elif line.startswith('"', pos):
            inside = True
            pos += 1
        else:
            comma = line.find(",", pos)
            if comma < 0:
                return False, commas, False
            commas += 1
            pos = comma + 1


# One whole single-line record as csv.reader (strict) reads it without error: quoted fields
# ("" inside), unquoted fields (not starting with a quote), the line end. Matching it in C is 20x
# faster than _scan_line on files that quote every field.
_FIELD = r'(?:"[^"]*(?:""[^"]*)*"|[^,"\r\n][^,\r\n]*)?'
_CLOSED_RECORD_RE = re.compile(_FIELD + r'(?:,' + _FIELD + r')*(?:\r\n|\n|\r)?')


def line_chunks(lines: Iterator[str], first_line: int, max_lines: int,
                columns: int | None = None) -> Iterator[tuple[int, list[str]]]:
    """Cut a stream of lines into chunks of whole CSV records, the records RecordReader will read.

    Lines go through _scan_line only while a quoted field is open or when they hold a quote. A
    record RecordReader rejects (a CSV error, or more than one line and not `columns` fields) has
    its first line rejected and the lines after it read again: here too, so that where a chunk
    may end agrees with the worker's reading. A record still open after MAX_RECORD_LINES lines is
    cut there: its first line is then rejected by the worker and the lines after it are read
    again as records."""
    chunk: list[str] = []
    start = first_line
    record: list[str] = []      # lines of the record whose quoted field is open
    inside = False
    commas = 0
    for line in lines:
        chunk.append(line)
        if record or ('"' in line and not _CLOSED_RECORD_RE.fullmatch(line)):
            todo = deque((line,))
            while todo:
                text = todo.popleft()
                if not record:
                    inside, commas = False, 0
                inside, more, error = _scan_line(text, inside)
                commas += more
                record.append(text)
                if error or (not inside and len(record) > 1 and columns is not None and commas + 1 != columns):
                    todo.extendleft(reversed(record[1:]))      # RecordReader reads them again
                    record, inside = [], False
                elif not inside:
                    record = []
                elif len(record) >= MAX_RECORD_LINES:
                    record, inside = [], False
        if not inside and len(chunk) >= max_lines:
            yield start, chunk
            start += len(chunk)
            chunk = []
    if chunk:
        yield start, chunk


# ------------------------------------------------------------------ the import

@dataclass
class ImportSummary:
    campaign: str
    list_name: str
    list_id: int
    file: str
    rows_read: int = 0
    imported: int = 0
    duplicates_in_file: int = 0
    duplicates_in_campaign: int = 0
    rejected: int = 0
    rejects_by_reason: dict[str, int] = field(default_factory=dict)
    blank_lines: int = 0
    rejects_file: str | None = None
    # a rejects file left by an earlier import of this file (this one rejected nothing, so it
    # wrote none): reported, not deleted, so its rows are not mistaken for this import's
    stale_rejects_file: str | None = None
    workers: int = 0
    fast_path_numbers: int = 0
    parsed_numbers: int = 0
    stage_seconds: float = 0.0      # reading, normalising and COPY into the staging table
    commit_seconds: float = 0.0     # the deduplicating INSERT into leads
    seconds: float = 0.0
    normalise_cpu_seconds: float = 0.0   # CPU of parsing, validating and COPY (all workers)
    reader_cpu_seconds: float = 0.0      # CPU of the process reading the file

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_file + self.duplicates_in_campaign

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out["duplicates"] = self.duplicates
        return out


REJECT_HEADER = ("line", "reason", "detail")
CHUNK_ROWS = 10_000
MAX_RECORD_LINES = 200
AUTO_WORKERS_MIN_BYTES = 4 << 20
RESULT_TIMEOUT_S = 600


class _RejectsWriter:
    """The rejects CSV, opened at the first reject: line, reason, detail, then the row's own fields
    (bytes that were not UTF-8 are written back as they were)."""

    def __init__(self, path: Path, header: tuple[str, ...]):
        self.path, self.header = path, header
        self._file = None
        self._writer = None

    def write(self, line: int, reason: str, detail: str, fields: list[str]) -> None:
        # probed before the import (output_problem), but a disk can fill or a directory go away
        # meanwhile: the import then stops before its commit, with a message rather than a traceback
        try:
            if self._writer is None:
                self._file = open(self.path, "w", encoding="utf-8", errors="surrogateescape", newline="")
                self._writer = csv.writer(self._file)
                self._writer.writerow([*REJECT_HEADER, *self.header])
            self._writer.writerow([line, reason, detail, *fields])
        except OSError as exc:
            raise LeadImportError(f"cannot write the rejects file {self.path}: {exc.strerror or exc}; "
                                  "nothing was imported") from exc

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                raise LeadImportError(f"cannot write the rejects file {self.path}: {exc.strerror or exc}; "
                                      "nothing was imported") from exc


def import_csv(path: str | os.PathLike, campaign: str, *, list_name: str | None = None,
               default_region: str = "US", rejects_path: str | os.PathLike | None = None,
               db_url: str | None = None, workers: int | None = None, fast_path: bool = True,
               column_overrides: dict[str, str] | None = None,
               progress: Callable[[int, int], None] | None = None) -> ImportSummary:
    """Import one CSV file into `campaign` (list `list_name`, default the file's name).

    `workers`: None = 2 worker processes for files over 4 MB, else in-process; 0 = in-process.
    `progress(bytes_done, bytes_total)` is called as the file is read.
    Raises LeadImportError / CampaignError for whole-file problems; bad rows never raise."""
    path = Path(path)
    if not path.is_file():
        raise LeadImportError(f"{path}: no such file")
    db_url = db_url or config.database_url()
    total_bytes = path.stat().st_size
    workers = (2 if total_bytes >= AUTO_WORKERS_MIN_BYTES else 0) if workers is None else workers
    list_name = (list_name or path.name).strip()
    if not list_name:
        raise LeadImportError("the list name is empty")
    rejects_path = Path(rejects_path) if rejects_path else path.with_name(path.stem + ".rejects.csv")
    # Before anything is read or staged: a rejects path that is the input would truncate it at the
    # first reject (and import only what was read so far); an unwritable one would fail half way.
    if problem := output_paths_problem(path, [("rejects file", rejects_path)]):
        raise LeadImportError(problem)
    started = time.perf_counter()
    cpu_started = time.process_time()

    with storage.connect_db(db_url, autocommit=True) as conn:
        campaign_row = get_campaign(conn, campaign)
        _drop_orphan_stages(conn)
        stage = f"lead_stage_{conn.info.backend_pid}_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE UNLOGGED TABLE {stage} (row_no bigint NOT NULL, phone_e164 text COLLATE \"C\" NOT NULL, "
                     "phone_raw text NOT NULL, first_name text, last_name text, address text, city text, "
                     "state text, zip text, tz_hint text, person_id text, debt_id text, line_type text NOT NULL, "
                     "custom jsonb)")
        try:
            with open(path, "rb") as binary:
                text = io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape", newline="")
                summary, valid_rows = _read_and_stage(text, binary, total_bytes, db_url, stage, workers,
                                                      default_region, fast_path, column_overrides, rejects_path,
                                                      progress)
            summary.campaign, summary.file = campaign_row.name, str(path)
            staged = time.perf_counter()
            summary.stage_seconds = round(staged - started, 3)
            _commit(conn, stage, campaign_row.id, list_name, path, summary, valid_rows)
            summary.commit_seconds = round(time.perf_counter() - staged, 3)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {stage}")
    summary.list_name = list_name
    summary.seconds = round(time.perf_counter() - started, 3)
    summary.reader_cpu_seconds = round(time.process_time() - cpu_started - (
        summary.normalise_cpu_seconds if not workers else 0.0), 3)
    summary.normalise_cpu_seconds = round(summary.normalise_cpu_seconds, 3)
    return summary


def _read_and_stage(text, binary, total_bytes, db_url, stage, workers, region, fast_path, overrides,
                    rejects_path, progress) -> tuple[ImportSummary, int]:
    header_reader = csv.reader(text)
    header = next(header_reader, None)
    if header is None:
        raise LeadImportError("the file is empty (no header line)")
    if any(not h.isascii() for h in header):
        try:
            "".join(header).encode("utf-8")
        except UnicodeEncodeError:
            raise LeadImportError("the header line is not UTF-8 text") from None
    columns = ColumnMap.from_header(header, overrides)
    summary = ImportSummary(campaign="", list_name="", list_id=0, file="", workers=workers)
    rejects = _RejectsWriter(rejects_path, columns.header)
    reasons: Counter[str] = Counter()
    valid_rows = 0

    def absorb(result: ChunkResult) -> None:
        nonlocal valid_rows
        valid_rows += result.good
        summary.rows_read += result.rows
        summary.blank_lines += result.blank
        summary.fast_path_numbers += result.fast
        summary.parsed_numbers += result.slow
        summary.normalise_cpu_seconds += result.cpu_s
        for line, reason, detail, fields in result.rejects:
            rejects.write(line, reason, detail, fields)
            reasons[reason] += 1

    pool: list[_WorkerProcess] = []
    pending: deque[_WorkerProcess] = deque()
    local = None if workers else ChunkNormalizer(columns, region, fast_path)
    local_conn = storage.connect_db(db_url, autocommit=True) if not workers else None
    failed = True
    try:
        init = (db_url, stage, columns, region, fast_path)
        pool = [_WorkerProcess(init, RESULT_TIMEOUT_S) for _ in range(workers)]
        for number, (first_line, lines) in enumerate(line_chunks(text, header_reader.line_num + 1, CHUNK_ROWS,
                                                                  len(columns.header))):
            if not pool:
                absorb(local.run(first_line, lines, local_conn, stage))
            else:
                worker = pool[number % workers]        # round robin: results come back in file order
                worker.submit((first_line, lines))
                pending.append(worker)
                while len(pending) > 2 * workers:
                    absorb(pending.popleft().result())
            if progress:
                progress(binary.tell(), total_bytes)
        while pending:
            absorb(pending.popleft().result())
        if progress:
            progress(total_bytes, total_bytes)
        failed = False
    finally:
        for worker in pool:
            worker.close(kill=failed)
        if local_conn is not None:
            local_conn.close()
        rejects.close()     # last: its error (a full disk) must not leave workers behind
    summary.rejected = sum(reasons.values())
    summary.rejects_by_reason = dict(sorted(reasons.items()))
    summary.rejects_file = str(rejects_path) if summary.rejected else None
    if not summary.rejected and rejects_path.exists():
        summary.stale_rejects_file = str(rejects_path)
    return summary, valid_rows


def _drop_orphan_stages(conn: psycopg.Connection) -> None:
    """Drop staging tables of imports whose process died (their backend pid is gone)."""
    live = {pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity").fetchall()}
    for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'lead\\_stage\\_%'").fetchall():
        parts = name.split("_")
        if len(parts) == 4 and parts[2].isdigit() and int(parts[2]) not in live:
            conn.execute(f"DROP TABLE IF EXISTS {name}")


def _commit(conn, stage, campaign_id, list_name, path, summary, valid_rows) -> None:
    """Insert the staged rows (first row of each number in the file, none the campaign already has)
    and the list's counts, in one transaction.

    Imports into one campaign take turns (a transaction-level advisory lock), so the plain
    anti-join INSERT cannot race another import; it is a third faster than ON CONFLICT, whose
    speculative insertion costs an extra WAL record and index probe per row (measured). Should
    another writer add one of the numbers meanwhile, the INSERT is redone with ON CONFLICT."""
    with conn.transaction():
        conn.execute("SET LOCAL work_mem = '256MB'")     # sort the file's numbers in memory
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('lead-import:' || %s::text, 0))",
                     (campaign_id,))
        conn.execute(f"ANALYZE {stage}")
        list_id = conn.execute(
            "INSERT INTO lead_lists (campaign_id, name, source_file) VALUES (%s, %s, %s) "
            "ON CONFLICT (campaign_id, name) DO UPDATE SET source_file = EXCLUDED.source_file RETURNING id",
            (campaign_id, list_name, str(path))).fetchone()[0]
        names = ", ".join(STAGE_COLUMNS[1:])

        def insert(dedupe: str):
            return conn.execute(f"""
                WITH firsts AS (
                    SELECT DISTINCT ON (phone_e164) {names} FROM {stage} ORDER BY phone_e164, row_no),
                added AS (
                    INSERT INTO leads (campaign_id, list_id, {names})
                    SELECT %(campaign)s, %(list)s, {names} FROM firsts f {dedupe} RETURNING 1)
                SELECT (SELECT count(*) FROM firsts), (SELECT count(*) FROM added)""",
                                {"campaign": campaign_id, "list": list_id}).fetchone()

        try:
            with conn.transaction():
                distinct, inserted = insert("WHERE NOT EXISTS (SELECT 1 FROM leads l WHERE l.campaign_id = "
                                            "%(campaign)s AND l.phone_e164 = f.phone_e164)")
        except psycopg.errors.UniqueViolation:
            distinct, inserted = insert("ON CONFLICT (campaign_id, phone_e164) DO NOTHING")
        summary.list_id = list_id
        summary.imported = inserted
        summary.duplicates_in_file = valid_rows - distinct
        summary.duplicates_in_campaign = distinct - inserted
        conn.execute(
            "UPDATE lead_lists SET rows_read = rows_read + %s, imported = imported + %s, "
            "duplicates = duplicates + %s, rejected = rejected + %s, imports = imports + 1, "
            "last_imported_at = now() WHERE id = %s",
            (summary.rows_read, summary.imported, summary.duplicates, summary.rejected, list_id))

