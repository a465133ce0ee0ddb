package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/duetcdn/duet/origin/internal/fetch"
)

// HTTPConfig describes a plain HTTP origin.
type HTTPConfig struct {
	// BaseURL is where the objects live, for example "http://127.0.0.1:18080/base": the request's
	// path is appended to its path, and the request's query replaces any. Required.
	BaseURL string
	// Timeout bounds the time until the origin's response headers arrive (for Forward, counted
	// from when the request body has been sent). The body is bounded only by the caller's
	// context. Zero means 10 s.
	Timeout time.Duration
	// MaxConns is the number of idle connections kept for reuse. Zero means 256. It does not cap
	// the number of connections in use: a cap would queue fetches behind slow readers.
	MaxConns int
	// Host, when set, is sent as the Host header instead of BaseURL's host (an origin behind a
	// load balancer that routes by name).
	Host string
}

// HTTP reads objects from a plain HTTP origin. It speaks HTTP/1.1 over a pool of kept-alive
// connections, never follows redirects (a 301 is an answer the edge caches), never decompresses,
// and does not use proxies from the environment: an edge talks to its origins directly.
type HTTP struct {
	base     *url.URL
	basePath string // base.EscapedPath() without a trailing "/"
	host     string
	timeout  time.Duration
	client   *http.Client
	name     string
}

// NewHTTP validates cfg and builds the client.
func NewHTTP(cfg HTTPConfig) (*HTTP, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.BaseURL == "" {
		return nil, fmt.Errorf("%w: http BaseURL is required", ErrInvalidConfig)
	}
	u, err := url.Parse(cfg.BaseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("%w: http BaseURL %q is not an http:// or https:// URL", ErrInvalidConfig, cfg.BaseURL)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%w: http BaseURL %q has a query or fragment", ErrInvalidConfig, cfg.BaseURL)
	case cfg.Timeout < 0:
		return nil, fmt.Errorf("%w: http Timeout %s is negative", ErrInvalidConfig, cfg.Timeout)
	case cfg.MaxConns < 0:
		return nil, fmt.Errorf("%w: http MaxConns %d is negative", ErrInvalidConfig, cfg.MaxConns)
	}
	return &HTTP{
		base:     u,
		basePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		host:     cfg.Host,
		timeout:  cfg.Timeout,
		client: &http.Client{
			Transport: fetch.NewTransport(cfg.Timeout, cfg.MaxConns, nil),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
		name: strings.TrimSuffix(u.Redacted(), "/"),
	}, nil
}

// Name is the base URL (without credentials), for logs and metrics.
func (o *HTTP) Name() string { return o.name }

// Fetch GETs (or, with r.Head, HEADs) r.Path (and r.Query) below the base URL, with r's conditions, range and extra
// headers. Every answer, 5xx included, is a Response; the error is for failing to get one.
// Accept-Encoding is r.Header's (the edge forwards the client's, normalised, when the cached
// response varies on it) or "identity".
func (o *HTTP) Fetch(ctx context.Context, r *Request) (*Response, error) {
	u, ok := o.url(r.Path, r.Query)
	if !ok {
		return emptyResponse(http.StatusBadRequest, nil), nil
	}
	h := cloneHeader(r.Header)
	for _, name := range []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "Host", "Content-Length", "Expect"} {
		h.Del(name)
	}
	if r.Range != "" {
		h.Set("Range", r.Range)
	}
	if r.IfNoneMatch != "" {
		h.Set("If-None-Match", r.IfNoneMatch)
	}
	if !r.IfModifiedSince.IsZero() {
		h.Set("If-Modified-Since", r.IfModifiedSince.UTC().Format(http.TimeFormat))
	}
	if r.IfMatch != "" {
		h.Set("If-Match", r.IfMatch)
	}
	if h.Get("Accept-Encoding") == "" {
		h.Set("Accept-Encoding", "identity")
	}
	if r.Head {
		h.Del("Range")
		return o.do(ctx, http.MethodHead, u, h, nil, 0, "head "+r.Path)
	}
	return o.do(ctx, http.MethodGet, u, h, nil, 0, "fetch "+r.Path)
}

