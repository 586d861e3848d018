"""`dialer compliance check|audit|scrub` as specified in issue 3 (no servers needed for check)."""
from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from cli import main


@pytest.fixture
def runner(monkeypatch):
    # check must work with no server: point the URLs at closed ports to prove it does not use them.
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/dialer")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    return CliRunner()


@pytest.fixture
def dnc_files(tmp_path):
    ftc = tmp_path / "ftc.txt"
    ftc.write_text("212,5550100\n305,5550100\n")
    plain = tmp_path / "plain.txt"
    plain.write_text("2125550101\n")
    return ["--dnc-file", str(ftc), "--dnc-file", str(plain)]


@pytest.fixture
def rnd(tmp_path):
    """A reassigned-numbers copy: +12125550177 was disconnected on 2026-11-10."""
    path = tmp_path / "rnd.csv"
    path.write_text("+12125550177,2026-11-10\n2125550178,2025-01-02\n")
    return ["--rnd-file", str(path)]


def check(runner, *args):
    out = runner.invoke(main, ["compliance", "check", *args, "--json"])
    return out.exit_code, (json.loads(out.output) if out.output.startswith("{") else out.output)


def test_answer_shape_and_exit_codes(runner, dnc_files, rnd):
    code, answer = check(runner, "+12125551234", "--at", "2026-11-18T17:00:00Z", "--consent", "written", *dnc_files, *rnd)
    assert code == 0
    assert answer == {"allowed": True, "reasons": [], "next_allowed_at": None,
                      "zones": ["America/New_York"], "states": ["NY"]}
    code, answer = check(runner, "+12125550100", "--at", "2026-11-18T17:00:00Z", "--consent", "express", *dnc_files)
    assert code == 1 and answer["reasons"] == ["US-DNC-1", "US-CONS"] and answer["next_allowed_at"] is None
    # Written permission exempts from the registry (64.1200(c)(2)(ii)).
    assert check(runner, "+12125550100", "--at", "2026-11-18T17:00:00Z", "--consent", "written", *dnc_files, *rnd)[0] == 0
    code, answer = check(runner, "+12125550101", "--at", "2026-11-18T17:00:00Z", "--mode", "preview", *dnc_files)
    assert code == 1 and answer["reasons"] == ["US-DNC-1"]


def test_half_open_window_and_next_allowed_in_utc(runner, dnc_files):
    base = ["--mode", "preview", *dnc_files]
    assert check(runner, "+12125551234", "--at", "2026-11-18T08:00:00-05:00", *base)[0] == 0
    code, answer = check(runner, "+12125551234", "--at", "2026-11-18T21:00:00-05:00", *base)
    assert code == 1 and answer["reasons"] == ["US-HRS"]
    assert answer["next_allowed_at"] == "2026-11-19T13:00:00Z"
    # No offset means UTC: 13:00 UTC is 08:00 EST.
    assert check(runner, "+12125551234", "--at", "2026-11-18T13:00:00", *base)[0] == 0
    assert check(runner, "+12125551234", "--at", "2026-11-18T12:59:59", *base)[0] == 1


def test_next_allowed_is_null_when_a_non_time_rule_also_blocks(runner, dnc_files):
    code, answer = check(runner, "+12125550100", "--at", "2026-11-19T03:00:00Z", "--mode", "preview", *dnc_files)
    assert code == 1 and set(answer["reasons"]) == {"US-HRS", "US-DNC-1"} and answer["next_allowed_at"] is None


def test_without_a_registry_telemarketing_fails_closed(runner):
    code, answer = check(runner, "+12125551234", "--at", "2026-11-18T17:00:00Z", "--mode", "preview")
    assert code == 1 and answer["reasons"] == ["REGISTRY_MISSING"]
    assert check(runner, "+12125551234", "--at", "2026-11-18T17:00:00Z", "--mode", "preview",
                 "--purpose", "informational")[0] == 0


