"""Wiring: build a gate on the real stores (PostgreSQL, Redis, the registry data directory) or on
in-memory stores for dry runs (`dialer compliance check` works with no server running)."""
from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import psycopg

from dialer import storage
from dialer.compliance.audit import PgAudit
from dialer.compliance.counters import MemoryCounters, RedisCounters
from dialer.compliance.gate import ComplianceGate
from dialer.compliance.geo import nanp_area_codes
from dialer.compliance.model import ComplianceError, ListKind
from dialer.compliance.records import MemoryRecords, PgRecords
from dialer.compliance.registry import ParseReport, RegistryIndex, RegistryStore
from dialer.compliance.rnd import MemoryRnd, PgRnd
from dialer.compliance.rules import load_packs
from dialer.errors import StorageError


def data_dir() -> Path:
    """Where registry bitsets live: DIALER_DATA_DIR, else .data/compliance in the project."""
    configured = os.environ.get("DIALER_DATA_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / ".data" / "compliance"


class LazyConnection:
    """A PostgreSQL connection opened on first use and reopened after it breaks.

    The gate never fails to start because PostgreSQL is down: each decision that needs the
    database raises StorageError instead, and the gate blocks that call with a reason.
    """

    def __init__(self, url: str | None = None, statement_timeout_ms: int = 2000):
        self.url = url
        self.statement_timeout_ms = statement_timeout_ms
        self._conn: psycopg.Connection | None = None

    def _get(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = storage.connect_db(self.url, autocommit=True)
            try:
                # Every wait has a timeout: a hung server blocks one decision, not the engine.
                conn.execute(f"SET statement_timeout = {int(self.statement_timeout_ms)}")
            except psycopg.Error as exc:
                conn.close()
                raise StorageError(f"cannot configure PostgreSQL session: {exc}") from exc
            self._conn = conn
        return self._conn

    def execute(self, *args, **kwargs):
        return self._get().execute(*args, **kwargs)

    def transaction(self):
        return self._get().transaction()

    def cursor(self, *args, **kwargs):
        return self._get().cursor(*args, **kwargs)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def live_gate(db_url: str | None = None, redis_url: str | None = None, directory: Path | None = None,
              *, redis_timeout_s: float = 2.0, redis_retries: int = 3) -> ComplianceGate:
    """A gate on PostgreSQL (records, registry metadata, audit) and Redis (counters)."""
    conn = LazyConnection(db_url)
    registry_store = RegistryStore(conn, directory or data_dir())
    try:
        index = registry_store.load_index()
    except StorageError:
        index = RegistryIndex()      # empty: telemarketing blocks (REGISTRY_MISSING) until a refresh works
    redis_client = storage.connect_redis(redis_url, timeout_s=redis_timeout_s, retries=redis_retries)
    return ComplianceGate(load_packs(), index, PgRecords(conn), RedisCounters(redis_client), PgAudit(conn),
                          rnd=PgRnd(conn), refresh_registry=registry_store.load_index)


def import_test_lists(store: RegistryStore, as_of: date, *, federal: list[str] = (),
                      states: dict[str, list[str]] | None = None, source: str) -> None:
    """Synthetic full copies of the federal registry and of every state list the packs consult
    (the demo, engine tests, benchmarks): a state without numbers given gets an empty list."""
    store.import_numbers(federal, kind=ListKind.FEDERAL, jurisdiction="US", snapshot_date=as_of, source=source)
    for state in load_packs().state_list_states():
        store.import_numbers((states or {}).get(state, ()), kind=ListKind.STATE, jurisdiction=state,
                             snapshot_date=as_of, source=source)


def dry_run_gate(dnc_files: list[Path], as_of: date, *, state_files: dict[str, list[Path]] | None = None,
                 tps_files: list[Path] = (), ctps_files: list[Path] = (),
                 rnd_files: list[Path] = ()) -> tuple[ComplianceGate, MemoryRecords]:
    """A gate on memory stores. Each group of files, when given, is one complete list as of `as_of`:
    the federal registry, a state's list, TPS, CTPS, and the reassigned numbers database (covering
    every date up to `as_of`). A list without files is missing: the calls that need it fail closed.

    The federal files are the US National DNC Registry: they cover every US area code, but a
    Canadian one only when they have lines for it. Canada's DNCL is another list kept in the same
    place by area code (CA-DNCL), and a US file says nothing about it: as in the live store, where
    an area code has no copy until a file for it is imported, a Canadian number then fails closed."""
    registry = RegistryIndex()
    canadian = nanp_area_codes("CA")
    groups = [(ListKind.FEDERAL, "US", list(dnc_files), "--dnc-file", canadian),
              (ListKind.TPS, "GB", list(tps_files), "--tps-file", frozenset()),
              (ListKind.CTPS, "GB", list(ctps_files), "--ctps-file", frozenset())]
    groups += [(ListKind.STATE, state, list(paths), f"--state-dnc-file {state}", frozenset())
               for state, paths in sorted((state_files or {}).items())]
    for kind, jurisdiction, paths, option, not_covered in groups:
        if not paths:
            continue
        report = ParseReport()
        registry.add_files(kind, jurisdiction, paths, as_of, report, not_covered)
        if report.bad_lines:
            raise ComplianceError(f"{report.bad_lines} bad lines in {option}: {'; '.join(report.bad_samples[:3])}")
    rnd = MemoryRnd.from_files(list(rnd_files), date.min, as_of) if rnd_files else None
    records = MemoryRecords()
    return ComplianceGate(load_packs(), registry, records, MemoryCounters(), rnd=rnd), records
