-- =============================================================================
-- A call's rows remember the events merged into them.
--
-- call.started, call.answered and call.ended all merge into one
-- voice_call_logs row, and call.analyzed into one voice_call_analysis row,
-- which the voice pipeline locks and rewrites in the batch's transaction
-- anyway. Keeping the merged event_ids on those rows makes the rows what
-- dedupes them: a repeat is found in the row the batch has just locked, at
-- any age, with no lookup across hub_processed_events' daily partitions and
-- no row of its own there (that lookup and insert were the largest single
-- statement of a voice batch: BENCHMARKS.md, issue #14).
-- A call receives a handful of such events, so the arrays stay small.
-- Adding a column with a constant default rewrites nothing. Rows written
-- before this migration start with no ids: a repeat of an event they
-- already hold changes nothing all the same when its content is the same
-- (each step keeps its earliest event, an analysis its latest), and its id
-- is recorded from then on.
-- =============================================================================

ALTER TABLE voice_call_logs ADD COLUMN applied_event_ids uuid[] NOT NULL DEFAULT '{}';
ALTER TABLE voice_call_analysis ADD COLUMN applied_event_ids uuid[] NOT NULL DEFAULT '{}';
