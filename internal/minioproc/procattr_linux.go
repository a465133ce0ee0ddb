//go:build linux

package minioproc

import "syscall"

// procAttr puts the server in its own process group, so a Ctrl-C at the terminal reaches only the
// parent (which then stops the server in order), and kills the server if the parent dies first, so
// a crashed `duet dev` or test binary leaves no orphan holding the port.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
