//! One test binary: every test against the real Postgres (its own database)
//! and the real broker (its own topics).

mod ai;
mod billing;
mod campaigns;
mod delivery;
mod gateway;
mod migrate;
mod ops;
mod shutdown;
mod support;
mod voice;
