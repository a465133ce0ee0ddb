package disktier

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/duetcdn/duet/edge/object"
)

// On-disk format (version 1). Every entry is one file named after a 128-bit hash of its key:
//
//	Dir/ab/ab0123…(32 hex digits)
//
//	[body: Meta.Size bytes][meta: metaLen bytes][trailer: 20 bytes]
//
//	trailer = metaLen   uint32 little-endian
//	          metaSum   uint64 little-endian, xxhash64 of the meta bytes
//	          magic     "DUETDK"
//	          version   uint16 little-endian (formatVersion)
//
// The body comes first so that the server can sendfile bytes [0, Meta.Size) of the file without
// any offset arithmetic. A file is valid when its trailer parses, the meta checksum matches, the
// meta decodes, the file length is exactly Meta.Size+metaLen+20, and its name is the hash of the
// key stored in the meta (this also detects hash collisions: the stored key is authoritative).
// The body itself is checked against Meta.Checksum (xxhash64) on the first Open after start-up.
//
// The meta encoding (see appendMeta) is a sequence of fields in object.Meta order: strings and
// counts as uvarint-prefixed values, integers and durations as zig-zag varints, times as a tag
// byte (0 zero, 1 UTC, 2 fixed offset followed by the offset in seconds) then Unix seconds and
// nanoseconds, booleans as one byte, the checksum as 8 little-endian bytes.
const (
	trailerSize   = 20
	formatVersion = 1
	// MaxMetaBytes bounds one entry's encoded metadata (headers, tags). Larger metadata is
	// refused with ErrTooLarge, and a trailer that claims more is treated as corrupt.
	MaxMetaBytes = 1 << 20
	hashHexLen   = 32
)

var fileMagic = [6]byte{'D', 'U', 'E', 'T', 'D', 'K'}

var (
	errTrailer = errors.New("bad trailer")
	errMeta    = errors.New("bad meta encoding")
)

// appendTrailer appends the trailer for metaLen bytes of meta whose xxhash64 is sum.
func appendTrailer(b []byte, metaLen int, sum uint64) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(metaLen))
	b = binary.LittleEndian.AppendUint64(b, sum)
	b = append(b, fileMagic[:]...)
	return binary.LittleEndian.AppendUint16(b, formatVersion)
}

// parseTrailer reads the 20 trailer bytes.
func parseTrailer(t []byte) (metaLen int64, sum uint64, err error) {
	if len(t) != trailerSize {
		return 0, 0, errTrailer
	}
	if !bytes.Equal(t[12:18], fileMagic[:]) {
		return 0, 0, fmt.Errorf("%w: no magic", errTrailer)
	}
	if v := binary.LittleEndian.Uint16(t[18:]); v != formatVersion {
		return 0, 0, fmt.Errorf("%w: format version %d, want %d", errTrailer, v, formatVersion)
	}
	metaLen = int64(binary.LittleEndian.Uint32(t[0:4]))
	if metaLen > MaxMetaBytes {
		return 0, 0, fmt.Errorf("%w: meta length %d", errTrailer, metaLen)
	}
	return metaLen, binary.LittleEndian.Uint64(t[4:12]), nil
}

// encodeEntry returns the meta and trailer bytes of a file whose meta is m.
func encodeEntry(m *object.Meta) (tail []byte, metaLen int, err error) {
	b := appendMeta(make([]byte, 0, 256), m)
	metaLen = len(b)
	if metaLen > MaxMetaBytes {
		return nil, 0, fmt.Errorf("meta of %d bytes: %w", metaLen, ErrTooLarge)
	}
	return appendTrailer(b, metaLen, xxhash.Sum64(b)), metaLen, nil
}

