//go:build !linux

package disktier

import "os"

// openFile opens p read-only and returns the file with its size, modification time (Unix
// nanoseconds) and inode number (0 where the platform has none).
func openFile(p string) (*os.File, int64, int64, uint64, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, 0, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, 0, 0, 0, err
	}
	return f, fi.Size(), fi.ModTime().UnixNano(), fileIno(fi), nil
}
