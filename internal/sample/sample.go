// Package sample is the small video-on-demand stream that `duet dev` uploads to its origin and
// that the player page plays: 16 s of a test pattern with a running timecode, the rendition's
// name burnt in and a beeping tone, as a 3-rung H.264/AAC ladder (240p, 360p, 540p) in 2 s CMAF
// fMP4 segments. One set of segments is described twice: by an HLS multivariant playlist
// (master.m3u8) and by a DASH MPD (manifest.mpd).
//
// The files are real media made once by media/generate.sh (ffmpeg) and embedded, so every build
// uploads the same bytes and no build or test needs ffmpeg.
package sample

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
)

// media holds the generated stream. generate.sh sits in the same folder and is left out.
//
//go:embed media/*.m3u8 media/*.mpd media/*/*
var media embed.FS

// The stream's entry points, relative to its folder.
const (
	Master = "master.m3u8"  // HLS multivariant playlist
	DASH   = "manifest.mpd" // DASH MPD over the same segments
)

// File is one object of the sample.
type File struct {
	Path        string // below the stream's folder, e.g. "360p/seg_001.m4s"
	ContentType string
	Body        []byte
}

// Stream returns the sample's files in a fixed order (lexical by path). Each call returns fresh
// slices the caller may keep.
func Stream() []File {
	var files []File
	err := fs.WalkDir(media, "media", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := media.ReadFile(p)
		if err != nil {
			return err
		}
		rel := p[len("media/"):]
		files = append(files, File{Path: rel, ContentType: contentType(rel), Body: body})
		return nil
	})
	if err != nil {
		// The tree is compiled in: failing to read it is a broken build, not a runtime condition.
		panic(fmt.Sprintf("sample: read embedded stream: %v", err))
	}
	return files
}

// contentType names each kind of file the way players and caches expect.
func contentType(p string) string {
	audio := path.Dir(p) == "audio"
	switch path.Ext(p) {
	case ".m3u8":
		return "application/vnd.apple.mpegurl"
	case ".mpd":
		return "application/dash+xml"
	case ".mp4": // CMAF header (initialisation segment)
		if audio {
			return "audio/mp4"
		}
		return "video/mp4"
	case ".m4s": // CMAF media segment; IANA registers video/iso.segment for audio and video alike
		return "video/iso.segment"
	}
	return "application/octet-stream"
}
