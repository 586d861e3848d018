"""Do-not-call registries: per-area-code bitsets, full and change-list imports, the dnc CLI."""
from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from cli import main
from dialer import storage
from dialer.compliance.model import DncImportError, ListKind
from dialer.compliance.registry import (
    BYTES_PER_NPA, ParseReport, RegistryIndex, RegistryStore, build_bitsets, count_bits, registry_position, uk_key,
)
from dialer.compliance.rnd import PgRnd, RndAnswer
from dialer.errors import StorageError

TODAY = date(2026, 11, 18)
# copies the CLI checks against the real clock must stay fresh whenever the suite runs
COPY_DATE = (date.today() - timedelta(days=3)).isoformat()
NEXT_COPY_DATE = (date.today() - timedelta(days=2)).isoformat()


@pytest.fixture
def store(db_url, tmp_path):
    with storage.connect_db(db_url, autocommit=True) as conn:
        yield RegistryStore(conn, tmp_path)


def write(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_both_layouts_parse_to_the_same_bitsets(tmp_path):
    numbers = ["2125551234", "2125550000", "3055559999", "9079999999"]
    ftc = write(tmp_path / "ftc.txt", [f"{n[:3]},{n[3:]}" for n in numbers])
    plain = write(tmp_path / "plain.txt", numbers)
    a, b = build_bitsets([ftc], ParseReport()), build_bitsets([plain], ParseReport())
    assert a.keys() == b.keys() == {212, 305, 907}
    assert all((a[k] == b[k]).all() for k in a)
    assert count_bits(a[212]) == 2


def test_bad_lines_are_reported_and_the_rest_kept(tmp_path):
    path = write(tmp_path / "mixed.txt", ["212,5551234", "garbage", "12,345", "1125551234", "212 555 0001", "3055550000"])
    report = ParseReport()
    bitsets = build_bitsets([path], report)
    assert report.bad_lines == 3 and report.lines == 6
    assert "line 2" in report.bad_samples[0]
    assert count_bits(bitsets[212]) == 2 and count_bits(bitsets[305]) == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(2_000_000_000, 9_999_999_999), min_size=1, max_size=300))
