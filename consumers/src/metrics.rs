//! Every Prometheus series the hub exports, declared once: its name, its
//! HELP text, and for histograms the buckets.
//!
//! Code records through the constants here, so a series cannot be renamed
//! in one place and forgotten in another, and [`describe`] (called once the
//! recorder is installed) gives each its HELP line. Histograms have
//! explicit buckets ([`HISTOGRAM_BUCKETS`]) so they render as Prometheus
//! histograms, which can be summed across nodes; a summary cannot.
//! The series the gateway records (`lad_ws_*`, `lad_live_records_*`) keep
//! their literal names in `src/gateway/` and are described here too.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

// Pipelines.
pub const BATCH_SECONDS: &str = "lad_batch_seconds";
pub const EVENTS_APPLIED: &str = "lad_events_applied_total";
pub const EVENTS_REJECTED: &str = "lad_events_rejected_total";
pub const EVENTS_DUPLICATE: &str = "lad_events_duplicate_total";
pub const RECORDS_ALREADY_APPLIED: &str = "lad_records_already_applied_total";
pub const PRODUCE_TO_COMMIT_SECONDS: &str = "lad_produce_to_commit_seconds";
pub const PIPELINE_RETRIES: &str = "lad_pipeline_retries_total";
pub const EPHEMERAL_DROPPED: &str = "lad_ephemeral_dropped_total";
pub const CONSUMER_LAG: &str = "lad_consumer_lag";
pub const OFFSETS_PAST_END: &str = "lad_consumer_offsets_past_end";
pub const OFFSETS_PAST_END_DETECTED: &str = "lad_consumer_offsets_past_end_total";
/// Failures of a loop (a pipeline or the relay), by kind: `transient`
/// (the database or broker is away; retrying is right) or `permanent` (a
/// bug or corrupt data; retrying alone will not fix it).
pub const LOOP_FAILURES: &str = "lad_loop_failures_total";

// Outbox and relay.
pub const OUTBOX_ROWS: &str = "lad_outbox_rows";
pub const OUTBOX_OLDEST_AGE_SECONDS: &str = "lad_outbox_oldest_age_seconds";
pub const RELAY_PUBLISH_SECONDS: &str = "lad_relay_publish_seconds";
pub const RELAY_ROWS: &str = "lad_relay_rows_total";
pub const RELAY_ERRORS: &str = "lad_relay_errors_total";

// Gateway.
pub const COMMIT_TO_SOCKET_SECONDS: &str = "lad_commit_to_socket_seconds";
pub const WS_REQUESTS_REFUSED: &str = "lad_ws_requests_refused_total";
pub const AUTH_FAILURES: &str = "lad_auth_failures_total";
pub const LIVE_READER_LAG: &str = "lad_live_reader_lag";

// Process and dependencies.
pub const DB_POOL_CONNECTIONS: &str = "lad_db_pool_connections";
pub const KAFKA_REACHABLE: &str = "lad_kafka_reachable";
pub const READY: &str = "lad_ready";
pub const DEDUPE_PARTITIONS_DROPPED: &str = "lad_dedupe_partitions_dropped_total";
pub const DEAD_LETTERS_EXPIRED: &str = "lad_dead_letters_expired_total";

/// Latency buckets, in seconds: fine below 100 ms where the SLOs live
/// (p99 <= 50 ms from produce to client), coarse up to a minute so a
/// stalled path still lands in a bucket rather than only in `+Inf`.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
];

/// Every histogram and its buckets (the exporter needs them by name).
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (BATCH_SECONDS, LATENCY_BUCKETS),
    (PRODUCE_TO_COMMIT_SECONDS, LATENCY_BUCKETS),
    (RELAY_PUBLISH_SECONDS, LATENCY_BUCKETS),
    (COMMIT_TO_SOCKET_SECONDS, LATENCY_BUCKETS),
];

