-- =============================================================================
-- Bounded tables.
--
-- hub_processed_events remembers applied event_ids for a window of days
-- (LAD_DEDUPE_WINDOW_DAYS), not forever. It is partitioned by the UTC day
-- an event was first applied, and the hub drops whole partitions once they
-- are past the window: no row-by-row deletes, no vacuum debt.
--
-- A partitioned table's unique key must contain the partition key, so
-- (event_id, applied_on) is unique, not event_id alone. The dedupe check
-- therefore looks an event_id up across every retained partition before
-- inserting it (see consumers/src/pipeline.rs), and near midnight UTC it
-- also writes the neighbouring day's row so that two transactions on either
-- side of midnight collide on one key (README: "Bounded tables").
--
-- hub_dead_letters keeps rows for LAD_DEAD_LETTER_RETENTION_DAYS; they are
-- few, so they are deleted by age (BRIN index on created_at), and
-- `replayed_at` records `lad-hub dead-letters replay`.
-- =============================================================================

ALTER TABLE hub_processed_events RENAME TO hub_processed_events_unbounded;
ALTER TABLE hub_processed_events_unbounded
    RENAME CONSTRAINT hub_processed_events_pkey TO hub_processed_events_unbounded_pkey;
ALTER INDEX hub_processed_events_processed_at_idx RENAME TO hub_processed_events_unbounded_processed_at_idx;

CREATE TABLE hub_processed_events (
    event_id    uuid NOT NULL,
    applied_on  date NOT NULL,
    PRIMARY KEY (event_id, applied_on)
) PARTITION BY RANGE (applied_on);

-- Creates the daily partitions from `window_days` ago to `ahead_days` ahead
-- and drops the ones older than the window. Returns how many it dropped.
-- Partitions are named hub_processed_events_YYYYMMDD; others are left alone.
CREATE FUNCTION lad_hub_dedupe_maintain(window_days integer, ahead_days integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    today    date := (now() AT TIME ZONE 'UTC')::date;
    part_day  date;
    part_name text;
    dropped  integer := 0;
BEGIN
    IF window_days < 1 THEN
        RAISE EXCEPTION 'the dedupe window must be at least one day, not %', window_days;
    END IF;
    -- Dropping a partition locks the parent briefly: never wait long for
    -- it behind a batch (the next run tries again).
    PERFORM set_config('lock_timeout', '5s', true);
    FOR part_day IN SELECT d::date FROM generate_series(today - window_days, today + ahead_days, interval '1 day') AS d LOOP
        part_name := 'hub_processed_events_' || to_char(part_day, 'YYYYMMDD');
        IF to_regclass(part_name) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF hub_processed_events FOR VALUES FROM (%L) TO (%L)',
                    part_name, part_day, part_day + 1);
            EXCEPTION WHEN duplicate_table THEN
                NULL; -- another hub created it meanwhile
            END;
        END IF;
    END LOOP;
    FOR part_name IN
        SELECT c.relname::text
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'hub_processed_events'::regclass
          AND c.relname ~ '^hub_processed_events_[0-9]{8}$'
          AND to_date(right(c.relname::text, 8), 'YYYYMMDD') < today - window_days
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE IF EXISTS %I', part_name);
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;

-- The default window; the hub applies its own at start and every
-- maintenance run.
SELECT lad_hub_dedupe_maintain(7);

INSERT INTO hub_processed_events (event_id, applied_on)
SELECT event_id, (processed_at AT TIME ZONE 'UTC')::date
FROM hub_processed_events_unbounded
WHERE (processed_at AT TIME ZONE 'UTC')::date BETWEEN (now() AT TIME ZONE 'UTC')::date - 7
                                                  AND (now() AT TIME ZONE 'UTC')::date + 3
ON CONFLICT DO NOTHING;

DROP TABLE hub_processed_events_unbounded;

ALTER TABLE hub_dead_letters ADD COLUMN replayed_at timestamptz;
CREATE INDEX hub_dead_letters_created_at_idx ON hub_dead_letters USING brin (created_at);