def test_options(runner, dnc_files, rnd):
    at = ["--at", "2026-11-18T17:00:00Z", "--mode", "preview", *dnc_files]
    assert check(runner, "2125551234", *at)[1]["states"] == ["NY"]                     # national, default US
    assert check(runner, "020 7123 4567", "--region", "GB", "--purpose", "informational",
                 "--at", "2026-11-18T10:00:00Z")[1]["zones"] == ["Europe/London"]
    code, answer = check(runner, "+12125551234", "--state", "ca", "--at", "2026-11-18T15:30:00Z", "--mode", "preview", *dnc_files)
    # the lead's state and ZIP add candidates; the number's own state (NY) stays one (QA6 F1)
    assert code == 1 and answer["states"] == ["CA", "NY"] and "America/Los_Angeles" in answer["zones"]
    assert check(runner, "+12125551234", "--zip", "33101", *at)[1]["states"] == ["FL", "NY"]
    # FL area code added as a candidate state even when --state says otherwise.
    assert check(runner, "+13055551234", "--state", "GA", *at)[1]["states"] == ["GA", "FL"]
    code, answer = check(runner, "+12125551234", "--at", "2026-11-18T17:00:00Z", *dnc_files)
    assert code == 1 and answer["reasons"] == ["US-CONS"]            # predictive, no consent
    assert check(runner, "+12125551234", "--at", "2026-11-18T17:00:00Z", "--consent", "express", *dnc_files)[1]["reasons"] == ["US-CONS"]
    assert check(runner, "+12125551234", "--at", "2026-11-18T17:00:00Z", "--consent", "express",
                 "--purpose", "debt", *dnc_files, *rnd)[0] == 0


@pytest.mark.parametrize("args", [
    ["not-a-number"],
    ["+12125551234", "--at", "yesterday"],
    ["+12125551234", "--purpose", "sales"],
    ["+12125551234", "--dnc-file", "/nonexistent/file"],
    ["+12125551234", "--state-dnc-file", "/nonexistent/file"],
    ["+12125551234", "--state-dnc-file", "FL=/nonexistent/file"],
    ["+12125551234", "--tps-file", "/nonexistent/file"],
    ["+12125551234", "--rnd-file", "/nonexistent/file"],
    [],
])
def test_usage_errors_exit_2(runner, args):
    assert runner.invoke(main, ["compliance", "check", *args, "--json"]).exit_code == 2


def test_state_lists_offline(runner, dnc_files, tmp_path):
    """Without --state-dnc-file, telemarketing to a state that keeps a list fails closed like the federal list."""
    at = ["--at", "2026-11-18T17:00:00Z", "--mode", "preview", *dnc_files]
    code, answer = check(runner, "+13055551234", *at)
    assert code == 1 and answer["reasons"] == ["REGISTRY_MISSING"]
    assert check(runner, "+13055551234", "--purpose", "informational", *at)[0] == 0
    assert check(runner, "+12125551234", "--state", "TX", *at)[1]["reasons"] == ["REGISTRY_MISSING"]
    florida = tmp_path / "fl.txt"
    florida.write_text("305,5551234\n")
    fl = ["--state-dnc-file", f"fl={florida}"]
    assert check(runner, "+13055551234", *at, *fl)[1]["reasons"] == ["FL-DNC"]
    assert check(runner, "+13055551235", *at, *fl)[0] == 0
    # A state's list is the whole list: a Florida lead with a New York number is looked up in it too.
    assert check(runner, "+12125551234", "--state", "FL", *at, *fl)[0] == 0
    texas = tmp_path / "tx.txt"
    texas.write_text("2125551234\n")
    assert check(runner, "+12125551234", "--state", "TX", *at, "--state-dnc-file", f"TX={texas}")[1]["reasons"] \
        == ["TX-DNC"]
    assert runner.invoke(main, ["compliance", "check", "+13055551234", "--state-dnc-file", str(florida)]).exit_code == 2


