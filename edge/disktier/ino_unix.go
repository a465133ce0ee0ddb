//go:build unix

package disktier

import (
	"io/fs"
	"syscall"
)

// fileIno is the inode number of a file, or 0 when fi does not carry one.
func fileIno(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
