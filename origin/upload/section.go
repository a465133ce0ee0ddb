package upload

import (
	"io"
	"os"
)

// newSection is a part of the file as a body the SDK can rewind: over plain HTTP it reads the
// body once to sign its SHA-256 and again to send it, and a retry reads it again. ReadAt on one
// *os.File is safe from several goroutines, so parts share the open file.
func newSection(f *os.File, off, n int64) io.ReadSeeker {
	return io.NewSectionReader(f, off, n)
}
