#!/bin/sh
# Plays a player page in headless Chromium, checks that the video really plays, and saves a
# screenshot:
#
#   steering/player/playcheck.sh [URL] [OUT.png] [SECONDS]
#
# URL defaults to http://127.0.0.1:8070/play (duet steering's default address; `duet dev`'s
# steering is on :8400; add ?src=... to play another stream), OUT to player.png, SECONDS (how much
# video must play, loops included) to 4. It exits non-zero when the page gives up (a fatal error
# that reloading through src did not cure) or playback does not get that far in SECONDS+40 s.
#
# Needs Go and Debian's chromium (apt-get install -y chromium), whose build decodes H.264 and
# AAC. The edges the page is sent to must answer with Access-Control-Allow-Origin.
#
# Chromium's own --screenshot cannot do this: with --virtual-time-budget the page's timers run
# ahead but the media clock does not, so the video never leaves 0 s. The check drives Chromium
# over the DevTools protocol instead (chromedp), in TestPlayCheck in browser_test.go, and reads
# the page's window.duetPlayer.
set -eu
url=${1:-http://127.0.0.1:8070/play}
out=${2:-player.png}
secs=${3:-4}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$(dirname "$0")"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
rc=0
DUET_PLAYCHECK_URL=$url DUET_PLAYCHECK_OUT=$out DUET_PLAYCHECK_SECONDS=$secs \
	go test -count=1 -run '^TestPlayCheck$' -v . >"$log" 2>&1 || rc=$?
# The test's own lines (state, errors, where the screenshot went), without go test's framing.
grep -E 'browser_test.go|^(FAIL|---)|^ok' "$log" || cat "$log"
exit "$rc"
