#!/bin/sh
# Takes a headless Chromium screenshot of a running steering instance's status page.
#
#   steering/screenshot.sh [URL] [OUT.png]
#
# URL defaults to http://127.0.0.1:8070/ (duet steering's default listen address), OUT to
# steering-status.png. Needs Debian's chromium (apt-get install -y chromium). The page fetches
# /v1/topology once loaded; --virtual-time-budget lets that script run before the capture.
set -eu
url=${1:-http://127.0.0.1:8070/}
out=${2:-steering-status.png}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
	echo "no chromium on PATH: apt-get install -y chromium" >&2
	exit 1
fi
exec "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
	--virtual-time-budget=3000 --window-size=1280,800 --screenshot="$out" "$url"
