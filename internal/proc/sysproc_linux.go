package proc

import "syscall"

// childSysProcAttr puts a child in its own process group, so Stop can signal
// everything it spawned, and asks the kernel to kill it if this process dies
// without calling Stop (a crashed or killed test binary must not leak
// apiservers). See onSpawnerThread for why that needs a dedicated thread.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