def test_uk_tps_offline(runner, tmp_path):
    tps = tmp_path / "tps.txt"
    tps.write_text("02071234567\n+44 7400 123456\n")
    ctps = tmp_path / "ctps.txt"
    ctps.write_text("02079460000\n")
    at = ["--at", "2026-11-18T10:00:00Z", "--mode", "preview"]
    assert check(runner, "+442071234568", *at)[1]["reasons"] == ["REGISTRY_MISSING"]
    assert check(runner, "+442071234568", *at, "--tps-file", str(tps))[1]["reasons"] == ["REGISTRY_MISSING"]
    lists = ["--tps-file", str(tps), "--ctps-file", str(ctps)]
    assert check(runner, "+442071234568", *at, *lists)[0] == 0
    assert check(runner, "+442071234567", *at, *lists)[1]["reasons"] == ["UK-TPS"]
    assert check(runner, "+447400123456", *at, *lists)[1]["reasons"] == ["UK-TPS"]
    assert check(runner, "+442079460000", *at, *lists)[1]["reasons"] == ["UK-TPS"]


def test_reassigned_numbers_offline(runner, dnc_files, rnd):
    base = ["--at", "2026-11-18T17:00:00Z", "--consent", "written", "--line-type", "wireless", *dnc_files]
    # Consent is taken as given the day before --at: a disconnection since then cannot be known here,
    # one on 2026-11-10 is before it; without any --rnd-file the answer is "no data".
    assert check(runner, "+12125550177", *base)[1]["reasons"] == ["RND_NO_DATA"]
    assert check(runner, "+12125550177", *base, *rnd)[0] == 0
    assert check(runner, "+12125550177", "--at", "2026-11-10T17:00:00Z", "--consent", "written", *dnc_files,
                 *rnd)[1]["reasons"] == ["US-RND"]
    # Preview dialing does not rely on consent: no RND question.
    assert check(runner, "+12125550177", *base, "--mode", "preview")[0] == 0


def test_invalid_but_parseable_number_is_blocked_not_an_error(runner):
    code, answer = check(runner, "+19995551234", "--at", "2026-11-18T17:00:00Z")
    assert code == 1 and answer["reasons"] == ["INVALID_NUMBER"]


def test_human_output(runner, dnc_files):
    out = runner.invoke(main, ["compliance", "check", "+16015551234", "--at", "2026-07-19T15:00:00Z",
                               "--mode", "preview", *dnc_files])
    assert out.exit_code == 1
    assert "MS-HRS" in out.output and "77-3-723" in out.output and "next allowed at 2026-07-20T14:00:00Z" in out.output


def test_human_output_prints_rule_packs_readably(runner, dnc_files):
    """Rule packs as `name version, ...`, not a raw Python dict."""
    out = runner.invoke(main, ["compliance", "check", "+12125551234", "--at", "2026-11-18T17:00:00Z",
                               "--mode", "preview", *dnc_files])
    assert out.exit_code == 0, out.output
    (line,) = [line.strip() for line in out.output.splitlines() if "rule packs" in line]
    assert "{" not in line and "'" not in line
    assert line.startswith("rule packs: ") and "us-federal " in line
    names = [item.split()[0] for item in line.removeprefix("rule packs: ").split(", ")]
    assert names == sorted(names) and len(names) >= 2


