//go:build unix

package edge

import (
	"fmt"
	"syscall"
)

// raiseFileLimit raises the process's soft open-file limit (RLIMIT_NOFILE) to its hard limit and
// returns the limit now in force. The Go runtime already does this when a process starts (Go
// 1.19 and later, os/rlimit.go); the edge does it again, explicitly, because its connection
// budget is derived from the result and must not depend on that detail.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return uint64(lim.Cur), fmt.Errorf("raise the open-file limit from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = raised
	}
	return uint64(lim.Cur), nil
}
