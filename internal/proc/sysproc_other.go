//go:build unix && !linux

package proc

import "syscall"

// childSysProcAttr puts a child in its own process group so Stop can signal
// everything it spawned. Only Linux offers Pdeathsig; elsewhere children of
// a process that dies without calling Stop outlive it.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
