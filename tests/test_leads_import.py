"""CSV lead import on a real PostgreSQL: bad rows of every kind, dedupe, re-import, workers, CLI."""
from __future__ import annotations

import csv
import json
import random
import re

import phonenumbers
import pytest
from click.testing import CliRunner

from cli import main
from dialer import campaigns, leads
from dialer.campaigns import CampaignNotFound, CampaignSettings
from dialer.leads import LeadImportError, PhoneNormalizer, import_csv

# Every kind of bad row, each on a known line, between good ones. Lines are numbered from 1 (header).
SMALL = (
    "\ufeffPhone Number,First Name,Last,State,Postal Code,TZ,Line Type,notes\r\n"      # 1 (BOM, CRLF)
    "(212) 555-0100,Ann,Lee,ny,10001,America/New_York,wireless,vip\r\n"              # 2 good
    "2125550100,Dup,Row,NY,10001,,,\r\n"                                              # 3 duplicate of 2
    "+44 20 7946 0958,Uk,Guy,,,,,\r\n"                                                # 4 good (UK)
    "not a phone,X,Y,,,,,\r\n"                                                        # 5 unparseable
    "(212) 055-0100,Bad,Exchange,,,,,\r\n"                                            # 6 invalid number
    ",Empty,Phone,,,,,\r\n"                                                           # 7 missing phone
    "3125550142,Too,Many,IL,60601,,,x,extra\r\n"                                      # 8 column count
    "\"3125550143\"x,Quote,Broken,IL,60601,,,\r\n"                                    # 9 bad quoting
    "4155550123,Sf,Ca,CA,94103,Mars/Base,,\r\n"                                       # 10 bad time zone
    "4155550124,Sf,Ca,ZZ,94103,,,\r\n"                                                # 11 bad state (no such code)
    "\r\n"                                                                            # 12 blank
    "4155550125,@@BAD@@,Enc,CA,94103,,,\r\n"                                          # 13 bad encoding
    "6175550199,Multi,\"12 Elm St\r\nApt 4\",MA,02134,,landline,\r\n"                 # 14-15 good
    "6175550198,Nul,Byte\x00,MA,02134,,,\r\n"                                         # 16 NUL byte
    "6175550197,Line,Type,MA,02134,,cordless,\r\n"                                    # 17 bad line type
    "\"7135550111,Open,Quote,TX,77001,,,\r\n"                                         # 18 unclosed quote
    "7135550112,After,Open,TX,77001,,,\r\n"                                           # 19 good
    "1-713-555-0113,Last,Good,tx,77001,America/Chicago,,note \"quoted\" text\r\n"    # 20 good (bare quotes)
)
EXPECTED_REJECTS = {5: "unparseable_phone", 6: "invalid_phone", 7: "missing_phone", 8: "column_count",
                    9: "bad_quoting", 10: "invalid_time_zone", 11: "invalid_state", 13: "bad_encoding",
                    16: "nul_byte", 17: "invalid_line_type", 18: "bad_quoting"}
GOOD = {"+12125550100", "+442079460958", "+16175550199", "+17135550112", "+17135550113"}


def write_small(path):
    data = SMALL.encode("utf-8").replace(b"@@BAD@@", b"\xff\xfeBad")
    path.write_bytes(data)
    return path


def new_campaign(db, name="c1"):
    return campaigns.create_campaign(db, name, CampaignSettings())


def read_rejects(path):
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        return list(csv.reader(f))


