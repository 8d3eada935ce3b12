-- The outbox's rows are megabytes (a whole batch's live updates), written
-- once and read back once as text. Measured on a 2.5 MB row (BENCHMARKS.md):
-- as json with the default pglz compression the insert took ~24 ms in
-- Postgres, as text with lz4 ~2 ms. The hub writes the text with serde and
-- the relay parses it anyway, so Postgres need not validate it as json.
ALTER TABLE hub_outbox ALTER COLUMN records TYPE text;

-- A server built without lz4 keeps the rows uncompressed (~5 ms) rather
-- than falling back to pglz.
DO $$
BEGIN
    ALTER TABLE hub_outbox ALTER COLUMN records SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE hub_outbox ALTER COLUMN records SET STORAGE EXTERNAL;
END
$$;
