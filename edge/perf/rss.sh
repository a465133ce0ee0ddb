#!/usr/bin/env bash
# RSS of a running edge under load, against the bound 1.1 × memory budget + 64 MiB.
#
#   edge/perf/rss.sh            (needs edge/perf/peers.sh up: its origin on 127.0.0.1:18080)
#
# Starts `duet edge` ($DUET, default: builds /tmp/duet-perf) with memory.max_bytes=$BUDGET
# (default 256MiB) and a disk tier of $DISK (default 1GiB) in a temp dir, then drives with wrk:
#   1. mix:   the peers' Zipf mix (/obj/z/N, 16 KiB) for $DURATION (default 20s)
#   2. churn: distinct URLs, each asked twice (64 KiB and 2 MiB bodies, see churn.lua) until 10 × BUDGET bytes have
#             gone through the cache (bounded by $CHURN_MAX, default 120s)
# while sampling VmRSS from /proc/<pid>/status every 100 ms. Prints the peak of each phase and
# the bound, and exits 1 if a peak exceeds it. Samples go to $OUT (default /tmp/duet-rss.csv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUDGET=${BUDGET:-256MiB}
DISK=${DISK:-1GiB}
DURATION=${DURATION:-20s}
CHURN_MAX=${CHURN_MAX:-120}
CONNS=${CONNS:-64}
OUT=${OUT:-/tmp/duet-rss.csv}
PORT=${PORT:-18181}
ADMIN=${ADMIN:-18191}
ORIGIN=${ORIGIN:-http://127.0.0.1:18080}

mib() { # "256MiB" / "1GiB" → MiB
  local v=$1
  case $v in
    *GiB) echo $((${v%GiB} * 1024)) ;;
    *MiB) echo "${v%MiB}" ;;
    *) echo "budget must end in MiB or GiB: $v" >&2; exit 2 ;;
  esac
}
budget_mib=$(mib "$BUDGET")
bound_kib=$(((budget_mib * 1024 * 11 / 10) + 64 * 1024))

if [[ -z ${DUET:-} ]]; then
  DUET=/tmp/duet-perf
  (cd "$root" && go build -o "$DUET" ./cmd/duet)
fi
curl -sf -o /dev/null "$ORIGIN/obj/64k" || { echo "no origin at $ORIGIN: run edge/perf/peers.sh up" >&2; exit 2; }

dir=$(mktemp -d)
# Until `duet edge` sets it itself from the budget, pass edge.Config.MemoryLimit's value
# (1.1 × budget + 32 MiB); GOMEMLIMIT=off measures the edge without a limit.
if [[ -z ${GOMEMLIMIT:-} ]]; then
  export GOMEMLIMIT=$(((budget_mib * 11 / 10 + 32) * 1024 * 1024))
fi
[[ $GOMEMLIMIT == off ]] && unset GOMEMLIMIT
"$DUET" edge --listen "127.0.0.1:$PORT" --admin_listen "127.0.0.1:$ADMIN" \
  --origin.type http --origin.endpoint "$ORIGIN" \
  --memory.max_bytes "$BUDGET" --disk.dir "$dir/cache" --disk.max_bytes "$DISK" >"$dir/edge.log" 2>&1 &
pid=$!
sampler=
cleanup() {
  [[ -n $sampler ]] && kill "$sampler" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/obj/1k" && break; sleep 0.1; done

phase_file=$dir/phase
echo start >"$phase_file"
echo "t_ms,phase,rss_kib" >"$OUT"
(
  t0=$(date +%s%3N)
  while kill -0 "$pid" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    echo "$(($(date +%s%3N) - t0)),$(cat "$phase_file"),$rss" >>"$OUT"
    sleep 0.1
  done
) &
sampler=$!

echo mix >"$phase_file"
wrk -t2 -c"$CONNS" -d"$DURATION" -s "$here/zipf.lua" "http://127.0.0.1:$PORT" >"$dir/mix.txt"

echo churn >"$phase_file"
# Each churn request moves (64 KiB + 2 MiB)/2 on average; stop once 10 × budget went through.
target_bytes=$((budget_mib * 1024 * 1024 * 10))
start=$(date +%s)
wrk -t2 -c"$CONNS" -d"${CHURN_MAX}s" -s "$here/churn.lua" "http://127.0.0.1:$PORT" >"$dir/churn.txt" &
wrkpid=$!
while kill -0 "$wrkpid" 2>/dev/null; do
  origin_bytes=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^duet_edge_origin_bytes_total/ {printf "%.0f\n", $2}' | head -1)
  if [[ -n $origin_bytes && $origin_bytes -ge $target_bytes ]]; then
    kill -INT "$wrkpid" 2>/dev/null || true
    break
  fi
  sleep 1
done
wait "$wrkpid" 2>/dev/null || true
echo end >"$phase_file"
sleep 0.3
memtier=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^duet_edge_tier_bytes\{tier="memory"\}/ {printf "%.0f\n", $2}')
memevict=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^duet_edge_evictions_total\{tier="memory"\}/ {printf "%.0f\n", $2}')
churned=$(curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^duet_edge_origin_bytes_total/ {printf "%.0f\n", $2}' | head -1)

peak() { awk -F, -v p="$1" '$2 == p && $3 > m {m = $3} END {print m + 0}' "$OUT"; }
mix_peak=$(peak mix)
churn_peak=$(peak churn)
printf 'GOMEMLIMIT %s\n' "${GOMEMLIMIT:-unset}"
printf 'budget %s, bound 1.1 x budget + 64 MiB = %d MiB\n' "$BUDGET" $((bound_kib / 1024))
printf 'mix:   peak RSS %d MiB   (%s)\n' $((mix_peak / 1024)) "$(grep -m1 'Requests/sec' "$dir/mix.txt" | xargs)"
printf 'churn: peak RSS %d MiB   (%d MiB fetched from the origin in %ds, %s)\n' $((churn_peak / 1024)) \
  $((${churned:-0} / 1048576)) $(($(date +%s) - start)) "$(grep -m1 'Requests/sec' "$dir/churn.txt" | xargs)"
printf 'memory tier at the end: %d MiB held, %d evictions\n' $((${memtier:-0} / 1048576)) "${memevict:-0}"
if ((mix_peak > bound_kib || churn_peak > bound_kib)); then
  echo "FAIL: RSS above the bound"
  exit 1
fi
echo "ok: RSS within the bound"
