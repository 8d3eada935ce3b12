#!/usr/bin/env bash
# Compares two builds on `lad-bench ingest`, interleaved, because one
# build's figures swing by a fifth within minutes on a shared machine
# (BENCHMARKS.md): a single pair says little, the mean of many does.
#
#   scripts/bench-ab.sh A_BIN B_BIN [ROUNDS] [-- INGEST_ARGS...]
#
# A_BIN and B_BIN are `lad-bench` binaries (copy each build's
# `target/release/lad-bench` aside first). Each round runs both, A first
# in odd rounds and B first in even ones, and the broker is restarted
# before every run: a run on a broker that earlier runs filled is slower,
# which would otherwise favour whichever build runs first. ROUNDS
# defaults to 5; INGEST_ARGS default to `--no-baseline`.
#
# Prints every run and then, per build, the means of events/s, hub ÷ COPY,
# and the machine's, the hub's and Postgres's CPU per event, and how many rounds B
# won; the same goes to bench-results/ab-<time>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -lt 2 ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
a_bin=$1 b_bin=$2
shift 2
rounds=5
if [[ $# -gt 0 && "$1" != "--" ]]; then
  rounds=$1
  shift
fi
[[ "${1:-}" == "--" ]] && shift
args=("$@")
[[ ${#args[@]} -eq 0 ]] && args=(--no-baseline)

mkdir -p bench-results
summary="bench-results/ab-$(date -u +%Y%m%dT%H%M%S).txt"
runs=$(mktemp)
trap 'rm -f "$runs"' EXIT

run() {
  local label=$1 bin=$2 out
  scripts/broker.sh stop >/dev/null
  scripts/broker.sh >/dev/null
  out=$(mktemp)
  "$bin" ingest "${args[@]}" >"$out" 2>/dev/null
  # lad-bench prints the figures as JSON, then the file it wrote them to.
  python3 - "$label" "$out" <<'EOF' | tee -a "$runs"
import json, sys
label, path = sys.argv[1], sys.argv[2]
text = open(path).read()
d = json.loads(text[: text.rindex("}") + 1])
keys = ("hub_events_per_second", "ratio_hub_to_copy",
        "machine_cpu_us_per_event", "hub_cpu_us_per_event",
        "postgres_cpu_us_per_event")
# Builds older than a figure print it as null.
print(label, *(json.dumps(d.get(k)) for k in keys))
EOF
  rm -f "$out"
}

echo "build events/s hub/COPY machine_cpu_us/event hub_cpu_us/event postgres_cpu_us/event"
for ((r = 1; r <= rounds; r++)); do
  if ((r % 2)); then
    run A "$a_bin"
    run B "$b_bin"
  else
    run B "$b_bin"
    run A "$a_bin"
  fi
done

python3 - "$runs" "$a_bin" "$b_bin" <<'EOF' | tee "$summary"
import sys
from statistics import mean
path, a_bin, b_bin = sys.argv[1:]
rows = [l.split() for l in open(path) if l.strip()]
def of(label):
    return [[float("nan") if v == "null" else float(v) for v in r[1:]] for r in rows if r[0] == label]
a, b = of("A"), of("B")
print(f"A = {a_bin}\nB = {b_bin}\nrounds: {len(a)}")
for label, runs in (("A", a), ("B", b)):
    cols = list(zip(*runs))
    print(f"{label}: {mean(cols[0]):,.0f} events/s, hub/COPY {mean(cols[1]):.3f}, "
          f"machine {mean(cols[2]):.1f} µs/event, hub {mean(cols[3]):.1f} µs/event, "
          f"postgres {mean(cols[4]):.1f} µs/event")
wins = sum(y[0] > x[0] for x, y in zip(a, b))
print(f"B faster in {wins} of {len(a)} rounds; "
      f"events/s {100 * (mean(r[0] for r in b) / mean(r[0] for r in a) - 1):+.1f} %")
EOF
echo "summary written to $summary"
