package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/duetcdn/duet/edge/object"
)

// fasthttp's response setters refuse Date ("managed automatically") and write the server's
// clock instead, so a hit could not send the stored Date that its Age counts from (RFC 9111
// §4.2.3, §5.1): a downstream cache then reads Expires minus that Date as the freshness
// lifetime, short by the entry's age. The viewer listener runs with NoDefaultDate, and the
// edge puts Date in itself by the one way fasthttp allows: parsing it into the header.

// dateParser is the reusable state of one setDate call (pooled: the hit path must not
// allocate).
type dateParser struct {
	buf []byte
	src bytes.Reader
	br  *bufio.Reader
}

// dateParsers is a pool, shared by every Server as fasthttp shares its own date.
var dateParsers = sync.Pool{New: func() any {
	p := &dateParser{buf: make([]byte, 0, 96)}
	p.br = bufio.NewReaderSize(&p.src, 128)
	return p
}}

// setDate resets rh to a header holding only Date: date when it is a well-formed
// IMF-fixdate, otherwise now. It must come before anything else is set on rh.
func setDate(rh *fasthttp.ResponseHeader, date string, now time.Time) {
	p := dateParsers.Get().(*dateParser)
	p.buf = append(p.buf[:0], "HTTP/1.1 200 OK\r\nDate: "...)
	if len(date) == len(http.TimeFormat) && printable(date) {
		p.buf = append(p.buf, date...)
	} else {
		p.buf = now.UTC().AppendFormat(p.buf, http.TimeFormat)
	}
	p.buf = append(p.buf, "\r\n\r\n"...)
	p.src.Reset(p.buf)
	p.br.Reset(&p.src)
	if err := rh.Read(p.br); err != nil {
		rh.ResetConnectionClose() // not expected: the header stays empty, without a Date
	}
	// A parsed response without Content-Length reads as "until close": the edge's responses
	// set their own framing afterwards and keep the connection.
	rh.ResetConnectionClose()
	dateParsers.Put(p)
}

// printable reports whether s is visible ASCII or space (a header value that cannot split the
// header block).
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// storedDate is an entry's stored Date, or "".
func storedDate(h []object.Field) string {
	for i := range h {
		if h[i].Name == "Date" {
			return h[i].Value
		}
	}
	return ""
}
