//go:build !linux

package devcluster

import "syscall"

// childProcAttr puts a dev child in its own process group, so Ctrl-C reaches only `duet dev`.
func childProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
