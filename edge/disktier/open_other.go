//go:build !linux

package disktier

import "os"

// openFile opens p read-only and returns the file with its size and modification time
// (Unix nanoseconds).
func openFile(p string) (*os.File, int64, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, 0, err
	}
	return f, fi.Size(), fi.ModTime().UnixNano(), nil
}
