package manifest

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

var (
	// ErrBadQuery is matched (errors.Is) by every *QueryError: a steering
	// request's query parameter is malformed. Serve 400 with the error text.
	ErrBadQuery = errors.New("manifest: bad steering query")
	// ErrInvalidPathway: a pathway ID breaks the character rules.
	ErrInvalidPathway = errors.New("manifest: invalid pathway ID")
)

// QueryError says which parameter of a steering request is bad, and why.
type QueryError struct {
	Param  string // e.g. "_HLS_throughput"
	Reason string // e.g. "not a number"
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("bad %s: %s", e.Param, e.Reason)
}

// Is makes errors.Is(err, ErrBadQuery) true.
func (e *QueryError) Is(target error) bool { return target == ErrBadQuery }

// Query parameter names.
const (
	ParamHLSPathway     = "_HLS_pathway"
	ParamHLSThroughput  = "_HLS_throughput"
	ParamDASHPathway    = "_DASH_pathway"
	ParamDASHThroughput = "_DASH_throughput"
	// ParamPrevPathway and ParamPrevThroughput are Duet's own: RELOAD-URI
	// carries the pathway and throughput the client reported on its
	// previous request, so the next request shows a pathway switch or a
	// throughput trend without any session store.
	ParamPrevPathway    = "duet_pathway"
	ParamPrevThroughput = "duet_throughput"
)

// Limits on what a query may carry.
const (
	// MaxPathwayIDLen is the longest pathway ID accepted.
	MaxPathwayIDLen = 128
	// MaxReports is the most pathways a DASH client may report at once.
	MaxReports = 32
	// MaxThroughput is the largest throughput accepted, bits/s (1 Pbit/s).
	MaxThroughput = 1_000_000_000_000_000
)

// Report is one pathway a client measured.
type Report struct {
	Pathway string
	// Throughput in bits/s; 0 when the client gave none.
	Throughput int64
}

// Request is what a player's steering request says.
type Request struct {
	// Pathway is the pathway the client is on (HLS), or the first one it
	// reports (DASH; dash.js puts the fastest first). Empty when not sent.
	Pathway string
	// Throughput is the client's throughput on Pathway, bits/s; 0 when not
	// sent.
	Throughput int64
	// Reports lists every pathway the client reported, in its order (HLS:
	// at most one).
	Reports []Report
	// PrevPathway and PrevThroughput are what the client reported on its
	// previous request, carried back by the RELOAD-URI this package writes.
	PrevPathway    string
	PrevThroughput int64
}

