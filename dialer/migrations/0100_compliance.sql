-- Compliance gate (issue 3): do-not-call registries and lists, consent records, call attempts
-- for frequency caps, and the append-only, hash-chained audit of every decision.

-- Registry snapshots: one row per (list, jurisdiction, area code); the bitset itself is a file
-- under the data directory named by its SHA-256 (see dialer/compliance/registry.py).
CREATE TABLE IF NOT EXISTS compliance_dnc_snapshots (
    list_kind     text NOT NULL CHECK (list_kind IN ('federal', 'state', 'tps')),
    jurisdiction  text NOT NULL,                 -- 'US' (national) or a state code
    npa           integer NOT NULL CHECK (npa BETWEEN 200 AND 999),
    snapshot_date date NOT NULL,
    number_count  bigint NOT NULL,
    source        text NOT NULL,
    sha256        text NOT NULL,
    file_path     text NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_kind, jurisdiction, npa)
);

-- Every import of a full file or change list; (kind, jurisdiction, mode, file hash) makes re-imports no-ops.
CREATE TABLE IF NOT EXISTS compliance_dnc_imports (
    id            bigserial PRIMARY KEY,
    list_kind     text NOT NULL,
    jurisdiction  text NOT NULL,
    mode          text NOT NULL CHECK (mode IN ('full', 'changes')),
    source        text NOT NULL,
    file_sha256   text NOT NULL,
    snapshot_date date NOT NULL,
    area_codes    integer NOT NULL,
    numbers       bigint NOT NULL,
    added         bigint NOT NULL,
    removed       bigint NOT NULL,
    lines         bigint NOT NULL,
    bad_lines     bigint NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (list_kind, jurisdiction, mode, file_sha256)
);

-- Company (internal), campaign and custom (litigators, ...) entries: who, when, source, why.
-- Removal keeps the row (removed_*), so the history is kept for 5 years (47 CFR 64.1200(d)(6)).
CREATE TABLE IF NOT EXISTS compliance_dnc_entries (
    id             bigserial PRIMARY KEY,
    list_kind      text NOT NULL CHECK (list_kind IN ('internal', 'campaign', 'custom')),
    scope          text NOT NULL DEFAULT '',     -- campaign id, custom list name, '' for internal
    phone_e164     text NOT NULL,
    added_by       text NOT NULL,
    added_at       timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL,
    reason         text NOT NULL DEFAULT '',
    retain_until   timestamptz NOT NULL,
    removed_by     text,
    removed_at     timestamptz,
    removal_reason text
);
CREATE UNIQUE INDEX IF NOT EXISTS compliance_dnc_entries_active
    ON compliance_dnc_entries (phone_e164, list_kind, scope) WHERE removed_at IS NULL;

-- Consent and relationship records; a revocation voids every earlier consent of the same seller.
CREATE TABLE IF NOT EXISTS compliance_consents (
    id           bigserial PRIMARY KEY,
    phone_e164   text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('express', 'written', 'ebr_purchase', 'ebr_inquiry', 'revocation')),
    seller       text NOT NULL DEFAULT '',       -- '' = every seller of the company
    occurred_at  timestamptz NOT NULL,
    source       text NOT NULL,
    recorded_by  text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    evidence     text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS compliance_consents_phone ON compliance_consents (phone_e164, occurred_at);

-- Call attempts and outcomes, written by the engine: the system of record the Redis frequency
-- counters are rebuilt from (dialer.compliance.counters.rebuild_from_attempts).
CREATE TABLE IF NOT EXISTS compliance_call_attempts (
    id           bigserial PRIMARY KEY,
    decision_id  text NOT NULL UNIQUE,           -- Decision.decision_id that allowed the call
    phone_e164   text NOT NULL,
    campaign_id  text NOT NULL,
    seller       text NOT NULL DEFAULT '',
    subject      text NOT NULL DEFAULT '',
    person_id    text,
    debt_id      text,
    attempted_at timestamptz NOT NULL,
    outcome      text CHECK (outcome IN ('no_connect', 'answered', 'conversation', 'abandoned', 'machine', 'declined')),
    outcome_at   timestamptz
);
CREATE INDEX IF NOT EXISTS compliance_call_attempts_phone ON compliance_call_attempts (phone_e164, attempted_at);

-- Audit: one row per decision, allowed or not; row_hash = sha256(prev_hash || record), so any
-- change or deletion breaks the chain. Updates and deletes are refused.
CREATE TABLE IF NOT EXISTS compliance_audit (
    id          bigserial PRIMARY KEY,
    decided_at  timestamptz NOT NULL,
    decision_id text NOT NULL,
    phone_e164  text NOT NULL,
    campaign_id text NOT NULL,
    allowed     boolean NOT NULL,
    reasons     text[] NOT NULL,
    record      text NOT NULL,                   -- canonical JSON of request and decision
    prev_hash   text NOT NULL,
    row_hash    text NOT NULL
);
CREATE INDEX IF NOT EXISTS compliance_audit_phone ON compliance_audit (phone_e164, decided_at);
CREATE INDEX IF NOT EXISTS compliance_audit_campaign ON compliance_audit (campaign_id, decided_at);

CREATE OR REPLACE FUNCTION compliance_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'compliance_audit is append-only';
END $$;
DROP TRIGGER IF EXISTS compliance_audit_no_change ON compliance_audit;
CREATE TRIGGER compliance_audit_no_change BEFORE UPDATE OR DELETE ON compliance_audit
    FOR EACH ROW EXECUTE FUNCTION compliance_audit_append_only();
