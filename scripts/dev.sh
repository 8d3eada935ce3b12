#!/usr/bin/env bash
# Quick start: the broker, the hub on local defaults (local Postgres,
# migrations applied, topics created) and demo traffic. Prints the
# dashboard's URL with a dev token, and the one-line terminal client.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh
export LAD_JWT_SECRET="${LAD_JWT_SECRET:-dev-secret-change-me}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/lad_hub}"
export LAD_HTTP_ADDR="${LAD_HTTP_ADDR:-127.0.0.1:8080}"

cargo build --release --locked --bin lad-hub
hub=target/release/lad-hub
token="$("$hub" token)"
tenant="$("$hub" token --print-tenant)"
cat <<MSG

  Open the live dashboard (demo tenant, dev token):

    http://$LAD_HTTP_ADDR/?token=$token

  lad-hub is starting on http://$LAD_HTTP_ADDR with demo traffic.
  Or watch live calls from another terminal:

    $hub watch --url ws://$LAD_HTTP_ADDR/v1/ws --token $token tenant:$tenant:calls

  (or any WebSocket client: ws://$LAD_HTTP_ADDR/v1/ws?token=<token>, then
   send {"op":"subscribe","id":1,"channel":"tenant:$tenant:calls"})

MSG
exec "$hub" serve --demo
