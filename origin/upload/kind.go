package upload

import (
	"bytes"
	"io"
	"mime"
	"os"
	"path"
	"strings"
)

// Kind is what a file is for a video CDN; it picks the default Content-Type and Cache-Control.
type Kind int

// The kinds, from the file's name (and, for playlists, a look at their start).
const (
	KindOther    Kind = iota // anything else: type by extension, an hour of caching
	KindPlaylist             // .m3u8, .mpd
	KindSegment              // media segments: .ts .m4s .mp4 .aac .vtt ...
	KindInit                 // init segments: init.mp4, *.init, init-*.m4s, *_init.mp4 ...
	KindImage                // .jpg .png .webp ... (thumbnails, posters, sprites)
)

// Kinds lists every kind, for flags and docs.
var Kinds = []Kind{KindPlaylist, KindSegment, KindInit, KindImage, KindOther}

func (k Kind) String() string {
	switch k {
	case KindPlaylist:
		return "playlist"
	case KindSegment:
		return "segment"
	case KindInit:
		return "init"
	case KindImage:
		return "image"
	}
	return "other"
}

// Default Cache-Control values. The choice:
//   - A live media playlist changes every segment duration, so edges may keep it 2 s at most.
//   - A VOD media playlist (#EXT-X-ENDLIST or PLAYLIST-TYPE:VOD) and a static DASH manifest do
//     not change, but a re-packaged title reuses its names, so they get a day, not a year: a
//     purge fixes a mistake anyway.
//   - A multivariant (master) playlist only lists renditions; it may gain one, so a minute.
//   - Segments and init segments are written once under a name that is never reused: a year,
//     immutable, so players and edges never revalidate them.
//   - Images (thumbnails, posters) a day; anything else an hour.
const (
	CacheLivePlaylist  = "public, max-age=2"
	CacheVODPlaylist   = "public, max-age=86400"
	CacheMultivariant  = "public, max-age=60"
	CacheSegment       = "public, max-age=31536000, immutable"
	CacheImage         = "public, max-age=86400"
	CacheOther         = "public, max-age=3600"
	playlistSniffBytes = 64 << 10
)

// types maps extensions to Content-Type where the stdlib's table is missing or differs from what
// players expect. Other extensions go through mime.TypeByExtension.
var types = map[string]string{
	".m3u8":   "application/vnd.apple.mpegurl",
	".mpd":    "application/dash+xml",
	".ts":     "video/mp2t",
	".m4s":    "video/iso.segment",
	".mp4":    "video/mp4",
	".m4v":    "video/mp4",
	".m4a":    "audio/mp4",
	".cmfv":   "video/mp4",
	".cmfa":   "audio/mp4",
	".cmft":   "application/mp4",
	".aac":    "audio/aac",
	".mp3":    "audio/mpeg",
	".ac3":    "audio/ac3",
	".ec3":    "audio/eac3",
	".vtt":    "text/vtt",
	".webvtt": "text/vtt",
	".ttml":   "application/ttml+xml",
	".init":   "video/mp4",
	".jpg":    "image/jpeg",
	".jpeg":   "image/jpeg",
	".png":    "image/png",
	".webp":   "image/webp",
	".gif":    "image/gif",
	".avif":   "image/avif",
	".svg":    "image/svg+xml",
	".json":   "application/json",
	".key":    "application/octet-stream", // HLS AES-128 keys
}

var segmentExt = map[string]bool{
	".ts": true, ".m4s": true, ".mp4": true, ".m4v": true, ".m4a": true, ".cmfv": true, ".cmfa": true,
	".cmft": true, ".aac": true, ".mp3": true, ".ac3": true, ".ec3": true, ".vtt": true, ".webvtt": true,
	".ttml": true,
}

var imageExt = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".webp": true, ".gif": true, ".avif": true, ".svg": true}

// Classify returns the kind of a file from its name (a key or a local path).
func Classify(name string) Kind {
	base := strings.ToLower(path.Base(strings.ReplaceAll(name, "\\", "/")))
	ext := path.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	switch {
	case ext == ".m3u8" || ext == ".mpd":
		return KindPlaylist
	case ext == ".init",
		(ext == ".mp4" || ext == ".m4s" || ext == ".cmfv" || ext == ".cmfa" || ext == ".m4a") &&
			(stem == "init" || strings.HasPrefix(stem, "init-") || strings.HasPrefix(stem, "init_") ||
				strings.HasSuffix(stem, "-init") || strings.HasSuffix(stem, "_init")):
		return KindInit
	case segmentExt[ext]:
		return KindSegment
	case imageExt[ext]:
		return KindImage
	}
	return KindOther
}

// ContentType returns the Content-Type for a file name.
func ContentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	if t, ok := types[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// DefaultCacheControl returns the Cache-Control for a kind. head is the start of the file, read
// only for playlists (nil means unknown, which counts as live: the safe side).
func DefaultCacheControl(k Kind, name string, head []byte) string {
	switch k {
	case KindPlaylist:
		return playlistCacheControl(name, head)
	case KindSegment, KindInit:
		return CacheSegment
	case KindImage:
		return CacheImage
	}
	return CacheOther
}

func playlistCacheControl(name string, head []byte) string {
	if strings.EqualFold(path.Ext(name), ".mpd") {
		// A DASH manifest says type="static" (VOD) or type="dynamic" (live); no type means static.
		switch {
		case bytes.Contains(head, []byte(`type="dynamic"`)), head == nil:
			return CacheLivePlaylist
		}
		return CacheVODPlaylist
	}
	switch {
	case bytes.Contains(head, []byte("#EXT-X-STREAM-INF")):
		return CacheMultivariant
	case bytes.Contains(head, []byte("#EXT-X-ENDLIST")), bytes.Contains(head, []byte("#EXT-X-PLAYLIST-TYPE:VOD")):
		return CacheVODPlaylist
	}
	return CacheLivePlaylist
}

// readHead reads the start of a playlist to tell live from VOD. #EXT-X-ENDLIST is at the end, so
// for a playlist longer than the sniff window the end is read too.
func readHead(p string, size int64) []byte {
	f, err := os.Open(p)
	if err != nil {
		return nil // the upload itself reports the error
	}
	defer f.Close()
	if size <= 2*playlistSniffBytes {
		b, _ := io.ReadAll(io.LimitReader(f, 2*playlistSniffBytes))
		return b
	}
	head := make([]byte, playlistSniffBytes)
	n, _ := io.ReadFull(f, head)
	tail := make([]byte, playlistSniffBytes)
	m, _ := f.ReadAt(tail, size-playlistSniffBytes)
	return append(head[:n], tail[:m]...)
}
