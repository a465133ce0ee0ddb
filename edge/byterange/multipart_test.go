package byterange

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"testing"
)

// source returns n bytes of a recognisable pattern.
func source(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func TestMultipartRFCExample(t *testing.T) {
	// RFC 9110 §14.6: two ranges of an 8000-byte PDF.
	src := source(8000)
	m := NewMultipart("THIS_STRING_SEPARATES", "application/pdf", 8000, []Range{{500, 999}, {7000, 7999}})
	if got, want := m.ContentType(), "multipart/byteranges; boundary=THIS_STRING_SEPARATES"; got != want {
		t.Errorf("ContentType() = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	n, err := m.WriteTo(&buf, bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	want := "--THIS_STRING_SEPARATES\r\n" +
		"Content-Type: application/pdf\r\n" +
		"Content-Range: bytes 500-999/8000\r\n" +
		"\r\n" + string(src[500:1000]) +
		"\r\n--THIS_STRING_SEPARATES\r\n" +
		"Content-Type: application/pdf\r\n" +
		"Content-Range: bytes 7000-7999/8000\r\n" +
		"\r\n" + string(src[7000:8000]) +
		"\r\n--THIS_STRING_SEPARATES--\r\n"
	if buf.String() != want {
		t.Errorf("body differs from the RFC 9110 layout:\n%q\nwant\n%q", buf.String(), want)
	}
	if n != int64(buf.Len()) || m.Len() != n {
		t.Errorf("WriteTo returned %d, Len() = %d, wrote %d", n, m.Len(), buf.Len())
	}
}

func TestMultipart(t *testing.T) {
	const size = 100000
	src := source(size)
	tests := []struct {
		name        string
		boundary    string
		contentType string
		ranges      []Range
	}{
		{"one range", "b1", "video/mp4", []Range{{0, 99}}},
		{"first and last byte", "b2", "video/mp4", []Range{{0, 0}, {size - 1, size - 1}}},
		{"out of order", "b3", "application/octet-stream", []Range{{90000, 99999}, {10, 20}, {500, 70000}}},
		{"no content type", "b4", "", []Range{{1, 2}, {3, 4}}},
		{"random boundary", RandomBoundary(), "text/plain; charset=utf-8", []Range{{5, 5}, {7, 99999}}},
		{"boundary with specials", "a'()+_,-./:=? b", "video/mp2t", []Range{{0, 9}, {20, 29}}},
		{"max length boundary", strings.Repeat("x", 70), "video/mp4", []Range{{0, 1}}},
		{"many ranges", "b5", "video/mp4", func() []Range {
			var rs []Range
			for i := range MaxRanges {
				rs = append(rs, Range{int64(i * 3000), int64(i*3000 + 1000)})
			}
			return rs
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMultipart(tt.boundary, tt.contentType, size, tt.ranges)
			if m.Boundary() != tt.boundary {
				t.Fatalf("Boundary() = %q, want %q", m.Boundary(), tt.boundary)
			}
			var buf bytes.Buffer
			n, err := m.WriteTo(&buf, bytes.NewReader(src))
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(buf.Len()) || m.Len() != n {
				t.Fatalf("WriteTo returned %d, Len() = %d, wrote %d", n, m.Len(), buf.Len())
			}
			checkMultipart(t, m, buf.Bytes(), src, tt.contentType, tt.ranges)

			// Writing again gives the same body.
			var again bytes.Buffer
			if _, err := m.WriteTo(&again, bytes.NewReader(src)); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Fatalf("second WriteTo differs (err %v)", err)
			}
		})
	}
}

// checkMultipart parses body with mime/multipart and compares every part with src.
func checkMultipart(t *testing.T, m *Multipart, body, src []byte, contentType string, ranges []Range) {
	t.Helper()
	mediaType, params, err := mime.ParseMediaType(m.ContentType())
	if err != nil || mediaType != "multipart/byteranges" || params["boundary"] != m.Boundary() {
		t.Fatalf("ContentType() = %q: %q %v %v", m.ContentType(), mediaType, params, err)
	}
	r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i, want := range ranges {
		p, err := r.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if got := p.Header.Get("Content-Range"); got != ContentRange(want, int64(len(src))) {
			t.Errorf("part %d: Content-Range %q, want %q", i, got, ContentRange(want, int64(len(src))))
		}
		if got := p.Header.Get("Content-Type"); got != contentType {
			t.Errorf("part %d: Content-Type %q, want %q", i, got, contentType)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if !bytes.Equal(data, src[want.Start:want.End+1]) {
			t.Errorf("part %d: %d bytes differ from source range %v", i, len(data), want)
		}
	}
	if _, err := r.NextPart(); err != io.EOF {
		t.Errorf("after %d parts: %v, want io.EOF", len(ranges), err)
	}
}

func TestMultipartFromParse(t *testing.T) {
	const size = 5000
	src := source(size)
	for _, h := range []string{"bytes=0-0,-1", "bytes=100-200,4000-,10-20", "bytes=0-10,5-20,100-200"} {
		t.Run(h, func(t *testing.T) {
			rs, err := Parse(h, size)
			if err != nil {
				t.Fatal(err)
			}
			m := NewMultipart(RandomBoundary(), "video/mp4", size, rs)
			var buf bytes.Buffer
			n, err := m.WriteTo(&buf, bytes.NewReader(src))
			if err != nil || n != m.Len() || int64(buf.Len()) != n {
				t.Fatalf("WriteTo: n=%d Len=%d wrote=%d err=%v", n, m.Len(), buf.Len(), err)
			}
			checkMultipart(t, m, buf.Bytes(), src, "video/mp4", rs)
		})
	}
}

func TestMultipartContentType(t *testing.T) {
	tests := []struct {
		boundary string
		want     string
	}{
		{"abc", "multipart/byteranges; boundary=abc"},
		{"a b", `multipart/byteranges; boundary="a b"`},
		{"a:b", `multipart/byteranges; boundary="a:b"`},
	}
	for _, tt := range tests {
		t.Run(tt.boundary, func(t *testing.T) {
			if got := NewMultipart(tt.boundary, "", 10, nil).ContentType(); got != tt.want {
				t.Errorf("ContentType() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMultipartInvalidBoundaryReplaced(t *testing.T) {
	for _, b := range []string{"", "a\r\nb", "trailing ", strings.Repeat("x", 71), "a\"b", "a;b", "é"} {
		t.Run(b, func(t *testing.T) {
			m := NewMultipart(b, "video/mp4", 10, []Range{{0, 1}})
			if m.Boundary() == b || !validBoundary(m.Boundary()) {
				t.Errorf("boundary %q kept as %q", b, m.Boundary())
			}
		})
	}
}

func TestMultipartContentTypeWithControlDropped(t *testing.T) {
	src := source(10)
	m := NewMultipart("b", "video/mp4\r\nX-Evil: 1", 10, []Range{{0, 1}, {5, 6}})
	var buf bytes.Buffer
	if _, err := m.WriteTo(&buf, bytes.NewReader(src)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "X-Evil") {
		t.Fatalf("control characters reached the part header: %q", buf.String())
	}
	checkMultipart(t, m, buf.Bytes(), src, "", []Range{{0, 1}, {5, 6}})
}

func TestMultipartEmpty(t *testing.T) {
	m := NewMultipart("b", "video/mp4", 10, nil)
	var buf bytes.Buffer
	n, err := m.WriteTo(&buf, bytes.NewReader(nil))
	if err != nil || buf.String() != "--b--\r\n" || n != m.Len() || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; body %q; Len %d", n, err, buf.String(), m.Len())
	}
}

func TestMultipartErrors(t *testing.T) {
	src := source(100)
	tests := []struct {
		name   string
		size   int64
		ranges []Range
		src    io.ReaderAt
		w      io.Writer
		want   error
		wrote  bool
	}{
		{"range past size", 100, []Range{{0, 1}, {50, 100}}, bytes.NewReader(src), &bytes.Buffer{}, ErrInvalid, false},
		{"negative start", 100, []Range{{-1, 1}}, bytes.NewReader(src), &bytes.Buffer{}, ErrInvalid, false},
		{"start after end", 100, []Range{{5, 4}}, bytes.NewReader(src), &bytes.Buffer{}, ErrInvalid, false},
		{"short source", 200, []Range{{0, 1}, {90, 150}}, bytes.NewReader(src), &bytes.Buffer{}, io.ErrUnexpectedEOF, true},
		{"failing writer", 100, []Range{{0, 1}, {5, 6}}, bytes.NewReader(src), &failWriter{after: 60}, errWrite, true},
		{"failing source", 100, []Range{{0, 1}}, errReaderAt{}, &bytes.Buffer{}, errRead, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMultipart("b", "video/mp4", tt.size, tt.ranges)
			n, err := m.WriteTo(tt.w, tt.src)
			if !errors.Is(err, tt.want) {
				t.Fatalf("WriteTo error = %v, want %v", err, tt.want)
			}
			if (n > 0) != tt.wrote {
				t.Errorf("WriteTo wrote %d bytes", n)
			}
			if b, ok := tt.w.(*bytes.Buffer); ok && int64(b.Len()) != n {
				t.Errorf("WriteTo returned %d, wrote %d", n, b.Len())
			}
		})
	}
}

var (
	errWrite = errors.New("write failed")
	errRead  = errors.New("read failed")
)

// failWriter accepts after bytes, then fails.
type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) <= w.after {
		w.after -= len(p)
		return len(p), nil
	}
	n := w.after
	w.after = 0
	return n, errWrite
}

type errReaderAt struct{}

func (errReaderAt) ReadAt([]byte, int64) (int, error) { return 0, errRead }

func TestRandomBoundary(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		b := RandomBoundary()
		if len(b) < 16 || !validBoundary(b) || !isToken(b) {
			t.Fatalf("RandomBoundary() = %q", b)
		}
		if seen[b] {
			t.Fatalf("RandomBoundary() repeated %q", b)
		}
		seen[b] = true
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_, _ = Parse("bytes=1048576-2097151", 1<<30)
	}
}

func BenchmarkMultipartWriteTo(b *testing.B) {
	src := bytes.NewReader(source(1 << 20))
	m := NewMultipart("boundary", "video/mp4", 1<<20, []Range{{0, 65535}, {500000, 600000}})
	b.SetBytes(m.Len())
	b.ReportAllocs()
	for b.Loop() {
		_, _ = m.WriteTo(io.Discard, src)
	}
}
