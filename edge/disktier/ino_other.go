//go:build !unix

package disktier

import "io/fs"

// fileIno is the inode number of a file; this platform has none, and 0 makes the deletion
// journal match any file of the same name (see journal.go).
func fileIno(fs.FileInfo) uint64 { return 0 }
