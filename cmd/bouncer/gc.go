package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// Policy evaluation allocates many short-lived values; with the default
// GOGC the collector took about a third of `bouncer test`'s CPU and, in the
// webhook, its mark phases showed up as tail latency under load. Both
// modes trade memory for CPU with a higher GOGC and bound the heap with a
// soft memory limit. Users' own GOGC and GOMEMLIMIT win.

// batchGC tunes the offline commands (test, verify).
func batchGC() { tuneGC(300, 150<<20) }

// serverGC tunes bouncer serve: the soft limit is 80 % of the container's
// memory limit when there is one (so that the collector works harder before
// the kernel kills the pod), 400 MiB otherwise.
func serverGC() {
	limit := int64(400 << 20)
	if l, ok := cgroupMemoryLimit(cgroupFiles); ok {
		limit = l / 10 * 8
	}
	tuneGC(300, limit)
}

func tuneGC(percent int, limit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
	}
}

// cgroupFiles hold the memory limit under cgroup v2 and v1.
var cgroupFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// cgroupMemoryLimit reads the first limit found; "max" and v1's huge
// sentinel mean none.
func cgroupMemoryLimit(files []string) (int64, bool) {
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(raw))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
