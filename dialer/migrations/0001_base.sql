-- Base schema: the engine's nodes and an audit of process starts. Later migrations add
-- compliance, campaigns, leads, calls and agents.
CREATE TABLE IF NOT EXISTS engine_nodes (
    node_id      text PRIMARY KEY,
    hostname     text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
