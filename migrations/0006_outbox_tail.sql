-- =============================================================================
-- A batch's outbox row in two parts.
--
-- The lanes of a pipeline take turns on the rows every batch shares (an
-- agent's day, a tenant's wallet) from a batch's first lock on one of them
-- to its commit. The outbox row was written inside that turn, and it is
-- megabytes, two thirds of them the updates made before it (calls, lines,
-- analyses). A batch now writes those first, under a provisional negative
-- id, before its first shared lock (`records`), and at the end gives the
-- row its final id, in commit order as before, with the records it made
-- since (`tail`, NULL when there are none). The relay publishes `records`
-- then `tail`. Rows written before this migration have no tail.
-- Measured in BENCHMARKS.md (issue #14).
-- =============================================================================

ALTER TABLE hub_outbox ADD COLUMN tail text;

-- As `records` (migration 0003): lz4, or uncompressed without it.
DO $$
BEGIN
    ALTER TABLE hub_outbox ALTER COLUMN tail SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    ALTER TABLE hub_outbox ALTER COLUMN tail SET STORAGE EXTERNAL;
END
$$;