def test_every_bad_row_is_rejected_with_its_reason_and_nothing_else_is_lost(db, db_url, tmp_path):
    new_campaign(db)
    source = write_small(tmp_path / "small.csv")
    summary = import_csv(source, "c1", db_url=db_url, workers=0)

    rejects = read_rejects(tmp_path / "small.rejects.csv")
    assert rejects[0] == ["line", "reason", "detail", "Phone Number", "First Name", "Last", "State",
                          "Postal Code", "TZ", "Line Type", "notes"]
    assert {int(r[0]): r[1] for r in rejects[1:]} == EXPECTED_REJECTS
    by_line = {int(r[0]): r for r in rejects[1:]}
    assert by_line[8][3:] == ["3125550142", "Too", "Many", "IL", "60601", "", "", "x", "extra"]
    assert by_line[13][4].encode("utf-8", "surrogateescape") == b"\xff\xfeBad"     # bytes kept as they were
    assert by_line[18][3] == "\"7135550111,Open,Quote,TX,77001,,,"                 # raw line kept
    assert all(r[2] for r in rejects[1:])                                           # every reject has a detail

    assert summary.rows_read == 17 and summary.blank_lines == 1
    assert summary.rejected == len(EXPECTED_REJECTS)
    assert summary.imported == len(GOOD) and summary.duplicates_in_file == 1
    assert summary.imported + summary.duplicates + summary.rejected == summary.rows_read

    rows = {r[0]: r[1:] for r in db.execute(
        "SELECT phone_e164, phone_raw, first_name, state, zip, tz_hint, line_type, address, custom, status, "
        "attempts, list_id FROM leads").fetchall()}
    assert set(rows) == GOOD
    assert rows["+12125550100"][:7] == ("(212) 555-0100", "Ann", "NY", "10001", "America/New_York", "wireless",
                                        None)                                  # first occurrence wins
    assert rows["+12125550100"][7] == {"notes": "vip"}
    assert rows["+16175550199"][5] == "landline"
    assert db.execute("SELECT last_name FROM leads WHERE phone_e164 = '+16175550199'").fetchone()[0] == \
        "12 Elm St\r\nApt 4"                                                  # a quoted field over two lines
    assert rows["+442079460958"][5] == "unknown" and rows["+442079460958"][7] is None
    assert all(r[8] == "new" and r[9] == 0 for r in rows.values())
    listed = campaigns.lists_of(db, campaigns.get_campaign(db, "c1").id)
    assert [(x["name"], x["rows_read"], x["imported"], x["duplicates"], x["rejected"]) for x in listed] == \
        [("small.csv", 17, 5, 1, 11)]


def test_reimport_is_idempotent_and_dedupe_is_per_campaign(db, db_url, tmp_path):
    new_campaign(db, "c1")
    new_campaign(db, "c2")
    source = write_small(tmp_path / "small.csv")
    first = import_csv(source, "c1", db_url=db_url, list_name="spring", workers=0)
    before = db.execute("SELECT id, phone_e164, first_name FROM leads ORDER BY id").fetchall()
    again = import_csv(source, "c1", db_url=db_url, list_name="spring", workers=0)
    assert again.imported == 0
    assert again.duplicates_in_campaign == first.imported and again.duplicates_in_file == 1
    assert db.execute("SELECT id, phone_e164, first_name FROM leads ORDER BY id").fetchall() == before
    spring = campaigns.lists_of(db, campaigns.get_campaign(db, "c1").id)[0]
    assert (spring["imports"], spring["rows_read"], spring["imported"]) == (2, 34, 5)

    other = import_csv(source, "c2", db_url=db_url, workers=0)                  # another campaign: imported
    assert other.imported == len(GOOD)
    assert db.execute("SELECT count(*) FROM leads").fetchone()[0] == 2 * len(GOOD)


