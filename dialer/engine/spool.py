"""A local spool for the end of calls that PostgreSQL could not take: while the database is down
no new call is placed, but the calls already in flight end, and their attempt, CDR and lead
update are written to a JSON-lines file and replayed, in order, once it answers again.

The replay uses the same `EngineStore.finish_attempt`, whose CDR insert is idempotent
(`ON CONFLICT (origination_uuid) DO NOTHING`), so an entry written twice records once.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

from dialer.campaigns import CallOutcome
from dialer.engine.calls import Call, CallState
from dialer.errors import StorageError
from esl.causes import HangupCause
from esl.protocol import Event

log = logging.getLogger(__name__)


def _encode_call(call: Call) -> dict:
    data = dataclasses.asdict(call)
    data["state"] = call.state.value
    data["outcome"] = call.outcome.value if call.outcome else None
    data["hangup_cause"] = call.hangup_cause.name if call.hangup_cause else None
    return data


def _decode_call(data: dict) -> Call:
    data = dict(data)
    data["state"] = CallState(data["state"])
    data["outcome"] = CallOutcome(data["outcome"]) if data["outcome"] else None
    data["hangup_cause"] = HangupCause[data["hangup_cause"]] if data["hangup_cause"] else None
    return Call(**data)


class EndSpool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.written = 0
        self.replayed = 0

    def write(self, call: Call, campaign_id: int, hangup: Event | None, advance_lead: bool) -> None:
        record = {"call": _encode_call(call), "campaign_id": campaign_id, "advance_lead": advance_lead,
                  "hangup": None if hangup is None else {"headers": hangup.headers, "body": hangup.body}}
        with self.path.open("a", encoding="utf-8") as spool:
            spool.write(json.dumps(record) + "\n")
            spool.flush()
            os.fsync(spool.fileno())
        self.written += 1

    def pending(self) -> bool:
        return self.path.exists() and self.path.stat().st_size > 0

    def replay(self, store, settings_of) -> int:
        """Write every spooled end, oldest first; stops at the first failure (kept for later).
        settings_of(campaign_id) gives the campaign's settings (retry rules)."""
        if not self.pending():
            return 0
        lines = self.path.read_text(encoding="utf-8").splitlines()
        done = 0
        for line in lines:
            record = json.loads(line)
            hangup = record["hangup"]
            event = Event(hangup["headers"], hangup["body"]) if hangup else None
            try:
                store.finish_attempt(_decode_call(record["call"]), settings_of(record["campaign_id"]), event,
                                     advance_lead=record["advance_lead"])
            except StorageError:
                break
            done += 1
        remaining = lines[done:]
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text("".join(line + "\n" for line in remaining), encoding="utf-8")
        temporary.replace(self.path)
        self.replayed += done
        if done:
            log.warning("replayed %d spooled call ends (%d left)", done, len(remaining))
        return done
