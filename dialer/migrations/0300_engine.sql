-- The engine's own tables: agents, the abandon account (47 CFR 64.1200(a)(7): abandoned calls
-- over live-answered calls per campaign, measured over any 30-day period), and outcomes the call
-- flow records beyond the retry classes.

CREATE TABLE IF NOT EXISTS agents (
    agent_id     text PRIMARY KEY,
    name         text NOT NULL DEFAULT '',
    endpoint     text NOT NULL,                   -- FreeSWITCH dial string of the agent's phone
    campaign_id  bigint REFERENCES campaigns (id) ON DELETE SET NULL,
    state        text NOT NULL DEFAULT 'logged_out'
                 CHECK (state IN ('logged_out', 'ready', 'paused', 'on_call', 'wrap_up')),
    pause_reason text,
    state_since  timestamptz NOT NULL DEFAULT now(),
    engine_id    text,
    leg_uuid     uuid
);

-- Every agent state change, for reports and the time-in-state statistics.
CREATE TABLE IF NOT EXISTS agent_state_log (
    id          bigserial PRIMARY KEY,
    agent_id    text NOT NULL REFERENCES agents (agent_id) ON DELETE CASCADE,
    state       text NOT NULL,
    reason      text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS agent_state_log_agent ON agent_state_log (agent_id, at);

-- Live answers and abandons per campaign and clock hour (UTC). Windows of 30 days, a day or an
-- hour are sums over these rows, so every window the rules name is exact to the hour boundary,
-- and several engines add to the same rows with one UPSERT each.
CREATE TABLE IF NOT EXISTS abandon_hours (
    campaign_id bigint NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    hour        timestamptz NOT NULL,
    live        integer NOT NULL DEFAULT 0,
    abandoned   integer NOT NULL DEFAULT 0,
    machines    integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour)
);

ALTER TABLE call_attempts ADD COLUMN IF NOT EXISTS detail text;