def test_worker_processes_give_the_same_result(db, db_url, tmp_path):
    new_campaign(db)
    source = tmp_path / "big.csv"
    rng = random.Random(7)
    lines = ["phone,first_name,account"]
    for i in range(30_000):
        if i % 97 == 0:
            lines.append(f"(212) 155-{i % 10000:04d},bad{i},A{i}")              # invalid exchange
        elif i % 101 == 0:
            lines.append(f"\"{i},broken,quote")                                 # unclosed quote
        else:
            lines.append(f"{rng.choice(['312', '415', '713', '646'])}-{rng.randint(200, 999)}-"
                         f"{rng.randint(0, 9999):04d},n{i},A{i}")
    source.write_text("\n".join(lines) + "\n")
    local = import_csv(source, "c1", db_url=db_url, workers=0, rejects_path=tmp_path / "r0.csv",
                       list_name="local")
    db.execute("DELETE FROM leads")
    db.commit()
    pooled = import_csv(source, "c1", db_url=db_url, workers=2, rejects_path=tmp_path / "r2.csv",
                        list_name="pooled")
    for key in ("rows_read", "imported", "duplicates_in_file", "rejected", "rejects_by_reason"):
        assert getattr(local, key) == getattr(pooled, key), key
    assert (tmp_path / "r0.csv").read_bytes() == (tmp_path / "r2.csv").read_bytes()
    assert local.rejects_by_reason == {"bad_quoting": 30_000 // 101 + 1 - len(range(0, 30_000, 97 * 101)),
                                       "invalid_phone": 30_000 // 97 + 1}


def test_columns_by_alias_override_and_region(db, db_url, tmp_path):
    new_campaign(db)
    source = tmp_path / "gb.csv"
    source.write_text("Mobile,Home Phone,FNAME,Surname,zipcode\n07400 123456,020 7946 0958,Al,Bo,SW1A 1AA\n")
    summary = import_csv(source, "c1", db_url=db_url, default_region="GB", workers=0)
    assert summary.imported == 1
    row = db.execute("SELECT phone_e164, first_name, last_name, zip, custom FROM leads").fetchone()
    assert row == ("+447400123456", "Al", "Bo", "SW1A 1AA", {"Home Phone": "020 7946 0958"})

    db.execute("DELETE FROM leads")
    db.commit()
    summary = import_csv(source, "c1", db_url=db_url, default_region="GB", workers=0,
                         column_overrides={"phone": "Home Phone"}, list_name="home")
    assert db.execute("SELECT phone_e164, custom FROM leads").fetchone() == \
        ("+442079460958", {"Mobile": "07400 123456"})


def test_header_only_and_unnamed_columns(db, db_url, tmp_path):
    new_campaign(db)
    empty = tmp_path / "header.csv"
    empty.write_text("phone,name\n")
    summary = import_csv(empty, "c1", db_url=db_url, workers=0)
    assert (summary.rows_read, summary.imported, summary.rejected, summary.rejects_file) == (0, 0, 0, None)
    trailing = tmp_path / "trailing.csv"
    trailing.write_text("phone,name,,\n2125550100,Ann,x,\n")
    assert import_csv(trailing, "c1", db_url=db_url, workers=0).imported == 1
    assert db.execute("SELECT custom FROM leads").fetchone()[0] == {"name": "Ann", "column_3": "x"}


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("name,city\nAnn,Paris\n", "no phone column"),
    ("phone,Phone\n1,2\n", "header names used twice"),
    ("phone;first_name;state\n2125550110;Ann;NY\n", "seems to use ';' between columns; a comma is expected"),
    ("phone\tname\n2125550110\tAnn\n", "seems to use tabs"),
    ("\nphone,name\n2125550110,Ann\n", "line 1 is blank"),
    (",,\n2125550110,Ann,\n", "has no column names"),
])
def test_whole_file_problems_are_refused(db, db_url, tmp_path, content, message):
    new_campaign(db)
    source = tmp_path / "bad.csv"
    source.write_text(content)
    with pytest.raises(LeadImportError, match=re.escape(message)):
        import_csv(source, "c1", db_url=db_url, workers=0)
    assert db.execute("SELECT count(*) FROM leads").fetchone()[0] == 0


def test_unknown_campaign_region_and_mapping(db, db_url, tmp_path):
    source = write_small(tmp_path / "s.csv")
    with pytest.raises(CampaignNotFound):
        import_csv(source, "nope", db_url=db_url, workers=0)
    new_campaign(db)
    with pytest.raises(LeadImportError, match="unknown region"):
        import_csv(source, "c1", db_url=db_url, default_region="XX", workers=0)
    with pytest.raises(LeadImportError, match="no column 'Cell'"):
        import_csv(source, "c1", db_url=db_url, column_overrides={"phone": "Cell"}, workers=0)
    # nothing staged is left behind
    assert db.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'lead_stage_%'").fetchone()[0] == 0


