package edge

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/internal/accesslog"
	"github.com/duetcdn/duet/internal/clientaddr"
	"github.com/duetcdn/duet/internal/cmcd"
)

// AccessLogConfig is the edge's access log: one JSON line per viewer request.
type AccessLogConfig struct {
	accesslog.Config `yaml:",inline"`
	// TrustedProxies lists the proxies (CIDR prefixes or addresses) in front of the edge whose
	// X-Forwarded-For is believed: the logged client is then the address they saw. Default none:
	// the connection's peer.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// Canonical names and pre-rendered values of the request end's headers (see status.go).
var (
	hdrServerTiming = []byte("Server-Timing")
	hdrTraceparent  = []byte("Traceparent")
	hdrCMCDRequest  = []byte("Cmcd-Request")
	hdrCMCDObject   = []byte("Cmcd-Object")
	hdrCMCDStatus   = []byte("Cmcd-Status")
	hdrCMCDSession  = []byte("Cmcd-Session")
	// serverTiming is each cache status's Server-Timing metric, for browsers' dev tools.
	serverTiming = func() (b [numCacheStatus][]byte) {
		for i, info := range cacheStatusInfo {
			b[i] = []byte(`cdn-cache;desc="` + info.label + `"`)
		}
		return b
	}()
)

// requestEnd closes every viewer request: the request metrics, CMCD, Server-Timing and the
// access log line. A response whose body streams is logged when the body is done (loggedBody).
func (s *Server) requestEnd(ctx *fasthttp.RequestCtx, rq *request, cs cacheStatus) {
	end := s.now()
	s.m.observe(cs, rq.start, end)
	data := s.readCMCD(ctx, rq, end)
	rh := &ctx.Response.Header
	if rq.originTime > 0 {
		var buf [96]byte
		b := append(buf[:0], serverTiming[cs]...)
		b = append(b, ", origin;dur="...)
		b = strconv.AppendFloat(b, float64(rq.originTime.Microseconds())/1000, 'f', 1, 64)
		rh.SetCanonical(hdrServerTiming, b)
	} else {
		rh.SetCanonical(hdrServerTiming, serverTiming[cs])
	}
	if s.alog == nil {
		return
	}
	if lb, ok := ctx.Response.BodyStream().(*loggedBody); ok {
		lb.rec = s.record(ctx, rq, cs, end, nil)
		if data != nil {
			lb.data = rq.cmcd // a copy: rq stays on the handler's stack
			lb.rec.CMCD = &lb.data
		}
		lb.arm()
		return
	}
	rec := s.record(ctx, rq, cs, end, data)
	if !ctx.Response.SkipBody && !ctx.IsHead() {
		if hb, ok := ctx.Response.BodyStream().(*hitBody); ok {
			rec.Bytes = hb.r.Size() // Body() would read the stream into a copy (coalesce.go)
		} else {
			rec.Bytes = int64(len(ctx.Response.Body()))
		}
	}
	if s.alog.Wanted(rec.Status, rec.Duration) {
		s.alog.Log(&rec)
	}
}

// record is the request's line, with views of the request's buffers. The request id goes as
// its bytes (the log's writer writes the hex; it numbers the line itself when the request has
// no id: no traceparent, no origin fetch), and a stored response's Cache-Status as respond set
// it: looking the header up again would cost a hit more than the rest of its line.
func (s *Server) record(ctx *fasthttp.RequestCtx, rq *request, cs cacheStatus, end time.Time, data *cmcd.Data) accesslog.Record {
	target := b2s(ctx.Request.Header.RequestURI())
	path, query, _ := strings.Cut(target, "?")
	id := rq.id
	if !rq.hasID {
		id, _ = traceID(ctx)
	}
	cstatus := rq.cacheStatus
	if cstatus == "" {
		cstatus = b2s(ctx.Response.Header.PeekCanonical(hdrCacheStatus))
	}
	if cstatus == "" {
		cstatus = cs.header()
	}
	d := end.Sub(rq.start)
	return accesslog.Record{Time: rq.start, Client: s.clientAddr(ctx), Method: b2s(ctx.Method()), Path: path, Query: query,
		Status: ctx.Response.StatusCode(), TTFB: d, Duration: d, CacheStatus: cstatus,
		Tier: rq.tier, OriginTime: rq.originTime, ID: id, CMCD: data}
}

// readCMCD reads the request's CMCD (query parameter or headers) into rq and counts it; nil
// when the request has none or it cannot be read.
func (s *Server) readCMCD(ctx *fasthttp.RequestCtx, rq *request, now time.Time) *cmcd.Data {
	h := &ctx.Request.Header
	hdrs := cmcd.Headers{Request: b2s(h.PeekCanonical(hdrCMCDRequest)), Object: b2s(h.PeekCanonical(hdrCMCDObject)),
		Status: b2s(h.PeekCanonical(hdrCMCDStatus)), Session: b2s(h.PeekCanonical(hdrCMCDSession))}
	var err error
	switch _, q, _ := strings.Cut(b2s(h.RequestURI()), "?"); {
	case hdrs.Any():
		err = cmcd.ParseHeaders(&rq.cmcd, hdrs)
	case strings.Contains(q, "CMCD="):
		v, _ := cmcd.QueryValue(q)
		err = cmcd.ParseQuery(&rq.cmcd, v)
	default:
		return nil
	}
	if err != nil {
		s.qoe.Invalid()
		return nil
	}
	s.qoe.Observe(&rq.cmcd, now)
	return &rq.cmcd
}

// clientAddr is the viewer's address: the connection's peer, or, behind a trusted proxy, the
// address in X-Forwarded-For that proxy saw (internal/clientaddr).
func (s *Server) clientAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if len(s.trusted) == 0 {
		return peer
	}
	xff := b2s(ctx.Request.Header.Peek("X-Forwarded-For"))
	if xff == "" {
		return peer
	}
	if a, err := clientaddr.Parse(peer.String(), xff, s.trusted); err == nil {
		return a
	}
	return peer
}

