package edge

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/object"
)

// fasthttp's response setters refuse Date ("managed automatically") and write the server's
// clock instead, so a hit could not send the stored Date that its Age counts from (RFC 9111
// §4.2.3, §5.1): a downstream cache then reads Expires minus that Date as the freshness
// lifetime, short by the entry's age. The one way fasthttp allows a Date of one's own is parsing
// it into a header, and that header must carry NoDefaultDate, or fasthttp drops it for its
// clock's. So the edge parses Dates into templates that carry NoDefaultDate and copies them into
// the responses that send a stored or origin Date; every other answer (errors, redirects the
// edge makes) keeps fasthttp's own clock Date, which costs nothing.

// dateTemplate is a response header holding only one Date, parsed once and copied into each
// response that sends that Date (ResponseHeader.CopyTo copies the parsed field as it is). Parsing
// a header for every response was a third of a 1 KiB memory hit's time (BenchmarkHit 1.0 µs →
// 2.2 µs); a copy costs a few tens of nanoseconds.
type dateTemplate struct {
	date string // the Date value; for the clock's template, the second it was made for
	sec  int64  // the clock's template: the Unix second it holds
	hdr  fasthttp.ResponseHeader
}

// dateTemplates holds the clock's current template and a direct-mapped, fixed-size table of
// the stored Dates seen lately (hits of one object share its Date): bounded memory, no locks.
type dateTemplates struct {
	// base is an empty header with NoDefaultDate and NoDefaultContentType set, which every
	// template starts from (see newDateTemplates).
	base  fasthttp.ResponseHeader
	now   atomic.Pointer[dateTemplate]
	slots [1024]atomic.Pointer[dateTemplate]
}

// newDateTemplates makes the templates' base. fasthttp has no setter for NoDefaultDate: only
// its server puts it on a response header, so one request is served over an in-memory pipe by a
// server with that setting, and its response header, still empty, is copied.
func newDateTemplates() (*dateTemplates, error) {
	dt := new(dateTemplates)
	srv := &fasthttp.Server{
		NoDefaultDate:        true,
		NoDefaultContentType: true, // as the viewer server
		Handler:              func(ctx *fasthttp.RequestCtx) { ctx.Response.Header.CopyTo(&dt.base) },
	}
	c, peer := net.Pipe()
	go func() {
		_, _ = peer.Write([]byte("GET / HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n"))
		_, _ = io.Copy(io.Discard, peer)
		_ = peer.Close()
	}()
	err := srv.ServeConn(c)
	_ = c.Close()
	if err != nil {
		return nil, fmt.Errorf("prepare Date templates: %w", err)
	}
	return dt, nil
}

// newDateTemplate parses a header holding only Date: value, with base's settings.
func newDateTemplate(base *fasthttp.ResponseHeader, value string) *dateTemplate {
	t := &dateTemplate{date: value}
	base.CopyTo(&t.hdr)
	// Made once a second, or once per stored Date: a plain reader will do (no pool).
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nDate: " + value + "\r\n\r\n"))
	_ = t.hdr.Read(br) // cannot fail: value is checked by the caller; on failure the header has no Date
	// A parsed response without Content-Length reads as "until close": the edge's responses
	// set their own framing afterwards and keep the connection.
	t.hdr.ResetConnectionClose()
	return t
}

// setDate resets rh to a header holding only Date: date when it is a well-formed
// IMF-fixdate, otherwise now. It must come before anything else is set on rh.
func (dt *dateTemplates) setDate(rh *fasthttp.ResponseHeader, date string, now time.Time) {
	if !wellFormedDate(date) {
		sec := now.Unix()
		t := dt.now.Load()
		if t == nil || t.sec != sec {
			t = newDateTemplate(&dt.base, now.UTC().Format(http.TimeFormat))
			t.sec = sec
			dt.now.Store(t)
		}
		t.hdr.CopyTo(rh)
		return
	}
	slot := &dt.slots[xxhash.Sum64String(date)%uint64(len(dt.slots))]
	t := slot.Load()
	if t == nil || t.date != date {
		t = newDateTemplate(&dt.base, date)
		slot.Store(t)
	}
	t.hdr.CopyTo(rh)
}

// printable reports whether s is visible ASCII or space (a header value that cannot split the
// header block).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// storedDate is an entry's stored Date, or "".
func storedDate(h []object.Field) string {
	for i := range h {
		if h[i].Name == "Date" {
			return h[i].Value
		}
	}
	return ""
}

// storedHeaders resets rh to the stored Date and headers of the entry m (m is e.meta or a copy
// of it), Accept-Ranges when m answers 200, and the CORS headers, which replace the origin's. For a memory entry with a well-formed Date they
// are rendered once into a header kept with the entry, and each hit copies it: setting a dozen
// fields one by one was a third of a 1 KiB memory hit's time, a copy is a few memmoves.
func (s *Server) storedHeaders(rh *fasthttp.ResponseHeader, m *object.Meta, e entry, now time.Time) {
	if e.mem == nil || m != &e.mem.Meta {
		s.writeStoredHeaders(rh, m, now)
		return
	}
	if t, ok := e.mem.Prepared.Load().(*fasthttp.ResponseHeader); ok {
		t.CopyTo(rh)
		return
	}
	if !wellFormedDate(storedDate(m.Header)) {
		// Without a Date of its own the entry sends the clock's, which changes every second.
		s.writeStoredHeaders(rh, m, now)
		return
	}
	t := new(fasthttp.ResponseHeader)
	s.writeStoredHeaders(t, m, now) // its Date template carries the viewer server's settings

	e.mem.Prepared.CompareAndSwap(nil, t)
	t.CopyTo(rh)
}

// writeStoredHeaders is storedHeaders field by field.
func (s *Server) writeStoredHeaders(rh *fasthttp.ResponseHeader, m *object.Meta, now time.Time) {
	// The stored Date goes with the Age computed from it (RFC 9111 §4, §5.1).
	s.dates.setDate(rh, storedDate(m.Header), now)
	// Stored names are canonical already (Go's HTTP client and the S3 SDK hand them over in
	// canonical form, storedHeaders keeps them sorted): the first of each name goes in with
	// SetCanonical, which skips fasthttp's per-call copy and normalising of the name; a
	// repeated name (sorted next to its first) is added after it.
	for i := range m.Header {
		f := &m.Header[i]
		if f.Name == "Content-Range" && m.Status != http.StatusPartialContent {
			continue // a whole object stored from a 206 that covered it: respond sets its own
		}
		if i > 0 && m.Header[i-1].Name == f.Name {
			rh.Add(f.Name, f.Value)
			continue
		}
		rh.SetCanonical(s2b(f.Name), s2b(f.Value))
	}
	if m.Status == http.StatusOK {
		rh.SetCanonical(hdrAcceptRanges, valBytes)
	}
	if s.cors.enabled() {
		s.cors.apply(rh)
	}
}

// wellFormedDate reports whether date has an IMF-fixdate's shape, the test setDate applies.
func wellFormedDate(date string) bool {
	return len(date) == len(http.TimeFormat) && printable(date)
}