// Forward passes a request with another method (POST, PUT, DELETE...) through to the origin,
// uncached: header minus hop-by-hop headers, and body (nil for none) with the length from
// header's Content-Length, or chunked when it has none. The answer is a Response whatever its
// status, as for Fetch.
func (o *HTTP) Forward(ctx context.Context, method, path, query string, header http.Header, body io.Reader) (*Response, error) {
	if method == "" || strings.ContainsAny(method, " \t\r\n") {
		return nil, fmt.Errorf("forward %q %s to %s: invalid method", method, path, o.name)
	}
	u, ok := o.url(path, query)
	if !ok {
		return emptyResponse(http.StatusBadRequest, nil), nil
	}
	h := cloneHeader(header)
	length := int64(0)
	if body != nil {
		length = -1
		if cl := h.Get("Content-Length"); cl != "" {
			n, err := strconv.ParseInt(cl, 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("forward %s %s to %s: invalid Content-Length %q", method, path, o.name, cl)
			}
			length = n
		}
	}
	// The edge has answered any "Expect: 100-continue" itself; Host is set from the config.
	for _, name := range []string{"Content-Length", "Expect", "Host"} {
		h.Del(name)
	}
	return o.do(ctx, method, u, h, body, length, "forward "+method+" "+path)
}

// do sends one request and turns the answer into a Response. what prefixes errors.
func (o *HTTP) do(ctx context.Context, method string, u *url.URL, h http.Header, body io.Reader, length int64, what string) (*Response, error) {
	// With a body, the clock starts once the body is sent: an upload's length is the client's
	// business, not the origin's time to answer.
	fb := fetch.StartFirstByte(ctx, o.timeout, body != nil)
	reqCtx := fb.Context()
	if body != nil {
		reqCtx = httptrace.WithClientTrace(reqCtx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { fb.Start() },
		})
	}
	req, err := http.NewRequestWithContext(reqCtx, method, u.String(), nil)
	if err != nil {
		fb.Release()
		return nil, fmt.Errorf("%s to %s: %w", what, o.name, err)
	}
	req.URL = u // keep the exact escaping of the path
	req.Header = h
	if o.host != "" {
		req.Host = o.host
	}
	if body != nil && length != 0 {
		req.Body = io.NopCloser(body)
		req.ContentLength = length // -1: unknown, sent chunked
	}
	if _, ok := h["User-Agent"]; !ok {
		h.Set("User-Agent", "duet")
	}

	resp, err := o.client.Do(req)
	if err != nil {
		fb.Release()
		return nil, fmt.Errorf("%s to %s: %w", what, o.name, fb.WrapErr(unwrapURLError(err)))
	}
	if !fb.Arrived() {
		_ = resp.Body.Close()
		fb.Release()
		return nil, fmt.Errorf("%s to %s: %w", what, o.name, context.Cause(fb.Context()))
	}
	removeHopByHop(resp.Header)
	return &Response{
		Status:        resp.StatusCode,
		Header:        resp.Header,
		Body:          &fetch.ReleaseBody{ReadCloser: resp.Body, Release: fb.Release},
		ContentLength: resp.ContentLength,
	}, nil
}

// url joins the base URL and an (escaped) request path and query. ok is false when path is not
// valid percent-encoding.
func (o *HTTP) url(path, query string) (u *url.URL, ok bool) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	escaped := o.basePath + path
	decoded, err := url.PathUnescape(escaped)
	if err != nil {
		return nil, false
	}
	u = &url.URL{
		Scheme:   o.base.Scheme,
		User:     o.base.User,
		Host:     o.base.Host,
		Path:     decoded,
		RawPath:  escaped, // used as sent when it is a valid encoding of Path, re-escaped otherwise
		RawQuery: query,
	}
	return u, true
}

// unwrapURLError drops the *url.Error layer, whose message repeats the whole URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
