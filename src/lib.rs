//! # LAD live hub
//!
//! The real-time backbone of LAD: Kafka input topics → Postgres (one
//! transaction per batch, offsets included) → `lad.live.v1` → tenant-scoped
//! WebSocket channels. The pipelines live in the `lad-consumers` crate; this
//! crate runs them and serves the sockets.
//!
//! ## Layout
//!
//! - [`config`]: flags and environment variables of every subcommand.
//! - [`startup`]: builds the running hub (migrations, topics, relay, one
//!   pipeline per input topic, gateway, HTTP) and returns its address.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`readiness`]: the named checks of `/readyz` and their thresholds (pure).
//! - [`monitor`]: background checks: broker reachability, lag, offsets past
//!   the end, outbox and pool gauges.
//! - [`maintenance`]: bounded tables (dedupe partitions, dead letter retention).
//! - [`dead_letters`], [`offset_reset`]: operator commands.
//! - [`dashboard`]: `GET /`, the live dashboard (assets compiled in).
//! - [`auth`]: JWT verification (contract §7) and dev-token minting;
//!   [`jwks`] the identity provider's keys; [`secrets`] the secret rules and redaction.
//! - [`safety`]: what `serve` refuses to start without; limits; the snapshot pool.
//! - [`gateway`]: `GET /v1/ws`: channel registry, sessions, snapshots, and the
//!   reader of `lad.live.v1` that feeds them.
//! - [`demo`]: demo traffic and the event builders tests and benchmarks share.
//! - [`watch`]: a minimal WebSocket client for the terminal.

pub mod auth;
pub mod config;
pub mod dashboard;
pub mod dead_letters;
pub mod demo;
pub mod gateway;
pub mod http;
pub mod jwks;
pub mod maintenance;
pub mod monitor;
pub mod offset_reset;
pub mod readiness;
pub mod safety;
pub mod secrets;
pub mod startup;
pub mod watch;

/// Every binary that links the hub (`lad-hub`, `lad-bench`, the tests)
/// allocates with jemalloc: a batch makes and frees tens of thousands of
/// small strings across threads, and glibc's allocator was a fifth of the
/// hub's CPU in `lad-bench ingest` (BENCHMARKS.md, issue #14).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