// requestID sets rq.id once: the trace id of the viewer's traceparent when it sent a valid one
// (so that its trace and the edge's log line meet), otherwise the edge's random prefix and a
// sequence number.
func (s *Server) requestID(ctx *fasthttp.RequestCtx, rq *request) {
	if rq.hasID {
		return
	}
	rq.hasID = true
	var ok bool
	if rq.id, ok = traceID(ctx); ok {
		return
	}
	copy(rq.id[:8], s.idPrefix[:])
	n := s.idSeq.Add(1)
	for i := range 8 {
		rq.id[8+i] = byte(n >> (56 - 8*i))
	}
}

// traceID is the trace id of the viewer's traceparent, when it sent a valid one.
func traceID(ctx *fasthttp.RequestCtx) (id [16]byte, ok bool) {
	if tp := ctx.Request.Header.PeekCanonical(hdrTraceparent); len(tp) == 55 && tp[2] == '-' && tp[35] == '-' {
		if _, err := hex.Decode(id[:], tp[3:35]); err == nil && id != [16]byte{} {
			return id, true
		}
	}
	return [16]byte{}, false
}

// setTraceparent gives an origin request the W3C traceparent of the viewer's request: its trace
// id (the request id of the access log), a new span id, and the viewer's flags (sampled when it
// sent none).
func (s *Server) setTraceparent(ctx *fasthttp.RequestCtx, rq *request, h http.Header) {
	s.requestID(ctx, rq)
	var span [8]byte
	_, _ = rand.Read(span[:])
	flags := "01"
	if tp := ctx.Request.Header.PeekCanonical(hdrTraceparent); len(tp) == 55 {
		flags = string(tp[53:55])
	}
	h.Set("Traceparent", "00-"+hex.EncodeToString(rq.id[:])+"-"+hex.EncodeToString(span[:])+"-"+flags)
}

// setBodyStream sets a streamed response body, wrapped when the access log is on so that the
// line is written once the body has been sent, with its real length and duration.
func (s *Server) setBodyStream(ctx *fasthttp.RequestCtx, r io.Reader, n int) {
	if s.alog != nil {
		r = &loggedBody{r: r, s: s}
	}
	ctx.SetBodyStream(r, n)
}

// loggedBody counts a streamed body's bytes and logs its request when fasthttp closes it.
type loggedBody struct {
	r     io.Reader
	s     *Server
	n     int64
	armed bool
	rec   accesslog.Record
	data  cmcd.Data
}

// arm makes the record record() filled its own: the request's buffers are reused once it is
// answered, before the body is done.
func (b *loggedBody) arm() {
	r := &b.rec
	r.Method, r.Path, r.Query = strings.Clone(r.Method), strings.Clone(r.Path), strings.Clone(r.Query)
	r.CacheStatus = strings.Clone(r.CacheStatus)
	b.armed = true
}

func (b *loggedBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

// WriteTo keeps the inner body's WriteTo (a disk hit's sendfile, see fileBody).
func (b *loggedBody) WriteTo(w io.Writer) (int64, error) {
	var n int64
	var err error
	if wt, ok := b.r.(io.WriterTo); ok {
		n, err = wt.WriteTo(w)
	} else {
		n, err = io.Copy(w, b.r)
	}
	b.n += n
	return n, err
}

func (b *loggedBody) Close() error {
	var err error
	if c, ok := b.r.(io.Closer); ok {
		err = c.Close()
	}
	if b.armed {
		b.armed = false
		b.rec.Bytes = b.n
		b.rec.Duration = b.s.now().Sub(b.rec.Time)
		if b.s.alog.Wanted(b.rec.Status, b.rec.Duration) {
			b.s.alog.Log(&b.rec)
		}
	}
	return err
}

// newAccessLog builds the edge's access log from its configuration (nil when off).
func newAccessLog(cfg Config, deps Deps) (*accesslog.Logger, error) {
	sink := deps.AccessLogSink
	if sink == nil {
		c := cfg.AccessLog.Config
		if c.Subject == "" {
			c.Subject = "duet.accesslog.edge." + cfg.Name
		}
		var err error
		if sink, err = accesslog.NewSink(c, deps.AccessLogPublisher); err != nil || sink == nil {
			return nil, err
		}
	}
	return accesslog.New(cfg.AccessLog.Config, sink, deps.Registry, "edge", cfg.Name, "region", cfg.Region)
}

// newIDPrefix is the random half of the edge's request ids.
func newIDPrefix() (p [8]byte) {
	_, _ = rand.Read(p[:])
	return p
}
