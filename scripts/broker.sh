#!/usr/bin/env bash
# Installs the tansu Kafka-compatible broker if missing and starts it on
# 127.0.0.1:9092 unless something already listens there. For development
# and tests only: the hub speaks plain Kafka and runs against Apache Kafka.
#
#   scripts/broker.sh            start (idempotent)
#   scripts/broker.sh stop       stop the broker this script started
#
# Environment: TANSU_VERSION (0.6.0), LAD_BROKER_PORT (9092),
# LAD_BROKER_STORAGE (memory://tansu/; sqlite://FILE survives restarts).
set -euo pipefail

cd "$(dirname "$0")/.."
state_dir=.lad
mkdir -p "$state_dir"
port="${LAD_BROKER_PORT:-9092}"
version="${TANSU_VERSION:-0.6.0}"
storage="${LAD_BROKER_STORAGE:-memory://tansu/}"
pidfile="$state_dir/tansu.pid"
export PATH="$HOME/.cargo/bin:$PATH"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if [[ "${1:-start}" == "stop" ]]; then
  if [[ -f "$pidfile" ]] && pid="$(cat "$pidfile")" && kill "$pid" 2>/dev/null; then
    # Wait for it to let go of the port: a start right after a stop must
    # not find the dying broker still listening and take it for a live one.
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    echo "broker stopped"
  fi
  rm -f "$pidfile"
  exit 0
fi

if listening; then
  echo "broker already listening on 127.0.0.1:$port"
  exit 0
fi

if ! command -v tansu >/dev/null 2>&1; then
  echo "installing tansu $version (once per machine, about 10 minutes)..."
  cargo install tansu --version "$version" --locked --features dynostore,libsql
fi

echo "starting tansu on 127.0.0.1:$port (storage $storage, log $state_dir/tansu.log)"
nohup tansu broker \
  --listener-url "tcp://127.0.0.1:$port" \
  --advertised-listener-url "tcp://127.0.0.1:$port" \
  --storage-engine "$storage" >"$state_dir/tansu.log" 2>&1 &
echo $! >"$pidfile"

for _ in $(seq 1 100); do
  if listening; then
    echo "broker up"
    exit 0
  fi
  sleep 0.2
done
echo "broker did not start; see $state_dir/tansu.log" >&2
tail -20 "$state_dir/tansu.log" >&2 || true
exit 1
