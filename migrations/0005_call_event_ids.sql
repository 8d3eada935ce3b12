-- =============================================================================
-- A call's row remembers the events applied to it.
--
-- call.started, call.answered and call.ended all merge into one
-- voice_call_logs row, which the voice pipeline already locks and rewrites
-- in the same transaction. Keeping their event_ids on that row makes the row
-- what dedupes them: a repeat is found in the row the batch has just locked,
-- at any age, with no lookup across hub_processed_events' daily partitions
-- and no row of its own there (that lookup and insert were the largest
-- single cost of a voice batch: BENCHMARKS.md, issue #14).
-- A call receives a handful of lifecycle events, so the array stays small.
-- Adding a column with a constant default rewrites nothing.
-- =============================================================================

ALTER TABLE voice_call_logs ADD COLUMN applied_event_ids uuid[] NOT NULL DEFAULT '{}';