def test_batch(runner, dnc_files, rnd, tmp_path):
    batch = tmp_path / "req.jsonl"
    batch.write_text("\n".join([
        json.dumps({"number": "+12125551234", "at": "2026-11-18T17:00:00Z", "consent": "written"}),
        "{not json",
        json.dumps({"number": "nope"}),
        json.dumps({"number": "+12125550100", "at": "2026-11-18T17:00:00Z", "mode": "preview"}),
        json.dumps({"number": "+12125551234", "at": "2026-11-18T17:00:00Z", "purpose": "sales"}),
        "",
        json.dumps({"number": "+16015551234", "at": "2026-07-19T15:00:00Z", "mode": "preview", "state": "MS"}),
        json.dumps({"number": "+12125551234", "at": 5}),
        json.dumps(["+12125551234"]),
    ]) + "\n")
    out = runner.invoke(main, ["compliance", "check", "--batch", str(batch), *dnc_files, *rnd])
    assert out.exit_code == 2            # some lines could not be checked (QA6 F8: it was 0)
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert lines[0]["allowed"] is True and lines[0]["consent"] == "written" and lines[0]["number"] == "+12125551234"
    assert lines[1]["line"] == 2 and "error" in lines[1]
    assert lines[2]["line"] == 3
    assert lines[3]["reasons"] == ["US-DNC-1"]
    assert lines[4]["line"] == 5
    assert lines[5]["reasons"] == ["MS-HRS"] and lines[5]["next_allowed_at"] == "2026-07-20T14:00:00Z"
    assert lines[6] == {"line": 8, "error": "at must be a string"}
    assert lines[7]["line"] == 9
    assert len(lines) == 8
    assert runner.invoke(main, ["compliance", "check", "--batch", str(tmp_path / "missing.jsonl")]).exit_code == 2


def test_batch_lines_take_the_options_as_defaults_and_refuse_unknown_fields(runner, dnc_files, rnd, tmp_path):
    """QA: with --batch the command's options were ignored, and a misspelt field ("stat") was
    silently dropped: another call than the one meant was checked."""
    batch = tmp_path / "req.jsonl"
    batch.write_text("\n".join([
        json.dumps({"number": "+16015551234"}),
        json.dumps({"number": "+16015551234", "at": "2026-07-20T20:00:00Z"}),    # its own time wins: 3 pm
        json.dumps({"number": "+16015551234", "stat": "MS"}),
    ]) + "\n")
    out = runner.invoke(main, ["compliance", "check", "--batch", str(batch), "--at", "2026-07-20T12:00:00Z",
                               "--mode", "preview", "--state", "MS", *dnc_files, *rnd])
    assert out.exit_code == 2, out.output          # line 3 could not be checked
    lines = [json.loads(line) for line in out.output.splitlines()]
    assert "MS-HRS" in lines[0]["reasons"] and lines[0]["states"] == ["MS"]     # 7 am in Mississippi
    assert lines[1]["allowed"] is True, lines[1]
    assert lines[2]["line"] == 3 and "unknown field(s) 'stat'" in lines[2]["error"]


def test_scrub_offline(runner, dnc_files, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("id,phone\n1,2125551234\n2,(212) 555-0100\n3,+1 999 555 1234\n4,x\n5,+1 212 555 0101\n6,3125551234\n")
    out = runner.invoke(main, ["compliance", "scrub", str(leads), "--out", str(tmp_path / "c.csv"),
                               "--rejects", str(tmp_path / "r.csv"), *dnc_files])
    assert out.exit_code == 0, out.output
    clean = list(csv.reader(open(tmp_path / "c.csv")))
    rejects = {row[0]: row[-1] for row in csv.reader(open(tmp_path / "r.csv"))}
    assert [row[0] for row in clean] == ["id", "1", "6"]
    assert rejects == {"id": "reject_reason", "2": "US-DNC-1", "3": "INVALID_NUMBER", "4": "INVALID_NUMBER",
                       "5": "US-DNC-1"}
    bad = runner.invoke(main, ["compliance", "scrub", str(leads), "--out", str(tmp_path / "c.csv"),
                               "--rejects", str(tmp_path / "r.csv"), "--phone-column", "tel", *dnc_files])
    assert bad.exit_code == 1 and "no column named 'tel'" in bad.output


def test_scrub_keeps_quoted_records_intact(runner, dnc_files, tmp_path):
    leads = tmp_path / "quoted.csv"
    leads.write_text('id,note,phone\r\n1,"says ""hi"", twice",2125551234\r\n2,"two\nlines",(212) 555-0100\r\n'
                     '3,short\r\n4,plain,+12125550102\r\n')
    out = runner.invoke(main, ["compliance", "scrub", str(leads), "--out", str(tmp_path / "c.csv"),
                               "--rejects", str(tmp_path / "r.csv"), *dnc_files])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "c.csv").read_bytes().decode() == 'id,note,phone\r\n1,"says ""hi"", twice",2125551234\r\n4,plain,+12125550102\r\n'
    rejects = list(csv.reader(open(tmp_path / "r.csv", newline="")))
    assert rejects == [["id", "note", "phone", "reject_reason"], ["2", "two\nlines", "(212) 555-0100", "US-DNC-1"],
                       ["3", "short", "INVALID_NUMBER"]]


