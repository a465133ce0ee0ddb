package byterange

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
)

// maxBoundary is the longest boundary RFC 2046 §5.1.1 allows.
const maxBoundary = 70

// copyBuffer is the largest buffer WriteTo allocates to copy a part.
const copyBuffer = 32 << 10

// Multipart writes a multipart/byteranges body (RFC 9110 §14.6) for several ranges of one
// representation. Its length is known before writing, so a response can carry
// Content-Length. A Multipart is not changed by writing and may be written several times,
// but not concurrently from several goroutines.
type Multipart struct {
	boundary string
	size     int64
	ranges   []Range
	// headers holds every part's header, and the closing delimiter at the end; part i's
	// header is headers[offsets[i]:offsets[i+1]].
	headers []byte
	offsets []int
	length  int64
}

// NewMultipart prepares a multipart/byteranges body for ranges of a representation of the
// given size, in the given order. Each part carries a Content-Range and, when contentType
// is not empty, the representation's Content-Type; a contentType containing a control
// character is left out rather than risk splitting the part header. The ranges must lie
// within [0,size), as Parse returns them: WriteTo fails otherwise.
//
// boundary must be a valid RFC 2046 boundary (1 to 70 characters of letters, digits and
// '()+_,-./:=? , not ending with a space); an invalid or empty one is replaced by
// RandomBoundary(). Use ContentType for the response's Content-Type.
func NewMultipart(boundary, contentType string, size int64, ranges []Range) *Multipart {
	if !validBoundary(boundary) {
		boundary = RandomBoundary()
	}
	if !validHeaderValue(contentType) {
		contentType = ""
	}
	m := &Multipart{
		boundary: boundary,
		size:     size,
		ranges:   ranges,
		offsets:  make([]int, 0, len(ranges)+1),
	}
	perPart := len("\r\n--") + len(boundary) + len("\r\nContent-Type: ") + len(contentType) +
		len("\r\nContent-Range: bytes -/") + 3*20 + len("\r\n\r\n")
	b := make([]byte, 0, len(ranges)*perPart+len(boundary)+8)
	for i, r := range ranges {
		m.offsets = append(m.offsets, len(b))
		if i > 0 {
			b = append(b, "\r\n"...)
		}
		b = append(b, "--"...)
		b = append(b, boundary...)
		b = append(b, "\r\n"...)
		if contentType != "" {
			b = append(b, "Content-Type: "...)
			b = append(b, contentType...)
			b = append(b, "\r\n"...)
		}
		b = append(b, "Content-Range: "...)
		b = appendContentRange(b, r, size)
		b = append(b, "\r\n\r\n"...)
		m.length += r.Len()
	}
	m.offsets = append(m.offsets, len(b))
	if len(ranges) > 0 {
		b = append(b, "\r\n"...)
	}
	b = append(b, "--"...)
	b = append(b, boundary...)
	b = append(b, "--\r\n"...)
	m.headers = b
	m.length += int64(len(b))
	return m
}

// Boundary returns the boundary the body uses.
func (m *Multipart) Boundary() string { return m.boundary }

// ContentType returns the Content-Type of the response: "multipart/byteranges;
// boundary=...", with the boundary quoted when it contains characters a token cannot hold.
func (m *Multipart) ContentType() string {
	const prefix = "multipart/byteranges; boundary="
	if isToken(m.boundary) {
		return prefix + m.boundary
	}
	return prefix + `"` + m.boundary + `"`
}

// Len returns the exact length of the body WriteTo writes, known before writing so that it
// can be sent as Content-Length.
func (m *Multipart) Len() int64 { return m.length }

// WriteTo writes the body to w, reading each part's bytes from src at the range's offset.
// It returns the number of bytes written. It writes nothing and returns an error wrapping
// ErrInvalid if a range does not lie within [0,size); an error wrapping io.ErrUnexpectedEOF
// means src ended before a range did.
func (m *Multipart) WriteTo(w io.Writer, src io.ReaderAt) (int64, error) {
	longest := int64(0)
	for _, r := range m.ranges {
		if r.Start < 0 || r.Start > r.End || r.End >= m.size {
			return 0, fmt.Errorf("byterange: multipart: range %d-%d outside size %d: %w", r.Start, r.End, m.size, ErrInvalid)
		}
		longest = max(longest, r.Len())
	}
	buf := make([]byte, min(longest, copyBuffer))
	var written int64
	for i, r := range m.ranges {
		n, err := w.Write(m.headers[m.offsets[i]:m.offsets[i+1]])
		written += int64(n)
		if err != nil {
			return written, err
		}
		c, err := io.CopyBuffer(w, io.NewSectionReader(src, r.Start, r.Len()), buf)
		written += c
		if err != nil {
			return written, err
		}
		if c != r.Len() {
			return written, fmt.Errorf("byterange: multipart: part %d-%d: source ended after %d bytes: %w", r.Start, r.End, c, io.ErrUnexpectedEOF)
		}
	}
	n, err := w.Write(m.headers[m.offsets[len(m.ranges)]:])
	written += int64(n)
	return written, err
}

// RandomBoundary returns a fresh random boundary of 32 hexadecimal digits (128 bits from
// crypto/rand), which no representation is likely to contain.
func RandomBoundary() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return hex.EncodeToString(b[:])
}

// validBoundary reports whether s is a valid RFC 2046 boundary.
func validBoundary(s string) bool {
	if s == "" || len(s) > maxBoundary || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '\'', '(', ')', '+', '_', ',', '-', '.', '/', ':', '=', '?', ' ':
			continue
		}
		return false
	}
	return true
}

// validHeaderValue reports whether s holds no control character other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return true
}
