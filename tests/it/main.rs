//! One test binary: every test against the real Postgres (its own database)
//! and the real broker (its own topics).

mod ai;
mod billing;
mod campaigns;
mod delivery;
mod faults;
mod gateway;
mod jwks;
mod migrate;
mod ops;
mod outbox;
mod safety;
mod shutdown;
mod support;
mod tenant_ids;
mod voice;
