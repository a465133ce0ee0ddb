#!/usr/bin/env bash
# Many viewers at once, the edge against nginx (proxy_cache, from Debian's package), on the
# origin and objects edge/perf/peers.sh serves (issue 19):
#
#   edge/perf/conns.sh              everything: up, idle, many, big, down
#   edge/perf/conns.sh up           the origin and nginx (peers.sh up, SYSTEMS=nginx), the 200 MiB
#                                   object, and an edge built from this clone (peers.sh edge)
#   edge/perf/conns.sh idle         RSS per idle keep-alive connection: IDLE_CONNS connections
#                                   (default 4000), one GET /obj/1k each, then idle
#                                   (edge/perf/idleconns); the edge's RSS and nginx's (master and
#                                   workers), growth / connections, 2 s after the last opened;
#                                   for the edge again 15 s later, after two garbage collections
#                                   (asked through its admin /debug/pprof): what it settles at
#                                   with its idle connections parked (idle_park_after)
#   edge/perf/conns.sh many [T...]  wrk -t2 -c$CONNS (default 4000) -d$DURATION (8s) on 1 KiB and
#                                   64 KiB hits, the targets one after another, ROUNDS times
#                                   (default 3): req/s, p99, each target over the first, and the
#                                   server's CPU time per request (its processes, found by port)
#   edge/perf/conns.sh big [T...]   /obj/200m (200 MiB) to VIEWERS (default 8) viewers at once,
#                                   full GETs (edge/perf/viewers), the targets alternately, ROUNDS
#                                   times: MiB/s of all viewers together, each target over the first
#   edge/perf/conns.sh down         stop what up started
#
# A target is NAME=URL; the default targets are nginx=http://127.0.0.1:$((PORT_BASE+1)) and
# edge=http://127.0.0.1:$((PORT_BASE+4)). The edge serves the 200 MiB object from its disk tier:
# it is above cache.slice_above (64 MiB), so it is cached as 4 MiB slices, and 'up' starts the
# edge with --memory.max_object_bytes 1MiB so that no slice is copied up to the memory tier
# (1 KiB and 64 KiB stay memory hits). nginx serves it from its proxy_cache (a cache hit, as the
# edge's is: the fair peer), with sendfile.
#
# Environment: as peers.sh (BENCH_DIR, PORT_BASE, DUET, EDGE_ARGS), and CONNS, DURATION, ROUNDS,
# BIG_ROUNDS, IDLE_CONNS, VIEWERS above. 'idle' measures a freshly started edge best (Go keeps
# the memory it once used: a second run finds it resident already). wrk and the tools run with the open-file limit raised to the hard
# limit; the edge's max_conns (derived from its own limit) and nginx's worker_connections (peers.sh:
# half the hard limit) must allow CONNS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
export BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/duet-peers}
export PORT_BASE=${PORT_BASE:-18080}
export SYSTEMS=nginx
D=$BENCH_DIR
CONNS=${CONNS:-4000}
DURATION=${DURATION:-8s}
ROUNDS=${ROUNDS:-3}
BIG_ROUNDS=${BIG_ROUNDS:-7}
IDLE_CONNS=${IDLE_CONNS:-4000}
VIEWERS=${VIEWERS:-8}
NGINX=http://127.0.0.1:$((PORT_BASE + 1))
EDGE=http://127.0.0.1:$((PORT_BASE + 4))
ulimit -n "$(ulimit -Hn)"
# the edge's admin token: idle asks the edge to collect garbage through /debug/pprof
export ADMIN_TOKEN=${ADMIN_TOKEN:-conns-sh-$(id -u)-local-token}
export DUET_EDGE_ADMIN_TOKEN=$ADMIN_TOKEN

die() { echo "conns.sh: $*" >&2; exit 1; }

tool() { # build edge/perf/NAME into $D (go build's cache makes it quick)
  (cd "$root" && go build -o "$D/$1" "./edge/perf/$1")
  echo "$D/$1"
}

up() {
  "$here/peers.sh" up
  [[ -f $D/origin/obj/200m ]] || head -c $((200 << 20)) /dev/urandom >"$D/origin/obj/200m"
  DUET_EDGE_ADMIN_TOKEN=$ADMIN_TOKEN EDGE_ARGS="--memory.max_object_bytes 1MiB --idle_park_after 1s ${EDGE_ARGS:-}" "$here/peers.sh" edge
  grep -o 'max_conns=[0-9]*' "$D/edge/edge.log" | head -1 >&2 || true
}

# idle: RSS per idle connection, the edge's and nginx's
idle() {
  local t pids
  t=$(tool idleconns)
  printf '%-6s %6s %12s %12s %14s %12s %14s\n' system conns rss_before_kib rss_after_kib bytes_per_conn rss_gc_kib bytes_per_conn_gc
  local n before after per gcd pergc
  pids=$(cat "$D/edge/edge.pid")
  read -r n before after per gcd pergc < <("$t" -addr "${EDGE#http://}" -path /obj/1k -n "$IDLE_CONNS" -pids "$pids" \
    -gc "http://127.0.0.1:$((PORT_BASE + 14))/debug/pprof/heap?gc=1")
  printf '%-6s %6s %12s %12s %14s %12s %14s\n' edge "$n" "$before" "$after" "$per" "$gcd" "$pergc"
  pids=$(cat "$D/nginx/nginx.pid")
  pids="$pids,$(pgrep -P "$pids" | paste -sd,)"
  read -r n before after per < <("$t" -addr "${NGINX#http://}" -path /obj/1k -n "$IDLE_CONNS" -pids "$pids")
  printf '%-6s %6s %12s %12s %14s %12s %14s\n' nginx "$n" "$before" "$after" "$per" - -
}

