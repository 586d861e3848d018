-- When AMD decided, so that "the safe-harbor message started within 2 s" can be checked from the
-- database (47 CFR 64.1200(a)(7)(i)).
ALTER TABLE call_attempts ADD COLUMN IF NOT EXISTS amd_decided_at timestamptz;
