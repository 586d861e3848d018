"""A small world for engine tests: the simulated switch, federal and state do-not-call snapshots,
a campaign with leads, and an engine with a pinned calling-hours clock."""
from __future__ import annotations

import os
import time
import wave
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import holidays
import numpy as np

from dialer import campaigns, storage
from dialer.compliance.registry import RegistryStore
from dialer.compliance.service import LazyConnection, import_test_lists, live_gate
from dialer.config import FreeswitchNode
from dialer.engine.engine import Engine, EngineConfig
from esl.fakeswitch import CalledPartyModel, FakeSwitch
from esl.fakeswitch.voices import build_voices

AGENT_PHONE = "sofia/internal/7700@127.0.0.1"


def next_calling_tuesday(after: datetime) -> datetime:
    """A Tuesday, 15:00 in New York (20:00 UTC), at least two days after `after`, that is no
    public holiday in any US state: inside every US calling window. It must lie ahead of the
    real clock, since campaigns and call records are stamped with the database's now() and the
    reports' periods start there (a fixed date turned into the past as the calendar moved on)."""
    day = after.date() + timedelta(days=2)
    while True:
        day += timedelta(days=(1 - day.weekday()) % 7)
        if not any(day in holidays.country_holidays("US", subdiv=state, years=day.year)
                   for state in holidays.country_holidays("US").subdivisions):
            return datetime(day.year, day.month, day.day, 20, 0, tzinfo=timezone.utc)
        day += timedelta(days=1)


# Every engine of a test, in this process or a child, runs the same pinned clock: PINNED at
# CLOCK_START (a child gets it through DIALER_TEST_CLOCK_START), then real time passing.
CLOCK_START = float(os.environ.get("DIALER_TEST_CLOCK_START") or time.time())
PINNED = next_calling_tuesday(datetime.fromtimestamp(CLOCK_START, timezone.utc))
CLOCK_OFFSET = PINNED - datetime.fromtimestamp(CLOCK_START, timezone.utc)


def pinned_clock():
    return lambda: datetime.now(timezone.utc) + CLOCK_OFFSET


def import_registry(db_url: str, directory: Path, numbers: list[str], as_of: date,
                    state_numbers: dict[str, list[str]] | None = None) -> None:
    """The federal registry with `numbers` and every state's list (empty unless given), as of `as_of`:
    telemarketing to a state that keeps a list fails closed without a copy of it."""
    import_test_lists(RegistryStore(LazyConnection(db_url), directory), as_of, federal=numbers,
                      states=state_numbers, source="test")


def create_campaign(db_url: str, name: str, settings: dict, phones: list[str], line_type="landline") -> int:
    with storage.connect_db(db_url) as conn:
        created = campaigns.create_campaign(conn, name, campaigns.CampaignSettings.from_dict(settings))
        (list_id,) = conn.execute("INSERT INTO lead_lists (campaign_id, name, source_file) VALUES (%s, 'test', 'test')"
                                  " RETURNING id", (created.id,)).fetchone()
        for phone in phones:
            conn.execute("INSERT INTO leads (campaign_id, list_id, phone_e164, phone_raw, state, line_type)"
                         " VALUES (%s, %s, %s, %s, 'NY', %s)", (created.id, list_id, phone, phone, line_type))
        conn.commit()
        campaigns.set_status(conn, name, "running")
        conn.commit()
    return created.id


VOICE_CACHE = Path(__file__).resolve().parents[1] / ".data" / "voices"


def beep_machine(directory: Path) -> str:
    """An answering machine that beeps at once: AMD's beep rule decides MACHINE whatever the
    load on the machine running the test (a spoken greeting is judged on real-time audio)."""
    path = directory / "beep-machine.wav"
    samples = np.concatenate([np.zeros(2400), 0.5 * np.sin(2 * np.pi * 1000 * np.arange(4000) / 8000),
                              np.zeros(16000)])
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes((samples * 32767).astype("<i2").tobytes())
    return str(path)


def start_switch(**options) -> FakeSwitch:
    """The simulated switch with spoken humans (the first line, which AMD classifies right) and
    a beeping machine, so outcomes are deterministic."""
    voices = build_voices(VOICE_CACHE)
    files = {"human": voices["human"][:1], "machine": [beep_machine(VOICE_CACHE)]}
    return FakeSwitch(port=0, model=CalledPartyModel(seed=5), heartbeat_seconds=0, audio_files=files,
                      **options).start()


def start_engine(db_url: str, redis_url: str, switch: FakeSwitch, registry_dir: Path, *, engine_id="engine-1",
                 ports=range(41000, 41200), web_api: bool = True, metrics: bool = True, gate=None) -> Engine:
    cfg = EngineConfig(engine_id=engine_id, database_url=db_url, redis_url=redis_url,
                       nodes=[FreeswitchNode("127.0.0.1", switch.port, "ClueCon")],
                       amd_listen=("127.0.0.1", 0), unicast_ports=ports, hook_listen=("127.0.0.1", 0),
                       metrics_listen=("127.0.0.1", 0) if metrics else None, web_api=web_api)
    gate = gate or live_gate(db_url, redis_url, registry_dir)
    return Engine(cfg, gate, clock=pinned_clock()).start()


BASE_SETTINGS = {
    "dial_mode": "progressive", "call_purpose": "telemarketing",
    "pacing": {"mode": "progressive"},
    "gateways": [{"name": "gw1", "max_cps": 20, "max_channels": 20}],
    "caller_ids": {"pool": ["+12125550199"]},
    "ring_timeout_s": 15,
    "amd": {"enabled": True, "action": "hangup"},
    "safe_harbor_message": "ivr/safe_harbor.wav",
    "timezone": "America/New_York",
}