// ValidPathwayID reports whether id is a legal pathway ID: 1 to
// MaxPathwayIDLen characters from [a-z], [A-Z], [0-9], '.', '-', '_'
// (draft-pantos-hls-rfc8216bis, Content Steering). The same rule is applied
// to DASH service locations, which must also fit a whitespace-separated
// attribute and a comma-separated query value.
func ValidPathwayID(id string) bool {
	if id == "" || len(id) > MaxPathwayIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// ParseHLSQuery reads _HLS_pathway and _HLS_throughput (and Duet's
// duet_pathway and duet_throughput) from an HLS steering request. Absent
// parameters are fine; a present one must be well-formed, appear once, and
// be a legal pathway ID or a non-negative number of bits per second (a
// fraction is accepted and dropped). The error is a *QueryError.
func ParseHLSQuery(q url.Values) (Request, error) {
	var r Request
	var err error
	if r.Pathway, err = pathwayParam(q, ParamHLSPathway); err != nil {
		return Request{}, err
	}
	if r.Throughput, err = throughputParam(q, ParamHLSThroughput); err != nil {
		return Request{}, err
	}
	if r.Pathway != "" {
		r.Reports = []Report{{Pathway: r.Pathway, Throughput: r.Throughput}}
	}
	if err := prevParams(q, &r); err != nil {
		return Request{}, err
	}
	return r, nil
}

// ParseDASHQuery reads _DASH_pathway and _DASH_throughput (and Duet's
// duet_pathway and duet_throughput) from a DASH steering request.
// _DASH_pathway is a comma-separated list of pathway IDs, quoted as a whole
// or one by one or not at all; _DASH_throughput a comma-separated list of
// bits/s paired with it by position, where an entry may be empty (unknown)
// and the list may be shorter than the pathways' (dash.js leaves unknown
// values out) but not longer. The error is a *QueryError.
func ParseDASHQuery(q url.Values) (Request, error) {
	var r Request
	pv, ok, err := single(q, ParamDASHPathway)
	if err != nil {
		return Request{}, err
	}
	if ok {
		list := pv
		if strings.Trim(list, `" `) == "" {
			return Request{}, &QueryError{ParamDASHPathway, "empty"}
		}
		n := strings.Count(list, ",") + 1
		if n > MaxReports {
			return Request{}, &QueryError{ParamDASHPathway, fmt.Sprintf("more than %d pathways", MaxReports)}
		}
		r.Reports = make([]Report, 0, n)
		// The quotes may wrap the whole list ("a,b", as dash.js sends
		// it), each element ("a","b"), or nothing: drop one quote at
		// each end of each element.
		for id := range strings.SplitSeq(list, ",") {
			id = strings.TrimSpace(id)
			id = strings.TrimSuffix(strings.TrimPrefix(id, `"`), `"`)
			id = strings.TrimSpace(id)
			if !ValidPathwayID(id) {
				return Request{}, &QueryError{ParamDASHPathway, fmt.Sprintf("%q is not a pathway ID", clip(id))}
			}
			r.Reports = append(r.Reports, Report{Pathway: id})
		}
	}
	tv, ok, err := single(q, ParamDASHThroughput)
	if err != nil {
		return Request{}, err
	}
	if ok && strings.TrimSpace(tv) != "" {
		i := 0
		for v := range strings.SplitSeq(tv, ",") {
			if i >= len(r.Reports) {
				return Request{}, &QueryError{ParamDASHThroughput, "more values than pathways in " + ParamDASHPathway}
			}
			if v = strings.TrimSpace(v); v != "" {
				bps, err := parseBPS(v)
				if err != nil {
					return Request{}, &QueryError{ParamDASHThroughput, err.Error()}
				}
				r.Reports[i].Throughput = bps
			}
			i++
		}
	}
	if len(r.Reports) > 0 {
		r.Pathway, r.Throughput = r.Reports[0].Pathway, r.Reports[0].Throughput
	}
	if err := prevParams(q, &r); err != nil {
		return Request{}, err
	}
	return r, nil
}

func prevParams(q url.Values, r *Request) error {
	var err error
	if r.PrevPathway, err = pathwayParam(q, ParamPrevPathway); err != nil {
		return err
	}
	r.PrevThroughput, err = throughputParam(q, ParamPrevThroughput)
	return err
}

// single returns the one value of name; a repeated parameter is an error.
func single(q url.Values, name string) (string, bool, error) {
	vs, ok := q[name]
	if !ok {
		return "", false, nil
	}
	if len(vs) != 1 {
		return "", false, &QueryError{name, "given more than once"}
	}
	return vs[0], true, nil
}

func pathwayParam(q url.Values, name string) (string, error) {
	v, ok, err := single(q, name)
	if err != nil || !ok {
		return "", err
	}
	id := unquote(v)
	if !ValidPathwayID(id) {
		return "", &QueryError{name, fmt.Sprintf("%q is not a pathway ID ([A-Za-z0-9._-], 1 to %d characters)", clip(v), MaxPathwayIDLen)}
	}
	return id, nil
}

func throughputParam(q url.Values, name string) (int64, error) {
	v, ok, err := single(q, name)
	if err != nil || !ok {
		return 0, err
	}
	bps, err := parseBPS(v)
	if err != nil {
		return 0, &QueryError{name, err.Error()}
	}
	return bps, nil
}

// parseBPS reads a non-negative decimal number of bits per second: digits,
// optionally a point and more digits.
func parseBPS(v string) (int64, error) {
	whole, frac, hasPoint := strings.Cut(v, ".")
	if whole == "" || (hasPoint && frac == "") || !digits(whole) || !digits(frac) {
		return 0, fmt.Errorf("%q is not a number of bits per second", clip(v))
	}
	if len(whole) > 16 {
		return 0, fmt.Errorf("%q is out of range", clip(v))
	}
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || n > MaxThroughput {
		return 0, fmt.Errorf("%q is out of range", clip(v))
	}
	return n, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// unquote drops one pair of surrounding double quotes.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// clip shortens a bad value quoted back in an error.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
