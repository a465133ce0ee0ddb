package byterange

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	const size = 10000
	many := func(n int, sep string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = strconv.Itoa(i*10) + "-" + strconv.Itoa(i*10+1)
		}
		return "bytes=" + strings.Join(parts, sep)
	}
	manyWant := func(n int) []Range {
		rs := make([]Range, n)
		for i := range rs {
			rs[i] = Range{int64(i * 10), int64(i*10 + 1)}
		}
		return rs
	}
	tests := []struct {
		name   string
		header string
		size   int64
		want   []Range
		err    error
	}{
		// RFC 9110 §14.1.2 examples, against a 10000-byte representation.
		{"rfc first 500 bytes", "bytes=0-499", size, []Range{{0, 499}}, nil},
		{"rfc second 500 bytes", "bytes=500-999", size, []Range{{500, 999}}, nil},
		{"rfc final 500 bytes suffix", "bytes=-500", size, []Range{{9500, 9999}}, nil},
		{"rfc final 500 bytes open", "bytes=9500-", size, []Range{{9500, 9999}}, nil},
		{"rfc first and last bytes", "bytes=0-0,-1", size, []Range{{0, 0}, {9999, 9999}}, nil},
		{"rfc second 500 adjacent spelling", "bytes=500-600,601-999", size, []Range{{500, 999}}, nil},
		{"rfc second 500 overlapping spelling", "bytes=500-700,601-999", size, []Range{{500, 999}}, nil},
		// RFC 9110 §14.4 examples against a 1234-byte representation.
		{"rfc 1234 first 500", "bytes=0-499", 1234, []Range{{0, 499}}, nil},
		{"rfc 1234 second 500", "bytes=500-999", 1234, []Range{{500, 999}}, nil},
		{"rfc 1234 last 500", "bytes=-500", 1234, []Range{{734, 1233}}, nil},
		{"rfc 1234 42 to end", "bytes=42-", 1234, []Range{{42, 1233}}, nil},

		{"unit case-insensitive", "BYTES=0-1", size, []Range{{0, 1}}, nil},
		{"whole", "bytes=0-", size, []Range{{0, 9999}}, nil},
		{"single byte", "bytes=5-5", size, []Range{{5, 5}}, nil},
		{"end clipped", "bytes=9000-20000", size, []Range{{9000, 9999}}, nil},
		{"suffix longer than size", "bytes=-20000", size, []Range{{0, 9999}}, nil},
		{"huge end clipped", "bytes=0-99999999999999999999999", size, []Range{{0, 9999}}, nil},
		{"huge suffix", "bytes=-99999999999999999999999", size, []Range{{0, 9999}}, nil},
		{"whitespace around commas", "bytes=0-1 ,\t5-6 , 9-9", size, []Range{{0, 1}, {5, 6}, {9, 9}}, nil},
		{"whitespace after =", "bytes= 0-1", size, []Range{{0, 1}}, nil},
		{"empty elements ignored", "bytes=,0-1,,5-6,", size, []Range{{0, 1}, {5, 6}}, nil},
		{"disjoint out of order kept", "bytes=500-999,0-99", size, []Range{{500, 999}, {0, 99}}, nil},
		{"unsatisfiable dropped", "bytes=0-1,20000-30000,-0", size, []Range{{0, 1}}, nil},
		{"overlap coalesced and sorted", "bytes=100-200,0-10,5-20", size, []Range{{0, 20}, {100, 200}}, nil},
		{"adjacent coalesced", "bytes=0-9,10-19,30-39", size, []Range{{0, 19}, {30, 39}}, nil},
		{"repeated whole coalesced", "bytes=0-,0-,0-,0-", size, []Range{{0, 9999}}, nil},
		{"suffix overlapping open", "bytes=9000-,-500", size, []Range{{9000, 9999}}, nil},
		{"contained range coalesced", "bytes=0-100,10-20", size, []Range{{0, 100}}, nil},
		{"max ranges", many(MaxRanges, ","), size, manyWant(MaxRanges), nil},
		{"max ranges with empties", many(MaxRanges, ",,"), size, manyWant(MaxRanges), nil},
		{"one byte representation", "bytes=0-0", 1, []Range{{0, 0}}, nil},

		{"too many ranges", many(MaxRanges+1, ","), size, nil, ErrInvalid},
		{"not bytes", "bits=0-1", size, nil, ErrInvalid},
		{"no equals", "bytes 0-1", size, nil, ErrInvalid},
		{"space before equals", "bytes =0-1", size, nil, ErrInvalid},
		{"empty", "", size, nil, ErrInvalid},
		{"empty set", "bytes=", size, nil, ErrInvalid},
		{"only commas", "bytes=, ,", size, nil, ErrInvalid},
		{"no dash", "bytes=100", size, nil, ErrInvalid},
		{"lone dash", "bytes=-", size, nil, ErrInvalid},
		{"double dash", "bytes=--1", size, nil, ErrInvalid},
		{"two dashes", "bytes=0-1-2", size, nil, ErrInvalid},
		{"negative first", "bytes=-1-5", size, nil, ErrInvalid},
		{"last before first", "bytes=5-4", size, nil, ErrInvalid},
		{"space inside spec", "bytes=0 -1", size, nil, ErrInvalid},
		{"letters", "bytes=a-b", size, nil, ErrInvalid},
		{"plus sign", "bytes=+1-2", size, nil, ErrInvalid},
		{"syntax error beats satisfiable", "bytes=0-1,x", size, nil, ErrInvalid},
		{"syntax error on empty representation", "bytes=x", 0, nil, ErrInvalid},
		{"other unit list", "items=0-1", size, nil, ErrInvalid},

		{"start at size", "bytes=10000-", size, nil, ErrUnsatisfiable},
		{"start past size", "bytes=20000-30000", size, nil, ErrUnsatisfiable},
		{"zero suffix", "bytes=-0", size, nil, ErrUnsatisfiable},
		{"huge start", "bytes=99999999999999999999-", size, nil, ErrUnsatisfiable},
		{"empty representation open", "bytes=0-", 0, nil, ErrUnsatisfiable},
		{"empty representation suffix", "bytes=-5", 0, nil, ErrUnsatisfiable},
		{"negative size", "bytes=0-5", -1, nil, ErrUnsatisfiable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.header, tt.size)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Parse(%q, %d) error = %v, want %v", tt.header, tt.size, err, tt.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q, %d) = %v, want %v", tt.header, tt.size, got, tt.want)
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	for _, h := range []string{"bytes=0-1023", "bytes=0-0,-1", "bytes=0-,0-,0-"} {
		t.Run(h, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() { _, _ = Parse(h, 1<<20) })
			if allocs > 1 {
				t.Errorf("Parse(%q) allocates %v times, want at most 1", h, allocs)
			}
		})
	}
	for _, h := range []string{"bytes=x", "bytes=99999-", "bits=0-1"} {
		t.Run(h, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() { _, _ = Parse(h, 10) })
			if allocs != 0 {
				t.Errorf("Parse(%q) allocates %v times on error, want 0", h, allocs)
			}
		})
	}
}