def test_scrub_rejects_numbers_on_a_state_list(runner, dnc_files, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("id,phone\n1,3125551234\n2,3125551235\n3,2125551234\n")
    texas = tmp_path / "tx.txt"
    texas.write_text("3125551234\n")          # a Chicago number on Texas's list: the person may live there
    out = runner.invoke(main, ["compliance", "scrub", str(leads), "--out", str(tmp_path / "c.csv"),
                               "--rejects", str(tmp_path / "r.csv"), *dnc_files, "--state-dnc-file", f"TX={texas}"])
    assert out.exit_code == 0, out.output
    assert [row[0] for row in csv.reader(open(tmp_path / "c.csv"))] == ["id", "2", "3"]
    assert {row[0]: row[-1] for row in csv.reader(open(tmp_path / "r.csv"))} == {"id": "reject_reason", "1": "TX-DNC"}
    bad = runner.invoke(main, ["compliance", "scrub", str(leads), "--out", str(tmp_path / "c.csv"),
                               "--rejects", str(tmp_path / "r.csv"), *dnc_files, "--state-dnc-file", "Texas"])
    assert bad.exit_code == 2 and "expected XX=PATH" in bad.output


# ---------------------------------------------------------------- scrub: QA fixes (outputs, CSV, headers)

def scrub_cli(runner, leads, out, rejects, *extra):
    return runner.invoke(main, ["compliance", "scrub", str(leads), "--out", str(out), "--rejects", str(rejects),
                                *extra])


def test_scrub_refuses_an_output_that_is_the_input_or_two_outputs_that_are_one(runner, dnc_files, tmp_path):
    """`--rejects leads.csv` (or --out) truncated the input, then failed on its empty header."""
    leads = tmp_path / "leads.csv"
    leads.write_text("id,phone\n1,2125551234\n")
    (tmp_path / "link.csv").symlink_to(leads)
    cases = [(tmp_path / "o.csv", leads), (leads, tmp_path / "r.csv"), (tmp_path / "link.csv", tmp_path / "r.csv"),
             (tmp_path / "o.csv", tmp_path / "sub" / ".." / "leads.csv")]
    (tmp_path / "sub").mkdir()
    for out, rejects in cases:
        result = scrub_cli(runner, leads, out, rejects, *dnc_files)
        assert result.exit_code == 2 and "is the input file" in result.output, (out, rejects, result.output)
        assert leads.read_text() == "id,phone\n1,2125551234\n"
    # the input named through a symlink, the output as the real file
    result = scrub_cli(runner, tmp_path / "link.csv", leads, tmp_path / "r.csv", *dnc_files)
    assert result.exit_code == 2 and "is the input file" in result.output
    result = scrub_cli(runner, leads, tmp_path / "same.csv", tmp_path / "same.csv", *dnc_files)
    assert result.exit_code == 2 and "same file" in result.output
    assert leads.read_text() == "id,phone\n1,2125551234\n"
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "same.csv").exists()


