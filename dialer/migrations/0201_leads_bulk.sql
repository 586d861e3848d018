-- Bulk import speed (measured with benchmarks/leads_import.py, docs/campaigns.md):
-- * the per-row foreign-key triggers of leads.campaign_id and leads.list_id took as long as all
--   the rest of the INSERT of a 1M-row import. The importer is the only writer of new leads and
--   resolves both ids inside the import's own transaction; the dialer never deletes campaigns or
--   lists (they are stopped, not removed).
-- * phone_e164 holds only '+' and digits: the "C" collation compares it with memcmp instead of
--   the locale's strcoll, in the unique index and in the import's DISTINCT ON sort.
-- * leads_list served only the list foreign key; leads_phone duplicated the unique index, which
--   serves a lookup by number as `campaign_id = ANY($campaigns) AND phone_e164 = $1`.
ALTER TABLE leads DROP CONSTRAINT IF EXISTS leads_campaign_id_fkey;
ALTER TABLE leads DROP CONSTRAINT IF EXISTS leads_list_id_fkey;
DROP INDEX IF EXISTS leads_list;
DROP INDEX IF EXISTS leads_phone;
ALTER TABLE leads ALTER COLUMN phone_e164 TYPE text COLLATE "C";
