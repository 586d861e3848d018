-- Counter keys an allowed call was counted in (Decision.counter_keys), so the Redis frequency
-- counters can be rebuilt exactly from compliance_call_attempts (dialer.compliance.attempts).
ALTER TABLE compliance_call_attempts ADD COLUMN IF NOT EXISTS counter_keys text[] NOT NULL DEFAULT '{}';