@pytest.mark.parametrize("which", ["--out", "--rejects"])
def test_scrub_into_a_missing_directory_is_a_clear_error(runner, dnc_files, tmp_path, which):
    leads = tmp_path / "leads.csv"
    leads.write_text("id,phone\n1,2125551234\n")
    paths = {"--out": tmp_path / "o.csv", "--rejects": tmp_path / "r.csv"}
    paths[which] = tmp_path / "nodir" / "x.csv"
    result = scrub_cli(runner, leads, paths["--out"], paths["--rejects"], *dnc_files)
    assert result.exit_code == 2, result.output
    assert which in result.output and "not an existing directory" in result.output
    assert not isinstance(result.exception, OSError)
    assert not paths["--out"].exists() and not paths["--rejects"].exists()


def test_scrub_rejects_an_unclosed_quote_alone_and_still_checks_the_rows_after_it(runner, dnc_files, tmp_path):
    """Cutting records by counting quotes merged every line after an unclosed quote into one
    "clean" record: listed numbers then passed as clean."""
    leads = tmp_path / "leads.csv"
    leads.write_text('id,phone,note\n'
                     '1,2125551234,"open quote\n'
                     '2,2125550100,listed\n'
                     '3,2125550101,listed too\n'
                     '4,2125551235,fine\n')
    result = scrub_cli(runner, leads, tmp_path / "c.csv", tmp_path / "r.csv", *dnc_files)
    assert result.exit_code == 0, result.output
    clean = (tmp_path / "c.csv").read_text()
    assert clean == "id,phone,note\n4,2125551235,fine\n"
    rejects = list(csv.reader(open(tmp_path / "r.csv", newline="")))
    assert rejects == [["id", "phone", "note", "reject_reason"],
                       ['1,2125551234,"open quote', "", "", "BAD_QUOTING"],
                       ["2", "2125550100", "listed", "US-DNC-1"], ["3", "2125550101", "listed too", "US-DNC-1"]]


def test_scrub_reads_a_literal_quote_inside_a_field_as_text(runner, dnc_files, tmp_path):
    """`5" tall` gave a _csv.Error traceback and outputs holding only the header."""
    leads = tmp_path / "leads.csv"
    leads.write_text('phone,name,note\n2125551234,Bob,5" tall\n2125551235,Ann,x\n2125550100,Cy,"6"" tall"\n')
    result = scrub_cli(runner, leads, tmp_path / "c.csv", tmp_path / "r.csv", *dnc_files)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    assert (tmp_path / "c.csv").read_text() == 'phone,name,note\n2125551234,Bob,5" tall\n2125551235,Ann,x\n'
    assert (tmp_path / "r.csv").read_text() == 'phone,name,note,reject_reason\n2125550100,Cy,"6"" tall",US-DNC-1\n'


def test_scrub_accepts_a_bom_and_the_header_names_the_import_accepts(runner, dnc_files, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_bytes("\ufeffPhone Number,Name\n2125551234,Bob\n2125550100,Listed\n".encode())
    result = scrub_cli(runner, leads, tmp_path / "c.csv", tmp_path / "r.csv", *dnc_files)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.csv").read_text() == "Phone Number,Name\n2125551234,Bob\n"
    plain = tmp_path / "plain.csv"
    plain.write_text("id,Phone\n1,2125551234\n")
    result = scrub_cli(runner, plain, tmp_path / "c.csv", tmp_path / "r.csv", "--phone-column", "PHONE", *dnc_files)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("content, message", [
    ("phone;first_name;state\n2125550110;Ann;NY\n", "seems to use ';' between columns; a comma is expected"),
    ("\nphone\n2125551234\n", "line 1 is blank"),
])
def test_scrub_header_problems_say_what_is_wrong(runner, dnc_files, tmp_path, content, message):
    leads = tmp_path / "leads.csv"
    leads.write_text(content)
    result = scrub_cli(runner, leads, tmp_path / "c.csv", tmp_path / "r.csv", *dnc_files)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "c.csv").exists()        # refused before any output is written