def test_bitset_membership_matches_a_set(tmp_path_factory, numbers):
    numbers = [n for n in numbers if str(n)[3] not in "01"]
    if not numbers:
        return
    path = tmp_path_factory.mktemp("bits") / "f.txt"
    write(path, [str(n) for n in numbers])
    index = RegistryIndex.from_files([path], TODAY, ParseReport())
    probe = np.array(numbers + [n + 1 for n in numbers], dtype=np.int64)
    expected = np.array([int(p) in set(numbers) for p in probe])
    assert (index.contains_many(ListKind.FEDERAL, "US", probe) == expected).all()
    for p, e in zip(probe.tolist(), expected.tolist()):
        hit, _ = index.lookup(ListKind.FEDERAL, "US", p // 10_000_000, p % 10_000_000)
        assert hit is e


def test_full_import_is_idempotent_and_replaces_area_codes(store, tmp_path):
    first = write(tmp_path / "a.txt", ["212,5551234", "212,5551235", "305,5550000"])
    result = store.import_full(first, kind="federal", jurisdiction="US", snapshot_date=TODAY, source="ftc")
    assert (result.area_codes, result.numbers, result.skipped) == (2, 3, False)
    again = store.import_full(first, kind="federal", jurisdiction="US", snapshot_date=TODAY, source="ftc")
    assert again.skipped
    index = store.load_index()
    assert index.lookup("federal", "US", 212, 5551234) == (True, TODAY)
    assert index.lookup("federal", "US", 212, 5551236) == (False, TODAY)
    assert index.lookup("federal", "US", 415, 5551236) == (None, None)
    # A newer full file for 212 replaces 212 only.
    second = write(tmp_path / "b.txt", ["212,5559999"])
    store.import_full(second, kind="federal", jurisdiction="US", snapshot_date=TODAY + timedelta(days=1), source="ftc")
    index = store.load_index(index)
    assert index.lookup("federal", "US", 212, 5551234) == (False, TODAY + timedelta(days=1))
    assert index.lookup("federal", "US", 305, 5550000) == (True, TODAY)
    rows = store.metadata()
    assert [(r[0], r[2], r[4]) for r in rows] == [("federal", 212, 1), ("federal", 305, 1)]


def test_change_lists_add_delete_idempotent_and_ordered(store, tmp_path):
    store.import_full(write(tmp_path / "full.txt", ["212,5551234", "212,5551235"]), kind="federal",
                      jurisdiction="US", snapshot_date=TODAY, source="ftc")
    lines = ["212,5551234,D", "212,5550001,A", "2125550002,A", "212,5550002,D", "415,5550000,A"]
    # a line it cannot read refuses the whole change list: an unread addition would stay callable
    # while the list's date moves forward
    broken = write(tmp_path / "broken.txt", lines + ["212,5550003,X"])
    with pytest.raises(DncImportError, match="1 of 6 lines are not phone numbers"):
        store.import_changes(broken, kind="federal", jurisdiction="US", snapshot_date=TODAY + timedelta(days=1),
                             source="ftc-chg")
    assert store.load_index().lookup("federal", "US", 212, 5551234) == (True, TODAY)     # nothing changed
    changes = write(tmp_path / "chg.txt", lines)
    result = store.import_changes(changes, kind="federal", jurisdiction="US",
                                  snapshot_date=TODAY + timedelta(days=1), source="ftc-chg")
    assert (result.added, result.removed) == (1, 1)
    assert result.report.bad_lines == 1     # 415 has no full snapshot (calls there fail closed anyway)
    index = store.load_index()
    assert index.lookup("federal", "US", 212, 5551234)[0] is False
    assert index.lookup("federal", "US", 212, 5550001) == (True, TODAY + timedelta(days=1))
    assert index.lookup("federal", "US", 212, 5550002)[0] is False    # the last line for a number wins
    assert store.import_changes(changes, kind="federal", jurisdiction="US", snapshot_date=TODAY + timedelta(days=1),
                                source="ftc-chg").skipped
    older = write(tmp_path / "old.txt", ["212,5557777,A"])
    with pytest.raises(DncImportError, match="older"):
        store.import_changes(older, kind="federal", jurisdiction="US", snapshot_date=TODAY, source="old")


def test_truncated_bitset_file_is_a_storage_error(store, tmp_path):
    store.import_full(write(tmp_path / "a.txt", ["212,5551234"]), kind="federal", jurisdiction="US",
                      snapshot_date=TODAY, source="ftc")
    path = store.metadata()[0][6]
    with open(path, "r+b") as handle:
        handle.truncate(BYTES_PER_NPA // 2)
    with pytest.raises(StorageError, match="truncated"):
        store.load_index()


@pytest.fixture
def cli_env(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DIALER_DATA_DIR", str(tmp_path / "data"))
    return CliRunner()


def test_dnc_cli_round_trip(cli_env, tmp_path):
    runner = cli_env
    registry = write(tmp_path / "reg.txt", ["212,5551234", "305,5550000"])
    out = runner.invoke(main, ["dnc", "import", str(registry), "--date", COPY_DATE, "--source", "ftc"])
    assert out.exit_code == 0, out.output
    assert "2 area codes" in out.output
    out = runner.invoke(main, ["dnc", "import", str(registry), "--date", COPY_DATE])
    assert "already imported" in out.output
    state = write(tmp_path / "fl.txt", ["305,5551111"])
    assert runner.invoke(main, ["dnc", "import", str(state), "--kind", "state", "--state", "fl"]).exit_code == 0
    assert runner.invoke(main, ["dnc", "import", str(state), "--kind", "state"]).exit_code == 2

    assert runner.invoke(main, ["dnc", "add", "(212) 555-0001", "--reason", "asked", "--by", "agent7"]).exit_code == 0
    out = runner.invoke(main, ["dnc", "add", "+12125550001"])
    assert "already on" in out.output
    out = runner.invoke(main, ["dnc", "add", "+12125550002", "--list", "campaign"])
    assert out.exit_code == 1 and "needs a scope" in out.output
    assert runner.invoke(main, ["dnc", "add", "+12125550002", "--list", "custom", "--scope", "litigators"]).exit_code == 0

    out = runner.invoke(main, ["dnc", "check", "+12125551234", "--json"])
    assert out.exit_code == 1
    answer = json.loads(out.output)
    # A state's list is the whole list: a New York number is reported as not on Florida's.
    assert answer["registries"] == [
        {"list": "federal", "jurisdiction": "US", "on_list": True, "snapshot_date": COPY_DATE, "stale": False},
        {"list": "state", "jurisdiction": "FL", "on_list": False, "snapshot_date": answer["registries"][1]["snapshot_date"],
         "stale": False}]
    out = runner.invoke(main, ["dnc", "check", "2125550001", "--json"])
    assert out.exit_code == 1 and json.loads(out.output)["entries"][0]["added_by"] == "agent7"
    assert runner.invoke(main, ["dnc", "check", "+12125559999"]).exit_code == 0
    out = runner.invoke(main, ["dnc", "check", "+13055551111", "--json"])
    assert {"list": "state", "jurisdiction": "FL", "on_list": True}.items() <= json.loads(out.output)["registries"][1].items()

    assert "removed from" in runner.invoke(main, ["dnc", "remove", "+12125550001"]).output
    assert runner.invoke(main, ["dnc", "check", "+12125550001"]).exit_code == 0
    out = runner.invoke(main, ["dnc", "stats"])
    assert out.exit_code == 0 and "federal" in out.output and "litigators" in out.output

    changes = write(tmp_path / "chg.txt", ["212,5551234,D"])
    out = runner.invoke(main, ["dnc", "import", str(changes), "--changes", "--date", NEXT_COPY_DATE])
    assert out.exit_code == 0 and "-1" in out.output
    assert runner.invoke(main, ["dnc", "check", "+12125551234"]).exit_code == 0


def test_dnc_cli_reports_a_closed_database(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/dialer")
    out = CliRunner().invoke(main, ["dnc", "add", "+12125550001"])
    assert out.exit_code == 1 and "cannot connect" in out.output


# ---------------------------------------------------------------- whole lists (state, TPS, CTPS)

def test_a_state_list_is_a_whole_list(store, tmp_path):
    """Area codes absent from a state's full file hold no number (as of its date); a newer full file
    drops area codes it no longer has; change lists may add to any area code."""
    first = write(tmp_path / "tx1.txt", ["214,5551234", "713,5550000"])
    store.import_full(first, kind="state", jurisdiction="TX", snapshot_date=TODAY, source="tx")
    index = store.load_index()
    assert index.lookup("state", "TX", 214, 5551234) == (True, TODAY)
    assert index.lookup("state", "TX", 212, 5551234) == (False, TODAY)        # covered, not on it
    assert index.lookup("state", "FL", 305, 5551234) == (None, None)          # FL never imported
    second = write(tmp_path / "tx2.txt", ["214,5559999"])
    later = TODAY + timedelta(days=7)
    store.import_full(second, kind="state", jurisdiction="TX", snapshot_date=later, source="tx")
    index = store.load_index(index)                                             # the engine's refresh
    assert index.lookup("state", "TX", 713, 5550000) == (False, later)
    assert [(r[0], r[1], r[2]) for r in store.metadata()] == [("state", "TX", 214)]
    changes = write(tmp_path / "tx-chg.txt", ["817,5550001,A", "214,5559999,D"])
    result = store.import_changes(changes, kind="state", jurisdiction="TX", snapshot_date=later + timedelta(days=1),
                                  source="tx-chg")
    assert (result.added, result.removed, result.report.bad_lines) == (1, 1, 0)
    index = store.load_index(index)
    assert index.lookup("state", "TX", 817, 5550001) == (True, later + timedelta(days=1))
    assert index.lookup("state", "TX", 212, 1) == (False, later + timedelta(days=1))
    with pytest.raises(DncImportError, match="no full state FL"):
        store.import_changes(changes, kind="state", jurisdiction="FL", snapshot_date=TODAY, source="fl")
    with pytest.raises(DncImportError, match="older"):
        store.import_changes(write(tmp_path / "old.txt", ["817,5550002,A"]), kind="state", jurisdiction="TX",
                             snapshot_date=TODAY, source="old")


def test_the_same_file_for_a_later_date_is_a_fresh_copy(store, tmp_path):
    empty = write(tmp_path / "wy.txt", [])
    store.import_full(empty, kind="state", jurisdiction="WY", snapshot_date=TODAY, source="wy")
    assert store.import_full(empty, kind="state", jurisdiction="WY", snapshot_date=TODAY, source="wy").skipped
    later = TODAY + timedelta(days=40)
    assert not store.import_full(empty, kind="state", jurisdiction="WY", snapshot_date=later, source="wy").skipped
    assert store.load_index().lookup("state", "WY", 307, 5551234) == (False, later)


def test_uk_keys_and_positions():
    assert uk_key("2071234567") == (207, 1234567)
    assert uk_key("169773456") == (16, 9773456)        # 9-digit NSN: key 10-99
    assert uk_key("0207123456") is None and uk_key("12345") is None and uk_key("20712345678") is None
    assert registry_position("+442071234567") == (207, 1234567)
    assert registry_position("+12125551234") == (212, 5551234)
    assert registry_position("+33123456789") is None


def test_tps_and_ctps_import(store, tmp_path):
    # The common layout (0 + 10 digits, one per line) takes the vectorised path; others go line by line.
    regular = write(tmp_path / "tps.txt", ["02071234567", "07400123456", "01697773456"])
    mixed = write(tmp_path / "tps-mixed.txt", ["+44 20 7123 4567", "447400123456", "016977 3456", "12345", "0800 123"])
    report = ParseReport()
    assert build_bitsets([regular], report, uk=True).keys() == {207, 740, 169}
    report = ParseReport()
    bitsets = build_bitsets([mixed], report, uk=True)
    assert bitsets.keys() == {207, 740, 16} and report.bad_lines == 2
    result = store.import_full(regular, kind="tps", jurisdiction="GB", snapshot_date=TODAY, source="tps")
    assert (result.area_codes, result.numbers) == (3, 3)
    # A full list with unreadable lines is refused whole (it would drop their numbers): nothing imported.
    with pytest.raises(DncImportError, match=r"2 of 5 lines(.|\n)*line 4(.|\n)*line 5"):
        store.import_full(mixed, kind="ctps", jurisdiction="GB", snapshot_date=TODAY, source="ctps")
    assert store.coverage() == {("tps", "GB"): TODAY}
    readable = write(tmp_path / "ctps.txt", ["+44 20 7123 4567", "447400123456", "016977 3456"])
    store.import_full(readable, kind="ctps", jurisdiction="GB", snapshot_date=TODAY, source="ctps")
    index = store.load_index()
    assert index.lookup("tps", "GB", *registry_position("+442071234567")) == (True, TODAY)
    assert index.lookup("tps", "GB", *registry_position("+442071234568")) == (False, TODAY)
    assert index.lookup("ctps", "GB", *registry_position("+44169773456")) == (True, TODAY)
    changes = write(tmp_path / "tps-chg.txt", ["02071234567,D", "07700900123,A"])
    result = store.import_changes(changes, kind="tps", jurisdiction="GB", snapshot_date=TODAY + timedelta(days=1),
                                  source="tps-daily")
    assert (result.added, result.removed) == (1, 1)
    index = store.load_index(index)
    assert index.lookup("tps", "GB", *registry_position("+442071234567"))[0] is False
    assert index.lookup("tps", "GB", *registry_position("+447700900123")) == (True, TODAY + timedelta(days=1))


def test_tps_cli_and_check(cli_env, tmp_path):
    runner = cli_env
    tps = write(tmp_path / "tps.txt", ["02071234567"])
    out = runner.invoke(main, ["dnc", "import", str(tps), "--kind", "tps", "--date", COPY_DATE])
    assert out.exit_code == 0 and "1 area codes" in out.output, out.output
    assert runner.invoke(main, ["dnc", "import", str(tps), "--kind", "tps", "--state", "XX"]).exit_code == 2
    out = runner.invoke(main, ["dnc", "check", "+442071234567", "--json"])
    assert out.exit_code == 1
    # A UK number is always subject to TPS and CTPS: the CTPS, never imported, is reported unchecked.
    assert json.loads(out.output)["registries"] == [
        {"list": "ctps", "jurisdiction": "GB", "on_list": None, "snapshot_date": None, "stale": False},
        {"list": "tps", "jurisdiction": "GB", "on_list": True, "snapshot_date": COPY_DATE, "stale": False}]
    out = runner.invoke(main, ["dnc", "check", "020 7123 4568", "--region", "GB"])
    assert out.exit_code == 3 and "ctps GB: never imported (not checked)" in out.output, out.output
    ctps = write(tmp_path / "ctps.txt", [])
    assert runner.invoke(main, ["dnc", "import", str(ctps), "--kind", "ctps", "--date", COPY_DATE]).exit_code == 0
    assert runner.invoke(main, ["dnc", "check", "020 7123 4568", "--region", "GB"]).exit_code == 0
    out = runner.invoke(main, ["dnc", "stats"])
    assert out.exit_code == 0 and "tps" in out.output and "GB" in out.output


# ---------------------------------------------------------------- reassigned numbers

def test_rnd_import_and_answers(db, tmp_path):
    rnd = PgRnd(db)
    path = write(tmp_path / "rnd.csv", ["+12125551234,2026-03-01", "2125551234,2026-09-01", "3055550000,2025-01-05",
                                        "garbage", "2125550000,2026-13-01"])
    assert rnd.status("+12125551234", date(2026, 1, 1)).answer == RndAnswer.NO_DATA   # nothing imported
    with pytest.raises(DncImportError, match="covers-from"):
        rnd.import_file(path, covers_from=None, data_through=TODAY, source="fcc")
    result = rnd.import_file(path, covers_from=date(2021, 1, 27), data_through=TODAY, source="fcc")
    assert (result.lines, result.new_records, result.bad_lines) == (5, 3, 2)
    assert rnd.import_file(path, covers_from=None, data_through=TODAY, source="fcc").skipped
    again = write(tmp_path / "rnd2.csv", ["+12125551234,2026-09-01", "+13055550000,2026-10-01"])
    assert rnd.import_file(again, covers_from=None, data_through=TODAY + timedelta(days=30), source="fcc").new_records == 1
    found = rnd.status("+12125551234", date(2026, 5, 1))
    assert (found.answer, found.disconnected_on, found.data_through) == (RndAnswer.YES, date(2026, 9, 1),
                                                                          TODAY + timedelta(days=30))
    assert rnd.status("+12125551234", date(2026, 9, 2)).answer == RndAnswer.NO
    assert rnd.status("+12125551234", date(2026, 9, 1)).answer == RndAnswer.YES     # on the consent date
    assert rnd.status("+14155550000", date(2024, 1, 1)).answer == RndAnswer.NO
    assert rnd.status("+14155550000", date(2020, 1, 1)).answer == RndAnswer.NO_DATA  # before the data starts
    assert rnd.stats() == (4, date(2021, 1, 27), TODAY + timedelta(days=30))


def test_rnd_cli(cli_env, tmp_path):
    runner = cli_env
    path = write(tmp_path / "rnd.csv", ["+12125551234,2026-03-01"])
    out = runner.invoke(main, ["dnc", "import", str(path), "--kind", "rnd", "--date", "2026-11-15"])
    assert out.exit_code == 1 and "covers-from" in out.output
    out = runner.invoke(main, ["dnc", "import", str(path), "--kind", "rnd", "--date", "2026-11-15",
                               "--covers-from", "2021-01-27"])
    assert out.exit_code == 0 and "1 new disconnections" in out.output, out.output
    assert "already imported" in runner.invoke(main, ["dnc", "import", str(path), "--kind", "rnd",
                                                      "--date", "2026-11-15"]).output
    assert runner.invoke(main, ["dnc", "import", str(path), "--kind", "rnd", "--changes"]).exit_code == 2
    assert runner.invoke(main, ["dnc", "import", str(path), "--covers-from", "2021-01-27"]).exit_code == 2
    out = runner.invoke(main, ["dnc", "stats"])
    assert "1 disconnections, data from 2021-01-27 through 2026-11-15" in out.output


# ---------------------------------------------------------------- campaign scopes, exit codes, wording (QA 2026-12-03)

def test_dnc_add_campaign_scope_must_be_an_existing_campaign_name(cli_env, db_url):
    """The gate matches a campaign entry against the campaign's NAME: an unknown scope is refused
    with nothing stored; an existing campaign's numeric id is stored as its name, and said so."""
    runner = cli_env
    assert runner.invoke(main, ["campaign", "create", "autumn"]).exit_code == 0
    with storage.connect_db(db_url) as conn:
        autumn_id = conn.execute("SELECT id FROM campaigns WHERE name = 'autumn'").fetchone()[0]

    def entries():
        with storage.connect_db(db_url) as conn:
            return conn.execute("SELECT list_kind, scope, phone_e164 FROM compliance_dnc_entries ORDER BY id").fetchall()

    for scope in ("winter", str(autumn_id + 1000), "Autumn"):
        out = runner.invoke(main, ["dnc", "add", "+12125550003", "--list", "campaign", "--scope", scope])
        assert out.exit_code == 1, out.output
        assert f"no campaign named {scope!r}" in out.output and "nothing stored" in out.output
    assert entries() == []

    out = runner.invoke(main, ["dnc", "add", "+12125550003", "--list", "campaign", "--scope", str(autumn_id)])
    assert out.exit_code == 0, out.output
    assert f"{autumn_id} is the id of campaign 'autumn'" in out.output and "added to campaign autumn" in out.output
    out = runner.invoke(main, ["dnc", "add", "+12125550003", "--list", "campaign", "--scope", "autumn"])
    assert out.exit_code == 0 and "already on campaign autumn" in out.output and "note" not in out.output
    assert entries() == [("campaign", "autumn", "+12125550003")]
    # custom lists keep free names
    assert runner.invoke(main, ["dnc", "add", "+12125550003", "--list", "custom", "--scope", "winter"]).exit_code == 0
    help_text = " ".join(runner.invoke(main, ["dnc", "add", "--help"]).output.split())
    assert "campaign name" in help_text and "campaign id" not in help_text


def test_dnc_check_bad_input_exits_2_not_1(cli_env):
    runner = cli_env
    for args in (["notanumber"], ["notanumber", "--json"], ["2125550001", "--region", "ZZ"]):
        out = runner.invoke(main, ["dnc", "check", *args])
        assert out.exit_code == 2, (args, out.output)
        assert "ON A LIST" not in out.output
    assert "2 on a usage or input error" in " ".join(runner.invoke(main, ["dnc", "check", "--help"]).output.split())
    # the store down: 3, "not checked", never 0 (callable) nor 1 (on a list)
    down = runner.invoke(main, ["dnc", "check", "2125550001"],
                         env={"DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2"})
    assert down.exit_code == 3 and "not checked" in down.output, down.output


def test_dnc_check_and_stats_speak_in_words(cli_env, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    runner = cli_env
    registry = write(tmp_path / "reg.txt", ["212,5551234"])
    assert runner.invoke(main, ["dnc", "import", str(registry), "--date", "2026-11-01"]).exit_code == 0
    state = write(tmp_path / "fl.txt", ["305,5551111"])
    assert runner.invoke(main, ["dnc", "import", str(state), "--kind", "state", "--state", "fl",
                                "--date", "2026-11-02"]).exit_code == 0
    out = runner.invoke(main, ["dnc", "check", "+12125551234"])
    assert out.exit_code == 1
    assert "federal US: listed (copy of 2026-11-01)" in out.output
    assert "state FL: not listed (copy of 2026-11-02)" in out.output
    assert "True" not in out.output and "False" not in out.output
    out = runner.invoke(main, ["dnc", "check", "+13055559999"])
    # no federal copy for 305: not decided (3), never "not on any list" (0)
    assert out.exit_code == 3 and "federal US: no copy for this area code" in out.output and "None" not in out.output

    out = runner.invoke(main, ["dnc", "stats"])
    assert out.exit_code == 0, out.output
    assert "None" not in out.output and "…" not in out.output
    assert "2026-11-01" in out.output and "2026-11-02" in out.output
    assert "Reassigned numbers: 0 disconnections, no data imported" in out.output
    rnd = write(tmp_path / "rnd.csv", ["+12125550177,2026-11-10"])
    assert runner.invoke(main, ["dnc", "import", str(rnd), "--kind", "rnd", "--covers-from", "2026-01-01",
                                "--date", "2026-11-15"]).exit_code == 0
    out = runner.invoke(main, ["dnc", "stats"])
    assert "1 disconnections, data from 2026-01-01 through 2026-11-15" in out.output


# ---------------------------------------------------------------- QA 2026-12-03 (2): dates, snapshots, numbers, exit codes

def _today_utc() -> date:
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).date()


def test_dnc_import_refuses_a_date_after_today(cli_env, tmp_path, db_url):
    """A copy dated in the future never goes stale and makes the real change lists look older."""
    runner = cli_env
    registry = write(tmp_path / "f415.txt", ["4155550100"])
    rnd = write(tmp_path / "rnd.csv", ["+12125550177,2026-11-10"])
    tomorrow = (_today_utc() + timedelta(days=1)).isoformat()
    for args in ([str(registry), "--date", "2062-01-01"], [str(registry), "--date", tomorrow],
                 [str(registry), "--changes", "--date", tomorrow],
                 [str(registry), "--kind", "state", "--state", "TX", "--date", tomorrow],
                 [str(rnd), "--kind", "rnd", "--date", "2099-12-01", "--covers-from", "2021-01-01"]):
        out = runner.invoke(main, ["dnc", "import", *args])
        assert out.exit_code == 2, (args, out.output)
        assert "is after today" in out.output and "nothing imported" in out.output
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM compliance_dnc_imports").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM compliance_rnd_imports").fetchone()[0] == 0
    # today (UTC) is allowed, and is the default
    assert runner.invoke(main, ["dnc", "import", str(registry), "--date", _today_utc().isoformat()]).exit_code == 0
    assert runner.invoke(main, ["dnc", "import", str(rnd), "--kind", "rnd", "--covers-from", "2021-01-01"]).exit_code == 0


def test_files_given_together_are_one_snapshot(cli_env, tmp_path, store):
    """A state's list in several files is one list: their union, not the last file alone."""
    runner = cli_env
    fl_a, fl_b = write(tmp_path / "flA.txt", ["3055550111"]), write(tmp_path / "flB.txt", ["8135550112"])
    out = runner.invoke(main, ["dnc", "import", str(fl_a), str(fl_b), "--kind", "state", "--state", "TX",
                               "--date", "2026-12-02"])
    assert out.exit_code == 0, out.output
    assert "2 lines, 2 area codes, +2 -0, 0 bad lines" in out.output
    for number in ("3055550111", "8135550112"):
        out = runner.invoke(main, ["dnc", "check", number, "--json"])
        assert {"list": "state", "jurisdiction": "TX", "on_list": True}.items() \
            <= json.loads(out.output)["registries"][1].items(), out.output
    out = runner.invoke(main, ["dnc", "import", str(fl_b), str(fl_a), "--kind", "state", "--state", "TX",
                               "--date", "2026-12-02"])
    assert "already imported" in out.output            # the same set of files, in any order
    # Federal files given together that share an area code: the area code holds both.
    a = write(tmp_path / "a.txt", ["2125550001"])
    b = write(tmp_path / "b.txt", ["2125550002", "3055550003"])
    result = store.import_full([a, b], kind="federal", jurisdiction="US", snapshot_date=TODAY, source="ftc")
    assert (result.area_codes, result.numbers, result.added, result.removed) == (2, 3, 3, 0)
    index = store.load_index()
    assert index.lookup("federal", "US", 212, 5550001) == (True, TODAY)
    assert index.lookup("federal", "US", 212, 5550002) == (True, TODAY)


def test_common_notations_and_a_bom_are_read(tmp_path):
    path = tmp_path / "notations.txt"
    path.write_bytes(b"\xef\xbb\xbf2125550180\n212-555-0181\n(212) 555.0182\n+1 212 555 0183\n1-212-555-0184\n"
                     b"1-800-FLOWERS\n")
    report = ParseReport()
    bitsets = build_bitsets([path], report)
    assert count_bits(bitsets[212]) == 5
    assert report.bad_lines == 1 and "FLOWERS" in report.bad_samples[0]     # letters never become digits
    uk = tmp_path / "uk.txt"
    uk.write_bytes(b"\xef\xbb\xbf02071234567\n(020) 7123 4568\n")
    report = ParseReport()
    assert count_bits(build_bitsets([uk], report, uk=True)[207]) == 2 and report.bad_lines == 0


def test_a_full_import_with_an_unreadable_line_imports_nothing(store, tmp_path, cli_env):
    """A full copy not read whole would silently drop the numbers on the lines not read."""
    first = write(tmp_path / "r1.txt", ["2125550180", "2125550181"])
    store.import_full(first, kind="federal", jurisdiction="US", snapshot_date=TODAY, source="ftc")
    broken = write(tmp_path / "r2.txt", ["2125550180", "212555018", "garbage"])
    with pytest.raises(DncImportError, match=r"2 of 3 lines(.|\n)*line 2(.|\n)*line 3(.|\n)*nothing|nothing"):
        store.import_full(broken, kind="federal", jurisdiction="US", snapshot_date=TODAY + timedelta(days=1),
                          source="ftc")
    with pytest.raises(DncImportError, match=r"r2\.txt line 2"):        # several files: the file is named
        store.import_full([first, broken], kind="federal", jurisdiction="US", snapshot_date=TODAY, source="ftc")
    index = store.load_index()
    assert index.lookup("federal", "US", 212, 5550181) == (True, TODAY)           # untouched
    state = write(tmp_path / "tx.txt", ["2145550100", "oops"])
    with pytest.raises(DncImportError):
        store.import_full(state, kind="state", jurisdiction="TX", snapshot_date=TODAY, source="tx")
    assert store.coverage() == {} and store.load_index().lookup("state", "TX", 214, 5550100) == (None, None)
    out = cli_env.invoke(main, ["dnc", "import", str(broken), "--date", "2026-12-01"])
    assert out.exit_code == 1 and "line 2" in out.output and "nothing was imported" in out.output, out.output


def test_full_import_counts_against_the_previous_snapshot(store, tmp_path):
    first = write(tmp_path / "r1.txt", ["2125550180", "2125550181", "3055550001"])
    result = store.import_full(first, kind="federal", jurisdiction="US", snapshot_date=TODAY, source="ftc")
    assert (result.added, result.removed) == (3, 0)
    same = store.import_full(first, kind="federal", jurisdiction="US", snapshot_date=TODAY + timedelta(days=1),
                             source="ftc")
    assert (same.skipped, same.added, same.removed) == (False, 0, 0)
    # 212-555-0181 in another notation is the same number: nothing removed; 0182 is new.
    changed = write(tmp_path / "r2.txt", ["2125550180", "212-555-0181", "2125550182"])
    result = store.import_full(changed, kind="federal", jurisdiction="US", snapshot_date=TODAY + timedelta(days=2),
                               source="ftc")
    assert (result.added, result.removed, result.report.bad_lines) == (1, 0, 0)
    assert store.load_index().lookup("federal", "US", 212, 5550181)[0] is True
    smaller = write(tmp_path / "r3.txt", ["2125550180"])
    result = store.import_full(smaller, kind="federal", jurisdiction="US", snapshot_date=TODAY + timedelta(days=3),
                               source="ftc")
    assert (result.added, result.removed) == (0, 2)        # federal: 305 is not in the file and stays
    # A whole list also counts the numbers of the area codes it drops.
    store.import_full(write(tmp_path / "tx1.txt", ["2145550001", "7135550002", "7135550003"]), kind="state",
                      jurisdiction="TX", snapshot_date=TODAY, source="tx")
    result = store.import_full(write(tmp_path / "tx2.txt", ["2145550001", "8175550004"]), kind="state",
                               jurisdiction="TX", snapshot_date=TODAY + timedelta(days=1), source="tx")
    assert (result.added, result.removed) == (1, 2)
    with storage.connect_db(store.conn.info.dsn) as conn:
        assert conn.execute("SELECT added, removed FROM compliance_dnc_imports ORDER BY id DESC LIMIT 1"
                            ).fetchone() == (1, 2)


def test_dnc_numbers_must_be_complete_and_valid(cli_env, db_url):
    runner = cli_env
    for args in (["add", "212555017"], ["add", "555"], ["add", "1234567890"], ["check", "2125550"],
                 ["check", "2125550", "--json"], ["remove", "212555017"]):
        out = runner.invoke(main, ["dnc", *args])
        assert out.exit_code == 2, (args, out.output)
        assert "not a valid phone number" in out.output and "not on any list" not in out.output
    assert "too short" in runner.invoke(main, ["dnc", "add", "212555017"]).output
    with storage.connect_db(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM compliance_dnc_entries").fetchone()[0] == 0
        # An entry stored before numbers were validated can still be taken off.
        from dialer.compliance.records import PgRecords
        PgRecords(conn).add_dnc("+1555", "internal", added_by="old", source="cli")
        conn.commit()
    out = runner.invoke(main, ["dnc", "remove", "555"])
    assert out.exit_code == 0 and "+1555: removed from internal" in out.output, out.output
    assert "2 on a usage or input error (a NUMBER that is not a complete, valid phone number)" in \
        " ".join(runner.invoke(main, ["dnc", "check", "--help"]).output.split())


def test_dnc_import_state_must_be_known(cli_env, tmp_path, store):
    runner = cli_env
    path = write(tmp_path / "fl.txt", ["3055550111"])
    for state in ("ZZ", "Floridaa", "XX"):
        out = runner.invoke(main, ["dnc", "import", str(path), "--kind", "state", "--state", state,
                                   "--date", "2026-12-01"])
        assert out.exit_code == 2 and "not a state the rule packs know" in out.output, out.output
    assert store.metadata() == [] and store.coverage() == {}
    for state in ("florida", "New  York", "tx"):
        assert runner.invoke(main, ["dnc", "import", str(path), "--kind", "state", "--state", state,
                                    "--date", "2026-12-01"]).exit_code == 0
    assert set(store.coverage()) == {("state", "FL"), ("state", "NY"), ("state", "TX")}


def test_dnc_check_exit_3_when_it_cannot_decide(cli_env, tmp_path):
    runner = cli_env
    # nothing imported: the federal registry applies to every US number, so this is not "not listed"
    out = runner.invoke(main, ["dnc", "check", "+12125551234"])
    assert out.exit_code == 3 and "federal US: never imported (not checked)" in out.output, out.output
    assert "not on any list" not in out.output
    registry = write(tmp_path / "reg.txt", ["212,5551234"])
    assert runner.invoke(main, ["dnc", "import", str(registry), "--date", COPY_DATE]).exit_code == 0
    assert runner.invoke(main, ["dnc", "check", "+12125550000"]).exit_code == 0
    out = runner.invoke(main, ["dnc", "check", "+13055559999", "--json"])
    assert out.exit_code == 3 and json.loads(out.output)["registries"][0]["on_list"] is None
    assert runner.invoke(main, ["dnc", "check", "+12125551234"]).exit_code == 1
    help_text = " ".join(runner.invoke(main, ["dnc", "check", "--help"]).output.split())
    assert "3 when it could not be decided" in help_text and "no copy" in help_text


def test_dnc_check_on_a_database_without_the_schema_exits_3(empty_db_url, monkeypatch):
    """Not checked (3), never "on a list" (1): the top-level missing-schema message kept exit 1."""
    monkeypatch.setenv("DATABASE_URL", empty_db_url)
    runner = CliRunner()
    out = runner.invoke(main, ["dnc", "check", "+12125551234"])
    assert out.exit_code == 3 and "dialer db migrate" in out.output and "not checked" in out.output, out.output


def test_dnc_remove_resolves_the_campaign_scope_and_refuses_an_internal_scope(cli_env, db_url):
    runner = cli_env
    assert runner.invoke(main, ["campaign", "create", "autumn"]).exit_code == 0
    with storage.connect_db(db_url) as conn:
        autumn_id = conn.execute("SELECT id FROM campaigns WHERE name = 'autumn'").fetchone()[0]

    def active():
        with storage.connect_db(db_url) as conn:
            return conn.execute("SELECT list_kind, scope FROM compliance_dnc_entries WHERE removed_at IS NULL"
                                " ORDER BY id").fetchall()

    assert runner.invoke(main, ["dnc", "add", "2125550199", "--list", "campaign", "--scope", str(autumn_id)]).exit_code == 0
    out = runner.invoke(main, ["dnc", "remove", "2125550199", "--list", "campaign", "--scope", str(autumn_id)])
    assert out.exit_code == 0 and "removed from campaign autumn" in out.output, out.output
    assert active() == []
    for command in ("add", "remove"):
        out = runner.invoke(main, ["dnc", command, "2125550198", "--list", "internal", "--scope", "x"])
        assert out.exit_code == 2 and "--scope goes with --list campaign or custom" in out.output, out.output
    assert active() == []
    # an internal entry filed under a scope before this check still comes off with the internal list
    with storage.connect_db(db_url) as conn:
        from dialer.compliance.records import PgRecords
        PgRecords(conn).add_dnc("+12125550198", "internal", scope="x", added_by="old", source="cli")
        conn.commit()
    out = runner.invoke(main, ["dnc", "remove", "2125550198"])
    assert out.exit_code == 0 and "removed from internal" in out.output and active() == []
    # entries of a campaign that no longer exists stay removable by the name stored
    with storage.connect_db(db_url) as conn:
        PgRecords(conn).add_dnc("+12125550197", "campaign", scope="gone", added_by="old", source="cli")
        conn.commit()
    out = runner.invoke(main, ["dnc", "remove", "2125550197", "--list", "campaign", "--scope", "gone"])
    assert out.exit_code == 0 and "removed from campaign gone" in out.output and active() == []
