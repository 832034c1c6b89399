//go:build unix

package cel_test

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used, all threads: on a
// shared machine it varies much less with other load than elapsed time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
