-- Campaigns, lead lists, leads, call attempts and CDRs (issue 6; reference: docs/campaigns.md).
--
-- The call flow claims leads with
--   SELECT id FROM leads
--    WHERE campaign_id = $1 AND status IN ('new', 'callable') AND next_attempt_at <= now()
--    ORDER BY window_closes_at NULLS LAST, next_attempt_at, id
--    LIMIT $2 FOR UPDATE SKIP LOCKED
-- which walks leads_claim in index order; expired leases are found through leads_lease.

CREATE TABLE IF NOT EXISTS campaigns (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
    status            text NOT NULL DEFAULT 'draft'
                      CHECK (status IN ('draft', 'running', 'paused', 'stopping', 'stopped')),
    settings          jsonb NOT NULL,                -- validated by dialer.campaigns.CampaignSettings
    settings_version  integer NOT NULL DEFAULT 1,    -- bumped on each change: engines reload on a new value
    owner_engine      text,                          -- campaign ownership lease (issue 7, several engines)
    owner_until       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    status_changed_at timestamptz NOT NULL DEFAULT now()
);

-- One list per (campaign, name); each import adds its counts to the list it names.
CREATE TABLE IF NOT EXISTS lead_lists (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    name             text NOT NULL,
    source_file      text NOT NULL,                 -- file of the latest import
    rows_read        bigint NOT NULL DEFAULT 0,
    imported         bigint NOT NULL DEFAULT 0,
    duplicates       bigint NOT NULL DEFAULT 0,
    rejected         bigint NOT NULL DEFAULT 0,
    imports          integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_imported_at timestamptz,
    UNIQUE (campaign_id, name)
);

CREATE TABLE IF NOT EXISTS leads (
    id               bigserial PRIMARY KEY,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    list_id          bigint NOT NULL REFERENCES lead_lists (id) ON DELETE CASCADE,
    phone_e164       text NOT NULL,
    phone_raw        text NOT NULL,                 -- the phone text as the file gave it
    first_name       text,
    last_name        text,
    address          text,
    city             text,
    state            text,                          -- two-letter code, upper case
    zip              text,
    tz_hint          text,                          -- IANA zone from the file, when it gave one
    person_id        text,                          -- Reg F: the person and the debt (7-in-7 caps)
    debt_id          text,
    line_type        text NOT NULL DEFAULT 'unknown' CHECK (line_type IN ('unknown', 'wireless', 'landline')),
    custom           jsonb,                         -- the file's other columns, by header
    status           text NOT NULL DEFAULT 'new'
                     CHECK (status IN ('new', 'callable', 'in_progress', 'callback', 'done', 'closed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    window_closes_at timestamptz,                   -- filled by the engine: when today's calling window ends
    last_outcome     text,
    last_attempt_at  timestamptz,
    close_reason     text,                          -- why status is closed (max_attempts, dnc, US-HRS, ...)
    callback_agent   text,                          -- a callback reserved for this agent, else anyone
    claimed_by       text,                          -- engine id holding the lease
    claimed_until    timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, phone_e164)
);
CREATE INDEX IF NOT EXISTS leads_claim ON leads (campaign_id, window_closes_at, next_attempt_at, id)
    WHERE status IN ('new', 'callable');
CREATE INDEX IF NOT EXISTS leads_callback ON leads (campaign_id, next_attempt_at) WHERE status = 'callback';
CREATE INDEX IF NOT EXISTS leads_lease ON leads (claimed_until) WHERE status = 'in_progress';
CREATE INDEX IF NOT EXISTS leads_list ON leads (list_id);
CREATE INDEX IF NOT EXISTS leads_phone ON leads (phone_e164);   -- inbound and returned calls find their lead

-- One row per originate, written (with our origination_uuid) before bgapi originate is sent.
CREATE TABLE IF NOT EXISTS call_attempts (
    id               bigserial PRIMARY KEY,
    origination_uuid uuid NOT NULL UNIQUE,
    lead_id          bigint NOT NULL REFERENCES leads (id) ON DELETE CASCADE,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    attempt_no       integer NOT NULL,
    phone_e164       text NOT NULL,
    engine_id        text NOT NULL,
    node             text,                          -- FreeSWITCH node the call went through
    gateway          text,
    caller_id        text,
    decision_id      text,                          -- the compliance decision that allowed it
    created_at       timestamptz NOT NULL DEFAULT now(),
    originated_at    timestamptz,
    answered_at      timestamptz,
    bridged_at       timestamptz,
    safe_harbor_at   timestamptz,                   -- when the safe-harbor message started (abandoned)
    ended_at         timestamptz,
    outcome          text CHECK (outcome IN ('human', 'busy', 'no_answer', 'machine', 'abandoned', 'failed')),
    hangup_cause     text,
    amd_result       text,
    amd_cause        text,
    agent_id         text,
    disposition      text
);
CREATE INDEX IF NOT EXISTS call_attempts_campaign ON call_attempts (campaign_id, created_at);
CREATE INDEX IF NOT EXISTS call_attempts_lead ON call_attempts (lead_id);
CREATE INDEX IF NOT EXISTS call_attempts_open ON call_attempts (engine_id) WHERE ended_at IS NULL;

-- The switch's own record from CHANNEL_HANGUP_COMPLETE; written once per call (spooled when
-- PostgreSQL is down), so INSERT ... ON CONFLICT (origination_uuid) DO NOTHING is the write.
CREATE TABLE IF NOT EXISTS cdrs (
    origination_uuid uuid PRIMARY KEY REFERENCES call_attempts (origination_uuid) ON DELETE CASCADE,
    campaign_id      bigint NOT NULL,
    hangup_cause     text NOT NULL,
    started_at       timestamptz NOT NULL,
    answered_at      timestamptz,
    ended_at         timestamptz NOT NULL,
    billsec_ms       bigint NOT NULL DEFAULT 0,
    amd_result       text,
    agent_id         text,
    disposition      text,
    variables        jsonb NOT NULL,                -- the event's timing and call variables
    recorded_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS cdrs_campaign ON cdrs (campaign_id, ended_at);
