-- Compliance (issue 3), second part: registries that are whole lists (state lists, UK TPS/CTPS),
-- UK numbers in the same bitset storage, and a local copy of the FCC Reassigned Numbers Database.

-- UK numbers: key = the first 3 digits of a 10-digit national significant number (100-999) or
-- the first 2 of a 9-digit one (10-99); the bitset holds the 7-digit remainder, as for NANP.
ALTER TABLE compliance_dnc_snapshots DROP CONSTRAINT IF EXISTS compliance_dnc_snapshots_list_kind_check;
ALTER TABLE compliance_dnc_snapshots DROP CONSTRAINT IF EXISTS compliance_dnc_snapshots_npa_check;
ALTER TABLE compliance_dnc_snapshots ADD CONSTRAINT compliance_dnc_snapshots_list_kind_check
    CHECK (list_kind IN ('federal', 'state', 'tps', 'ctps'));
ALTER TABLE compliance_dnc_snapshots ADD CONSTRAINT compliance_dnc_snapshots_npa_check
    CHECK (npa BETWEEN 200 AND 999 OR (list_kind IN ('tps', 'ctps') AND npa BETWEEN 10 AND 999));

-- The same file imported again with a later snapshot date is a fresh copy (a list re-downloaded
-- unchanged): it moves the dates forward, so the date is part of what makes an import a repeat.
ALTER TABLE compliance_dnc_imports DROP CONSTRAINT IF EXISTS compliance_dnc_imports_list_kind_jurisdiction_mode_file_sha_key;
ALTER TABLE compliance_dnc_imports ADD CONSTRAINT compliance_dnc_imports_repeat_key
    UNIQUE (list_kind, jurisdiction, mode, file_sha256, snapshot_date);

-- A full import of a whole list (a state's list, TPS, CTPS) covers every area code or prefix:
-- those without a snapshot row hold no number, as of this date (change lists move it forward).
CREATE TABLE IF NOT EXISTS compliance_dnc_coverage (
    list_kind     text NOT NULL,
    jurisdiction  text NOT NULL,
    snapshot_date date NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (list_kind, jurisdiction)
);

-- Reassigned Numbers Database (47 CFR 64.1200(m)): permanent disconnections, number + date.
CREATE TABLE IF NOT EXISTS compliance_rnd_disconnections (
    phone_e164      text NOT NULL,
    disconnected_on date NOT NULL,
    PRIMARY KEY (phone_e164, disconnected_on)
);

-- Each RND import: the period its data covers (no data before covers_from or after data_through).
CREATE TABLE IF NOT EXISTS compliance_rnd_imports (
    id           bigserial PRIMARY KEY,
    source       text NOT NULL,
    file_sha256  text NOT NULL,
    covers_from  date NOT NULL,
    data_through date NOT NULL,
    lines        bigint NOT NULL,
    new_records  bigint NOT NULL,
    bad_lines    bigint NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (file_sha256, data_through)         -- the same file for a later date extends data_through
);
