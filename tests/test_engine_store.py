"""The engine's store on a real PostgreSQL: claims, window ordering, requeue, leases."""
from __future__ import annotations

from datetime import datetime, timezone

from dialer import storage
from dialer.engine.store import EngineStore, window_close
from tests.engine_world import BASE_SETTINGS, create_campaign

ZONES = {"+12125550150": ("America/New_York",), "+12135550150": ("America/Los_Angeles",),
         "+18085550150": ("Pacific/Honolulu",)}


def test_window_close_is_the_next_9pm_in_the_earliest_zone():
    noon_et = datetime(2026, 11, 24, 17, 0, tzinfo=timezone.utc)
    assert window_close(("America/New_York",), noon_et) == datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
    assert window_close(("America/Los_Angeles", "America/New_York"), noon_et) == \
        datetime(2026, 11, 25, 2, 0, tzinfo=timezone.utc)
    late_et = datetime(2026, 11, 25, 3, 0, tzinfo=timezone.utc)   # 10 pm in New York
    assert window_close(("America/New_York",), late_et) == datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
    assert window_close(("Not/AZone",), noon_et) is None


def test_claims_take_the_soonest_closing_window_first_and_never_twice(db_url):
    campaign_id = create_campaign(db_url, "order", BASE_SETTINGS, list(ZONES))
    store_a, store_b = EngineStore(db_url, "a"), EngineStore(db_url, "b")
    now = datetime(2026, 11, 24, 20, 0, tzinfo=timezone.utc)
    assert store_a.refresh_windows(campaign_id, lambda phone: ZONES[phone], now) == 3
    first = store_a.claim_leads(campaign_id, 1)
    second = store_b.claim_leads(campaign_id, 5)
    assert [lead.phone_e164 for lead in first] == ["+12125550150"]          # New York closes first
    assert [lead.phone_e164 for lead in second] == ["+12135550150", "+18085550150"]
    assert store_a.claim_leads(campaign_id, 5) == []
    store_b.requeue(second[0].id, None, "no_capacity")
    assert [lead.phone_e164 for lead in store_a.claim_leads(campaign_id, 5)] == ["+12135550150"]
    assert store_a.release_claims() == 2
    with storage.connect_db(db_url) as conn:
        statuses = dict(conn.execute("SELECT phone_e164, status FROM leads").fetchall())
    # Never dialed: back to new, whatever the requeue said; the other engine still holds its own.
    assert statuses == {"+12125550150": "new", "+12135550150": "new", "+18085550150": "in_progress"}
    for store in (store_a, store_b):
        store.close()


def test_a_stopping_campaign_gives_back_only_its_own_claims(db_url):
    """QA: a stopping campaign's runner freed every claim of its engine, also another campaign's
    lead between its claim and its attempt row: a second engine could dial it at the same time."""
    stopping = create_campaign(db_url, "stopping", BASE_SETTINGS, ["+12125550161"])
    other = create_campaign(db_url, "other", BASE_SETTINGS, ["+12125550162"])
    store = EngineStore(db_url, "a")
    assert len(store.claim_leads(stopping, 5)) == 1 and len(store.claim_leads(other, 5)) == 1
    assert store.release_claims(stopping) == 1
    with storage.connect_db(db_url) as conn:
        statuses = dict(conn.execute("SELECT phone_e164, status FROM leads").fetchall())
    assert statuses == {"+12125550161": "new", "+12125550162": "in_progress"}
    assert store.release_claims() == 1          # shutdown: every campaign's
    store.close()


def test_expired_leases_come_back(db_url):
    campaign_id = create_campaign(db_url, "lease", BASE_SETTINGS, ["+12125550150"])
    store = EngineStore(db_url, "dead-engine")
    (lead,) = store.claim_leads(campaign_id, 1)
    with storage.connect_db(db_url) as conn:
        conn.execute("UPDATE leads SET claimed_until = now() - interval '1 second'")
        conn.commit()
    assert EngineStore(db_url, "survivor").recover_expired_leases() == []   # no attempt was open
    assert [l.id for l in EngineStore(db_url, "survivor").claim_leads(campaign_id, 1)] == [lead.id]
    store.close()


def test_clock_skew_is_measured_against_the_database(db_url):
    store = EngineStore(db_url, "x")
    assert abs(store.db_clock_skew()) < 1.0
    store.close()


def test_an_attempt_left_open_by_a_dead_engine_is_closed_and_named(db_url):
    """QA 2: the survivor closed a dead engine's open attempts as failed/engine_lost but published
    no call_ended: it now gets each one's uuid, node, campaign and outcome to say so."""
    import uuid as uuid_lib
    from dialer.engine.calls import Call
    campaign_id = create_campaign(db_url, "lost", BASE_SETTINGS, ["+12125550151"])
    dead = EngineStore(db_url, "dead-engine")
    (lead,) = dead.claim_leads(campaign_id, 1)
    call = Call(uuid=str(uuid_lib.uuid4()), campaign="lost", lead_id=lead.id, number=lead.phone_e164,
                gateway="gw1", caller_id="+12125550199", node="fs1")
    dead.create_attempt(call, lead, campaign_id, str(uuid_lib.uuid4()))
    with storage.connect_db(db_url) as conn:
        conn.execute("UPDATE leads SET claimed_until = now() - interval '1 second'")
        conn.commit()
    survivor = EngineStore(db_url, "survivor")
    assert survivor.recover_expired_leases() == [(call.uuid, "fs1", "lost", "failed")]
    for store in (dead, survivor):
        store.close()
