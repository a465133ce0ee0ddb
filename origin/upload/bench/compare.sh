#!/usr/bin/env bash
# compare.sh: `duet upload` throughput against the MinIO client `mc` on the same files, into one
# MinIO on loopback. Run from anywhere (`make bench-upload` calls it); needs ./bin/minio (`make
# tools`) and installs the pinned mc into ./bin the first time (for this benchmark only).
#
#   SMALL=200 SMALL_MIB=1 LARGE=2 LARGE_MIB=256 ROUNDS=1 origin/upload/bench/compare.sh
#
# Each tool uploads the same folder into its own fresh bucket; the time is wall time of the whole
# command, MB/s is MiB of the folder per second. Then each runs again over the unchanged folder
# (duet skips by size+ETag; `mc mirror` by size and time).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=$ROOT/bin
MC_VERSION=${MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}
SMALL=${SMALL:-200} SMALL_MIB=${SMALL_MIB:-1} LARGE=${LARGE:-2} LARGE_MIB=${LARGE_MIB:-256} ROUNDS=${ROUNDS:-1}
GO=${GO:-go}

[ -x "$BIN/minio" ] || { echo "compare.sh: $BIN/minio is missing: run 'make tools'" >&2; exit 1; }
if [ ! -x "$BIN/mc" ] || [ "$(cat "$BIN/.mc-version" 2>/dev/null)" != "$MC_VERSION" ]; then
	echo "installing mc $MC_VERSION into $BIN (once, for this benchmark only)"
	GOBIN=$BIN GOFLAGS=-buildvcs=false $GO install "github.com/minio/mc@$MC_VERSION"
	echo "$MC_VERSION" > "$BIN/.mc-version"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/duet-upload-bench.XXXXXX")
MINIO_PID=
cleanup() {
	[ -n "$MINIO_PID" ] && kill "$MINIO_PID" 2>/dev/null && wait "$MINIO_PID" 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT

echo "building duet"
(cd "$ROOT" && $GO build -o "$WORK/duet" ./cmd/duet)

# A free port on loopback.
while :; do
	PORT=$((20000 + RANDOM % 20000))
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break
done
KEY=benchadmin SECRET=benchadmin-secret
MINIO_ROOT_USER=$KEY MINIO_ROOT_PASSWORD=$SECRET MINIO_BROWSER=off \
	"$BIN/minio" server --quiet --address "127.0.0.1:$PORT" --console-address "127.0.0.1:0" "$WORK/data" > "$WORK/minio.log" 2>&1 &
MINIO_PID=$!
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$PORT/minio/health/ready" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://127.0.0.1:$PORT/minio/health/ready" >/dev/null || { cat "$WORK/minio.log" >&2; exit 1; }
export MC_HOST_bench="http://$KEY:$SECRET@127.0.0.1:$PORT"
export MC_CONFIG_DIR=$WORK/mc

echo "writing $SMALL x $SMALL_MIB MiB and $LARGE x $LARGE_MIB MiB of random bytes"
mkdir -p "$WORK/src/small" "$WORK/src/large"
for i in $(seq 1 "$SMALL"); do head -c $((SMALL_MIB << 20)) /dev/urandom > "$WORK/src/small/seg$i.ts"; done
for i in $(seq 1 "$LARGE"); do head -c $((LARGE_MIB << 20)) /dev/urandom > "$WORK/src/large/movie$i.mp4"; done
MIB=$((SMALL * SMALL_MIB + LARGE * LARGE_MIB))

# timed NAME CMD...: runs CMD, prints its wall time and MiB/s.
timed() {
	local name=$1; shift
	sync
	local t0 t1
	t0=$(date +%s.%N)
	"$@" > "$WORK/out.log" 2>&1 || { echo "$name failed:" >&2; tail -20 "$WORK/out.log" >&2; exit 1; }
	t1=$(date +%s.%N)
	awk -v n="$name" -v a="$t0" -v b="$t1" -v m="$MIB" 'BEGIN { s = b - a; printf "%-28s %7.2f s  %8.1f MiB/s\n", n, s, m / s }'
}

echo "uploading $MIB MiB ($((SMALL + LARGE)) files) to MinIO at 127.0.0.1:$PORT, $(nproc) CPUs"
for r in $(seq 1 "$ROUNDS"); do
	"$BIN/mc" mb --quiet "bench/duet-$r" > /dev/null
	"$BIN/mc" mb --quiet "bench/mccp-$r" > /dev/null
	"$BIN/mc" mb --quiet "bench/mcmirror-$r" > /dev/null
	duet=("$WORK/duet" upload "$WORK/src" --endpoint "http://127.0.0.1:$PORT" --bucket "duet-$r" --plain)
	AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET timed "duet upload" "${duet[@]}"
	timed "mc cp --recursive" "$BIN/mc" cp --quiet --recursive "$WORK/src/" "bench/mccp-$r/"
	timed "mc mirror" "$BIN/mc" mirror --quiet "$WORK/src/" "bench/mcmirror-$r/"
	AWS_ACCESS_KEY_ID=$KEY AWS_SECRET_ACCESS_KEY=$SECRET timed "duet upload (unchanged)" "${duet[@]}"
	grep -q "skipped $((SMALL + LARGE)) unchanged" "$WORK/out.log" || { echo "duet did not skip every file:" >&2; tail -3 "$WORK/out.log" >&2; exit 1; }
	timed "mc mirror (unchanged)" "$BIN/mc" mirror --quiet "$WORK/src/" "bench/mcmirror-$r/"
done
