#!/usr/bin/env bash
# The whole test suite against the real Postgres and the real broker:
# starts the broker (installing it if needed), then runs every test.
# Needs Postgres on 127.0.0.1:5432 (user postgres, trust auth) or DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"

cargo fmt --all -- --check
# Tests that share one broker run a few at a time: two cores, and every
# test owns its topics and its database anyway.
# The flood test compares ingestion latency with and without a subscribe
# flood, so it runs alone and first: beside three other tests' hubs the
# machine's load swamps the difference it measures (seen: 86 ms idle), and
# after the suite an in-memory broker holding every test's topics doubled
# its idle latency (46 ms, against 20 ms on a fresh one).
flood=safety::a_subscribe_flood_leaves_ingestion_latency_within_twice_idle
cargo test --locked --test it -- --exact "$flood"
cargo test --workspace --locked -- --test-threads="${LAD_TEST_THREADS:-4}" --skip "$flood"

# The JavaScript client: its generated types and its bundle match their
# sources, and its unit tests pass against a fake hub.
(cd clients/js && npm ci --no-audit --no-fund && npm run check && npm test)
# The dashboard in headless Chromium against a real hub.
scripts/browser-test.sh
