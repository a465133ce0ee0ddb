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
# EDGE_ARGS: extra flags for both edges. Each pair also gives each edge's CPU time per request
# (from /proc/PID/stat), which other work on the machine moves less than req/s.
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
  for _ in $(seq 1 100); do
    kill -0 "${pids[-1]}" 2>/dev/null || break # exited (its port taken?)
    curl -sf -o /dev/null "http://127.0.0.1:$2/obj/1k" && return
    sleep 0.1
  done
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
# cpu PID: the process's CPU time so far, in clock ticks (user + system)
cpu() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# rps PORT PID: "req/s cpu_us_per_request" of one wrk run; the CPU per request (the edge's own,
# from /proc) moves less with other work on the machine than req/s does
rps() {
  local c0 c1 out
  c0=$(cpu "$2")
  out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "${script[@]}" "$(url "$1")")
  c1=$(cpu "$2")
  awk -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" '/^ +[0-9]+ requests in/ { n = $1 } /Requests\/sec/ { r = $2 }
    END { printf "%s %.2f\n", r, t * 1e6 / hz / n }' <<<"$out"
}
ratios=() cratios=()
for i in $(seq 1 "$PAIRS"); do
  read -r a ca < <(rps $PA "${pids[0]}")
  read -r b cb < <(rps $PB "${pids[1]}")
  r=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')
  cr=$(awk -v a="$ca" -v b="$cb" 'BEGIN{printf "%.3f", b/a}')
  ratios+=("$r") cratios+=("$cr")
  echo "$P pair $i: A $a req/s ($ca CPU-us/req), B $b req/s ($cb CPU-us/req), B/A $r (CPU $cr)"
done
med() { sort -n | awk -v p="$P" -v w="$1" '{v[NR]=$1} END{m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%s: median B/A %s %.3f over %d pairs (%.3f–%.3f)\n", p, w, m, NR, v[1], v[NR]}'; }
printf '%s\n' "${ratios[@]}" | med req/s
printf '%s\n' "${cratios[@]}" | med CPU/req
