-- =============================================================================
-- A batch's outbox row in two parts.
--
-- The lanes of a pipeline take turns on the rows every batch shares (an
-- agent's day, a tenant's wallet) from a batch's first lock on one of them
-- to its commit. The outbox row was written inside that turn, and it is
-- megabytes, two thirds of them the updates made before it (calls, lines,
-- analyses). A large batch now writes those first, before its first shared
-- lock, under a provisional negative id (`ahead`), and at the end gives the
-- row its final id, in commit order as before, with the records it made
-- since (`tail`, NULL when there are none). The relay publishes `ahead`
-- then `tail`. A row written at once keeps its records in `records`, as
-- before. Measured in BENCHMARKS.md (issue #14).
--
-- Why not `records` for the first part: a relay of an older hub reads
-- `records` only. During a rolling upgrade it would publish a row's first
-- part and silently drop its tail. A NULL `records` is an error it retries
-- instead (its drains fail, /readyz goes red on a stall), while the relays
-- of this version, which share the relay lock with it, publish the row.
-- =============================================================================

ALTER TABLE hub_outbox ALTER COLUMN records DROP NOT NULL;
ALTER TABLE hub_outbox ADD COLUMN ahead text;
ALTER TABLE hub_outbox ADD COLUMN tail text;
ALTER TABLE hub_outbox ADD CONSTRAINT hub_outbox_written_once_or_ahead
    CHECK ((records IS NULL) <> (ahead IS NULL) AND (tail IS NULL OR ahead IS NOT NULL));

-- As `records` (migration 0003): lz4, or uncompressed without it.
DO $$
BEGIN
    ALTER TABLE hub_outbox ALTER COLUMN ahead SET COMPRESSION lz4;
    ALTER TABLE hub_outbox ALTER COLUMN tail SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE hub_outbox ALTER COLUMN ahead SET STORAGE EXTERNAL;
    ALTER TABLE hub_outbox ALTER COLUMN tail SET STORAGE EXTERNAL;
END
$$;
