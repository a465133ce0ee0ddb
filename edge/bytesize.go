package edge

import (
	"fmt"
	"strconv"
	"strings"
)

// ByteSize is a size in bytes that reads "512MiB", "10GB", "4m" or a plain number.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	mult   int64
}{
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"tib", 1 << 40},
	{"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000 * 1000 * 1000}, {"tb", 1000 * 1000 * 1000 * 1000},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40}, {"b", 1},
}

// ParseByteSize reads a size; units are binary for KiB/MiB/GiB and the one-letter forms,
// decimal for KB/MB/GB.
func ParseByteSize(s string) (ByteSize, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(v, u.suffix) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(v, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit such as 512MiB or 10GB", s)
	}
	return ByteSize(n * float64(mult)), nil
}

// String renders the size in the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		s string
		m int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.m == 0 {
			return strconv.FormatInt(int64(b)/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// Set implements flag.Value.
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// Type implements pflag.Value.
func (b *ByteSize) Type() string { return "bytes" }

// UnmarshalText lets YAML and environment variables use the same spelling.
func (b *ByteSize) UnmarshalText(text []byte) error { return b.Set(string(text)) }

// MarshalText renders the size for YAML.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }
