// Package sample builds the small HLS video-on-demand stream that `duet dev` uploads to its
// origin: a multivariant playlist, two renditions and a few segments. The segments are MPEG-TS
// framed (188-byte packets with the 0x47 sync byte) around deterministic filler, so every run
// uploads the same bytes; a stream with real media comes with the two-region dev mode.
package sample

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// File is one object of the sample.
type File struct {
	Path        string // below the stream's folder, e.g. "720p/seg0.ts"
	ContentType string
	Body        []byte
}

// Rendition is one bitrate ladder rung.
type Rendition struct {
	Name      string // folder name
	Bandwidth int    // bits per second
	Width     int
	Height    int
}

// Renditions are the sample's two rungs.
var Renditions = []Rendition{
	{Name: "360p", Bandwidth: 800_000, Width: 640, Height: 360},
	{Name: "720p", Bandwidth: 2_400_000, Width: 1280, Height: 720},
}

const (
	// Segments per rendition, and their duration in seconds.
	Segments        = 4
	SegmentDuration = 4
	tsPacket        = 188
)

// Stream returns the sample's files.
func Stream() []File {
	var master strings.Builder
	master.WriteString("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	files := []File{}
	for ri, r := range Renditions {
		fmt.Fprintf(&master, "#EXT-X-STREAM-INF:BANDWIDTH=%d,RESOLUTION=%dx%d,CODECS=\"avc1.64001f,mp4a.40.2\"\n%s/index.m3u8\n",
			r.Bandwidth, r.Width, r.Height, r.Name)
		var media strings.Builder
		fmt.Fprintf(&media, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:%d\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n", SegmentDuration)
		for i := range Segments {
			fmt.Fprintf(&media, "#EXTINF:%d.000,\nseg%d.ts\n", SegmentDuration, i)
			size := r.Bandwidth / 8 * SegmentDuration
			files = append(files, File{
				Path:        fmt.Sprintf("%s/seg%d.ts", r.Name, i),
				ContentType: "video/mp2t",
				Body:        segment(uint64(ri*100+i), size),
			})
		}
		media.WriteString("#EXT-X-ENDLIST\n")
		files = append(files, File{Path: r.Name + "/index.m3u8", ContentType: "application/vnd.apple.mpegurl", Body: []byte(media.String())})
	}
	files = append(files, File{Path: "master.m3u8", ContentType: "application/vnd.apple.mpegurl", Body: []byte(master.String())})
	return files
}

// segment returns size bytes (rounded up to whole TS packets) of TS-framed deterministic filler.
func segment(seed uint64, size int) []byte {
	n := (size + tsPacket - 1) / tsPacket
	b := make([]byte, n*tsPacket)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	for p := range n {
		pkt := b[p*tsPacket : (p+1)*tsPacket]
		pkt[0] = 0x47
		pkt[1], pkt[2], pkt[3] = 0x01, 0x00, byte(0x10|p&0x0f) // PID 0x100, payload only, continuity counter
		for i := 4; i < tsPacket; i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < tsPacket; j++ {
				pkt[i+j] = byte(v >> (8 * j))
			}
		}
	}
	return b
}
