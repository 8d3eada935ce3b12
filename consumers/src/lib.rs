//! # LAD live hub pipelines
//!
//! Kafka input topics → one Postgres transaction per batch → outbox → `lad.live.v1`.
//!
//! ## Layout
//!
//! - [`envelope`]: the event envelope of contract §2 and the typed field readers (pure).
//! - [`pipeline`]: the batch loop every topic shares, and [`pipeline::Domain`],
//!   the trait each domain implements.
//! - [`offsets`]: the offset fence (next offsets stored in the batch's own transaction).
//! - [`dead_letters`], [`outbox`]: rejected records, and the transactional outbox and its relay.
//! - [`live`]: live updates and channel names, shared with the gateway.
//! - [`kafka`]: librdkafka configuration with user overrides, topic creation.
//! - [`instant`]: UTC instants as RFC 3339 text (chrono's text, written and read faster).
//! - [`metrics`]: every Prometheus series, its HELP text and buckets.
//! - [`health`]: what each loop reports to readiness (busy since, failing how).
//! - `store_util`: SQL shapes the domains' stores share (locking rows by id).
//! - One module per domain, each with the same files:
//!   `event.rs` (types and decoding), `apply.rs` (pure merge/aggregate logic),
//!   `store.rs` (SQL), `live.rs` (the messages it pushes), and `mod.rs` (the [`pipeline::Domain`]):
//!   [`voice`], [`billing`], [`campaigns`], [`ai`].

pub mod ai;
pub mod billing;
pub mod campaigns;
pub mod dead_letters;
pub mod envelope;
pub mod health;
pub mod instant;
pub mod kafka;
pub mod live;
pub mod metrics;
pub mod offsets;
pub mod outbox;
pub mod pipeline;
mod store_util;
pub mod voice;
