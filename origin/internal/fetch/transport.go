package fetch

import (
	"net"
	"net/http"
	"net/url"
	"time"
)

// NewTransport is the connection pool of one origin: up to maxConns idle connections are kept for
// reuse (an origin has one host, so the total and per-host limits are the same), dials are bounded
// by dialTimeout, and nothing is decompressed behind the caller's back: the edge caches and serves
// the bytes the origin sent, with their Content-Encoding.
func NewTransport(dialTimeout time.Duration, maxConns int, proxy func(*http.Request) (*url.URL, error)) *http.Transport {
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 proxy,
		DialContext:           d.DialContext,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}
