#!/usr/bin/env bash
# Quick start: the broker, the hub on local defaults (local Postgres,
# migrations applied, topics created) and demo traffic. Prints the
# dashboard's URL with a dev token, and the one-line terminal client.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/broker.sh
# A random secret per checkout, made once and reused (tokens printed by an
# earlier run keep working); the hub refuses short or published ones.
if [ -z "${LAD_JWT_SECRET:-}" ]; then
  if [ ! -s .lad/jwt-secret ]; then
    mkdir -p .lad
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > .lad/jwt-secret)
  fi
  LAD_JWT_SECRET="$(cat .lad/jwt-secret)"
fi
export LAD_JWT_SECRET
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