def test_cli_import_summary_and_errors(db, db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    new_campaign(db)
    source = write_small(tmp_path / "small.csv")
    runner = CliRunner()
    result = runner.invoke(main, ["leads", "import", str(source), "--campaign", "c1", "--json",
                                  "--rejects", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["imported"], summary["duplicates"], summary["rejected"]) == (5, 1, 11)
    assert summary["rejects_file"] == str(tmp_path / "out.csv")
    result = runner.invoke(main, ["leads", "import", str(source), "--campaign", "c1", "--list", "b"])
    assert result.exit_code == 0, result.output
    assert "already in the campaign" in result.output
    result = runner.invoke(main, ["leads", "import", str(source), "--campaign", "zz"])
    assert result.exit_code == 1 and "no campaign named 'zz'" in result.output
    result = runner.invoke(main, ["campaign", "show", "c1", "--json"])
    assert [x["name"] for x in json.loads(result.output)["lists"]] == ["small.csv", "b"]


def test_cli_map_with_an_unknown_field_is_a_usage_error_before_the_import(db, db_url, tmp_path, monkeypatch):
    """QA7 ops 3: `--map bogus=phone` exited 1 after the progress bar had started, while
    `--map bogus` exited 2; an unknown field name is wrong usage whatever the file holds."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    new_campaign(db)
    source = write_small(tmp_path / "small.csv")
    for args in (["--map", "bogus=phone"], ["--map", "phone=Phone Number", "--map", " nope = x"]):
        result = CliRunner().invoke(main, ["leads", "import", str(source), "--campaign", "c1", *args])
        assert result.exit_code == 2, result.output
        assert "unknown lead field" in result.output and "phone, first_name" in result.output
        assert "Traceback" not in result.output
    assert lead_count(db) == 0
    assert db.execute("SELECT count(*) FROM lead_lists").fetchone()[0] == 0
    result = CliRunner().invoke(main, ["leads", "import", str(source), "--campaign", "c1", "--json",
                                       "--map", "phone=Phone Number", "--rejects", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ numbers and records (no database)

FORMATS = ["({a}) {b}-{c}", "{a}-{b}-{c}", "+1 {a} {b} {c}", "1{a}{b}{c}", "{a}.{b}.{c}", "+1{a}{b}{c}",
           "1-{a}-{b}-{c}", " {a}{b}{c} ", "({a}){b}{c}", "1 ({a}) {b}-{c}", "{a} {b}{c}", "({a} {b}-{c}"]


@pytest.mark.parametrize("region", ["US", "CA", "JM", "GB"])
def test_fast_path_agrees_with_phonenumbers(region):
    """The NANP fast path must answer exactly what phonenumbers.parse + is_valid_number answers,
    including the Caribbean area codes whose validity depends on a seventh digit."""
    assert leads.prefix_lengths() is not None, "metadata analysis failed: the fast path is off"
    rng = random.Random(region)
    fast, slow = PhoneNormalizer(region), PhoneNormalizer(region, fast_path=False)
    for _ in range(8000):
        npa = rng.choice([rng.randint(200, 999), 246, 876, 658, 242, 809, 800, 212, 905])
        raw = rng.choice(FORMATS).format(a=npa, b=f"{rng.randint(0, 999):03d}", c=f"{rng.randint(0, 9999):04d}")
        assert fast.normalize(raw)[0] == slow.normalize(raw)[0], raw
    if region != "GB":
        assert fast.fast > 6000     # the fast path was actually taken


def test_prefix_lengths_follow_the_metadata():
    lengths = leads.prefix_lengths()
    assert lengths["212"] == 6
    assert lengths["246"] == 7      # Barbados mobile patterns decide on the seventh digit
    # in 246 validity does change with the seventh digit within one exchange (the reason for 7)
    assert len({phonenumbers.is_valid_number(phonenumbers.parse(f"+1246521{d}000")) for d in range(10)}) == 2


def test_trailing_free_digit_analysis():
    from re import _parser
    cases = {r"2\d{9}": 9, r"(?:20|3[1-4])\d{7}": 7, r"(?:5\d|6[0-3])\d{2}\d{4}": 6,
             r"[2-9]\d{9}|3\d{6}": 6, r"24(?:6[1-3]\d|5\d\d)\d{4}": 5, r"2[0-9]\d{5,7}": 5, r"\d{3}[5-9]": 0}
    for pattern, free in cases.items():
        assert leads._trailing_free_digits(_parser.parse(pattern)) == free, pattern


def records_of(lines, first_line=2):
    return [(r.line, r.fields, r.reason) for r in leads.RecordReader(iter(lines), columns=2, first_line=first_line)]


def records_by_chunk(chunks):
    return [record for start, chunk in chunks for record in records_of(chunk, start)]


def test_line_chunks_keep_records_whole():
    lines = [f'{i},"a\n' if i % 5 == 0 else f"{i},b\n" for i in range(20)]
    lines[5] = '5,"multi\n'
    lines[6] = 'line"\n'
    chunks = list(leads.line_chunks(iter(lines), 2, 3))
    assert sum(len(c) for _, c in chunks) == 20
    assert [start for start, _ in chunks][0] == 2
    assert [start for start, _ in chunks] == [2 + sum(len(c) for _, c in chunks[:i]) for i in range(len(chunks))]
    # chunks end where csv.reader ends records: read chunk by chunk = read whole
    assert records_by_chunk(chunks) == records_of(lines)
    # an unclosed quote never swallows more than MAX_RECORD_LINES lines
    open_quote = ['"x,1\n'] + [f"{i},2\n" for i in range(1000)]
    assert max(len(c) for _, c in leads.line_chunks(iter(open_quote), 2, 10)) <= leads.MAX_RECORD_LINES + 10


def test_record_reader_recovers_after_an_unclosed_quote():
    lines = ['1,a\n', '"2,b\n', '3,c\n', '4,d\n']
    records = list(leads.RecordReader(iter(lines), columns=2, first_line=10))
    assert [(r.line, r.fields, r.reason) for r in records] == [
        (10, ["1", "a"], None), (11, None, "bad_quoting"), (12, ["3", "c"], None), (13, ["4", "d"], None)]
    assert records[1].raw == '"2,b'
    assert re.search("raw line", records[1].detail)


def test_record_reader_names_an_overlong_field_and_keeps_the_next_lines():
    # one line whose field passes the csv module's 128 KiB limit is not a quoting error; an
    # unclosed quote that reaches the limit over many lines still is
    lines = ['1,a\n', '2,' + 'x' * 200_000 + '\n', '3,c\n']
    records = list(leads.RecordReader(iter(lines), columns=2, first_line=1))
    assert [(r.line, r.reason) for r in records] == [(1, None), (2, "field_too_long"), (3, None)]
    swallowing = ['1,"a\n'] + ['y' * 1000 + '\n'] * 200 + ['3,c\n']
    reasons = {r.reason for r in leads.RecordReader(iter(swallowing), columns=2, first_line=1)}
    assert "field_too_long" not in reasons and "bad_quoting" in reasons


def test_a_staging_table_left_by_a_dead_import_is_dropped(db, db_url, tmp_path):
    new_campaign(db)
    db.execute("CREATE UNLOGGED TABLE lead_stage_999999_deadbeef (x int)")   # no backend has pid 999999
    db.commit()
    source = tmp_path / "one.csv"
    source.write_text("phone\n2125550100\n")
    assert import_csv(source, "c1", db_url=db_url, workers=0).imported == 1
    assert db.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'lead_stage_%'").fetchone()[0] == 0


def test_a_worker_that_dies_is_reported_not_waited_for(tmp_path):
    columns = leads.ColumnMap.from_header(["phone"])
    worker = leads._WorkerProcess(("postgresql://nobody@127.0.0.1:1/none", "lead_stage_x", columns, "US", True),
                                  timeout_s=30)
    try:
        with pytest.raises(LeadImportError, match="exited"):
            worker.submit((2, ["2125550100\n"]))
            worker.result()
    finally:
        worker.close(kill=True)


def test_a_number_added_by_another_writer_during_the_insert_is_a_duplicate(db, db_url, tmp_path):
    """The anti-join INSERT meets a row another transaction is adding: it waits, gets the unique
    violation when that commits, and the ON CONFLICT path then skips the number."""
    import threading
    import time

    from dialer import storage
    campaign = new_campaign(db)
    source = tmp_path / "race.csv"
    source.write_text("phone\n2125550100\n3125550142\n")
    other = storage.connect_db(db_url)
    other.execute("INSERT INTO lead_lists (campaign_id, name, source_file) VALUES (%s, 'other', 'x')",
                  (campaign.id,))
    other.execute("INSERT INTO leads (campaign_id, list_id, phone_e164, phone_raw) "
                  "SELECT %s, id, '+12125550100', 'x' FROM lead_lists WHERE name = 'other'", (campaign.id,))
    results = []
    thread = threading.Thread(target=lambda: results.append(import_csv(source, "c1", db_url=db_url, workers=0)))
    thread.start()
    deadline = time.monotonic() + 30
    while not db.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                         "AND query LIKE '%%WITH firsts%%'").fetchone()[0]:
        assert time.monotonic() < deadline, "the import never waited on the other writer"
        db.rollback()                       # a new snapshot of pg_stat_activity
        time.sleep(0.05)
    db.commit()
    other.commit()
    other.close()
    thread.join(timeout=30)
    assert results and (results[0].imported, results[0].duplicates_in_campaign) == (1, 1)
    assert db.execute("SELECT count(*) FROM leads").fetchone()[0] == 2


def test_a_clean_reimport_points_at_the_earlier_rejects_file(db, db_url, tmp_path):
    """QA: a file fixed and imported again with no reject left the earlier FILE.rejects.csv in
    place, looking like this import's. It is reported (not deleted: it is the operator's file)."""
    new_campaign(db, "c1")
    source = write_small(tmp_path / "small.csv")
    first = import_csv(source, "c1", db_url=db_url, workers=0)
    assert first.rejected and first.rejects_file and first.stale_rejects_file is None
    clean = tmp_path / "small.csv"
    clean.write_text("phone\n+12125550123\n")
    again = import_csv(clean, "c1", db_url=db_url, workers=0)
    assert again.rejected == 0 and again.rejects_file is None
    assert again.stale_rejects_file == first.rejects_file


# ------------------------------------------------------------------ QA fixes: outputs, ZIP/state, chunks, messages

def lead_count(db):
    return db.execute("SELECT count(*) FROM leads").fetchone()[0]


def test_a_rejects_path_that_is_the_input_is_refused_before_anything_is_read(db, db_url, tmp_path, monkeypatch):
    """--rejects equal to the input truncated it at the first reject and committed what had been read."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    new_campaign(db)
    source = write_small(tmp_path / "small.csv")
    original = source.read_bytes()
    (tmp_path / "link.csv").symlink_to(source)
    runner = CliRunner()
    for rejects in (source, tmp_path / "link.csv", tmp_path / "." / "small.csv"):
        result = runner.invoke(main, ["leads", "import", str(source), "--campaign", "c1", "--rejects", str(rejects)])
        assert result.exit_code == 2, result.output
        assert "is the input file" in result.output and "Traceback" not in result.output
    # the input given through a symlink, the rejects as the real file
    result = runner.invoke(main, ["leads", "import", str(tmp_path / "link.csv"), "--campaign", "c1",
                                  "--rejects", str(source)])
    assert result.exit_code == 2 and "is the input file" in result.output
    with pytest.raises(LeadImportError, match="is the input file"):
        import_csv(source, "c1", db_url=db_url, workers=0, rejects_path=tmp_path / "link.csv")
    assert source.read_bytes() == original
    assert lead_count(db) == 0
    assert db.execute("SELECT count(*) FROM lead_lists").fetchone()[0] == 0


@pytest.mark.parametrize("rejects", ["{tmp}/nodir/r.csv", "/proc/version", "{tmp}"])
def test_an_unwritable_rejects_path_is_a_usage_error_not_a_traceback(db, db_url, tmp_path, monkeypatch, rejects):
    monkeypatch.setenv("DATABASE_URL", db_url)
    new_campaign(db)
    source = write_small(tmp_path / "small.csv")
    result = CliRunner().invoke(main, ["leads", "import", str(source), "--campaign", "c1",
                                       "--rejects", rejects.format(tmp=tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "--rejects" in result.output
    assert lead_count(db) == 0
    assert not (tmp_path / "nodir").exists()
    # the library refuses it too (before staging anything)
    if rejects != "{tmp}":
        with pytest.raises(LeadImportError, match="rejects file"):
            import_csv(source, "c1", db_url=db_url, workers=0, rejects_path=rejects.format(tmp=tmp_path))


def test_probing_the_rejects_path_leaves_no_file_and_keeps_an_old_one(db, db_url, tmp_path):
    new_campaign(db)
    clean = tmp_path / "clean.csv"
    clean.write_text("phone\n2125550100\n")
    import_csv(clean, "c1", db_url=db_url, workers=0)
    assert not (tmp_path / "clean.rejects.csv").exists()       # written only when a row is rejected
    old = tmp_path / "old.csv"
    old.write_text("from an earlier import\n")
    summary = import_csv(clean, "c1", db_url=db_url, workers=0, list_name="again", rejects_path=old)
    assert old.read_text() == "from an earlier import\n" and summary.stale_rejects_file == str(old)


def test_zip_codes_of_north_american_numbers_must_be_5_digits_or_zip_plus_4(db, db_url, tmp_path):
    """A 4-digit ZIP (Excel dropped the leading zero of 01002, Amherst MA) would be read by the gate
    as ZIP3 100 (New York)."""
    new_campaign(db)
    source = tmp_path / "zips.csv"
    source.write_text("phone,zip\n"
                      "4135550101,1002\n"           # 2 reject: leading zero lost
                      "4135550102,01002\n"          # 3 good
                      "4135550103,01002-1234\n"     # 4 good (ZIP+4)
                      "4135550104,0100\n"           # 5 reject
                      "4135550105,010021234\n"      # 6 reject (not 5 or 5+4 with the hyphen)
                      "4135550106,ABCDE\n"          # 7 reject
                      "4135550107, 01002 \n"        # 8 good (blanks around)
                      "+44 20 7946 0958,SW1A 1AA\n"  # 9 good: not a +1 number, a postcode
                      "4135550108,\n")              # 10 good: no ZIP
    summary = import_csv(source, "c1", db_url=db_url, workers=0)
    rejects = read_rejects(tmp_path / "zips.rejects.csv")
    assert {int(r[0]): r[1] for r in rejects[1:]} == {2: "invalid_zip", 5: "invalid_zip", 6: "invalid_zip",
                                                       7: "invalid_zip"}
    assert "leading zero" in rejects[1][2]
    assert summary.imported == 5
    assert dict(db.execute("SELECT phone_e164, zip FROM leads").fetchall()) == {
        "+14135550102": "01002", "+14135550103": "01002-1234", "+14135550107": "01002",
        "+442079460958": "SW1A 1AA", "+14135550108": None}


def test_states_must_be_known_codes_or_names(db, db_url, tmp_path):
    """A state the rule packs do not know was stored and then closed the lead at dial time
    (UNKNOWN_STATE); names the rule book knows are stored as their codes."""
    new_campaign(db)
    source = tmp_path / "states.csv"
    source.write_text("phone,state\n"
                      "3055550101,fl\n"                 # 2 good
                      "3055550102,Florida\n"            # 3 good -> FL
                      "3055550103,ZZ\n"                 # 4 reject
                      "3055550104,XX\n"                 # 5 reject
                      "7875550105,PR\n"                 # 6 good (territory)
                      "3055550106,Floride\n"            # 7 reject
                      "2025550107,district of  columbia\n")   # 8 good -> DC
    summary = import_csv(source, "c1", db_url=db_url, workers=0)
    rejects = read_rejects(tmp_path / "states.rejects.csv")
    assert {int(r[0]): r[1] for r in rejects[1:]} == {4: "invalid_state", 5: "invalid_state", 7: "invalid_state"}
    assert summary.imported == 4
    assert sorted(r[0] for r in db.execute("SELECT state FROM leads").fetchall()) == ["DC", "FL", "FL", "PR"]


def test_a_stray_quote_before_a_chunk_boundary_does_not_split_the_next_record(db, db_url, tmp_path, monkeypatch):
    """QA repro: `5" tall` (a literal quote in an unquoted field) less than 200 lines before a chunk
    boundary made the chunker count a quoted field open, so it cut inside a later multi-line
    record and both halves were rejected."""
    lines = [f"21255{i:05d},N,x\n" for i in range(1, 8)]
    lines[2] = '2125550100,Bob,5" tall\n'
    lines += ['2126660000,Multi,"first line\n', 'second line"\n', "2126660001,After,x\n", "2126660002,Last,x\n"]
    chunks = list(leads.line_chunks(iter(lines), 2, 8, 3))
    assert records_by_chunk3(chunks) == records_of3(lines)
    assert all(c[-1] != '2126660000,Multi,"first line\n' for _, c in chunks)

    new_campaign(db)
    monkeypatch.setattr(leads, "CHUNK_ROWS", 8)
    source = tmp_path / "stray.csv"
    source.write_text("phone,name,note\n" + "".join(lines))
    summary = import_csv(source, "c1", db_url=db_url, workers=0)
    assert (summary.rejected, summary.imported) == (0, 10)
    assert db.execute("SELECT custom FROM leads WHERE phone_e164 = '+12126660000'").fetchone()[0] == \
        {"name": "Multi", "note": "first line\nsecond line"}


def records_of3(lines, first_line=2):
    return [(r.line, r.fields, r.reason) for r in leads.RecordReader(iter(lines), columns=3, first_line=first_line)]


def records_by_chunk3(chunks):
    return [record for start, chunk in chunks for record in records_of3(chunk, start)]


def test_chunks_end_where_the_workers_reader_ends_records():
    """Whatever the quoting (stray quotes, escaped quotes, broken lines the reader rejects and
    reads past), reading chunk by chunk gives the records reading the whole stream gives."""
    rng = random.Random(20261203)
    pieces = ["a", "b", ",", ",", '"', " ", '""', '5" tall']
    for _ in range(1500):
        columns = rng.randint(1, 4)
        lines = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) + rng.choice(["\n", "\r\n"])
                 for _ in range(rng.randint(1, 40))]
        whole = [(r.line, r.fields, r.reason) for r in leads.RecordReader(iter(lines), columns=columns, first_line=2)]
        for max_lines in (1, 3, 5):
            chunks = list(leads.line_chunks(iter(lines), 2, max_lines, columns))
            assert [line for _, chunk in chunks for line in chunk] == lines
            by_chunk = [(r.line, r.fields, r.reason) for start, chunk in chunks
                        for r in leads.RecordReader(iter(chunk), columns=columns, first_line=start)]
            assert by_chunk == whole, (columns, max_lines, lines)
