//! # LAD live hub
//!
//! The real-time backbone of LAD: Kafka input topics → Postgres (one
//! transaction per batch, offsets included) → `lad.live.v1` → tenant-scoped
//! WebSocket channels. The pipelines live in the `lad-consumers` crate; this
//! crate runs them and serves the sockets.
//!
//! ## Layout
//!
//! - [`auth`]: JWT verification (contract §7) and dev-token minting.
//! - [`gateway`]: `GET /v1/ws`: channel registry, sessions, snapshots, and the
//!   reader of `lad.live.v1` that feeds them.

pub mod auth;
pub mod gateway;
