package origin

import (
	"net/http"
	"strings"
)

// hopByHop lists the hop-by-hop headers of RFC 9110 section 7.6.1 (and the legacy ones proxies
// still meet): they describe one connection and are never forwarded nor cached.
var hopByHop = []string{
	"Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Proxy-Connection",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopByHop deletes the hop-by-hop headers from h, including those the Connection header
// names.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
}

// cloneHeader copies h with canonical names, minus hop-by-hop headers. A nil h gives an empty
// header.
func cloneHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, vv := range h {
		ck := http.CanonicalHeaderKey(k)
		out[ck] = append(out[ck], vv...)
	}
	removeHopByHop(out)
	return out
}

// emptyResponse is an answer without a body.
func emptyResponse(status int, h http.Header) *Response {
	if h == nil {
		h = make(http.Header)
	}
	return &Response{Status: status, Header: h, Body: http.NoBody, ContentLength: 0}
}
