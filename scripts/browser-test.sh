#!/usr/bin/env bash
# The dashboard in headless Chromium against a real hub: demo traffic for the
# demo tenant and for a second tenant, the page opened with the first
# tenant's token, the hub restarted under it. Screenshots go to
# target/browser/. Installs what it needs (Debian's chromium, the test's npm
# packages); never downloads a browser through npm.
# Needs the broker on KAFKA_BROKERS and Postgres as for scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

export KAFKA_BROKERS="${KAFKA_BROKERS:-127.0.0.1:9092}"
server_url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
server_url="${server_url%/*}"

if [ ! -x /usr/bin/chromium ]; then
  echo "browser: installing Debian's chromium"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/ws ]; then
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi
cargo build --locked --bin lad-hub
hub="$root/target/debug/lad-hub"

broker_host="${KAFKA_BROKERS%%,*}"
for _ in $(seq 1 120); do
  (exec 3<>"/dev/tcp/${broker_host%:*}/${broker_host##*:}") 2>/dev/null && break
  sleep 1
done
(exec 3<>"/dev/tcp/${broker_host%:*}/${broker_host##*:}") 2>/dev/null || {
  echo "browser: no broker on $broker_host" >&2
  exit 1
}

run="b$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
db="lad_browser_$run"
out="$root/target/browser"
mkdir -p "$out"
rm -f "$out"/*.png "$out"/hub.log "$out"/demo-b.log

export DATABASE_URL="$server_url/$db"
export LAD_HTTP_ADDR="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
LAD_JWT_SECRET="$(head -c 36 /dev/urandom | base64 | tr -d '\n/+=' | head -c 48)"
export LAD_JWT_SECRET
export LAD_TOPIC_VOICE="$run.voice" LAD_TOPIC_CAMPAIGNS="$run.campaigns" LAD_TOPIC_BILLING="$run.billing"
export LAD_TOPIC_AI="$run.ai" LAD_TOPIC_LIVE="$run.live" LAD_TOPIC_DEAD_LETTERS="$run.dead-letters"
export LAD_CONSUMER_GROUP="$run.hub" LAD_TOPIC_PARTITIONS=3 LAD_DB_POOL_SIZE=6
# One record per producer batch and short sessions: the hub is restarted
# under the page, and tansu needs both for that (ARCHITECTURE.md).
export LAD_KAFKA_PRODUCER_PROPS="batch.num.messages=1"
export LAD_KAFKA_CONSUMER_PROPS="session.timeout.ms=6000,heartbeat.interval.ms=1000"
export RUST_LOG="${RUST_LOG:-info,rdkafka=warn,sqlx=warn}"

tenant_b="$(python3 -c 'import uuid; print(uuid.uuid4())')"
# The test writes the ids of the processes it starts (hub, second demo)
# here, so that they go even if it dies.
pid_file="$out/pids"
: >"$pid_file"
cleanup() {
  status=$?
  while read -r pid; do
    kill "$pid" 2>/dev/null || true
  done <"$pid_file"
  rm -f "$pid_file"
  dropdb --if-exists --force -h 127.0.0.1 -U postgres "$db" 2>/dev/null ||
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
  exit "$status"
}
trap cleanup EXIT INT TERM

export LAD_HUB_BIN="$hub"
export BROWSER_TENANT_A="$("$hub" token --print-tenant)"
export BROWSER_TENANT_B="$tenant_b"
export BROWSER_TOKEN_A="$("$hub" token --role admin --ttl 3600)"
export BROWSER_TOKEN_B="$("$hub" token --tenant "$tenant_b" --role admin --ttl 3600)"
export BROWSER_TOKEN_VIEWER="$("$hub" token --role member --ttl 3600 --user "$(python3 -c 'import uuid; print(uuid.uuid4())')")"
export BROWSER_OUT="$out" BROWSER_PID_FILE="$pid_file"

node tests/browser/dashboard.test.mjs
