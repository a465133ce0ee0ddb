//go:build !unix

package minioproc

import "syscall"

func procAttr() *syscall.SysProcAttr { return nil }
