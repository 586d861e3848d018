-- A call that rang unanswered is its own outcome, 'no_answer': it reached the dialed number, so
-- Reg F's 7-in-7 counts it (12 CFR 1006.14(b)(3) leaves out only calls that do not connect:
-- a busy signal, a number not in service), while 'no_connect' stays uncounted.
ALTER TABLE compliance_call_attempts DROP CONSTRAINT IF EXISTS compliance_call_attempts_outcome_check;
ALTER TABLE compliance_call_attempts ADD CONSTRAINT compliance_call_attempts_outcome_check
    CHECK (outcome IN ('no_connect', 'no_answer', 'answered', 'conversation', 'abandoned', 'machine', 'declined'));
