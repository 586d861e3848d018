-- Append one audit row in one round trip. The advisory lock orders writers; the last row is read
-- in a statement after the lock was granted (READ COMMITTED: a fresh snapshot per statement), so
-- the chain never forks. row_hash = sha256(prev_hash || E'\n' || record), as in dialer/compliance/audit.py.
CREATE OR REPLACE FUNCTION compliance_audit_append(
    p_decided_at timestamptz, p_decision_id text, p_phone text, p_campaign text,
    p_allowed boolean, p_reasons text[], p_record text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    prev text;
    new_id bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(109330228604025);   -- 0x636F6D706C79, "comply"
    SELECT row_hash INTO prev FROM compliance_audit ORDER BY id DESC LIMIT 1;
    prev := coalesce(prev, repeat('0', 64));
    INSERT INTO compliance_audit (decided_at, decision_id, phone_e164, campaign_id, allowed, reasons,
                                  record, prev_hash, row_hash)
    VALUES (p_decided_at, p_decision_id, p_phone, p_campaign, p_allowed, p_reasons, p_record, prev,
            encode(sha256(convert_to(prev || E'\n' || p_record, 'UTF8')), 'hex'))
    RETURNING id INTO new_id;
    RETURN new_id;
END $$;
