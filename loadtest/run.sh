#!/usr/bin/env bash
# `make loadtest`: start `duet dev` (unless its control API already answers), run the k6
# viewers (when k6 is installed) and the zipf, flash-crowd and failover scenarios against it,
# write one HTML report and one JSON summary per scenario under out/, and stop what it started.
# Fails when a scenario fails or when failover viewers lost a segment.
#
#   LOADTEST_DURATION=30s LOADTEST_PORT_OFFSET=0 loadtest/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DUET=${DUET:-bin/duet}
OFFSET=${LOADTEST_PORT_OFFSET:-0}
DURATION=${LOADTEST_DURATION:-30s}
OUT=${LOADTEST_OUT:-out}
CONTROL="http://127.0.0.1:$((7070 + OFFSET))"
# The state directory of the duet dev to drive: the one `make run` uses when it answers already,
# else the one this script starts. Its secrets.json holds the control API's token.
DEV_DIR=${LOADTEST_DEV_DIR:-.duet}
mkdir -p "$OUT"

control_token() { sed -n 's/.*"control_token": *"\([^"]*\)".*/\1/p' "$DEV_DIR/secrets.json" 2>/dev/null; }

dev_pid=""
cleanup() {
  if [[ -n "$dev_pid" ]]; then
    kill -INT "$dev_pid" 2>/dev/null || true
    wait "$dev_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

cluster() { curl -sf -H "Authorization: Bearer $(control_token)" "$CONTROL/v1/dev/cluster"; }

if ! cluster >/dev/null; then
  DEV_DIR=.duet-loadtest
  echo "starting duet dev (control $CONTROL, logs in $OUT/dev.log)"
  "$DUET" dev --dir "$DEV_DIR" --port-offset "$OFFSET" --log-level warn >"$OUT/dev.log" 2>&1 &
  dev_pid=$!
  for _ in $(seq 1 120); do
    cluster >/dev/null && break
    kill -0 "$dev_pid" 2>/dev/null || { echo "duet dev exited:"; tail -20 "$OUT/dev.log"; exit 1; }
    sleep 1
  done
  cluster >/dev/null || { echo "duet dev did not come up in 120s"; exit 1; }
  sleep 3 # let steering learn every edge from its heartbeats
fi

K6=${K6:-$(command -v k6 || true)}
if [[ -n "$K6" ]]; then
  steering=$(cluster | grep -o '"steering": *"[^"]*"' | head -1 | sed 's/.*"\(http[^"]*\)"/\1/')
  echo "== k6 viewers against $steering"
  STEERING="$steering" VUS=${K6_VUS:-20} DURATION="$DURATION" "$K6" run --summary-export "$OUT/k6-summary.json" loadtest/k6/viewers.js
else
  echo "== k6 is not on PATH (it is AGPL-licensed, so this repository does not install it; see loadtest/k6/README.md): skipping the k6 viewers"
fi

for scenario in zipf flash-crowd failover; do
  echo "== duet loadtest --scenario $scenario"
  "$DUET" loadtest --control "$CONTROL" --dev-dir "$DEV_DIR" --scenario "$scenario" --duration "$DURATION" \
    --report "$OUT/loadtest-$scenario.html" --json "$OUT/loadtest-$scenario.json" --log-level warn
done

if ! grep -q '"failed_segments": 0,' "$OUT/loadtest-failover.json"; then
  echo "failover: viewers that follow steering lost segments (see $OUT/loadtest-failover.html)"
  exit 1
fi
echo "reports: $OUT/loadtest-{zipf,flash-crowd,failover}.html"
