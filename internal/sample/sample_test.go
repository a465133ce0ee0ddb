package sample

import (
	"bytes"
	"strings"
	"testing"
)

func TestStreamIsAPlayableLadder(t *testing.T) {
	files := Stream()
	byPath := map[string]File{}
	for _, f := range files {
		byPath[f.Path] = f
	}
	master, ok := byPath["master.m3u8"]
	if !ok || !strings.HasPrefix(string(master.Body), "#EXTM3U") {
		t.Fatal("no multivariant playlist")
	}
	for _, r := range Renditions {
		if !strings.Contains(string(master.Body), r.Name+"/index.m3u8") {
			t.Errorf("master does not reference %s", r.Name)
		}
		media := string(byPath[r.Name+"/index.m3u8"].Body)
		if !strings.Contains(media, "#EXT-X-ENDLIST") {
			t.Errorf("%s: not a VOD playlist", r.Name)
		}
		for line := range strings.SplitSeq(media, "\n") {
			if strings.HasSuffix(line, ".ts") {
				seg, ok := byPath[r.Name+"/"+line]
				if !ok {
					t.Fatalf("%s references missing %s", r.Name, line)
				}
				if len(seg.Body)%188 != 0 || seg.Body[0] != 0x47 || seg.Body[188] != 0x47 {
					t.Errorf("%s/%s is not TS-framed", r.Name, line)
				}
			}
		}
	}
	again := Stream()
	for i := range files {
		if !bytes.Equal(files[i].Body, again[i].Body) {
			t.Fatalf("%s differs between runs", files[i].Path)
		}
	}
}