/// Registers the HELP text of every series with the installed recorder.
pub fn describe() {
    describe_histogram!(
        BATCH_SECONDS,
        Unit::Seconds,
        "Duration of one batch transaction (fence, dedupe, writes, outbox, commit), by topic."
    );
    describe_counter!(
        EVENTS_APPLIED,
        "Events applied to Postgres, by input topic."
    );
    describe_counter!(
        EVENTS_REJECTED,
        "Input records dead-lettered (invalid, or refused by a rule or the database), by topic."
    );
    describe_counter!(
        EVENTS_DUPLICATE,
        "Events skipped because their event_id was already applied, by topic."
    );
    describe_counter!(
        RECORDS_ALREADY_APPLIED,
        "Records skipped because the stored offset already covers them (redelivery after a crash or rebalance), by topic. A steady rise with no restart suggests offsets past the end."
    );
    describe_histogram!(
        PRODUCE_TO_COMMIT_SECONDS,
        Unit::Seconds,
        "From a record's Kafka timestamp to the commit of the transaction that applied it, by topic."
    );
    describe_counter!(
        PIPELINE_RETRIES,
        "Batch attempts that failed and were retried, by topic and kind (transient or permanent)."
    );
    describe_counter!(
        EPHEMERAL_DROPPED,
        "Assistant deltas that could not be queued for lad.live.v1 (the completed reply still is)."
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Records of each input partition not applied yet: high watermark minus the offset stored in Postgres."
    );
    describe_gauge!(
        OFFSETS_PAST_END,
        "1 when the offset stored for a partition is past the partition's end (the topic was recreated): new records would be skipped as already applied until `lad-hub offsets reset`."
    );
    describe_counter!(
        OFFSETS_PAST_END_DETECTED,
        "Times a stored offset was found past its partition's end, by topic."
    );
    describe_counter!(
        LOOP_FAILURES,
        "Failed attempts of a loop (pipeline:<domain>, relay), by kind: transient (dependency away) or permanent (a bug or corrupt data)."
    );
    describe_gauge!(
        OUTBOX_ROWS,
        "Outbox rows committed and not yet published to Kafka."
    );
    describe_gauge!(
        OUTBOX_OLDEST_AGE_SECONDS,
        Unit::Seconds,
        "Age of the oldest outbox row (0 when the outbox is empty)."
    );
    describe_histogram!(
        RELAY_PUBLISH_SECONDS,
        Unit::Seconds,
        "Time the relay takes to publish one drain of outbox rows and have every record acknowledged."
    );
    describe_counter!(
        RELAY_ROWS,
        "Outbox rows published and deleted by the relay."
    );
    describe_counter!(
        RELAY_ERRORS,
        "Relay drains that failed, by kind (transient or permanent)."
    );
    describe_histogram!(
        COMMIT_TO_SOCKET_SECONDS,
        Unit::Seconds,
        "The hub's SLO: from the commit of a change to its dispatch to the subscribed sockets on this node (one sample per relayed message that had a subscriber)."
    );
    describe_counter!(
        WS_REQUESTS_REFUSED,
        "Client requests (subscribe, unsubscribe, malformed frames) answered with an error frame, by code."
    );
    describe_counter!(
        AUTH_FAILURES,
        "WebSocket upgrades refused with 401, by reason (missing, malformed, forged, wrong_algorithm, expired)."
    );
    describe_gauge!(
        LIVE_READER_LAG,
        "Records of lad.live.v1 this node has not dispatched yet, summed over partitions."
    );
    describe_gauge!(
        DB_POOL_CONNECTIONS,
        "Postgres pool connections, by state (in_use, idle)."
    );
    describe_gauge!(
        KAFKA_REACHABLE,
        "1 when the last metadata request to the brokers succeeded."
    );
    describe_gauge!(READY, "1 when /readyz answers 200.");
    describe_counter!(
        DEDUPE_PARTITIONS_DROPPED,
        "Daily partitions of hub_processed_events dropped once past the dedupe window."
    );
    describe_counter!(
        DEAD_LETTERS_EXPIRED,
        "hub_dead_letters rows deleted once past their retention."
    );

    // Recorded by the gateway (src/gateway/).
    describe_counter!(
        "lad_live_records_total",
        "Live records routed by the gateway, by source (topic, or local for in-process assistant deltas)."
    );
    describe_counter!(
        "lad_live_records_dropped_total",
        "Live records the gateway dropped, by reason (malformed, unknown_channel, tenant_mismatch, ...)."
    );
    describe_counter!(
        "lad_ws_deliveries_total",
        "Messages queued to sockets (one per subscriber)."
    );
    describe_gauge!("lad_ws_connections", "Open WebSocket connections.");
    describe_counter!(
        "lad_ws_refused_total",
        "WebSocket upgrades refused, by reason."
    );
    describe_counter!(
        "lad_ws_closes_total",
        "Sockets the hub closed, by close code (1001 shutdown, 1009 too big, 4001 expired, 4008 behind, 4009 silent)."
    );
    describe_counter!(
        "lad_ws_conflated_total",
        "State messages replaced in a socket's queue by a newer one for the same entity."
    );
    describe_counter!(
        "lad_ws_slow_client_disconnects_total",
        "Sockets cut because their event backlog passed LAD_WS_BACKLOG_BYTES."
    );
    describe_counter!(
        "lad_ws_log_replays_total",
        "`since` recoveries read back from lad.live.v1, by outcome."
    );
    describe_counter!(
        "lad_ws_log_replay_scans_total",
        "Reads of a lad.live.v1 partition serving the recoveries gathered together."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_histogram_has_increasing_buckets() {
        for (name, buckets) in HISTOGRAM_BUCKETS {
            assert!(!buckets.is_empty(), "{name}");
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}");
        }
    }

    #[test]
    fn every_series_the_dashboard_charts_is_declared_here() {
        let dashboard = include_str!("../../docs/grafana-dashboard.json");
        let declared = include_str!("metrics.rs");
        let mut charted = 0;
        for (at, _) in dashboard.match_indices("lad_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            let base = ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                declared.contains(&format!("\"{base}\"")),
                "{base} is charted but not declared"
            );
            charted += 1;
        }
        assert!(charted > 20);
    }

    #[test]
    fn the_latency_buckets_resolve_the_slo() {
        // p99 <= 50 ms must be readable from the histogram: a bucket edge at 50 ms.
        assert!(LATENCY_BUCKETS.contains(&0.05));
    }
}
