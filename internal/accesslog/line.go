package accesslog

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/duetcdn/duet/internal/cmcd"
)

// AppendLine appends r's JSON line, newline included, to b. It allocates only when b is too
// small.
func (l *Logger) AppendLine(b []byte, r *Record) []byte { return l.appendLine(b, r, false, nil) }

// appendLine is AppendLine; truncated adds "truncated":true (the ring cut a string), and tc,
// when not nil, keeps the last second's rendering for the next line.
func (l *Logger) appendLine(b []byte, r *Record, truncated bool, tc *timeCache) []byte {
	b = append(b, `{"time":"`...)
	b = tc.appendTime(b, r.Time)
	b = append(b, '"')
	b = append(b, l.fixed...)
	b = appendKey(b, "client")
	b = append(b, '"')
	if r.Client.IsValid() {
		b = r.Client.AppendTo(b)
	}
	b = append(b, '"')
	b = appendKey(b, "method")
	b = appendString(b, r.Method)
	b = appendKey(b, "path")
	b = appendPath(b, r.Path)
	b = appendKey(b, "query")
	b = l.appendQuery(b, r.Query)
	b = appendKey(b, "status")
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = appendKey(b, "bytes")
	b = strconv.AppendInt(b, r.Bytes, 10)
	b = appendKey(b, "ttfb_us")
	b = strconv.AppendInt(b, r.TTFB.Microseconds(), 10)
	b = appendKey(b, "duration_us")
	b = strconv.AppendInt(b, r.Duration.Microseconds(), 10)
	b = appendKey(b, "cache_status")
	b = appendString(b, r.CacheStatus)
	b = appendKey(b, "tier")
	b = appendString(b, r.Tier)
	b = appendKey(b, "origin_us")
	b = strconv.AppendInt(b, r.OriginTime.Microseconds(), 10)
	b = appendKey(b, "request_id")
	if r.RequestID == "" && r.ID != [16]byte{} {
		b = append(b, '"')
		b = hex.AppendEncode(b, r.ID[:])
		b = append(b, '"')
	} else {
		b = appendString(b, r.RequestID)
	}
	if r.CMCD != nil && !r.CMCD.Empty() {
		b = appendKey(b, "cmcd")
		b = appendCMCD(b, r.CMCD)
	}
	if truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, "}\n"...)
}

// timeCache is the writer's rendering of the second its last line was in: the lines come in
// time order, and formatting a time is a fifth of a line's cost.
type timeCache struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05."
}

// appendTime writes t in UTC with microseconds, as "2006-01-02T15:04:05.000000Z"; tc may be
// nil.
func (tc *timeCache) appendTime(b []byte, t time.Time) []byte {
	const layout = "2006-01-02T15:04:05.000000Z07:00"
	if tc == nil {
		return t.UTC().AppendFormat(b, layout)
	}
	if sec := t.Unix(); sec != tc.sec || tc.prefix == nil {
		tc.sec = sec
		tc.prefix = t.UTC().AppendFormat(tc.prefix[:0], "2006-01-02T15:04:05.")
	}
	b = append(b, tc.prefix...)
	us := t.Nanosecond() / 1000
	for d := 100000; d > 0; d /= 10 {
		b = append(b, byte('0'+us/d%10))
	}
	return append(b, 'Z')
}

// appendCMCD writes the keys a player sent, under their CMCD names.
func appendCMCD(b []byte, d *cmcd.Data) []byte {
	b = append(b, '{')
	first := true
	key := func(k string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, `":`...)
	}
	num := func(k string, v int64) {
		if v >= 0 {
			key(k)
			b = strconv.AppendInt(b, v, 10)
		}
	}
	str := func(k, v string) {
		if v != "" {
			key(k)
			b = appendString(b, v)
		}
	}
	num("bl", d.BufferLength)
	num("br", d.Bitrate)
	if d.Starved {
		key("bs")
		b = append(b, "true"...)
	}
	str("cid", d.ContentID)
	num("d", d.Duration)
	num("dl", d.Deadline)
	num("mtp", d.Throughput)
	str("ot", d.ObjectType)
	if d.HasPlaybackRate {
		key("pr")
		b = strconv.AppendFloat(b, d.PlaybackRate, 'f', -1, 64)
	}
	num("rtp", d.RequestedTP)
	str("sf", d.StreamFormat)
	str("sid", d.SessionID)
	str("st", d.StreamType)
	if d.Startup {
		key("su")
		b = append(b, "true"...)
	}
	num("tb", d.TopBitrate)
	return append(b, '}')
}

// appendQuery writes the query as a JSON string, with the values of redacted parameters
// replaced.
func (l *Logger) appendQuery(b []byte, q string) []byte {
	b = append(b, '"')
	for i := 0; q != ""; i++ {
		param, rest, _ := strings.Cut(q, "&")
		if i > 0 {
			b = append(b, '&')
		}
		name, hasValue := param, false
		if j := strings.IndexByte(param, '='); j >= 0 {
			name, hasValue = param[:j], true
		}
		if hasValue && l.redacted(name) {
			b = appendStringBody(b, name)
			b = append(b, "=REDACTED"...)
		} else {
			b = appendStringBody(b, param)
		}
		q = rest
	}
	return append(b, '"')
}

// redacted reports whether a raw (percent-encoded) parameter name is one of RedactParams.
func (l *Logger) redacted(raw string) bool {
	plain := !strings.ContainsAny(raw, "%+") // then a name matches only one of its length
	for _, n := range l.redact {
		if (!plain || len(raw) == len(n)) && matchName(raw, n, false) {
			return true
		}
	}
	for _, p := range l.prefix {
		if matchName(raw, p, true) {
			return true
		}
	}
	return false
}

// matchName compares a raw query name, percent-decoded ('+' is a space) and lower-cased as it
// is read, with a lower-case name: equal, or, with prefix, starting with it.
func matchName(raw, want string, prefix bool) bool {
	j := 0
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '+':
			c = ' '
		case c == '%' && i+2 < len(raw) && unhex(raw[i+1]) >= 0 && unhex(raw[i+2]) >= 0:
			c = byte(unhex(raw[i+1])<<4 | unhex(raw[i+2]))
			i += 2
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if j == len(want) {
			return prefix
		}
		if c != want[j] {
			return false
		}
		j++
	}
	return j == len(want)
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// appendKey writes ,"k": (keys are the package's own: no escaping).
func appendKey(b []byte, k string) []byte {
	b = append(b, ',', '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

// appendString writes s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	b = appendStringBody(b, s)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendStringBody escapes s for a JSON string: quotes, backslashes and control characters are
// escaped, and bytes that are not UTF-8 become U+FFFD, so that a line is always valid JSON.
func appendStringBody(b []byte, s string) []byte {
	i := 0
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' {
		i++
	}
	b = append(b, s[:i]...) // the part that needs no escaping, usually all of it
	for i < len(s) {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
		i++
	}
	return b
}

// appendPath writes the path as a JSON string with a signed URL's token carried in it
// (signedurl.PathMarker, "/_t/<token>/rest") replaced by REDACTED: a token is a bearer
// credential for a whole stream until it expires, and logs travel further than the edge.
func appendPath(b []byte, p string) []byte {
	const marker = "/_t/" // signedurl.PathMarker; accesslog stays free of the edge's packages
	if !strings.HasPrefix(p, marker) {
		return appendString(b, p)
	}
	rest := ""
	if i := strings.IndexByte(p[len(marker):], '/'); i >= 0 {
		rest = p[len(marker)+i:]
	}
	b = append(b, `"/_t/REDACTED`...)
	b = appendStringBody(b, rest)
	return append(b, '"')
}
