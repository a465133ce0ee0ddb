#!/usr/bin/env bash
# Two edge builds side by side, measured in interleaved pairs: both run at once (the idle one
# sleeps), wrk alternates between them, and each pair's ratio B / A is printed with the median.
# Pairs close in time share the machine's noise, which three separate runs of peers.sh do not.
#
#   edge/perf/pairs.sh A_BINARY B_BINARY [PATH]     e.g. /tmp/duet-718ea16 bin/duet /obj/64k
#
# PATH is an object on the origin peers.sh starts (http://127.0.0.1:18080, so run
# `edge/perf/peers.sh up` first); "mix" means the Zipf mix (zipf.lua over /obj/z/0..999).
# Environment: PAIRS (default 8), DURATION per wrk run (default 3s), CONNS (64), THREADS (2),
# PORT_BASE (peers.sh's, default 18080: the origin there, the two edges at +104 and +105).
# EDGE_ARGS: extra flags for both edges.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { sed -n 2,13p "$0"; exit 2; }
A=$1 B=$2 P=${3:-/obj/64k}
PAIRS=${PAIRS:-8} DURATION=${DURATION:-3s} CONNS=${CONNS:-64} THREADS=${THREADS:-2} BASE=${PORT_BASE:-18080}
ORIGIN=http://127.0.0.1:$BASE PA=$((BASE + 104)) PB=$((BASE + 105))
((CONNS < 1000)) || ulimit -n "$(ulimit -Hn)" # wrk's descriptors
curl -sf -o /dev/null "$ORIGIN/obj/1k" || { echo "pairs.sh: no origin on $ORIGIN: run edge/perf/peers.sh up" >&2; exit 1; }
pids=()
trap 'kill -INT "${pids[@]}" 2>/dev/null; wait' EXIT
start() { # binary port adminport
  local d; d=$(mktemp -d)
  "$1" edge --listen "127.0.0.1:$2" --admin_listen "127.0.0.1:$3" --origin.type http \
    --origin.endpoint "$ORIGIN" --memory.max_bytes 2GiB --memory.max_object_bytes 4MiB \
    --disk.dir "$d/cache" --disk.max_bytes 4GiB ${EDGE_ARGS:-} >"$d/edge.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$2/obj/1k" && return; sleep 0.1; done
  echo "pairs.sh: $1 did not start: $d/edge.log" >&2; exit 1
}
start "$A" $PA $((PA + 10))
start "$B" $PB $((PB + 10))
url() { if [ "$P" = mix ]; then echo "http://127.0.0.1:$1/obj/z/0"; else echo "http://127.0.0.1:$1$P"; fi; }
script=(); [ "$P" = mix ] && script=(-s "$here/zipf.lua")
for port in $PA $PB; do # warm: every object twice, then a second of load
  if [ "$P" = mix ]; then
    for _ in 1 2; do seq 0 999 | xargs -P8 -I{} curl -sf -o /dev/null "http://127.0.0.1:$port/obj/z/{}"; done
  else
    for _ in 1 2; do curl -sf -o /dev/null "$(url $port)"; done
  fi
  wrk -t"$THREADS" -c"$CONNS" -d1s "${script[@]}" "$(url $port)" >/dev/null
done
rps() { wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "${script[@]}" "$(url "$1")" | awk '/Requests\/sec/{print $2}'; }
ratios=()
for i in $(seq 1 "$PAIRS"); do
  a=$(rps $PA) b=$(rps $PB)
  r=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')
  ratios+=("$r")
  echo "$P pair $i: A $a req/s, B $b req/s, B/A $r"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk -v p="$P" '{v[NR]=$1} END{m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s: median B/A %.3f over %d pairs (%.3f–%.3f)\n", p, m, NR, v[1], v[NR]}'
