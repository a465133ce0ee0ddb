package edge

import (
	"net"
	"sync"
)

// TLS records in batches. crypto/tls writes every record (16 KiB of plaintext at most) to the
// socket on its own, so a 64 KiB body costs four write(2)s and four trips through the TCP stack,
// where nginx's OpenSSL gathers them. A recordBatch sits between the TLS connection and the
// socket: while a viewerConn writes a response (begin .. end), the records go into a pooled
// buffer and reach the socket together; otherwise (the handshake, alerts) they pass straight
// through. The buffer is held only during a write, so an idle connection holds none.

// recordBatchSize is a batch's buffer: four full records and their overhead.
const recordBatchSize = 4 * (16<<10 + 256)

var recordBatchBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, recordBatchSize)
	return &b
}}

// recordBatch is the socket under a viewer's TLS connection.
type recordBatch struct {
	net.Conn
	mu  sync.Mutex // tls.Conn may write an alert from Close in another goroutine
	buf *[]byte    // non-nil between begin and end
	err error
}

func (b *recordBatch) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return b.Conn.Write(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	if len(*b.buf)+len(p) > cap(*b.buf) {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(*b.buf) {
			return b.Conn.Write(p)
		}
	}
	*b.buf = append(*b.buf, p...)
	return len(p), nil
}

// begin gathers the records written until end.
func (b *recordBatch) begin() {
	b.mu.Lock()
	b.buf = recordBatchBufs.Get().(*[]byte)
	*b.buf = (*b.buf)[:0]
	b.err = nil
	b.mu.Unlock()
}

// end sends what was gathered and gives the buffer back.
func (b *recordBatch) end() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.flushLocked()
	recordBatchBufs.Put(b.buf)
	b.buf = nil
	return err
}

func (b *recordBatch) flushLocked() error {
	if b.err != nil {
		return b.err
	}
	if len(*b.buf) == 0 {
		return nil
	}
	_, err := b.Conn.Write(*b.buf)
	*b.buf = (*b.buf)[:0]
	b.err = err
	return err
}