targets() { # the targets given, or the default ones
  if (($#)); then printf '%s\n' "$@"; else printf '%s\n' "nginx=$NGINX" "edge=$EDGE"; fi
}

# pids URL: the processes listening on URL's port (nginx: master and workers), comma-separated
pids() {
  local port=${1##*:}
  port=${port%%/*}
  ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u | paste -sd,
}

# cpu PIDS: their CPU time so far (user + system), in clock ticks
cpu() {
  local p t=0
  for p in ${1//,/ }; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
  echo "$t"
}

# wrk_run URL PIDS: "req/s p99_ms cpu_us_per_request" of one wrk run (the server's own CPU per
# request, from /proc: other work on the machine moves it less than req/s)
wrk_run() {
  local c0 out
  c0=$(cpu "$2")
  out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency "$1" 2>&1)
  awk -v t=$(($(cpu "$2") - c0)) -v hz="$(getconf CLK_TCK)" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000
      return v + 0
    }
    /^ +[0-9]+ requests in/ { n = $1 }
    /Requests\/sec/ { r = $2 }
    /^ +99%/ { p = sprintf("%.1f", ms($2)) }
    END { printf "%.0f %s %.2f\n", r, (p == "" ? "-" : p), (n > 0 ? t * 1e6 / hz / n : 0) }' <<<"$out"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

many() {
  local ts size r t name url rps p99 cpr first ratios
  mapfile -t ts < <(targets "$@")
  declare -A tpids
  for t in "${ts[@]}"; do tpids[$t]=$(pids "${t#*=}"); done
  printf '%-5s %-5s %-8s %10s %9s %8s %12s\n' size round system req/s p99_ms ratio cpu_us/req
  for size in 1k 64k; do
    ratios=$(mktemp)
    for t in "${ts[@]}"; do # warm: two GETs, then a second of load
      url=${t#*=}/obj/$size
      for _ in 1 2; do curl -sf -o /dev/null "$url" || die "nothing at $url"; done
      wrk -t2 -c"$CONNS" -d1s "$url" >/dev/null 2>&1
    done
    for r in $(seq "$ROUNDS"); do
      first=
      for t in "${ts[@]}"; do
        name=${t%%=*} url=${t#*=}/obj/$size
        read -r rps p99 cpr < <(wrk_run "$url" "${tpids[$t]}")
        [[ -z $first ]] && first=$rps
        printf '%-5s %-5s %-8s %10s %9s %8s %12s\n' "$size" "$r" "$name" "$rps" "$p99" \
          "$(awk -v a="$rps" -v b="$first" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }')" "$cpr"
        echo "$name $(awk -v a="$rps" -v b="$first" 'BEGIN { if (b > 0) printf "%.4f", a / b }')" >>"$ratios"
      done
    done
    for t in "${ts[@]:1}"; do
      name=${t%%=*}
      echo "$size $name / ${ts[0]%%=*}: median $(awk -v n="$name" '$1 == n { print $2 }' "$ratios" | median)"
    done
    rm -f "$ratios"
  done
}

big() {
  local ts v r t name url line mibs first ratios
  mapfile -t ts < <(targets "$@")
  v=$(tool viewers)
  for t in "${ts[@]}"; do # warm: the first GET fills, the second is a hit
    url=${t#*=}/obj/200m
    for _ in 1 2; do curl -sf -o /dev/null "$url" || die "nothing at $url"; done
  done
  curl -sf -o /dev/null -D - "$NGINX/obj/200m" | grep -qi 'X-Cache-Status: HIT' || echo "conns.sh: nginx does not answer /obj/200m from its cache" >&2
  ratios=$(mktemp)
  printf '%-5s %-8s %8s %10s %6s\n' round system seconds MiB/s ratio
  for r in $(seq "$BIG_ROUNDS"); do
    first=
    for t in "${ts[@]}"; do
      name=${t%%=*} url=${t#*=}/obj/200m
      line=$("$v" -url "$url" -n "$VIEWERS")
      mibs=$(awk '{ print $4 }' <<<"$line")
      [[ -z $first ]] && first=$mibs
      printf '%-5s %-8s %8s %10s %6s\n' "$r" "$name" "$(awk '{ print $3 }' <<<"$line")" "$mibs" \
        "$(awk -v a="$mibs" -v b="$first" 'BEGIN { printf "%.2f", a / b }')"
      echo "$name $(awk -v a="$mibs" -v b="$first" 'BEGIN { printf "%.4f", a / b }')" >>"$ratios"
    done
  done
  for t in "${ts[@]:1}"; do
    name=${t%%=*}
    echo "200m x$VIEWERS $name / ${ts[0]%%=*}: median $(awk -v n="$name" '$1 == n { print $2 }' "$ratios" | median)"
  done
  rm -f "$ratios"
}

case ${1:-all} in
  all)
    trap '"$here/peers.sh" down' EXIT
    up
    idle
    many
    big
    ;;
  up) up ;;
  idle) idle ;;
  many) shift; many "$@" ;;
  big) shift; big "$@" ;;
  down) "$here/peers.sh" down ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
