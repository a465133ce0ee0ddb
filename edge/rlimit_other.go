//go:build !unix

package edge

// raiseFileLimit reports no limit where there is no RLIMIT_NOFILE: max_conns is not derived.
func raiseFileLimit() (uint64, error) { return 0, nil }
