"""Campaign settings validation, status transitions and the campaign CLI, on a real PostgreSQL."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from cli import main
from dialer import campaigns
from dialer.campaigns import (
    AmdAction, CallOutcome, CampaignError, CampaignSettings, CampaignStatus, SettingsError, TRANSITIONS,
)

READY = {
    "gateways": ["trunk-a", {"name": "trunk-b", "max_cps": 5, "max_channels": 40}],
    "caller_ids": {"pool": ["+1 212 555 0100", "(312) 555-0142"], "rotation": "local_presence"},
    "safe_harbor_message": "say:This is Acme calling. Call us back at 212 555 0100.",
}


def problems_of(document) -> list[str]:
    with pytest.raises(SettingsError) as info:
        CampaignSettings.from_dict(document)
    return info.value.problems


# ------------------------------------------------------------------ settings model

def test_defaults_are_complete_and_round_trip():
    settings = CampaignSettings.from_dict({})
    assert settings.ring_timeout_s == 25
    assert settings.pacing.mode == "predictive"
    document = settings.to_dict()
    assert set(document) == {f for f in CampaignSettings.__dataclass_fields__}
    assert CampaignSettings.from_dict(json.loads(json.dumps(document))) == settings
    assert settings.start_problems()       # no gateway, caller ID or safe-harbor message yet


def test_full_settings_normalise():
    settings = CampaignSettings.from_dict({**READY, "ring_timeout_s": 30, "dial_mode": "progressive",
                                           "call_purpose": "debt", "timezone": "America/Chicago",
                                           "amd": {"action": "voicemail_drop", "voicemail_message": "vm.wav"},
                                           "retry": {"busy": {"delay_s": 120}}, "caps": {"daily": 5000}})
    assert settings.caller_ids.pool == ("+12125550100", "+13125550142")
    assert [g.name for g in settings.gateways] == ["trunk-a", "trunk-b"]
    assert settings.gateways[1].max_cps == 5.0
    assert settings.pacing.mode == "progressive"          # follows the dial mode
    assert settings.retry[CallOutcome.BUSY].delay_s == 120
    assert settings.retry[CallOutcome.BUSY].max_attempts == 5   # the default kept
    assert settings.amd.action == AmdAction.VOICEMAIL_DROP
    assert settings.start_problems() == []
    assert settings.pacing_config().ring_timeout_s == 30.0


@pytest.mark.parametrize("document, expected", [
    ({"ring_timeout_s": 10}, "ring_timeout_s: must be between 15 and 180, got 10"),
    ({"ring_timeout_s": "25"}, "ring_timeout_s: must be an integer, got '25'"),
    ({"ring_timeout": 25}, "ring_timeout: unknown setting"),
    ({"dial_mode": "robocall"}, "dial_mode: must be one of 'predictive', 'progressive', 'preview', 'agentless'"),
    ({"timezone": "Mars/Olympus"}, "timezone: unknown IANA time zone 'Mars/Olympus'"),
    ({"timezone": "localtime"}, "timezone: unknown IANA time zone 'localtime'"),    # the host's zone
    ({"caller_ids": {"pool": ["+1 212 055 0100"]}}, "caller_ids.pool[0]: '+1 212 055 0100' is not a valid E.164"),
    ({"caller_ids": {"rotation": "sometimes"}}, "caller_ids.rotation: must be one of"),
    ({"gateways": "trunk"}, "gateways: must be a list"),
    ({"gateways": ["a", "a"]}, "gateways[1].name: gateway 'a' listed twice"),
    ({"gateways": [{"name": "a", "max_cps": 0}]}, "gateways[0].max_cps: must be a number above 0.0"),
    ({"retry": {"busy": {"delay_s": -5}}}, "retry.busy.delay_s: must be between 0 and"),
    ({"retry": {"human": {"delay_s": 5}}}, "retry.human: unknown setting"),
    ({"max_attempts": 0}, "max_attempts: must be between 1 and 1000, got 0"),
    ({"caps": {"hourly": 0}}, "caps.hourly: must be >= 1, got 0"),
    ({"schedule": {"windows": {"mon": [["21:00", "09:00"]]}}}, "schedule.windows.mon[0]: must be"),
    ({"schedule": {"windows": {"mon": [["09:00", "13:00"], ["12:00", "18:00"]]}}}, "windows overlap"),
    ({"schedule": {"windows": {"funday": []}}}, "schedule.windows.funday: unknown setting"),
    ({"schedule": {"exclude_dates": ["2026-13-01"]}}, "schedule.exclude_dates[0]: '2026-13-01' is not"),
    ({"pacing": {"params": {"target": 1.5}}}, "pacing.params: abandon target must be in [0, 1)"),
    ({"pacing": {"params": {"warp": 9}}}, "pacing.params.warp: unknown pacing parameter"),
    ({"pacing": {"mode": "preview"}}, "pacing.mode: 'preview' does not go with dial_mode 'predictive'"),
    ({"amd": {"action": "voicemail_drop"}}, "amd.voicemail_message: required when amd.action is 'voicemail_drop'"),
    ({"amd": {"params": {"nonsense_ms": 3}}}, "amd.params: unknown AMD parameter 'nonsense_ms'"),
    # QA: values the engine cannot use were accepted (memory_calls=0 crashed its supervision)
    ({"pacing": {"params": {"memory_calls": 0}}}, "pacing.params: memory_calls, memory_attempts and exact_max_terms"),
    ({"pacing": {"params": {"ratio": float("nan")}}}, "pacing.params.ratio: bad value"),
    ({"pacing": {"params": {"abandon_wait_s": -5}}}, "pacing.params: abandon_wait_s must be above 0"),
    ({"pacing": {"params": {"exact_max_terms": 1.5}}}, "pacing.params.exact_max_terms: bad value"),
    ({"amd": {"params": {"beep_max_wait_ms": -1}}}, "beep_max_wait_ms=-1: must not be negative"),
    ({"amd": {"params": {"voice_margin_db": float("inf")}}}, "voice_margin_db=inf: must be a finite number"),
    ({"gateways": [{"name": "a", "max_cps": float("nan")}]}, "gateways[0].max_cps: must be a number above 0.0"),
    ({"dial_mode": "agentless", "voice": "live"}, "voice: an agentless campaign plays a prerecorded"),
    ([], "the settings must be an object"),
])
def test_invalid_settings_name_the_problem(document, expected):
    problems = problems_of(document)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once():
    problems = problems_of({"ring_timeout_s": 5, "max_attempts": -1, "timezone": "Nowhere", "colour": "red"})
    assert len(problems) == 4


def test_next_attempt_follows_the_rule_of_the_outcome():
    settings = CampaignSettings.from_dict({"max_attempts": 4, "retry": {"busy": {"delay_s": 300, "max_attempts": 10},
                                                                        "machine": {"max_attempts": 0}}})
    ended = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    assert settings.next_attempt("busy", 1, ended) == ended + timedelta(seconds=300)
    assert settings.next_attempt("busy", 4, ended) is None            # campaign maximum wins
    assert settings.next_attempt("machine", 1, ended) is None         # never retried
    assert settings.next_attempt(CallOutcome.HUMAN, 1, ended) is None  # the disposition decides


def test_schedule_open_close_and_next_open():
    settings = CampaignSettings.from_dict({"timezone": "America/Denver", "schedule": {
        "windows": {"mon": [["09:00", "12:00"], ["13:00", "17:00"]], "sat": [["10:00", "24:00"]]},
        "exclude_dates": ["2026-11-30"]}})
    zone = ZoneInfo("America/Denver")
    monday = datetime(2026, 11, 23, 12, 30, tzinfo=zone)
    assert not settings.schedule.is_open(monday)
    assert settings.schedule.next_open(monday) == datetime(2026, 11, 23, 13, 0, tzinfo=zone)
    assert settings.schedule.closes_at(monday.replace(hour=14)) == datetime(2026, 11, 23, 17, 0, tzinfo=zone)
    saturday = datetime(2026, 11, 28, 23, 0, tzinfo=zone)
    assert settings.schedule.closes_at(saturday) == datetime(2026, 11, 29, 0, 0, tzinfo=zone)
    # Monday the 30th is excluded: after Saturday the 28th the next window is Saturday 5 December
    assert settings.schedule.next_open(datetime(2026, 11, 29, 8, 0, tzinfo=zone)) == \
        datetime(2026, 12, 5, 10, 0, tzinfo=zone)


def test_schedule_with_only_excluded_dates_keeps_the_default_hours():
    settings = CampaignSettings.from_dict({"schedule": {"exclude_dates": ["2026-12-25"]}})
    assert settings.schedule.windows == CampaignSettings().schedule.windows
    christmas = datetime(2026, 12, 25, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    assert not settings.schedule.is_open(christmas)
    assert settings.schedule.is_open(christmas + timedelta(days=1))


def test_assignments_parse_json_or_text():
    assert campaigns.parse_assignment("ring_timeout_s=30") == ("ring_timeout_s", 30)
    assert campaigns.parse_assignment("safe_harbor_message=say:hello") == ("safe_harbor_message", "say:hello")
    assert campaigns.parse_assignment('gateways=["a","b"]') == ("gateways", ["a", "b"])
    doc = campaigns.apply_assignments({}, [("pacing.params.target", 0.02)])
    assert doc == {"pacing": {"params": {"target": 0.02}}}
    with pytest.raises(SettingsError, match="expected key=value"):
        campaigns.parse_assignment("ring_timeout_s")


# ------------------------------------------------------------------ rows and transitions

def test_create_get_and_duplicate_name(db):
    created = campaigns.create_campaign(db, "spring-2026", CampaignSettings.from_dict(READY))
    assert created.status == CampaignStatus.DRAFT
    found = campaigns.get_campaign(db, "spring-2026")
    assert found.settings == created.settings and found.id == created.id
    stored = db.execute("SELECT settings FROM campaigns WHERE id = %s", (created.id,)).fetchone()[0]
    assert stored == created.settings.to_dict()
    with pytest.raises(CampaignError, match="already exists"):
        campaigns.create_campaign(db, "spring-2026", CampaignSettings())
    with pytest.raises(CampaignError, match="1-64 letters"):
        campaigns.create_campaign(db, "bad name!", CampaignSettings())
    with pytest.raises(campaigns.CampaignNotFound):
        campaigns.get_campaign(db, "nope")


def test_status_transitions(db):
    campaigns.create_campaign(db, "c1", CampaignSettings())
    with pytest.raises(CampaignError, match="cannot start"):
        campaigns.set_status(db, "c1", "running")               # no gateway, caller ID, message
    campaigns.update_settings(db, "c1", [(k, v) for k, v in READY.items()])
    assert campaigns.set_status(db, "c1", "running").status == CampaignStatus.RUNNING
    assert campaigns.set_status(db, "c1", "paused").status == CampaignStatus.PAUSED
    with pytest.raises(CampaignError, match="cannot become stopped"):
        campaigns.set_status(db, "c1", "stopped")               # stop goes through stopping
    assert campaigns.set_status(db, "c1", "stopping").status == CampaignStatus.STOPPING
    assert campaigns.set_status(db, "c1", "stopped").status == CampaignStatus.STOPPED
    assert campaigns.set_status(db, "c1", "running").status == CampaignStatus.RUNNING
    assert all(target != source for source, targets in TRANSITIONS.items() for target in targets)


def test_a_served_campaign_keeps_what_it_needs_to_run(db):
    """QA: removing the caller IDs or gateways of a running campaign was accepted; its calls then
    went out with a placeholder caller ID and engines refused to start."""
    campaigns.create_campaign(db, "c3", CampaignSettings())
    campaigns.update_settings(db, "c3", [(k, v) for k, v in READY.items()])
    campaigns.set_status(db, "c3", "running")
    for status in ("running", "paused", "stopping"):
        if status != "running":
            campaigns.set_status(db, "c3", status)
        with pytest.raises(SettingsError, match="caller_ids.pool.*stop it first"):
            campaigns.update_settings(db, "c3", [("caller_ids.pool", [])])
    campaigns.set_status(db, "c3", "stopped")
    assert campaigns.update_settings(db, "c3", [("caller_ids.pool", [])]).settings.caller_ids.pool == ()


def test_update_settings_validates_and_bumps_version(db):
    campaigns.create_campaign(db, "c2", CampaignSettings())
    updated = campaigns.update_settings(db, "c2", [("ring_timeout_s", 40)])
    assert updated.settings.ring_timeout_s == 40 and updated.settings_version == 2
    with pytest.raises(SettingsError, match="ring_timeout_s"):
        campaigns.update_settings(db, "c2", [("ring_timeout_s", 5)])
    assert campaigns.get_campaign(db, "c2").settings_version == 2


# ------------------------------------------------------------------ CLI

def test_cli_create_list_show_and_transitions(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", db_url)
    settings_file = tmp_path / "c.json"
    settings_file.write_text(json.dumps(READY))
    runner = CliRunner()
    result = runner.invoke(main, ["campaign", "create", "autumn", "--settings", str(settings_file),
                                  "--set", "ring_timeout_s=35", "--set", "pacing.params.target=0.02", "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["settings"]["ring_timeout_s"] == 35
    assert created["settings"]["pacing"]["params"] == {"target": 0.02}

    result = runner.invoke(main, ["campaign", "create", "broken", "--set", "ring_timeout_s=3"])
    assert result.exit_code == 1
    assert "ring_timeout_s: must be between 15 and 180, got 3" in result.output

    result = runner.invoke(main, ["campaign", "list", "--json"])
    assert result.exit_code == 0
    assert [(c["name"], c["status"], c["leads"]) for c in json.loads(result.output)] == [("autumn", "draft", 0)]
    assert runner.invoke(main, ["campaign", "list"]).exit_code == 0

    result = runner.invoke(main, ["campaign", "show", "autumn", "--json"])
    shown = json.loads(result.output)
    assert shown["status"] == "draft" and shown["lists"] == [] and shown["start_problems"] == []
    assert runner.invoke(main, ["campaign", "show", "autumn"]).exit_code == 0
    result = runner.invoke(main, ["campaign", "show", "winter"])
    assert result.exit_code == 1 and "no campaign named 'winter'" in result.output

    for command, status in (("start", "running"), ("pause", "paused"), ("resume", "running"),
                            ("stop", "stopping")):
        result = runner.invoke(main, ["campaign", command, "autumn", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["status"] == status
    result = runner.invoke(main, ["campaign", "pause", "autumn"])
    assert result.exit_code == 1 and "pause applies to a campaign that is running" in result.output

    result = runner.invoke(main, ["campaign", "set", "autumn", "max_attempts=9", "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["settings"]["max_attempts"] == 9
    # a malformed KEY=VALUE is a usage error (2), like any bad argument, and changes nothing
    for args, message in ((["set", "autumn", "badformat"], "expected key=value"),
                          (["create", "winter", "--set", "Bad.Key=1"], "lower-case words")):
        result = runner.invoke(main, ["campaign", *args])
        assert result.exit_code == 2 and message in result.output, result.output


def test_operator_commands_apply_from_their_statuses_only(db):
    campaigns.create_campaign(db, "c3", CampaignSettings.from_dict(READY))
    with pytest.raises(CampaignError, match="resume applies to a campaign that is paused"):
        campaigns.apply_command(db, "c3", "resume")
    assert campaigns.apply_command(db, "c3", "start").status == CampaignStatus.RUNNING
    with pytest.raises(CampaignError, match="start applies to a campaign that is draft or stopped"):
        campaigns.apply_command(db, "c3", "start")
    campaigns.create_campaign(db, "c4", CampaignSettings())
    assert campaigns.apply_command(db, "c4", "stop").status == CampaignStatus.STOPPED   # a draft: at once


@pytest.mark.parametrize("width", [80, 100])
def test_cli_list_keeps_campaign_names_whole(db_url, monkeypatch, width):
    """Names are never cut (`demo-1796…` in 80-100 columns): the other columns wrap or fold."""
    from rich.console import Console
    from dialer import campaign_cli
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setattr(campaign_cli, "_out", Console(width=width))
    runner = CliRunner()
    names = ["demo-1796310609", "demo-1796310730", "qa1", "a-rather-long-campaign-name-2026"]
    for name in names:
        assert runner.invoke(main, ["campaign", "create", name]).exit_code == 0
    result = runner.invoke(main, ["campaign", "list"])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert all(len(line) <= width for line in result.output.splitlines())
    first_words = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    for name in names:
        assert name in first_words, (name, result.output)
