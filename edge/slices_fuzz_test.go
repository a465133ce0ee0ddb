package edge

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duetcdn/duet/edge/byterange"
)

// fuzzOrigin answers each request for a path with the next behaviour of that path's script:
// correct answers, whole objects, 416s, ranges that start elsewhere or end early, bodies cut
// short, wrong totals, another version, 5xx.
type fuzzOrigin struct {
	mu      sync.Mutex
	scripts map[string]*fuzzScript
}

type fuzzScript struct {
	acts   []byte
	n      int
	v1, v2 []byte
}

func (o *fuzzOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	sc := o.scripts[r.URL.Path]
	var act byte
	if sc != nil && len(sc.acts) > 0 {
		act = sc.acts[sc.n%len(sc.acts)]
		sc.n++
	}
	o.mu.Unlock()
	if sc == nil {
		http.NotFound(w, r)
		return
	}
	obj, etag := sc.v1, `"v1"`
	if act%10 == 7 {
		obj, etag = sc.v2, `"v2"`
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "max-age=600")
	size := int64(len(obj))
	a, b := int64(0), size-1
	ranged := false
	if rs, err := byterange.Parse(r.Header.Get("Range"), size); err == nil && len(rs) == 1 {
		a, b, ranged = rs[0].Start, rs[0].End, true
	}
	partial := func(cr string, body []byte, length int) {
		w.Header().Set("Content-Range", cr)
		w.Header().Set("Content-Length", strconv.Itoa(length))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(body)
	}
	switch act % 10 {
	case 0, 7:
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
	case 1: // ignores ranges
		w.Header().Set("Content-Length", strconv.Itoa(len(obj)))
		_, _ = w.Write(obj)
	case 2:
		w.Header().Set("Content-Range", "bytes */"+strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
	case 3: // starts one byte later
		if a+1 > b || !ranged {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
			return
		}
		partial(fmt.Sprintf("bytes %d-%d/%d", a+1, b, size), obj[a+1:b+1], int(b-a))
	case 4: // body cut short
		if ranged {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", a, b, size))
		}
		w.Header().Set("Content-Length", strconv.FormatInt(b-a+1, 10))
		if ranged {
			w.WriteHeader(http.StatusPartialContent)
		}
		_, _ = w.Write(obj[a : a+(b-a+1)/2])
		panic(http.ErrAbortHandler)
	case 5: // wrong total
		partial(fmt.Sprintf("bytes %d-%d/%d", a, b, size+7), obj[a:b+1], int(b-a+1))
	case 6: // ends early
		if a >= b {
			http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(obj))
			return
		}
		partial(fmt.Sprintf("bytes %d-%d/%d", a, b-1, size), obj[a:b], int(b-a))
	case 8: // no length
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		_, _ = w.Write(obj)
	case 9:
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

// FuzzSliceReader sends viewer ranges (from the input) through an edge to an origin whose
// answers come from the input. Every answer must be byte-correct (one version, exactly the
// bytes its Content-Range names) or an error status or a cut connection; never a hang; and no
// fill may keep running afterwards.
func FuzzSliceReader(f *testing.F) {
	const slice = 64 << 10
	fo := &fuzzOrigin{scripts: map[string]*fuzzScript{}}
	o := httpOriginFor(f, fo.ServeHTTP)
	h := startEdge(f, o, func(c *Config) {
		c.Cache.SliceBytes, c.Cache.SliceAbove = slice, slice
		c.Cache.FillTimeout = 10 * time.Second
		c.Disk.MaxBytes = 8 << 20
	})
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	f.Cleanup(client.CloseIdleConnections)
	objs := [][]byte{randomBytes(10, 1), randomBytes(slice+10, 2), randomBytes(3*slice-1, 3), randomBytes(4*slice, 4)}
	objs2 := [][]byte{randomBytes(10, 5), randomBytes(slice+10, 6), randomBytes(3*slice-1, 7), randomBytes(4*slice, 8)}
	var seq atomic.Int64

	f.Add(byte(0), uint16(0), uint16(4), "bytes=0-4", "")
	f.Add(byte(2), uint16(3), uint16(0), "bytes=70000-140000", "bytes=1-2,130000-")
	f.Add(byte(1), uint16(6), uint16(0), "bytes=5-9", "bytes=-5")
	f.Add(byte(3), uint16(0x3456), uint16(0x1290), "", "bytes=200000-")
	f.Add(byte(2), uint16(0x7777), uint16(0x4141), "bytes=0-", "")
	f.Fuzz(func(t *testing.T, size byte, s1, s2 uint16, range1, range2 string) {
		if len(range1) > 200 || len(range2) > 200 || strings.ContainsAny(range1+range2, "\r\n\x00") {
			return
		}
		i := int(size) % len(objs)
		acts := []byte{byte(s1), byte(s1 >> 8), byte(s2), byte(s2 >> 8)}
		path := "/f/" + strconv.FormatInt(seq.Add(1), 10) + ".bin"
		fo.mu.Lock()
		fo.scripts[path] = &fuzzScript{acts: acts, v1: objs[i], v2: objs2[i]}
		fo.mu.Unlock()
		defer func() {
			fo.mu.Lock()
			delete(fo.scripts, path)
			fo.mu.Unlock()
		}()
		for _, rg := range []string{range1, range2} {
			resp, body, cut, hang := viewerGet(t.Context(), client, h.url+path, rg)
			if hang {
				t.Fatalf("Range %q: no answer: %v", rg, cut)
			}
			if cut != nil {
				continue
			}
			if err := checkAnswer(resp, body, objs[i], objs2[i]); err != nil {
				t.Fatalf("Range %q, origin script %v: %v", rg, acts, err)
			}
		}
		h.t = t
		h.flightsIdle()
	})
}
