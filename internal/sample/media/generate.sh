#!/bin/sh
# Regenerates the sample stream that internal/sample embeds: 16 s of ffmpeg's testsrc2 pattern
# with a beeping 440 Hz tone, a running timecode and the rendition's name burnt in, as a 3-rung
# H.264/AAC ladder (240p, 360p, 540p) in CMAF fMP4 segments of 2 s, described both by an HLS
# multivariant playlist (master.m3u8) and a DASH MPD (manifest.mpd) that point at the same files.
#
#   internal/sample/media/generate.sh        (from anywhere; rewrites the files beside it)
#
# Needs ffmpeg and fonts-dejavu-core (apt-get install -y ffmpeg fonts-dejavu-core); only to
# regenerate: builds and tests use the committed files. Flags are chosen so that one ffmpeg
# version gives the same bytes on every run (bitexact, no metadata, one encoder thread, no
# wall-clock dates); Debian 12's ffmpeg 5.1 made the committed files.
#
# ffmpeg's DASH muxer writes the segments, the MPD and the HLS playlists in one pass; the rest of
# the script renames its numbered representations into one folder per rendition and adds the
# HLS tags it does not write (EXT-X-INDEPENDENT-SEGMENTS, EXT-X-PLAYLIST-TYPE:VOD) and drops the
# one it writes from the clock (EXT-X-PROGRAM-DATE-TIME).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
[ -r "$font" ] || { echo "no $font: apt-get install -y fonts-dejavu-core" >&2; exit 1; }
command -v ffmpeg >/dev/null || { echo "no ffmpeg: apt-get install -y ffmpeg" >&2; exit 1; }

# Rendition names, in the order of the video outputs below; the audio is representation 3.
names="240p 360p 540p audio"
seconds=16
# The AAC encoder's priming adds ~21 ms; a tone that much shorter keeps the audio in 8 segments
# instead of 8 and a 21 ms ninth.
audio_seconds=15.97

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

label() { # label TEXT SIZE: the rendition's name in the top right corner
	echo "drawtext=fontfile=$font:text='$1':x=w-tw-12:y=12:fontsize=$2:fontcolor=yellow:box=1:boxcolor=black@0.6:boxborderw=6"
}
clock="drawtext=fontfile=$font:text='%{pts\:hms}':x=16:y=h-th-16:fontsize=40:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=6"

(cd "$tmp" && ffmpeg -nostdin -hide_banner -loglevel warning -y \
	-f lavfi -i "testsrc2=size=960x540:rate=25:duration=$seconds" \
	-f lavfi -i "sine=frequency=440:beep_factor=4:sample_rate=48000:duration=$audio_seconds" \
	-filter_complex "[0:v]$clock,split=3[a][b][c];[a]scale=426:240,$(label 240p 22)[v0];[b]scale=640:360,$(label 360p 30)[v1];[c]$(label 540p 44)[v2]" \
	-map '[v0]' -map '[v1]' -map '[v2]' -map 1:a -t "$seconds" \
	-c:v libx264 -profile:v main -pix_fmt yuv420p -preset medium -threads:v 1 \
	-g 50 -keyint_min 50 -sc_threshold 0 -x264-params open-gop=0:scenecut=0 \
	-b:v:0 200k -maxrate:v:0 240k -bufsize:v:0 400k \
	-b:v:1 350k -maxrate:v:1 420k -bufsize:v:1 700k \
	-b:v:2 600k -maxrate:v:2 720k -bufsize:v:2 1200k \
	-c:a aac -b:a 64k -ac 2 \
	-fflags +bitexact -flags:v +bitexact -flags:a +bitexact -map_metadata -1 \
	-f dash -seg_duration 2 -use_template 1 -use_timeline 0 -hls_playlist 1 \
	-adaptation_sets 'id=0,streams=v id=1,streams=a' \
	-init_seg_name 'init-$RepresentationID$.$ext$' -media_seg_name 'seg-$RepresentationID$-$Number%03d$.$ext$' \
	manifest.mpd)

# Start from a clean tree (only the generated files: this script stays).
rm -rf "$here/master.m3u8" "$here/manifest.mpd"
i=0
for n in $names; do
	rm -rf "${here:?}/$n"
	mkdir -p "$here/$n"
	mv "$tmp/init-$i.m4s" "$here/$n/init.mp4"
	for s in "$tmp"/seg-$i-*.m4s; do
		mv "$s" "$here/$n/seg_${s##*-}"
	done
	sed -e '/^#EXT-X-PROGRAM-DATE-TIME/d' \
		-e "s/^#EXT-X-TARGETDURATION.*/&\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS/" \
		-e "s/^#EXT-X-MAP:URI=\"init-$i.m4s\"/#EXT-X-MAP:URI=\"init.mp4\"/" \
		-e "s/^seg-$i-/seg_/" "$tmp/media_$i.m3u8" >"$here/$n/index.m3u8"
	i=$((i + 1))
done

# The multivariant playlist: rendition folders instead of media_N.m3u8, readable group names.
sed -e '/^$/d' -e 's/^#EXT-X-VERSION:.*/&\n#EXT-X-INDEPENDENT-SEGMENTS/' \
	-e 's/group_A1/audio/g' -e 's/NAME="audio_3"/NAME="English",LANGUAGE="en"/' \
	-e 's|media_0.m3u8|240p/index.m3u8|; s|media_1.m3u8|360p/index.m3u8|; s|media_2.m3u8|540p/index.m3u8|; s|media_3.m3u8|audio/index.m3u8|' \
	"$tmp/master.m3u8" >"$here/master.m3u8"

# BANDWIDTH must be the peak bit rate of a variant's segments (RFC 8216 4.3.4.2) counting the
# audio it plays with; ffmpeg writes the nominal rate, so put the measured peak in its place.
peak() { # peak FOLDER: the highest (video + audio) bits per second over the 2 s segments
	for v in "$here/$1"/seg_*.m4s; do
		echo $(($(wc -c <"$v") + $(wc -c <"$here/audio/${v##*/}")))
	done | awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { printf "%d", m * 8 / 2 }'
}
for n in 240p 360p 540p; do
	sed -i "/^#EXT-X-STREAM-INF/{N;s|BANDWIDTH=[0-9]*\(,.*\n$n/index.m3u8\)|BANDWIDTH=$(peak $n)\1|}" "$here/master.m3u8"
done

# The MPD: representation ids are the folder names, so one template serves every rendition.
sed -e 's/Representation id="0"/Representation id="240p"/; s/Representation id="1"/Representation id="360p"/' \
	-e 's/Representation id="2"/Representation id="540p"/; s/Representation id="3"/Representation id="audio"/' \
	-e 's|initialization="init-\$RepresentationID\$.m4s"|initialization="$RepresentationID$/init.mp4"|' \
	-e 's|media="seg-\$RepresentationID\$-\$Number%03d\$.m4s"|media="$RepresentationID$/seg_$Number%03d$.m4s"|' \
	"$tmp/manifest.mpd" >"$here/manifest.mpd"

du -sh "$here"
