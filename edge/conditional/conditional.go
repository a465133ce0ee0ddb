// Package conditional evaluates a request's conditional header fields against a stored
// response (RFC 9110 §13): the checks a cache makes before answering from what it holds.
// It works on field values as sent and keeps no state, so the edge's hit path calls it
// without allocating.
package conditional

import (
	"net/http"
	"strings"
	"time"
)

// Stored is what the conditions are evaluated against: the stored response's status and
// validators (ETag as sent, "" when none; Last-Modified, zero when none).
type Stored struct {
	Status       int
	ETag         string
	LastModified time.Time
}

// Preconditions evaluates If-Match, then If-Unmodified-Since (RFC 9110 §13.2.2 steps 1 and 2);
// false means 412. If-Match compares strongly and fails for a response that is not a 2xx
// representation; If-Unmodified-Since is ignored when If-Match is present, when its value is
// not a valid date, or when the response has no Last-Modified (as Go's net/http does: the
// condition cannot be evaluated).
func Preconditions(ifMatch, ifUnmodifiedSince string, st Stored) bool {
	if ifMatch != "" {
		if st.Status < 200 || st.Status > 299 {
			return false
		}
		return strings.TrimSpace(ifMatch) == "*" || ETagListMatches(ifMatch, st.ETag, true)
	}
	if ifUnmodifiedSince != "" && !st.LastModified.IsZero() {
		t, err := http.ParseTime(strings.TrimSpace(ifUnmodifiedSince))
		return err != nil || !st.LastModified.Truncate(time.Second).After(t)
	}
	return true
}

// NotModified evaluates If-None-Match, then If-Modified-Since (RFC 9110 §13.2.2 steps 3 and
// 4): true means the answer is 304. If-Modified-Since is ignored when If-None-Match is
// present, when it is not a valid date, or when the response has no Last-Modified.
func NotModified(ifNoneMatch, ifModifiedSince string, st Stored) bool {
	if ifNoneMatch != "" {
		// "*" matches any current representation, with or without an ETag.
		return strings.TrimSpace(ifNoneMatch) == "*" || ETagListMatches(ifNoneMatch, st.ETag, false)
	}
	if ifModifiedSince != "" && !st.LastModified.IsZero() {
		t, err := http.ParseTime(ifModifiedSince)
		return err == nil && !st.LastModified.Truncate(time.Second).After(t)
	}
	return false
}

// IfRange evaluates If-Range (RFC 9110 §13.1.5): a range applies only to the representation
// the client has, named by a strong ETag or by its exact Last-Modified. An absent If-Range
// holds.
func IfRange(ifRange string, st Stored) bool {
	ir := strings.TrimSpace(ifRange)
	if ir == "" {
		return true
	}
	if strings.HasPrefix(ir, "\"") || strings.HasPrefix(ir, "W/") {
		return ETagListMatches(ir, st.ETag, true)
	}
	t, err := http.ParseTime(ir)
	return err == nil && !st.LastModified.IsZero() && st.LastModified.Truncate(time.Second).Equal(t)
}

// ETagListMatches compares an entity-tag list ("*" or comma-separated tags) with an ETag,
// weakly unless strong is set (RFC 9110 §8.8.3.2). An empty ETag matches nothing.
func ETagListMatches(list, etag string, strong bool) bool {
	if etag == "" {
		return false
	}
	if strings.TrimSpace(list) == "*" {
		return true
	}
	if strong && strings.HasPrefix(etag, "W/") {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for part := range strings.SplitSeq(list, ",") {
		part = strings.TrimSpace(part)
		if strong && strings.HasPrefix(part, "W/") {
			continue
		}
		if strings.TrimPrefix(part, "W/") == want {
			return true
		}
	}
	return false
}
