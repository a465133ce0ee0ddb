package upload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		kind Kind
		ct   string
	}{
		{"vod/abc/master.m3u8", KindPlaylist, "application/vnd.apple.mpegurl"},
		{"manifest.MPD", KindPlaylist, "application/dash+xml"},
		{"720p/seg_00001.ts", KindSegment, "video/mp2t"},
		{"chunk-stream0-00001.m4s", KindSegment, "video/iso.segment"},
		{"init-stream0.m4s", KindInit, "video/iso.segment"},
		{"init.mp4", KindInit, "video/mp4"},
		{"video_init.mp4", KindInit, "video/mp4"},
		{"audio.init", KindInit, "video/mp4"},
		{"movie.mp4", KindSegment, "video/mp4"},
		{"audio.aac", KindSegment, "audio/aac"},
		{"subs/en.vtt", KindSegment, "text/vtt"},
		{"poster.JPG", KindImage, "image/jpeg"},
		{"thumbs/sprite.webp", KindImage, "image/webp"},
		{"readme.txt", KindOther, "text/plain; charset=utf-8"},
		{"key.bin", KindOther, "application/octet-stream"},
		{"noextension", KindOther, "application/octet-stream"},
	} {
		if got := Classify(tc.name); got != tc.kind {
			t.Errorf("Classify(%q) = %s, want %s", tc.name, got, tc.kind)
		}
		if got := ContentType(tc.name); got != tc.ct {
			t.Errorf("ContentType(%q) = %q, want %q", tc.name, got, tc.ct)
		}
	}
}

func TestPlaylistCacheControl(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{"live.m3u8", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2,\na.ts\n", CacheLivePlaylist},
		{"vod.m3u8", "#EXTM3U\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n", CacheVODPlaylist},
		{"event.m3u8", "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n", CacheVODPlaylist},
		{"master.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow.m3u8\n", CacheMultivariant},
		{"live.mpd", `<MPD type="dynamic">`, CacheLivePlaylist},
		{"vod.mpd", `<MPD type="static">`, CacheVODPlaylist},
		{"untyped.mpd", `<MPD>`, CacheVODPlaylist},
	} {
		p := filepath.Join(t.TempDir(), tc.name)
		if err := os.WriteFile(p, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := DefaultCacheControl(KindPlaylist, tc.name, readHead(p, int64(len(tc.body)))); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
	// A long VOD playlist ends with #EXT-X-ENDLIST far past the first window.
	p := filepath.Join(t.TempDir(), "long.m3u8")
	body := "#EXTM3U\n"
	for len(body) < 3*playlistSniffBytes {
		body += "#EXTINF:2.000,\nsegment_000000.ts\n"
	}
	body += "#EXT-X-ENDLIST\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := DefaultCacheControl(KindPlaylist, p, readHead(p, int64(len(body)))); got != CacheVODPlaylist {
		t.Errorf("long VOD playlist: %q", got)
	}
}

func TestKeysAndParts(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "", "/": "", "vod/abc": "vod/abc/", "/vod//abc/": "vod/abc/", `vod\abc`: "vod/abc/", "../x": "x/"} {
		if got := cleanPrefix(in); got != want {
			t.Errorf("cleanPrefix(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		keys []string
		want string
	}{
		{[]string{"vod/abc/a.ts", "vod/abc/720p/b.ts"}, "vod/abc/"},
		{[]string{"vod/abc/a.ts", "vod/abd/b.ts"}, "vod/"},
		{[]string{"a.ts", "b/c.ts"}, ""},
		{[]string{"vod/x.ts"}, "vod/"},
	} {
		if got := commonFolder(tc.keys); got != tc.want {
			t.Errorf("commonFolder(%q) = %q, want %q", tc.keys, got, tc.want)
		}
	}
	if got := partSizeFor(100<<30, 16<<20); got != 16<<20 {
		t.Errorf("100 GiB: part size %d", got)
	}
	if got := partSizeFor(1<<40, 16<<20); got*maxParts < 1<<40 || got%(1<<20) != 0 {
		t.Errorf("1 TiB: part size %d does not fit 10,000 whole-MiB parts", got)
	}
}

// FuzzSameETag: an ETag comes from the network; no value may panic, and exactly the file's own
// ETags match (its MD5, and its one-part multipart ETag), in any case and quoting.
func FuzzSameETag(f *testing.F) {
	p := filepath.Join(f.TempDir(), "f")
	if err := os.WriteFile(p, []byte("hello"), 0o644); err != nil {
		f.Fatal(err)
	}
	plain, err := fileETag(f.Context(), p, 5, 0)
	if err != nil {
		f.Fatal(err)
	}
	multi, err := fileETag(f.Context(), p, 5, 16<<20)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`"` + plain + `"`, multi, strings.ToUpper(plain), plain + "-2", "x-0", "-", "", `""`,
		plain + "-99999999999999999999", "zz" + plain[2:], plain + "-+1", plain + "-01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, etag string) {
		same, err := sameETag(t.Context(), p, 5, etag, 16<<20)
		if err != nil {
			t.Fatal(err)
		}
		norm := strings.ToLower(strings.Trim(etag, `"`))
		if want := norm == plain || norm == multi; same != want {
			t.Fatalf("sameETag(%q) = %v, want %v", etag, same, want)
		}
	})
}