func TestRangeLen(t *testing.T) {
	tests := []struct {
		r    Range
		want int64
	}{
		{Range{0, 0}, 1},
		{Range{0, 499}, 500},
		{Range{9500, 9999}, 500},
	}
	for _, tt := range tests {
		t.Run(ContentRange(tt.r, 10000), func(t *testing.T) {
			if got := tt.r.Len(); got != tt.want {
				t.Errorf("Len() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestContentRange(t *testing.T) {
	tests := []struct {
		r    Range
		size int64
		want string
	}{
		// RFC 9110 §14.4 examples.
		{Range{42, 1233}, 1234, "bytes 42-1233/1234"},
		{Range{42, 1233}, -1, "bytes 42-1233/*"},
		{Range{0, 499}, 1234, "bytes 0-499/1234"},
		{Range{500, 999}, 1234, "bytes 500-999/1234"},
		{Range{734, 1233}, 1234, "bytes 734-1233/1234"},
		{Range{0, 1<<63 - 2}, 1<<63 - 1, "bytes 0-9223372036854775806/9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := ContentRange(tt.r, tt.size); got != tt.want {
				t.Errorf("ContentRange(%v, %d) = %q, want %q", tt.r, tt.size, got, tt.want)
			}
		})
	}
	// RFC 9110 §14.4 and §15.5.17 examples of an unsatisfied range.
	for _, tt := range []struct {
		size int64
		want string
	}{{1234, "bytes */1234"}, {47022, "bytes */47022"}, {0, "bytes */0"}} {
		t.Run(tt.want, func(t *testing.T) {
			if got := UnsatisfiedContentRange(tt.size); got != tt.want {
				t.Errorf("UnsatisfiedContentRange(%d) = %q, want %q", tt.size, got, tt.want)
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		in                string
		start, end, total int64
		wantErr           bool
	}{
		{"bytes 42-1233/1234", 42, 1233, 1234, false},
		{"bytes 42-1233/*", 42, 1233, -1, false},
		{"bytes */1234", -1, -1, 1234, false},
		{"bytes */47022", -1, -1, 47022, false},
		{"bytes 0-0/1", 0, 0, 1, false},
		{"BYTES 0-499/1234", 0, 499, 1234, false},
		{"bytes 0-9223372036854775806/9223372036854775807", 0, 1<<63 - 2, 1<<63 - 1, false},
		{"bytes */0", -1, -1, 0, false},

		{"", 0, 0, 0, true},
		{"bytes", 0, 0, 0, true},
		{"bytes ", 0, 0, 0, true},
		{"bytes=0-1/2", 0, 0, 0, true},
		{"bits 0-1/2", 0, 0, 0, true},
		{"bytes  0-1/2", 0, 0, 0, true},
		{"bytes 0-1", 0, 0, 0, true},
		{"bytes 0-1/", 0, 0, 0, true},
		{"bytes 0-/2", 0, 0, 0, true},
		{"bytes -1/2", 0, 0, 0, true},
		{"bytes 1/2", 0, 0, 0, true},
		{"bytes 5-4/10", 0, 0, 0, true},
		{"bytes 0-10/10", 0, 0, 0, true},
		{"bytes 0-1/0", 0, 0, 0, true},
		{"bytes */*", 0, 0, 0, true},
		{"bytes 0-1/-5", 0, 0, 0, true},
		{"bytes +0-1/5", 0, 0, 0, true},
		{"bytes 0-1/2 ", 0, 0, 0, true},
		{"bytes 0-99999999999999999999/*", 0, 0, 0, true},
		{"bytes 0-9223372036854775808/*", 0, 0, 0, true},
		{"bytes * /12", 0, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			start, end, total, err := ParseContentRange(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("ParseContentRange(%q) error = %v, want ErrInvalid", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseContentRange(%q) error = %v", tt.in, err)
			}
			if start != tt.start || end != tt.end || total != tt.total {
				t.Errorf("ParseContentRange(%q) = %d, %d, %d, want %d, %d, %d", tt.in, start, end, total, tt.start, tt.end, tt.total)
			}
		})
	}
}

// checkRanges verifies the guarantees of Parse's result.
func checkRanges(t *testing.T, header string, size int64, rs []Range) {
	t.Helper()
	if len(rs) == 0 || len(rs) > MaxRanges {
		t.Fatalf("Parse(%q, %d): %d ranges", header, size, len(rs))
	}
	var total int64
	for i, r := range rs {
		if r.Start < 0 || r.Start > r.End || r.End >= size {
			t.Fatalf("Parse(%q, %d): range %v outside [0,%d)", header, size, r, size)
		}
		total += r.Len()
		for _, o := range rs[i+1:] {
			if r.Start <= o.End+1 && o.Start <= r.End+1 {
				t.Fatalf("Parse(%q, %d): ranges %v and %v overlap or touch", header, size, r, o)
			}
		}
	}
	if total > size {
		t.Fatalf("Parse(%q, %d): %d bytes in total", header, size, total)
	}
}

func FuzzParse(f *testing.F) {
	seeds := []struct {
		h    string
		size int64
	}{
		{"bytes=0-499", 10000},
		{"bytes=-500", 10000},
		{"bytes=9500-", 10000},
		{"bytes=0-0,-1", 10000},
		{"bytes=500-600,601-999", 10000},
		{"bytes=500-700,601-999", 10000},
		{"bytes=0-,0-,0-", 10},
		{"bytes= 0-1 ,\t, 5-", 3},
		{"BYTES=99999999999999999999-", 1 << 62},
		{"bytes=-0", 0},
		{"bytes=5-4", 10},
		{"bits=0-1", 10},
	}
	for _, s := range seeds {
		f.Add(s.h, s.size)
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		rs, err := Parse(header, size)
		if err != nil {
			if rs != nil {
				t.Fatalf("Parse(%q, %d) = %v with error %v", header, size, rs, err)
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsatisfiable) {
				t.Fatalf("Parse(%q, %d): unexpected error %v", header, size, err)
			}
			return
		}
		checkRanges(t, header, size, rs)
	})
}

func FuzzParseContentRange(f *testing.F) {
	for _, s := range []string{
		"bytes 42-1233/1234", "bytes 42-1233/*", "bytes */1234", "BYTES 0-0/1",
		"bytes 0-9223372036854775806/9223372036854775807", "bytes */*", "bytes 5-4/10", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		start, end, total, err := ParseContentRange(v)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseContentRange(%q): unexpected error %v", v, err)
			}
			return
		}
		var out string
		switch {
		case start == -1 && end == -1:
			if total < 0 {
				t.Fatalf("ParseContentRange(%q): unsatisfied range without total", v)
			}
			out = UnsatisfiedContentRange(total)
		case start < 0 || start > end || (total >= 0 && end >= total) || total < -1:
			t.Fatalf("ParseContentRange(%q) = %d, %d, %d: inconsistent", v, start, end, total)
		default:
			out = ContentRange(Range{start, end}, total)
		}
		s2, e2, t2, err := ParseContentRange(out)
		if err != nil || s2 != start || e2 != end || t2 != total {
			t.Fatalf("round trip of %q via %q: %d, %d, %d, %v; want %d, %d, %d", v, out, s2, e2, t2, err, start, end, total)
		}
	})
}