// appendMeta appends the encoding of every field of m. A test fills each field of object.Meta
// by reflection, so a field added there and forgotten here fails the round trip.
func appendMeta(b []byte, m *object.Meta) []byte {
	b = appendString(b, m.Key)
	b = binary.AppendVarint(b, int64(m.Status))
	b = binary.AppendUvarint(b, uint64(len(m.Header)))
	for _, f := range m.Header {
		b = appendString(b, f.Name)
		b = appendString(b, f.Value)
	}
	b = appendString(b, m.ETag)
	b = appendTime(b, m.LastModified)
	b = appendTime(b, m.RequestTime)
	b = appendTime(b, m.ResponseTime)
	b = binary.AppendVarint(b, int64(m.InitialAge))
	b = binary.AppendVarint(b, int64(m.FreshFor))
	b = binary.AppendVarint(b, int64(m.StaleWhileRevalidate))
	b = binary.AppendVarint(b, int64(m.StaleIfError))
	if m.MustRevalidate {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendVarint(b, m.Size)
	b = binary.AppendVarint(b, m.Total)
	b = binary.AppendVarint(b, m.Offset)
	b = binary.AppendUvarint(b, uint64(len(m.Tags)))
	for _, t := range m.Tags {
		b = appendString(b, t)
	}
	b = binary.LittleEndian.AppendUint64(b, m.Checksum)
	return binary.AppendUvarint(b, uint64(m.Flags))
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Time tags.
const (
	timeZero  = 0
	timeUTC   = 1
	timeFixed = 2
)

// appendTime keeps the instant to the nanosecond and the UTC offset. Like time.MarshalBinary it
// drops the monotonic reading and the zone's name: a UTC time decodes as UTC, any other as
// time.Local when Local has the same offset at that instant, else as a nameless fixed zone. So
// decoded times are Equal to the originals, and UTC times are even ==.
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, timeZero)
	}
	if t.Location() == time.UTC {
		b = append(b, timeUTC)
	} else {
		_, off := t.Zone()
		b = append(b, timeFixed)
		b = binary.AppendVarint(b, int64(off))
	}
	b = binary.AppendVarint(b, t.Unix())
	return binary.AppendUvarint(b, uint64(t.Nanosecond()))
}

// decodeMeta decodes meta bytes written by appendMeta. All strings of the result share one
// allocation (a copy of b), so b may be reused by the caller; empty slices decode as nil.
func decodeMeta(b []byte) (object.Meta, error) {
	d := decoder{b: b, s: string(b)}
	var m object.Meta
	m.Key = d.str()
	m.Status = int(d.varint())
	if n := d.count(2); n > 0 {
		m.Header = make([]object.Field, n)
		for i := range m.Header {
			m.Header[i].Name = d.str()
			m.Header[i].Value = d.str()
		}
	}
	m.ETag = d.str()
	m.LastModified = d.time()
	m.RequestTime = d.time()
	m.ResponseTime = d.time()
	m.InitialAge = time.Duration(d.varint())
	m.FreshFor = time.Duration(d.varint())
	m.StaleWhileRevalidate = time.Duration(d.varint())
	m.StaleIfError = time.Duration(d.varint())
	switch d.byte() {
	case 0:
	case 1:
		m.MustRevalidate = true
	default:
		d.fail()
	}
	m.Size = d.varint()
	m.Total = d.varint()
	m.Offset = d.varint()
	if n := d.count(1); n > 0 {
		m.Tags = make([]string, n)
		for i := range m.Tags {
			m.Tags[i] = d.str()
		}
	}
	m.Checksum = d.uint64()
	flags := d.uvarint()
	if flags > 1<<32-1 {
		d.fail()
	}
	m.Flags = object.Flags(flags)
	if d.err == nil && d.off != len(b) {
		d.fail()
	}
	if d.err != nil {
		return object.Meta{}, d.err
	}
	if m.Size < 0 {
		return object.Meta{}, fmt.Errorf("%w: negative size", errMeta)
	}
	return m, nil
}

// decoder reads b; s holds the same bytes as a string that decoded strings are sliced from.
type decoder struct {
	b   []byte
	s   string
	off int
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w at byte %d", errMeta, d.off)
	}
	d.off = len(d.b)
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

// count reads an element count, each element taking at least min bytes.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if n > uint64((len(d.b)-d.off)/minSize) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)-d.off) {
		d.fail()
		return ""
	}
	s := d.s[d.off : d.off+int(n)]
	d.off += int(n)
	return s
}

func (d *decoder) byte() byte {
	if d.err != nil || d.off >= len(d.b) {
		d.fail()
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uint64() uint64 {
	if d.err != nil || len(d.b)-d.off < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b[d.off:])
	d.off += 8
	return v
}

func (d *decoder) time() time.Time {
	var off int64
	tag := d.byte()
	switch tag {
	case timeZero:
		return time.Time{}
	case timeUTC:
	case timeFixed:
		off = d.varint()
		if off < -7*24*3600 || off > 7*24*3600 {
			d.fail()
		}
	default:
		d.fail()
	}
	sec := d.varint()
	nsec := d.uvarint()
	if nsec >= 1e9 {
		d.fail()
	}
	if d.err != nil {
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec))
	if tag == timeUTC {
		return t.UTC()
	}
	if _, lo := t.Zone(); int64(lo) == off {
		return t // time.Local
	}
	return t.In(time.FixedZone("", int(off)))
}

// parseHashName reads the file name of a key hash: 32 lower-case hex digits.
func parseHashName(name string) (h [16]byte, ok bool) {
	if len(name) != hashHexLen {
		return h, false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return h, false
		}
	}
	_, err := hex.Decode(h[:], []byte(name))
	return h, err == nil
}
