#!/usr/bin/env bash
# The edge against the caches people compare a CDN edge with: nginx proxy_cache, Varnish and
# Apache Traffic Server, all from Debian's packages, each in front of the same static origin on
# loopback, measured with wrk one after another on cache hits. Prints, per object size, each
# system's req/s, MB/s and p99, and the edge's req/s over the best peer's.
#
#   edge/perf/peers.sh              everything: up, build and start the edge from this clone,
#                                   run, down (about 4 × SIZES × DURATION plus warm-ups)
#   edge/perf/peers.sh up           install what is missing, start the origin and the peers
#   edge/perf/peers.sh run [URL]    measure the peers, and the edge at URL if given (its origin
#                                   must be the one 'up' started, http://127.0.0.1:18080)
#   edge/perf/peers.sh edge         build and start the edge (as 'all' does) and leave it running
#   edge/perf/peers.sh down         stop what 'up' started
#
# Loopback ports (PORT_BASE + n, default 18080): the origin (nginx serving files, Cache-Control:
# max-age=3600) 18080, nginx proxy_cache 18081, Varnish 18082, Traffic Server 18083, the edge
# 18084 (admin 18094). Objects:
# /obj/1k, /obj/64k, /obj/2m, and /obj/z/0 to /obj/z/999 (16 KiB each) for the "mix", a Zipf
# popularity over 1,000 objects (zipf.lua). Every system is warmed (each object fetched twice)
# before it is measured, so the figures are hits. Machine, caveats and results:
# docs/performance.md.
#
# Needs nginx, varnishd, traffic_server, wrk and curl: missing ones are installed with apt-get
# (Debian/Ubuntu packages nginx-light, varnish, trafficserver, wrk), which needs root; otherwise
# the script says what to install and stops. Building the edge needs Go.
#
# Environment:
#   DURATION   wrk's duration per system and size (default 8s)
#   CONNS      wrk's connections (default 64)
#   THREADS    wrk's threads (default 2)
#   SIZES      sizes to measure, any of "1k 64k 2m mix" (default all four)
#   BENCH_DIR  working directory: objects, configs, caches, logs (default ${TMPDIR:-/tmp}/duet-peers)
#   DUET       a duet binary to run instead of building one from this clone
#   EDGE_ARGS  extra flags for `duet edge` (e.g. "--memory.max_bytes 512MiB")
#   TASKSET    e.g. "taskset -c 0": a prefix for wrk, to give the load generator its own CPU
#   PORT_BASE  the first of the ports above (default 18080), to run beside another copy
#   SYSTEMS    the peers to start and measure, any of "nginx varnish ats" (default all three)
#   TLS        1: HTTPS between wrk and the caches (the origin stays plain HTTP). nginx and Traffic
#              Server terminate TLS with the same self-signed ECDSA P-256 certificate as the edge
#              ($BENCH_DIR/tls); Varnish, which has no TLS, is left out. 'run' then also measures
#              handshakes per second, full and resumed (edge/perf/handshakes: 8 clients,
#              HANDSHAKE_TIME each, default 5s; needs Go). Use the same TLS for up, run and the edge.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
D=${BENCH_DIR:-${TMPDIR:-/tmp}/duet-peers}
DURATION=${DURATION:-8s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
SIZES=${SIZES:-1k 64k 2m mix}
TASKSET=${TASKSET:-}
BASE=${PORT_BASE:-18080}
ORIGIN_PORT=$BASE
TLS=${TLS:-0}
HANDSHAKE_TIME=${HANDSHAKE_TIME:-5}
SYSTEMS=${SYSTEMS:-nginx varnish ats}
SCHEME=http
[[ $TLS == 1 ]] && SCHEME=https
PEERS=()
for sys in $SYSTEMS; do
  case $sys in
    nginx) PEERS+=(nginx:$((BASE + 1))) ;;
    varnish) [[ $TLS == 1 ]] || PEERS+=(varnish:$((BASE + 2))) ;;
    ats) PEERS+=(ats:$((BASE + 3))) ;;
    *) echo "peers.sh: unknown system $sys (SYSTEMS takes nginx varnish ats)" >&2; exit 2 ;;
  esac
done
# has SYSTEM: whether SYSTEM is measured
has() { [[ " ${PEERS[*]} " == *" $1:"* ]]; }
EDGE_PORT=$((BASE + 4))
EDGE_ADMIN_PORT=$((BASE + 14))

die() { echo "peers.sh: $*" >&2; exit 1; }

# install the peers and wrk from Debian's packages when they are missing
need() {
  local missing=()
  command -v nginx >/dev/null || missing+=(nginx-light)
  command -v varnishd >/dev/null || missing+=(varnish)
  command -v traffic_server >/dev/null || missing+=(trafficserver)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v curl >/dev/null || missing+=(curl)
  if [[ $TLS == 1 ]]; then command -v openssl >/dev/null || missing+=(openssl); fi
  ((${#missing[@]})) || return 0
  if [[ $(id -u) != 0 ]]; then
    die "missing: ${missing[*]}; install them (sudo apt-get install -y ${missing[*]}) or run this as root"
  fi
  command -v apt-get >/dev/null || die "missing: ${missing[*]}, and no apt-get to install them with"
  echo "installing ${missing[*]} from the distribution's packages" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

objects() {
  mkdir -p "$D/origin/obj/z"
  head -c 1024 /dev/urandom >"$D/origin/obj/1k"
  head -c 65536 /dev/urandom >"$D/origin/obj/64k"
  head -c 2097152 /dev/urandom >"$D/origin/obj/2m"
  for i in $(seq 0 999); do head -c 16384 /dev/urandom >"$D/origin/obj/z/$i"; done
}

# nginx_conf NAME HTTP_BLOCK_BODY: a self-contained nginx config under $D/NAME
nginx_conf() {
  mkdir -p "$D/$1/tmp"
  # descriptors for edge/perf/conns.sh's 4,000 connections on one worker (and their upstreams)
  local nofile
  nofile=$(ulimit -Hn)
  [[ $nofile == unlimited || $nofile -gt 65536 ]] && nofile=65536
  cat >"$D/$1/nginx.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile $nofile;
pid $D/$1/nginx.pid;
error_log $D/$1/error.log warn;
events { worker_connections $((nofile / 2)); }
http {
  access_log off;
  # no tcp_nopush: it holds back each response's last segment for 40 ms on loopback
  sendfile on; keepalive_requests 1000000;
  client_body_temp_path $D/$1/tmp; proxy_temp_path $D/$1/tmp; fastcgi_temp_path $D/$1/tmp;
  uwsgi_temp_path $D/$1/tmp; scgi_temp_path $D/$1/tmp;
  default_type application/octet-stream;
  $2
}
EOF
}

start_origin() {
  [[ -f $D/origin/obj/z/999 ]] || objects
  nginx_conf origin "server { listen 127.0.0.1:$ORIGIN_PORT; root $D/origin; add_header Cache-Control \"max-age=3600\"; }"
  nginx -c "$D/origin/nginx.conf"
}

# certificate: one self-signed ECDSA P-256 certificate for 127.0.0.1, for every TLS server here
certificate() {
  [[ -f $D/tls/cert.pem ]] && return 0
  mkdir -p "$D/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$D/tls/key.pem" -out "$D/tls/cert.pem" 2>/dev/null
}

start_nginx() {
  mkdir -p "$D/nginx/cache"
  local listen="listen 127.0.0.1:$((BASE + 1));"
  if [[ $TLS == 1 ]]; then
    # TLS 1.2 and 1.3, session tickets and a shared session cache: what a CDN edge would run
    listen="listen 127.0.0.1:$((BASE + 1)) ssl; ssl_certificate $D/tls/cert.pem; ssl_certificate_key $D/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:S:16m; ssl_session_tickets on;"
  fi
  nginx_conf nginx "proxy_cache_path $D/nginx/cache levels=1:2 keys_zone=c:64m max_size=4g inactive=1h use_temp_path=off;
  upstream o { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { $listen
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_cache c; proxy_cache_lock on; proxy_cache_valid 200 1h; open_file_cache max=10000;
      add_header X-Cache-Status \$upstream_cache_status; } }"
  nginx -c "$D/nginx/nginx.conf"
}

start_varnish() {
  mkdir -p "$D/varnish"
  cat >"$D/varnish/default.vcl" <<EOF
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
EOF
  varnishd -a "127.0.0.1:$((BASE + 2))" -f "$D/varnish/default.vcl" -s malloc,2g -n "$D/varnish/work" \
    -P "$D/varnish/varnishd.pid" -p thread_pool_min=50 -p thread_pool_max=2000 >/dev/null
}

start_ats() {
  local a=$D/ats
  mkdir -p "$a/etc" "$a/cache" "$a/run" "$a/log"
  cp -r /etc/trafficserver/. "$a/etc/"
  local ports=$((BASE + 3))
  if [[ $TLS == 1 ]]; then
    ports="$((BASE + 3)):ssl"
    echo "dest_ip=* ssl_cert_name=$D/tls/cert.pem ssl_key_name=$D/tls/key.pem" >"$a/etc/ssl_multicert.config"
  fi
  cat >"$a/etc/records.config" <<EOF
CONFIG proxy.config.http.server_ports STRING $ports
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.admin.user_id STRING #-1
CONFIG proxy.config.exec_thread.autoconfig.scale FLOAT 1.0
CONFIG proxy.config.cache.ram_cache.size INT 2147483648
CONFIG proxy.config.http.cache.required_headers INT 0
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.local_state_dir STRING $a/run
CONFIG proxy.config.log.logfile_dir STRING $a/log
CONFIG proxy.config.diags.debug.enabled INT 0
EOF
  echo "$a/cache 4G" >"$a/etc/storage.config"
  echo "map / http://127.0.0.1:$ORIGIN_PORT/" >"$a/etc/remap.config"
  : >"$a/etc/plugin.config"
  # $! must be traffic_server itself (setsid execs it): a simple command, after the cd
  (cd "$a" && {
    PROXY_CONFIG_CONFIG_DIR="$a/etc" setsid traffic_server >"$a/log/stdout" 2>&1 &
    echo $! >"$a/ats.pid"
  })
}

# wait_up URL: until URL/obj/1k answers (10 s)
wait_up() {
  for _ in $(seq 50); do
    curl -skf -o /dev/null "$1/obj/1k" && return 0
    sleep 0.2
  done
  echo "peers.sh: nothing answers at $1 (logs under $D)" >&2
  return 1
}

up() {
  need
  down
  mkdir -p "$D"
  [[ $TLS == 1 ]] && certificate
  start_origin
  if has nginx; then start_nginx; fi
  if has varnish; then start_varnish; fi
  if has ats; then start_ats; fi
  wait_up "http://127.0.0.1:$ORIGIN_PORT" || true
  local sys
  for sys in "${PEERS[@]}"; do wait_up "$SCHEME://127.0.0.1:${sys#*:}" || true; done
}

# edge_up: build duet from this clone (unless $DUET is set) and start an edge on the origin
edge_up() {
  local duet=${DUET:-}
  if [[ -z $duet ]]; then
    duet=$D/duet
    echo "building duet from $root" >&2
    (cd "$root" && go build -o "$duet" ./cmd/duet)
  fi
  stop "$D/edge/edge.pid"
  rm -rf "$D/edge" && mkdir -p "$D/edge"
  local tls=()
  if [[ $TLS == 1 ]]; then
    certificate
    tls=(--tls.certificates "$D/tls/cert.pem:$D/tls/key.pem")
  fi
  # shellcheck disable=SC2086 # EDGE_ARGS is a list of flags
  setsid "$duet" edge --name peers-bench --listen "127.0.0.1:$EDGE_PORT" \
    --admin_listen "127.0.0.1:$EDGE_ADMIN_PORT" \
    --origin.type http --origin.endpoint "http://127.0.0.1:$ORIGIN_PORT" \
    --memory.max_bytes 2GiB --memory.max_object_bytes 4MiB \
    --disk.dir "$D/edge/cache" --disk.max_bytes 4GiB "${tls[@]}" ${EDGE_ARGS:-} >"$D/edge/edge.log" 2>&1 &
  echo $! >"$D/edge/edge.pid"
  wait_up "$SCHEME://127.0.0.1:$EDGE_PORT" || die "the edge did not start: $D/edge/edge.log"
}

# stop PIDFILE [GRACE]: SIGTERM, then SIGKILL after GRACE seconds (default 5), to the process
# group the pid leads (every server here starts its own session: its helpers go with it), or to
# the pid alone if it leads none
stop() {
  [[ -f $1 ]] || return 0
  local pid target
  pid=$(cat "$1")
  target=$pid
  [[ $(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') == "$pid" ]] && target=-$pid
  if kill -- "$target" 2>/dev/null; then
    for _ in $(seq $((${2:-5} * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "$target" 2>/dev/null || true
  fi
  rm -f "$1"
}

down() {
  stop "$D/edge/edge.pid"
  stop "$D/origin/nginx.pid"
  stop "$D/nginx/nginx.pid"
  stop "$D/varnish/varnishd.pid"
  stop "$D/ats/ats.pid" 2 # Traffic Server ignores SIGTERM for a while
  return 0
}

# measure URL SIZE: prints "req/s MB/s p99_ms" of one wrk run on hits, or "0 0 -" if URL is down
measure() {
  local url=$1 path script=()
  case $2 in
    mix) path=/obj/z/0; script=(-s "$here/zipf.lua") ;;
    1k | 64k | 2m) path=/obj/$2 ;;
    *) die "unknown size $2 (SIZES takes 1k 64k 2m mix)" ;;
  esac
  if ! curl -skf -o /dev/null "$url/obj/1k"; then echo "0 0 -"; return; fi
  if [[ $2 == mix ]]; then
    for _ in 1 2; do
      for i in $(seq 0 999); do printf 'url = "%s"\noutput = "/dev/null"\n' "$url/obj/z/$i"; done | curl -sk -K -
    done
  else
    curl -sk -o /dev/null "$url$path"
    curl -sk -o /dev/null "$url$path"
  fi
  # shellcheck disable=SC2086 # TASKSET is a command prefix
  $TASKSET wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "${script[@]}" "$url$path" 2>&1 | awk '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /m$/) return v * 60000
      if (v ~ /s$/) return v * 1000
      return v + 0
    }
    /Requests\/sec/ { r = $2 }
    /Transfer\/sec/ { v = $2; if (v ~ /GB/) m = v * 1024; else if (v ~ /MB/) m = v + 0; else if (v ~ /KB/) m = v / 1024; else m = v / 1048576 }
    /^ +99%/ { p = sprintf("%.2f", ms($2)) }
    END { printf "%.0f %.1f %s\n", r, m, (p == "" ? "-" : p) }'
}

# handshakes HOSTPORT MODE: TLS handshakes per second, MODE full or resumed, over HANDSHAKE_TIME
# seconds (edge/perf/handshakes, built once)
handshakes() {
  [[ -x $D/handshakes ]] || (cd "$root" && go build -o "$D/handshakes" ./edge/perf/handshakes)
  "$D/handshakes" -addr "$1" -mode "$2" -duration "${HANDSHAKE_TIME}s" 2>/dev/null | awk '{ print $1 }'
}

# run_handshakes [EDGE_URL]: the handshake table (TLS=1)
run_handshakes() {
  local edge=${1:-} sys mode
  printf '%-8s %-8s %14s\n' mode system handshakes/s
  for mode in full resumed; do
    for sys in "${PEERS[@]}"; do
      printf '%-8s %-8s %14s\n' "$mode" "${sys%:*}" "$(handshakes "127.0.0.1:${sys#*:}" $mode)"
    done
    if [[ -n $edge ]]; then printf '%-8s %-8s %14s\n' "$mode" edge "$(handshakes "${edge#https://}" $mode)"; fi
  done
}

# run [EDGE_URL]: the table
run() {
  local edge=${1:-} size sys name rps mbs p99 best best_name
  command -v wrk >/dev/null || die "wrk is missing: run '$0 up' first"
  printf '%-5s %-8s %10s %8s %9s\n' size system req/s MB/s p99_ms
  for size in $SIZES; do
    best=0 best_name=-
    for sys in "${PEERS[@]}"; do
      name=${sys%:*}
      read -r rps mbs p99 < <(measure "$SCHEME://127.0.0.1:${sys#*:}" "$size")
      printf '%-5s %-8s %10s %8s %9s\n' "$size" "$name" "$rps" "$mbs" "$p99"
      if ((rps > best)); then best=$rps best_name=$name; fi
    done
    if [[ -n $edge ]]; then
      read -r rps mbs p99 < <(measure "$edge" "$size")
      printf '%-5s %-8s %10s %8s %9s   edge/best-peer %s (%s)\n' "$size" edge "$rps" "$mbs" "$p99" \
        "$(awk -v e="$rps" -v b="$best" 'BEGIN { if (b > 0) printf "%.2f", e / b; else print "-" }')" "$best_name"
    fi
  done
  if [[ $TLS == 1 ]]; then run_handshakes "$edge"; fi
}

case ${1:-all} in
  all)
    trap down EXIT
    up
    edge_up
    run "$SCHEME://127.0.0.1:$EDGE_PORT"
    ;;
  up) up ;;
  edge) edge_up ;;
  run) shift; run "$@" ;;
  down) down ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
