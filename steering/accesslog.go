package steering

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetcdn/duet/internal/accesslog"
	"github.com/duetcdn/duet/internal/clientaddr"
)

// newAccessLog builds the access log cfg.AccessLog describes (nil when off).
func newAccessLog(cfg Config, deps Deps, reg prometheus.Registerer, name string) (*accesslog.Logger, error) {
	sink := deps.AccessLogSink
	if sink == nil {
		c := cfg.AccessLog
		if c.Subject == "" {
			c.Subject = "duet.accesslog.steering." + name
		}
		var err error
		if sink, err = accesslog.NewSink(c, deps.AccessLogPublisher); err != nil || sink == nil {
			return nil, err
		}
	}
	return accesslog.New(cfg.AccessLog, sink, reg, "component", "steering")
}

// logRequests writes one access log line per request that next answers.
func (s *Server) logRequests(next http.Handler) http.Handler {
	if s.alog == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := s.now()
		lw := &logWriter{ResponseWriter: w, now: s.now}
		next.ServeHTTP(lw, r)
		end := s.now()
		if lw.status == 0 {
			lw.status, lw.first = http.StatusOK, end
		}
		if !s.alog.Wanted(lw.status, end.Sub(start)) {
			return
		}
		client, err := clientaddr.Parse(r.RemoteAddr, strings.Join(r.Header.Values("X-Forwarded-For"), ","), s.trusted)
		if err != nil {
			client, _ = clientaddr.Parse(r.RemoteAddr, "", nil)
		}
		s.alog.Log(&accesslog.Record{Time: start, Client: client, Method: r.Method, Path: r.URL.EscapedPath(),
			Query: r.URL.RawQuery, Status: lw.status, Bytes: lw.n, TTFB: lw.first.Sub(start), Duration: end.Sub(start),
			RequestID: requestID(r)})
	})
}

// requestID is the trace id of the request's traceparent, or a random id.
func requestID(r *http.Request) string {
	if tp := r.Header.Get("Traceparent"); len(tp) == 55 && tp[2] == '-' && tp[35] == '-' {
		if _, err := hex.DecodeString(tp[3:35]); err == nil {
			return strings.ToLower(tp[3:35])
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// logWriter notes a response's status, first write and length.
type logWriter struct {
	http.ResponseWriter
	now    func() time.Time
	status int
	first  time.Time
	n      int64
}

func (w *logWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status, w.first = code, w.now()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status, w.first = http.StatusOK, w.now()
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flushes, deadlines).
func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
