-- =============================================================================
-- The hub's own tables: contract aggregates, live transcripts, and the
-- machinery of exactly-once (offsets, processed event ids, dead letters,
-- outbox). Aggregates are written once per key per batch, in key order.
-- =============================================================================

-- Contract §3. A call.ended whose agent is not known yet (its call.started
-- has not arrived) counts nowhere; it is added when the agent becomes known.
CREATE TABLE voice_call_stats_daily (
    tenant_id               uuid NOT NULL,
    day                     date NOT NULL,
    agent_id                uuid NOT NULL,
    calls_started           bigint NOT NULL DEFAULT 0 CHECK (calls_started >= 0),
    calls_answered          bigint NOT NULL DEFAULT 0 CHECK (calls_answered >= 0),
    calls_completed         bigint NOT NULL DEFAULT 0 CHECK (calls_completed >= 0),
    calls_failed            bigint NOT NULL DEFAULT 0 CHECK (calls_failed >= 0),
    total_duration_seconds  bigint NOT NULL DEFAULT 0 CHECK (total_duration_seconds >= 0),
    total_cost              numeric(20,6) NOT NULL DEFAULT 0 CHECK (total_cost >= 0),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day, agent_id)
);
CREATE INDEX voice_call_stats_daily_tenant_day_idx ON voice_call_stats_daily (tenant_id, day DESC);

-- Live transcript lines, one per (call, seq): a redelivered line is a no-op.
CREATE TABLE voice_call_transcripts (
    call_id      uuid NOT NULL,
    seq          integer NOT NULL CHECK (seq >= 0),
    tenant_id    uuid NOT NULL,
    speaker      text NOT NULL CHECK (speaker IN ('agent', 'lead')),
    text         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    event_id     uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (call_id, seq)
);
CREATE INDEX voice_call_transcripts_tenant_idx ON voice_call_transcripts (tenant_id, created_at DESC);

-- Contract §4.
CREATE TABLE campaign_step_stats (
    tenant_id    uuid NOT NULL,
    campaign_id  uuid NOT NULL,
    step_id      uuid NOT NULL,
    status       text NOT NULL,
    count        bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, campaign_id, step_id, status)
);

-- Contract §5: what was charged, by UTC day of occurred_at.
CREATE TABLE billing_cost_daily (
    tenant_id    uuid NOT NULL,
    day          date NOT NULL,
    feature_key  text NOT NULL,
    usage_count  bigint NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
    total_cost   numeric(20,6) NOT NULL DEFAULT 0 CHECK (total_cost >= 0),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, day, feature_key)
);

-- The offset fence: the next offset to apply per partition, written in the
-- same transaction as the writes it covers. NULL = never applied (the row
-- exists so that concurrent owners serialize on it with FOR UPDATE).
CREATE TABLE hub_consumer_offsets (
    consumer_group   text NOT NULL,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    next_offset      bigint,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

-- Every applied event_id, for duplicates that come back at another offset.
CREATE TABLE hub_processed_events (
    event_id      uuid PRIMARY KEY,
    processed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hub_processed_events_processed_at_idx ON hub_processed_events USING brin (processed_at);

CREATE TABLE hub_dead_letters (
    id               bigserial PRIMARY KEY,
    topic            text NOT NULL,
    kafka_partition  integer NOT NULL,
    kafka_offset     bigint NOT NULL,
    record_key       bytea,
    payload          bytea,
    reason           text NOT NULL,
    error_kind       text NOT NULL,
    event_id         uuid,
    tenant_id        uuid,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (topic, kafka_partition, kafka_offset)
);
CREATE INDEX hub_dead_letters_tenant_idx ON hub_dead_letters (tenant_id, created_at DESC) WHERE tenant_id IS NOT NULL;

-- Transactional outbox: one row per batch, drained in id order by the relay.
-- json, not jsonb: written once, read back once as text, never queried.
CREATE TABLE hub_outbox (
    id          bigserial PRIMARY KEY,
    records     json NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
