#!/bin/sh
# Replaces the bundled hls.js with another release from npm:
#
#   steering/player/update-hlsjs.sh 1.7.4
#
# It takes dist/hls.min.js and the LICENSE from the npm package into assets/ and records the
# version in assets/HLSJS_VERSION, which the page shows and the tests read. Needs npm. Read the
# release notes first: the page uses the Events, levels, pathwayId and pathways API (see
# play.html), and `go test ./steering/player/` plays the sample in Chromium with the new file.
set -eu
version=${1:?usage: update-hlsjs.sh VERSION (e.g. 1.7.4)}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "hls.js@$version" >/dev/null && tar xzf hls.js-"$version".tgz)
cp "$tmp/package/dist/hls.min.js" "$here/assets/hls.min.js"
cp "$tmp/package/LICENSE" "$here/assets/LICENSE.hls.js.txt"
echo "$version" >"$here/assets/HLSJS_VERSION"
echo "hls.js $version: $(wc -c <"$here/assets/hls.min.js") bytes in assets/hls.min.js"
