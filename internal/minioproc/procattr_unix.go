//go:build unix && !linux

package minioproc

import "syscall"

// procAttr puts the server in its own process group, so a Ctrl-C at the terminal reaches only the
// parent, which then stops the server in order.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
