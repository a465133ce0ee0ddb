package devcluster

import "syscall"

// childProcAttr puts a dev child in its own process group (Ctrl-C reaches only `duet dev`, which
// stops the children in order) and has the kernel kill it if `duet dev` itself dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
